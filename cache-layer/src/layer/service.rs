//! [`CacheService`]: looks requests up, answers hits and preconditions, forwards misses under
//! single-flight, stores what may be stored, and invalidates after successful writes.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    AGE, CONTENT_LENGTH, CONTENT_LOCATION, COOKIE, DATE, ETAG, HOST, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, LOCATION, RANGE, SET_COOKIE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::body::{CacheBody, Recording};
use super::cache_control::{RequestDirectives, ResponseDirectives};
use super::conditional::{evaluate, not_modified_headers, Precondition, Representation};
use super::etag::EntityTag;
use super::freshness::header_date;
use super::future::ResponseFuture;
use super::key::{
    is_cacheable_method, is_unsafe_method, primary_key, secondary_key, variant_key, vary_names,
};
use super::layer::{Config, EtagMode};
use super::record::{add_etag, live_entry, mark_uncacheable, store_response, PendingStore};
use super::status::{CacheStatus, Forward};
use super::storable::{storable, NotStorable};
use super::stored::{lifetime_of, CachedResponse, Uncacheable, Usability, Variants};
use super::tags::{take_tags, CacheTags};
use crate::entry::{Entry, RefreshClaim};
use crate::flight::{Join, Leader, Waited};
use crate::stats::Counter;
use crate::Cache;

/// Caches the responses of the service it wraps; built by [`CacheLayer`](crate::CacheLayer).
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: Cache,
    config: Arc<Config>,
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, cache: Cache, config: Arc<Config>) -> Self {
        CacheService {
            inner,
            cache,
            config,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("inner", &self.inner)
            .field("cache", &self.cache.name())
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if is_cacheable_method(request.method()) {
            let (parts, body) = request.into_parts();
            let decision = self.decide(&parts);
            let request = Request::from_parts(parts, body);
            return match decision {
                // A hit needs no inner service: nothing is cloned.
                Decision::Respond(response) => ResponseFuture::ready(response),
                Decision::Refresh {
                    served,
                    plan,
                    claim,
                } => {
                    let inner = self.take_ready();
                    self.refresh_in_background(inner, request, plan, claim);
                    ResponseFuture::ready(served)
                }
                Decision::Fetch(plan) => {
                    let inner = self.take_ready();
                    let future = fetch(
                        self.cache.clone(),
                        Arc::clone(&self.config),
                        inner,
                        request,
                        plan,
                    );
                    ResponseFuture::boxed(Box::pin(future))
                }
                Decision::Bypass => ResponseFuture::passthrough(
                    self.take_ready().call(request),
                    CacheStatus::forward(Forward::Bypass),
                ),
            };
        }
        let inner = self.take_ready();
        if is_unsafe_method(request.method()) {
            self.write(inner, request)
        } else {
            let mut inner = inner;
            ResponseFuture::passthrough(inner.call(request), CacheStatus::forward(Forward::Method))
        }
    }
}

/// How [`CacheService::decide`] answers a GET or HEAD.
enum Decision<B: Body> {
    /// From the cache (or a 504 for `only-if-cached`), without the inner service.
    Respond(Response<CacheBody<B>>),
    /// Stale-while-revalidate: `served` now, `plan` refreshes in the background.
    Refresh {
        served: Response<CacheBody<B>>,
        plan: Plan,
        claim: RefreshClaim,
    },
    /// Forward to the inner service (under single-flight).
    Fetch(Plan),
    /// The key function declined the request.
    Bypass,
}

/// What a miss does: which key to coalesce and store under, and what stale copy it has.
struct Plan {
    primary: String,
    /// The variant key, when the URL's responses vary.
    variant: Option<String>,
    /// A stored response to revalidate, and whether it may be served if the inner service fails.
    stale: Option<(Arc<CachedResponse>, bool)>,
    forward: Forward,
    coalesce: bool,
}

impl Plan {
    fn key(&self) -> &str {
        self.variant.as_deref().unwrap_or(&self.primary)
    }
}

