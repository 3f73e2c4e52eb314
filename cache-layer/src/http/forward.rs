//! Misses: waiting on a concurrent load of the same key or leading one (in this process, and
//! across instances through the key's distributed lock), calling the inner service
//! (conditionally when revalidating), and turning its answer into the client's response while
//! storing what may be stored.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::header::{
    AGE, CONTENT_LENGTH, DATE, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, RANGE, SET_COOKIE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::body::{CacheBody, Held};
use super::config::{Config, EtagMode};
use super::lookup::{
    lookup, lookup_shared, request_directives, response_of, shared_response_of, Found,
};
use super::record::{add_etag, forget, mark_uncacheable, store_response, PendingStore};
use super::respond::{apply_preconditions, serve};
use super::rules::cache_control::{RequestDirectives, ResponseDirectives};
use super::rules::etag::EntityTag;
use super::rules::freshness::current_age;
use super::rules::freshness::remaining_ttl;
use super::rules::gate::{admit, strip_connection_fields, Admitted, Exchange};
use super::rules::key::secondary_key;
use super::rules::storable::NotStorable;
use super::rules::vary::vary_names;
use super::status::{CacheStatus, Forward};
use super::stored::{lifetime_of, CachedResponse, Usability};
use super::tags::take_tags;
use crate::entry::Value;
use crate::pipeline::{self, Joined, Leader, Load, Locked, Waiting};
use crate::stats::Counter;
use crate::store::SharedSince;
use crate::{clock, Cache};

/// What a miss does: which key to coalesce and store under, and what stale copy it has.
pub(crate) struct Plan {
    pub(crate) primary: String,
    /// The variant key, when the URL's responses vary.
    pub(crate) variant: Option<String>,
    /// A stored response to revalidate, and whether it may be served if the inner service fails.
    pub(crate) stale: Option<(Arc<CachedResponse>, bool)>,
    pub(crate) forward: Forward,
    pub(crate) coalesce: bool,
}

impl Plan {
    /// A plan for a URL not found: coalesced, nothing stale, no key yet.
    pub(crate) fn empty() -> Self {
        Plan {
            primary: String::new(),
            variant: None,
            stale: None,
            forward: Forward::UriMiss,
            coalesce: true,
        }
    }

    pub(crate) fn key(&self) -> &str {
        self.variant.as_deref().unwrap_or(&self.primary)
    }
}

fn check_size(
    response: &HeaderMap,
    hint: &http_body::SizeHint,
    max: usize,
) -> Result<(), NotStorable> {
    let declared = response
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.unwrap_or(0).max(hint.lower()) > max as u64 {
        return Err(NotStorable::TooLarge);
    }
    Ok(())
}

/// For a body of known size up to `max_body`, that size held in the layer's body budget
/// while it is read; `None` for any other body, or when the share is spent.
fn hold_small<B: Body>(body: &B, config: &Config) -> Option<Held> {
    let size = body.size_hint().exact()?;
    let size = usize::try_from(size)
        .ok()
        .filter(|n| *n <= config.max_body)?;
    config.body_budget.hold(size)
}

/// Reads a body of known, small size to its end.
async fn read_body<B: Body<Data = Bytes>>(body: B) -> (Bytes, Option<HeaderMap>, Option<B::Error>) {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.as_mut().frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => match &first {
                    None => first = Some(data),
                    Some(_) => rest.extend_from_slice(&data),
                },
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Err(error) => {
                let data = join(first, rest);
                return (data, trailers, Some(error));
            }
        }
    }
    (join(first, rest), trailers, None)
}

/// The bytes of `first` followed by `rest`, without copying when there is only `first`.
fn join(first: Option<Bytes>, rest: BytesMut) -> Bytes {
    match first {
        None => Bytes::new(),
        Some(first) if rest.is_empty() => first,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + rest.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&rest);
            all.freeze()
        }
    }
}