/// What the cache holds for a request.
enum Found {
    Stored {
        variant: Option<String>,
        entry: Arc<Entry>,
        response: Arc<CachedResponse>,
    },
    VaryMiss(String),
    Uncacheable,
    Nothing,
}

fn lookup(cache: &Cache, primary: &str, request: &HeaderMap) -> Found {
    let Some(entry) = live_entry(cache, primary) else {
        return Found::Nothing;
    };
    if let Ok(response) = Arc::clone(&entry.value).downcast::<CachedResponse>() {
        return Found::Stored {
            variant: None,
            entry,
            response,
        };
    }
    if let Some(record) = entry.value.downcast_ref::<Variants>() {
        let key = variant_key(primary, &secondary_key(&record.names, request));
        let stored = live_entry(cache, &key).and_then(|entry| {
            let response = Arc::clone(&entry.value).downcast::<CachedResponse>().ok()?;
            Some((entry, response))
        });
        return match stored {
            Some((entry, response)) => Found::Stored {
                variant: Some(key),
                entry,
                response,
            },
            None => Found::VaryMiss(key),
        };
    }
    if entry.value.is::<Uncacheable>() {
        return Found::Uncacheable;
    }
    Found::Nothing
}

fn request_directives(config: &Config, request: &HeaderMap) -> RequestDirectives {
    let mut directives = RequestDirectives::parse(request);
    if !config.request_cache_control {
        directives.no_cache = false;
        directives.max_age = None;
        directives.min_fresh = None;
    }
    directives
}

/// The key of the GET request for `uri` with `headers`.
fn url_key(config: &Config, uri: &Uri, headers: &HeaderMap) -> Option<String> {
    match &config.key_fn {
        None => Some(primary_key(uri, headers)),
        Some(key_fn) => {
            let mut request = Request::new(());
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            key_fn(&request.into_parts().0)
        }
    }
}

fn remaining_ttl(response: &CachedResponse, now: SystemTime) -> i64 {
    let lifetime = i64::try_from(response.lifetime.as_secs()).unwrap_or(i64::MAX);
    let age = i64::try_from(response.age(now).as_secs()).unwrap_or(i64::MAX);
    lifetime.saturating_sub(age)
}

/// Answers `method` with `request` headers from a stored response: 304 or 412 where the
/// request's preconditions say so, otherwise the response (no body for HEAD), with `Age`.
fn serve<B: Body>(
    stored: &CachedResponse,
    method: &Method,
    request: &HeaderMap,
    status: CacheStatus,
    now: SystemTime,
) -> Response<CacheBody<B>> {
    let current = Representation {
        etag: stored.etag.as_ref(),
        last_modified: stored.last_modified,
    };
    let (code, mut headers, body) = match evaluate(method, request, stored.status, Some(current)) {
        Precondition::Proceed => {
            let body = if method == Method::HEAD {
                CacheBody::empty()
            } else {
                CacheBody::full(stored.body.clone())
            };
            (stored.status, stored.headers.clone(), body)
        }
        Precondition::NotModified => (
            StatusCode::NOT_MODIFIED,
            not_modified_headers(&stored.headers),
            CacheBody::empty(),
        ),
        Precondition::Failed => (
            StatusCode::PRECONDITION_FAILED,
            HeaderMap::new(),
            CacheBody::empty(),
        ),
    };
    headers.insert(AGE, HeaderValue::from(stored.age(now).as_secs()));
    status.append_to(&mut headers);
    let mut response = Response::new(body);
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    if !stored.tags.is_empty() {
        response
            .extensions_mut()
            .insert(CacheTags(stored.tags.clone()));
    }
    response
}

/// Whether the request carries any precondition.
fn has_preconditions(request: &HeaderMap) -> bool {
    request.contains_key(IF_MATCH)
        || request.contains_key(IF_NONE_MATCH)
        || request.contains_key(IF_MODIFIED_SINCE)
        || request.contains_key(IF_UNMODIFIED_SINCE)
}

/// Evaluates the request's preconditions against a response that was not served from the
/// cache, using the validators the application sent.
fn apply_preconditions<B: Body>(
    response: Response<CacheBody<B>>,
    method: &Method,
    request: &HeaderMap,
) -> Response<CacheBody<B>> {
    if !has_preconditions(request) {
        return response;
    }
    let etag = EntityTag::from_etag_header(response.headers());
    let current = Representation {
        etag: etag.as_ref(),
        last_modified: header_date(response.headers(), &LAST_MODIFIED),
    };
    let code = match evaluate(method, request, response.status(), Some(current)) {
        Precondition::Proceed => return response,
        Precondition::NotModified => StatusCode::NOT_MODIFIED,
        Precondition::Failed => StatusCode::PRECONDITION_FAILED,
    };
    let (parts, _body) = response.into_parts();
    let mut headers = if code == StatusCode::NOT_MODIFIED {
        not_modified_headers(&parts.headers)
    } else {
        HeaderMap::new()
    };
    // Meant for this client whatever the status: a 304 must not lose a new cookie.
    for name in [HeaderName::from_static("cache-status"), SET_COOKIE] {
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    *response.extensions_mut() = parts.extensions;
    response
}

fn empty_response<B: Body>(code: StatusCode, status: CacheStatus) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = code;
    status.append_to(response.headers_mut());
    response
}