/// A response stored for `request` that is usable now, served as a hit.
fn fresh_hit<B: Body>(
    cache: &Cache,
    config: &Config,
    primary: &str,
    (method, headers): (&Method, &HeaderMap),
) -> Option<Response<CacheBody<B>>> {
    let now = clock::now();
    let Found::Stored { entry, .. } = lookup(cache, primary, headers, now) else {
        return None;
    };
    let response = response_of(&entry);
    let age = response.age(now);
    let directives = request_directives(config, headers);
    if !matches!(
        response.usability_in(entry.age(now), age, &directives),
        Usability::Fresh | Usability::StaleAccepted
    ) {
        return None;
    }
    cache.inner().counters().add(Counter::Hit);
    let status = CacheStatus::hit().ttl(remaining_ttl(response.lifetime, age));
    Some(serve(response, method, headers, status, age))
}

/// HTTP's side of the pipeline's single-flight: a response handed by a leader is served when
/// it is the variant this request selects; otherwise the URL is looked up again (its variants
/// may have changed, or it may have turned out uncacheable).
struct HttpWaiting<'a, B> {
    cache: &'a Cache,
    config: &'a Config,
    /// The request's method and headers.
    request: (&'a Method, &'a HeaderMap),
    plan: &'a mut Plan,
    body: PhantomData<fn() -> B>,
}

impl<B: Body> Waiting for HttpWaiting<'_, B> {
    type Served = Response<CacheBody<B>>;

    fn key(&self) -> &str {
        self.plan.key()
    }

    fn accept(&mut self, value: Value, fallback: bool) -> Option<Self::Served> {
        let response = value.downcast::<CachedResponse>().ok()?;
        let (method, headers) = self.request;
        if !response.matches(headers) {
            return None;
        }
        let status = if fallback {
            CacheStatus::forward(self.plan.forward).detail("stale-if-error")
        } else {
            CacheStatus::hit().detail("coalesced")
        };
        Some(serve(
            &response,
            method,
            headers,
            status,
            response.age(clock::now()),
        ))
    }

    fn fresh(&mut self) -> Option<Self::Served> {
        fresh_hit(self.cache, self.config, &self.plan.primary, self.request)
    }

    fn rejoin(&mut self) -> bool {
        let headers = self.request.1;
        match lookup(self.cache, &self.plan.primary, headers, clock::now()) {
            Found::Stored { variant, .. } => self.plan.variant = variant,
            Found::VaryMiss(key) => self.plan.variant = Some(key),
            Found::Uncacheable => return false,
            Found::Nothing => {}
        }
        true
    }
}

/// A miss: waits for a concurrent load of the same key, or leads one.
pub(crate) async fn fetch<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    mut plan: Plan,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let mut leader = None;
    if plan.coalesce {
        let mut waiting = HttpWaiting {
            cache: &cache,
            config: &config,
            request: (request.method(), request.headers()),
            plan: &mut plan,
            body: PhantomData,
        };
        match pipeline::join(&cache, &[], &mut waiting).await {
            Joined::Served(response) => return Ok(response),
            Joined::Lead(lead) => leader = Some(lead),
            Joined::Alone => {}
        }
    }
    load_once(cache, config, inner, request, plan, leader).await
}

/// Forwards a miss to the inner service, once across the instances sharing a Redis tier: the
/// one that takes the key's distributed lock (`CacheLayer::shared_lock`) forwards; the others
/// wait for the response it stores. Without a shared tier, or when Redis does not answer,
/// forwards at once.
async fn load_once<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    plan: Plan,
    leader: Option<Leader>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let ttl = config.shared_lock;
    if ttl.is_zero() || cache.remote().is_none() || !plan.coalesce {
        return forward(cache, config, inner, request, plan, leader).await;
    }
    let key = plan.key().to_owned();
    let asked = (request.method(), request.headers());
    let read = || stored_elsewhere(&cache, &config, &plan, asked);
    match pipeline::lock(&cache, &key, ttl, read).await {
        Locked::LoadedElsewhere((response, served)) => {
            if let Some(leader) = leader {
                leader.complete(response as Value);
            }
            Ok(served)
        }
        Locked::Held(lock) => {
            let answer = forward(cache, config, inner, request, plan, leader).await;
            lock.release().await;
            answer
        }
        Locked::Unlocked => forward(cache, config, inner, request, plan, leader).await,
    }
}