/// A shared cache does not store responses to requests with cookies unless the response
/// varies on `Cookie` or is explicitly shared: applications commonly personalise by session
/// cookie without saying so.
fn check_cookie(
    request: &HeaderMap,
    response: &HeaderMap,
    cc: &ResponseDirectives,
) -> Result<(), NotStorable> {
    let varies_on_cookie = vary_names(response).is_some_and(|names| names.contains(&COOKIE));
    if request.contains_key(COOKIE) && !cc.public && cc.s_maxage.is_none() && !varies_on_cookie {
        return Err(NotStorable::Cookie);
    }
    Ok(())
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

impl<S> CacheService<S> {
    /// The instance `poll_ready` prepared is the one to call; a fresh clone stays for next time.
    fn take_ready(&mut self) -> S
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }

    /// Looks a GET or HEAD request up and decides how to answer it.
    fn decide<B: Body>(&self, parts: &Parts) -> Decision<B> {
        let key = match &self.config.key_fn {
            None => Some(primary_key(&parts.uri, &parts.headers)),
            Some(key_fn) => key_fn(parts),
        };
        let Some(primary) = key else {
            return Decision::Bypass;
        };
        let (method, headers) = (&parts.method, &parts.headers);
        let directives = request_directives(&self.config, headers);
        let counters = &self.cache.inner().counters;
        let now = SystemTime::now();
        let mut plan = Plan {
            primary,
            variant: None,
            stale: None,
            forward: Forward::UriMiss,
            coalesce: true,
        };
        match lookup(&self.cache, &plan.primary, headers) {
            Found::Stored {
                variant,
                entry,
                response,
            } => {
                plan.variant = variant;
                match response.usability(now, &directives) {
                    Usability::Fresh | Usability::StaleAccepted => {
                        counters.add(Counter::Hit);
                        let status = CacheStatus::hit().ttl(remaining_ttl(&response, now));
                        return Decision::Respond(serve(&response, method, headers, status, now));
                    }
                    Usability::StaleWhileRevalidate => {
                        counters.add(Counter::Stale);
                        let status = CacheStatus::hit()
                            .ttl(remaining_ttl(&response, now))
                            .detail("stale-while-revalidate");
                        let served = serve(&response, method, headers, status, now);
                        // HEAD gets no body to store: the next GET refreshes.
                        let claim = (method == Method::GET)
                            .then(|| entry.claim_refresh())
                            .flatten();
                        let Some(claim) = claim else {
                            return Decision::Respond(served);
                        };
                        plan.stale = Some((response, false));
                        plan.forward = Forward::Stale;
                        return Decision::Refresh {
                            served,
                            plan,
                            claim,
                        };
                    }
                    Usability::Revalidate { stale_if_error } => {
                        let fresh_for_anyone = response
                            .usability(now, &RequestDirectives::default())
                            == Usability::Fresh;
                        plan.forward = if fresh_for_anyone {
                            Forward::Request
                        } else {
                            Forward::Stale
                        };
                        plan.stale = Some((response, stale_if_error));
                    }
                }
            }
            Found::VaryMiss(key) => {
                plan.variant = Some(key);
                plan.forward = Forward::VaryMiss;
            }
            Found::Uncacheable => {
                plan.coalesce = false;
                plan.forward = Forward::Miss;
            }
            Found::Nothing => {}
        }
        if directives.only_if_cached {
            return Decision::Respond(empty_response(
                StatusCode::GATEWAY_TIMEOUT,
                CacheStatus::default().detail("only-if-cached"),
            ));
        }
        counters.add(Counter::Miss);
        Decision::Fetch(plan)
    }

    fn refresh_in_background<ReqBody, ResBody>(
        &self,
        inner: S,
        request: Request<ReqBody>,
        plan: Plan,
        claim: RefreshClaim,
    ) where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = self.cache.clone();
        let config = Arc::clone(&self.config);
        runtime.spawn(async move {
            if let Ok(response) = forward(cache, config, inner, request, plan, None).await {
                // Reading a streamed body to its end is what stores it.
                let _ = response.into_body().collect().await;
            }
            drop(claim);
        });
    }

    fn write<ReqBody, ResBody>(
        &self,
        mut inner: S,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        let url = url_key(&self.config, request.uri(), request.headers());
        // If-Match / If-Unmodified-Since against the stored representation: a failed
        // precondition must stop the write before it happens.
        if let Some(url) = &url {
            let headers = request.headers();
            if headers.contains_key(IF_MATCH) || headers.contains_key(IF_UNMODIFIED_SINCE) {
                if let Found::Stored { response, .. } = lookup(&self.cache, url, headers) {
                    let current = Representation {
                        etag: response.etag.as_ref(),
                        last_modified: response.last_modified,
                    };
                    let fresh = response
                        .usability(SystemTime::now(), &RequestDirectives::default())
                        == Usability::Fresh;
                    if fresh
                        && evaluate(request.method(), headers, response.status, Some(current))
                            == Precondition::Failed
                    {
                        return ResponseFuture::ready(empty_response(
                            StatusCode::PRECONDITION_FAILED,
                            CacheStatus::hit().detail("precondition"),
                        ));
                    }
                }
            }
        }
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            .or_else(|| {
                request
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_ascii_lowercase)
            });
        let request_headers = request.headers().clone();
        let cache = self.cache.clone();
        let config = Arc::clone(&self.config);
        let future = inner.call(request);
        ResponseFuture::boxed(Box::pin(async move {
            let (mut parts, body) = future.await?.into_parts();
            take_tags(&mut parts.headers, &mut parts.extensions);
            if parts.status.is_success() || parts.status.is_redirection() {
                let mut names: Vec<String> = url.into_iter().collect();
                for header in [LOCATION, CONTENT_LOCATION] {
                    let Some(target) = parts
                        .headers
                        .get(header)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<Uri>().ok())
                    else {
                        continue;
                    };
                    // Only same-origin targets: another origin's URLs are not ours to drop.
                    let same_origin = match target.authority() {
                        Some(a) => Some(a.as_str().to_ascii_lowercase()) == authority,
                        None => target.path().starts_with('/'),
                    };
                    if same_origin {
                        let path: Uri = match target.path_and_query() {
                            Some(pq) => pq.as_str().parse().unwrap_or_default(),
                            None => continue,
                        };
                        names.extend(url_key(&config, &path, &request_headers));
                    }
                }
                for name in names {
                    cache.invalidate(&name).await;
                }
            }
            CacheStatus::forward(Forward::Method).append_to(&mut parts.headers);
            Ok(Response::from_parts(parts, CacheBody::inner(body)))
        }))
    }
}

/// A miss: waits for a concurrent load of the same key, or leads one.
async fn fetch<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    mut plan: Plan,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let mut leader = None;
    if plan.coalesce {
        let engine = cache.inner();
        loop {
            let waiter = match engine.flights.join(plan.key(), &[]) {
                Join::Lead(lead) => {
                    leader = Some(lead);
                    break;
                }
                Join::Wait(waiter) => waiter,
            };
            engine.counters.add(Counter::Coalesced);
            match waiter.wait(engine.max_wait).await {
                Waited::Done(value) => {
                    if let Ok(response) = value.downcast::<CachedResponse>() {
                        if response.matches(request.headers()) {
                            return Ok(serve(
                                &response,
                                request.method(),
                                request.headers(),
                                CacheStatus::hit().detail("coalesced"),
                                SystemTime::now(),
                            ));
                        }
                    }
                }
                Waited::Retry => {}
                Waited::TimedOut => break,
            }
            // The leader stored something else (another variant), or nothing: look again.
            let directives = request_directives(&config, request.headers());
            match lookup(&cache, &plan.primary, request.headers()) {
                Found::Stored {
                    response, variant, ..
                } => {
                    let now = SystemTime::now();
                    if matches!(
                        response.usability(now, &directives),
                        Usability::Fresh | Usability::StaleAccepted
                    ) {
                        let status = CacheStatus::hit().ttl(remaining_ttl(&response, now));
                        return Ok(serve(
                            &response,
                            request.method(),
                            request.headers(),
                            status,
                            now,
                        ));
                    }
                    plan.variant = variant;
                }
                Found::VaryMiss(key) => plan.variant = Some(key),
                Found::Uncacheable => break,
                Found::Nothing => {}
            }
        }
    }
    forward(cache, config, inner, request, plan, leader).await
}