/// A response another instance stored in the shared tier for the request, fresh enough for
/// it: served as a coalesced hit.
async fn stored_elsewhere<B: Body>(
    cache: &Cache,
    config: &Config,
    plan: &Plan,
    (method, headers): (&Method, &HeaderMap),
) -> Option<(Arc<CachedResponse>, Response<CacheBody<B>>)> {
    let variant = plan.variant.as_deref();
    let found = lookup_shared(cache, config, &plan.primary, variant, headers).await;
    let Found::Stored { entry, .. } = found else {
        return None;
    };
    let response = shared_response_of(&entry)?;
    let now = clock::now();
    let age = response.age(now);
    let directives = request_directives(config, headers);
    if !matches!(
        response.usability_in(entry.age(now), age, &directives),
        Usability::Fresh | Usability::StaleAccepted
    ) {
        return None;
    }
    let status = CacheStatus::hit()
        .ttl(remaining_ttl(response.lifetime, age))
        .detail("coalesced");
    let served = serve(&response, method, headers, status, age);
    Some((response, served))
}

/// A revalidation's exchange with the inner service: what a 304 answering it is applied with.
struct Exchanged<'a> {
    cache: &'a Cache,
    config: &'a Arc<Config>,
    plan: &'a Plan,
    method: &'a Method,
    client: &'a HeaderMap,
    /// When the conditional request was sent and its answer arrived.
    times: (SystemTime, SystemTime),
    since: u64,
    /// Where Redis's invalidation history stood when the load began.
    shared_since: SharedSince,
}

/// Applies a `304 Not Modified` to the stored response it revalidated (RFC 9111 §4.3.4): the
/// update is stored only if it selects that response and passes the storage gate, and the
/// client is answered from the update either way (with its own `Set-Cookie`, if any).
fn not_modified<B: Body>(
    x: Exchanged<'_>,
    stale: &Arc<CachedResponse>,
    response: Response<B>,
    leader: Option<Leader>,
) -> Response<CacheBody<B>> {
    let (mut parts, _) = response.into_parts();
    let mut tags = stale.tags.clone();
    let keep_tags = x.config.forward_tags;
    for tag in take_tags(&mut parts.headers, &mut parts.extensions, keep_tags) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let status = CacheStatus::forward(x.plan.forward).forward_status(304);
    if !stale.selected_by(&parts.headers) {
        // About another representation: the stored one is neither updated nor confirmed.
        drop(leader);
        let status = status.detail("not-selected");
        let mut served = serve(stale, x.method, x.client, status, stale.age(clock::now()));
        for cookie in parts.headers.get_all(SET_COOKIE) {
            served.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        return served;
    }
    let headers = stale.updated_headers(&parts.headers, x.times.1);
    let cc = x.config.targeted.directives(&headers);
    let exchange = Exchange::Http {
        // A HEAD's 304 updates the stored GET response (RFC 9111 §4.3.5).
        method: &Method::GET,
        request: x.client,
        status: stale.status,
        has_default_ttl: x.config.default_ttl.is_some(),
        targeted: &x.config.targeted,
        keep_tags,
    };
    match admit(exchange, headers.clone(), &cc) {
        Ok(admitted) if !varies_alike(admitted.get(), &stale.vary) => {
            // The update selects on other request fields than the stored copy was kept for
            // (e.g. a `Vary: Cookie` added to a copy stored under the URL alone): storing it
            // under the old key would serve this client's update to everyone. Drop the copy.
            drop(leader);
            forget(x.cache, x.plan.key());
            let status = status.detail("vary-changed");
            unstored_update(stale, headers, x, status, parts.extensions)
        }
        Ok(admitted) => store_update(x, stale, admitted, tags, status, leader),
        Err(reason) => {
            drop(leader);
            if cc.no_store || cc.private {
                // The origin no longer lets shared caches keep this response.
                forget(x.cache, x.plan.key());
            }
            let status = status.detail(reason.as_str());
            unstored_update(stale, headers, x, status, parts.extensions)
        }
    }
}

/// Whether `headers` `Vary` on the same request fields as `stored` (in any order).
fn varies_alike(headers: &HeaderMap, stored: &[HeaderName]) -> bool {
    let names = vary_names(headers).unwrap_or_default();
    names.len() == stored.len() && names.iter().all(|name| stored.contains(name))
}

/// Stores the stored response updated by a 304 the gate `admitted` (unless invalidated since
/// the revalidation began), hands it to coalesced waiters, and answers the client from it.
fn store_update<B: Body>(
    x: Exchanged<'_>,
    stale: &CachedResponse,
    admitted: Admitted,
    tags: Vec<String>,
    mut status: CacheStatus,
    leader: Option<Leader>,
) -> Response<CacheBody<B>> {
    let defaults = (x.config.stale_while_revalidate, x.config.stale_if_error);
    let refreshed =
        Arc::new(stale.refreshed(admitted, x.times, (x.config.default_ttl, defaults), tags));
    let at = (x.since, x.shared_since);
    let kept = store_response(x.cache, x.config, &x.plan.primary, &refreshed, at);
    if kept {
        status = status.stored();
        if let Some(leader) = leader {
            leader.complete(Arc::clone(&refreshed) as Value);
        }
    }
    serve(
        &refreshed,
        x.method,
        x.client,
        status,
        refreshed.age(clock::now()),
    )
}

/// The stored response with a 304's update that may not be stored, for the client that
/// triggered it only (its own `Set-Cookie` included).
fn unstored_update<B: Body>(
    stale: &CachedResponse,
    mut headers: HeaderMap,
    x: Exchanged<'_>,
    status: CacheStatus,
    extensions: http::Extensions,
) -> Response<CacheBody<B>> {
    strip_connection_fields(&mut headers);
    x.config.targeted.hide(&mut headers);
    let age = current_age(&headers, x.times.0, x.times.1, SystemTime::now());
    headers.insert(AGE, HeaderValue::from(age.as_secs()));
    status.append_to(&mut headers);
    let body = if *x.method == Method::HEAD {
        CacheBody::empty()
    } else {
        CacheBody::full(stale.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = stale.status;
    *response.headers_mut() = headers;
    *response.extensions_mut() = extensions;
    apply_preconditions(response, x.method, x.client)
}

/// The request the inner service is asked: without the client's preconditions (the layer
/// evaluates them itself, on the full response, so the inner service is asked for something it
/// can store), and conditional on the stored response when revalidating it.
fn upstream_request(parts: &mut http::request::Parts, plan: &Plan) {
    for name in [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ] {
        parts.headers.remove(name);
    }
    // A range is only asked for with its `If-Range` (RFC 9110 §13.1.5): without it, a client
    // holding part of an older representation would get a piece of the new one.
    if !parts.headers.contains_key(RANGE) {
        parts.headers.remove(IF_RANGE);
    }
    if let Some((stale, _)) = &plan.stale {
        if let Some(etag) = stale.etag.as_ref().and_then(EntityTag::to_header_value) {
            parts.headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = stale.last_modified {
            if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
                parts.headers.insert(IF_MODIFIED_SINCE, value);
            }
        }
    }
}

/// The status a failed exchange is reported with: the inner service's 5xx, or 502 for an
/// error; `None` when it did not fail.
fn failure<B, E>(result: &Result<Response<B>, E>) -> Option<StatusCode> {
    match result {
        Ok(response) => response
            .status()
            .is_server_error()
            .then(|| response.status()),
        Err(_) => Some(StatusCode::BAD_GATEWAY),
    }
}

/// Calls the inner service (conditionally, when revalidating) and turns its answer into the
/// client's response, storing it when allowed.
pub(crate) async fn forward<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    plan: Plan,
    leader: Option<Leader>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let (mut parts, body) = request.into_parts();
    let method = parts.method.clone();
    let client = parts.headers.clone();
    upstream_request(&mut parts, &plan);
    // Before the inner service is called: the Redis write is not made if any instance
    // invalidates the key or a tag from here on.
    let shared_since = match cache.remote() {
        Some(_) => pipeline::read_shared_since(&cache).await,
        None => SharedSince::Unchecked,
    };
    let loading = Load::begin(&cache);
    let (result, request_time) = loading.call(inner, Request::from_parts(parts, body)).await;
    let response_time = SystemTime::now();
    if let Some(failed_status) = failure(&result) {
        loading.failed();
        if let Some((stale, true)) = &plan.stale {
            pipeline::stale_if_error(&cache, plan.key(), Arc::clone(stale) as Value, leader);
            let mut status = CacheStatus::forward(plan.forward).detail("stale-if-error");
            if result.is_ok() {
                status = status.forward_status(failed_status.as_u16());
            }
            let age = stale.age(clock::now());
            return Ok(serve(stale, &method, &client, status, age));
        }
    }
    let exchange = Exchanged {
        cache: &cache,
        config: &config,
        plan: &plan,
        method: &method,
        client: &client,
        times: (request_time, response_time),
        since: loading.since(),
        shared_since,
    };
    let response = result?;
    if response.status() == StatusCode::NOT_MODIFIED {
        if let Some((stale, _)) = &plan.stale {
            return Ok(not_modified(exchange, stale, response, leader));
        }
    }
    Ok(answer(exchange, response, leader).await)
}

/// The inner service's full answer: stored through the gate when it may be (read now when
/// small, else spooled), and the client's response.
async fn answer<B>(
    x: Exchanged<'_>,
    response: Response<B>,
    leader: Option<Leader>,
) -> Response<CacheBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send + 'static,
{
    let (cache, config, method, client) = (x.cache, x.config, x.method, x.client);
    let (mut parts, body) = response.into_parts();
    let keep_tags = config.forward_tags;
    let tags = take_tags(&mut parts.headers, &mut parts.extensions, keep_tags);
    if !parts.headers.contains_key(DATE) {
        // RFC 9110 §6.6.1: a recipient that caches a response without Date records one.
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(x.times.1)) {
            parts.headers.insert(DATE, date);
        }
    }
    let cc = config.targeted.directives(&parts.headers);
    let exchange = Exchange::Http {
        method,
        request: client,
        status: parts.status,
        has_default_ttl: config.default_ttl.is_some(),
        targeted: &config.targeted,
        keep_tags,
    };
    let verdict = admit(exchange, parts.headers.clone(), &cc).and_then(|admitted| {
        check_size(&parts.headers, &body.size_hint(), config.max_body).map(|()| admitted)
    });
    // The client's copy: targeted fields are for this cache (the stored copy keeps them).
    config.targeted.hide(&mut parts.headers);
    let status = CacheStatus::forward(x.plan.forward).forward_status(parts.status.as_u16());
    let admitted = match verdict {
        Ok(admitted) => admitted,
        Err(reason) => {
            drop(leader);
            return unstored(x, reason, status, Response::from_parts(parts, body)).await;
        }
    };
    let pending = pending_store(&x, &parts, admitted, cc, tags, leader);
    // Known and small (and room for it in the body budget): read it now, so this response
    // already carries the generated ETag and is answered exactly like the hits that follow.
    if let Some(_held) = hold_small(&body, config) {
        return read_and_store(&x, pending, status, parts, body).await;
    }
    let recording = config.recording(Box::new(pending));
    let mut response = Response::from_parts(
        parts,
        CacheBody::spooled(body, recording, cache.inner().max_wait()),
    );
    status.append_to(response.headers_mut());
    apply_preconditions(response, method, client)
}

/// The store of an admitted response head, finished once its body is read.
fn pending_store(
    x: &Exchanged<'_>,
    parts: &http::response::Parts,
    admitted: Admitted,
    cc: ResponseDirectives,
    tags: Vec<String>,
    leader: Option<Leader>,
) -> PendingStore {
    let names = vary_names(admitted.get()).unwrap_or_default();
    let secondary = secondary_key(&names, x.client);
    let default_ttl = x.config.default_ttl;
    PendingStore {
        cache: x.cache.clone(),
        config: Arc::clone(x.config),
        lifetime: lifetime_of(parts.status, &parts.headers, &cc, default_ttl, x.times.1),
        primary: x.plan.primary.clone(),
        status: parts.status,
        headers: admitted,
        times: x.times,
        directives: cc,
        vary: (names.into(), secondary),
        tags,
        since: x.since,
        shared_since: x.shared_since,
        leader,
    }
}

/// Reads a small body of known size and stores the response with it (unless it ends with
/// trailers or an error: then it is passed on as read, unstored).
async fn read_and_store<B: Body<Data = Bytes>>(
    x: &Exchanged<'_>,
    pending: PendingStore,
    status: CacheStatus,
    parts: http::response::Parts,
    body: B,
) -> Response<CacheBody<B>> {
    let (method, client) = (x.method, x.client);
    let (data, trailers, error) = read_body(body).await;
    if trailers.is_none() && error.is_none() {
        let (stored, kept) = pending.complete(data);
        let status = if kept { status.stored() } else { status };
        let mut response = serve(&stored, method, client, status, stored.age(clock::now()));
        response.extensions_mut().extend(parts.extensions);
        return response;
    }
    drop(pending);
    let mut response =
        Response::from_parts(parts, CacheBody::buffered(Some(data), trailers, error));
    status.detail("trailers").append_to(response.headers_mut());
    apply_preconditions(response, method, client)
}

/// A full answer that may not be stored, for this client only. A response-driven refusal makes
/// the URL skip coalescing for a while (a request's own `no-store` or `Range` says nothing
/// about the URL's other requests). A small body of known size is read to give it the ETag a
/// stored one would have, so it is still answered conditionally.
async fn unstored<B: Body<Data = Bytes>>(
    x: Exchanged<'_>,
    reason: NotStorable,
    status: CacheStatus,
    response: Response<B>,
) -> Response<CacheBody<B>> {
    let request_caused = match reason {
        NotStorable::NoStore => RequestDirectives::parse(x.client).no_store,
        NotStorable::Status => x.client.contains_key(RANGE),
        _ => false,
    };
    if reason.is_response_driven() && !request_caused {
        mark_uncacheable(x.cache, x.config, &x.plan.primary);
    }
    let (mut parts, body) = response.into_parts();
    status.detail(reason.as_str()).append_to(&mut parts.headers);
    let wants_etag = x.config.etag != EtagMode::Off
        && *x.method == Method::GET
        && parts.status.is_success()
        && !parts.headers.contains_key(ETAG);
    let held = wants_etag.then(|| hold_small(&body, x.config)).flatten();
    if let Some(_held) = held {
        let (data, trailers, error) = read_body(body).await;
        if trailers.is_none() && error.is_none() {
            add_etag(&mut parts.headers, &data, x.config.etag);
        }
        let response =
            Response::from_parts(parts, CacheBody::buffered(Some(data), trailers, error));
        return apply_preconditions(response, x.method, x.client);
    }
    let response = Response::from_parts(parts, CacheBody::inner(body));
    apply_preconditions(response, x.method, x.client)
}