/// Calls the inner service (conditionally, when revalidating) and turns its answer into the
/// client's response, storing it when allowed.
async fn forward<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    mut inner: S,
    request: Request<ReqBody>,
    plan: Plan,
    leader: Option<Leader>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let (mut parts, body) = request.into_parts();
    let method = parts.method.clone();
    let client = parts.headers.clone();
    // The layer evaluates the client's preconditions itself, on the full response, so the inner
    // service is asked for something it can store.
    for name in [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ] {
        parts.headers.remove(name);
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
    let engine = cache.inner();
    let since = engine.log.current();
    engine.counters.add(Counter::Load);
    let request_time = SystemTime::now();
    let started = Instant::now();
    let result = inner.call(Request::from_parts(parts, body)).await;
    engine.counters.record_load(started.elapsed());
    let response_time = SystemTime::now();
    let failed = match &result {
        Ok(response) => response
            .status()
            .is_server_error()
            .then(|| response.status()),
        Err(_) => Some(StatusCode::BAD_GATEWAY),
    };
    if let Some(failed_status) = failed {
        engine.counters.add(Counter::LoadError);
        if let Some((stale, true)) = &plan.stale {
            engine.counters.add(Counter::StaleIfError);
            let mut status = CacheStatus::forward(plan.forward).detail("stale-if-error");
            if result.is_ok() {
                status = status.forward_status(failed_status.as_u16());
            }
            tracing::warn!(
                cache = cache.name(),
                key = plan.key(),
                "inner service failed; serving the stale response (stale-if-error)"
            );
            return Ok(serve(stale, &method, &client, status, response_time));
        }
    }
    let response = result?;
    if response.status() == StatusCode::NOT_MODIFIED {
        if let Some((stale, _)) = &plan.stale {
            let refreshed = Arc::new(stale.refreshed(
                response.headers(),
                (request_time, response_time),
                config.default_ttl,
                (config.stale_while_revalidate, config.stale_if_error),
            ));
            let kept = store_response(&cache, &config, &plan.primary, &refreshed, since);
            let mut status = CacheStatus::forward(plan.forward).forward_status(304);
            if kept {
                status = status.stored();
                if let Some(leader) = leader {
                    leader.complete(Arc::clone(&refreshed) as crate::entry::Value);
                }
            }
            return Ok(serve(
                &refreshed,
                &method,
                &client,
                status,
                SystemTime::now(),
            ));
        }
    }
    let (mut parts, body) = response.into_parts();
    let tags = take_tags(&mut parts.headers, &mut parts.extensions);
    if !parts.headers.contains_key(DATE) {
        // RFC 9110 §6.6.1: a recipient that caches a response without Date records one.
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(response_time)) {
            parts.headers.insert(DATE, date);
        }
    }
    let cc = ResponseDirectives::parse(&parts.headers);
    let verdict = storable(
        &method,
        &client,
        parts.status,
        &parts.headers,
        &cc,
        config.default_ttl.is_some(),
    )
    .and_then(|()| check_cookie(&client, &parts.headers, &cc))
    .and_then(|()| check_size(&parts.headers, &body.size_hint(), config.max_body));
    let status = CacheStatus::forward(plan.forward).forward_status(parts.status.as_u16());
    if let Err(reason) = verdict {
        // A request's own `no-store` or `Range` says nothing about the URL's other requests.
        let request_caused = match reason {
            NotStorable::NoStore => RequestDirectives::parse(&client).no_store,
            NotStorable::Status => client.contains_key(RANGE),
            _ => false,
        };
        if reason.is_response_driven() && !request_caused {
            mark_uncacheable(&cache, &config, &plan.primary);
        }
        drop(leader);
        status.detail(reason.as_str()).append_to(&mut parts.headers);
        // Not stored, but still answerable conditionally: a small body of known size gets the
        // generated ETag a stored one would have.
        let small = body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= config.max_body as u64);
        let wants_etag = config.etag != EtagMode::Off
            && method == Method::GET
            && parts.status.is_success()
            && !parts.headers.contains_key(ETAG);
        if small && wants_etag {
            let (data, trailers, error) = read_body(body).await;
            if trailers.is_none() && error.is_none() {
                add_etag(&mut parts.headers, &data, config.etag);
            }
            let response =
                Response::from_parts(parts, CacheBody::buffered(Some(data), trailers, error));
            return Ok(apply_preconditions(response, &method, &client));
        }
        let response = Response::from_parts(parts, CacheBody::inner(body));
        return Ok(apply_preconditions(response, &method, &client));
    }
    let names = vary_names(&parts.headers).unwrap_or_default();
    let secondary = secondary_key(&names, &client);
    let pending = PendingStore {
        cache,
        config: Arc::clone(&config),
        lifetime: lifetime_of(
            parts.status,
            &parts.headers,
            &cc,
            config.default_ttl,
            response_time,
        ),
        primary: plan.primary,
        status: parts.status,
        headers: parts.headers.clone(),
        times: (request_time, response_time),
        directives: cc,
        vary: (names.into(), secondary),
        tags,
        since,
        leader,
    };
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= config.max_body as u64);
    if small {
        // Known and small: read it now, so this response already carries the generated ETag
        // and is answered exactly like the hits that follow.
        let (data, trailers, error) = read_body(body).await;
        if trailers.is_none() && error.is_none() {
            let (stored, kept) = pending.complete(data);
            let status = if kept { status.stored() } else { status };
            let mut response = serve(&stored, &method, &client, status, SystemTime::now());
            response.extensions_mut().extend(parts.extensions);
            return Ok(response);
        }
        drop(pending);
        let mut response =
            Response::from_parts(parts, CacheBody::buffered(Some(data), trailers, error));
        status.detail("trailers").append_to(response.headers_mut());
        return Ok(apply_preconditions(response, &method, &client));
    }
    let recording = Recording::new(config.max_body, pending);
    let mut response = Response::from_parts(parts, CacheBody::tee(body, recording));
    status.append_to(response.headers_mut());
    Ok(apply_preconditions(response, &method, &client))
}
