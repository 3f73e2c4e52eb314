//! [`CacheService`]: decides how each request is answered (from memory, from what Redis holds
//! on a shared cache, refreshed in the background, or forwarded), and invalidates stored
//! responses after successful writes.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LOCATION, LOCATION, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_service::Service;

use super::body::CacheBody;
use super::config::Config;
use super::config::HttpOnly;
use super::forward::{fetch, forward, Plan};
use super::future::ResponseFuture;
use super::lookup::{
    lookup, lookup_shared, request_directives, response_of, shared_response_of, url_keys, Found,
};
use super::respond::{empty_response, serve};
use super::rules::cache_control::RequestDirectives;
use super::rules::freshness::remaining_ttl;
use super::rules::key::{authority_of, is_cacheable_method, is_unsafe_method, write_primary_key};
use super::status::{CacheStatus, Forward};
use super::stored::Usability;
use super::tags::take_tags;
use crate::entry::{Entry, RefreshClaim};
use crate::grpc::is_grpc;
use crate::pipeline;
use crate::stats::Counter;
use crate::trace;
use crate::{clock, Cache};

/// Caches the responses of the service it wraps; built by [`CacheLayer`](crate::CacheLayer).
///
/// `M` is the layer's mode: [`HttpOnly`] passes each request to the inner service as it came;
/// with opted-in gRPC methods (`GrpcMethods`, feature `grpc`) the inner service receives a
/// `GrpcRequestBody` (the request message is read to compute the key).
///
/// # Readiness
///
/// A `CacheService` is always ready, as axum's own routes are: a request the cache answers never
/// waits for the inner service, so hits keep being served while the inner service applies
/// backpressure (a full concurrency limit, say). A request that reaches the inner service calls a
/// fresh clone of it, and waits for that clone's `poll_ready` in the response future; an error
/// from `poll_ready` is that response's error (and, on a revalidation, lets `stale-if-error`
/// serve the stored response).
///
/// So middleware that should see the inner service's backpressure (`LoadShed`,
/// `ConcurrencyLimit`) or should not count the wait for it (`Timeout`) goes between the
/// `CacheLayer` and the inner service, not outside the layer.
///
/// Cloning a `CacheService` (routers clone theirs for every request) copies one reference (two
/// with opted-in gRPC methods): a hit never clones the inner service.
pub struct CacheService<S, M = HttpOnly> {
    /// The wrapped service, the cache and the configuration behind one reference.
    shared: Arc<Shared<S>>,
    pub(crate) mode: M,
}

impl<S, M: Clone> Clone for CacheService<S, M> {
    fn clone(&self) -> Self {
        CacheService {
            shared: Arc::clone(&self.shared),
            mode: self.mode.clone(),
        }
    }
}

struct Shared<S> {
    /// Behind a lock only so that a `CacheService` is `Sync` whenever `S` is `Send`: it is taken
    /// briefly to clone the service for a request that needs it, never on a hit.
    inner: Mutex<S>,
    cache: Cache,
    config: Arc<Config>,
}

impl<S, M> CacheService<S, M> {
    pub(crate) fn new(inner: S, cache: Cache, config: Arc<Config>, mode: M) -> Self {
        CacheService {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                cache,
                config,
            }),
            mode,
        }
    }

    /// The cache responses are stored in.
    pub(crate) fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// The layer's configuration.
    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.shared.config
    }

    /// A clone of the wrapped service, for a request that goes to it (readied where it is
    /// called, with [`ServiceExt::oneshot`]).
    pub(crate) fn inner_service(&self) -> S
    where
        S: Clone,
    {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What a miss's future owns: the cache, the configuration and a clone of the service.
    fn for_a_miss(&self) -> (Cache, Arc<Config>, S)
    where
        S: Clone,
    {
        let config = Arc::clone(self.config());
        (self.cache().clone(), config, self.inner_service())
    }

    /// The wrapped service (a clone of it while other clones of this `CacheService` exist).
    pub fn into_inner(self) -> S
    where
        S: Clone,
    {
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared
                .inner
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            Err(shared) => shared
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl<S: std::fmt::Debug, M: std::fmt::Debug> std::fmt::Debug for CacheService<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("inner", &self.shared.inner)
            .field("cache", &self.cache().name())
            .field("config", self.config())
            .field("mode", &self.mode)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S, HttpOnly>
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
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    /// Always ready: see [Readiness](CacheService#readiness).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if is_grpc(request.method(), request.headers()) {
            return self.pass_grpc(request, None);
        }
        self.call_http(request)
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
    /// Nothing in memory: look in the shared tier (Redis), then as `Fetch`; the look-up's
    /// span, whose outcome the shared tier decides.
    Shared(Plan, tracing::Span),
    /// The key function declined the request.
    Bypass,
}

impl<S, M> CacheService<S, M> {
    /// A gRPC call that is not cached: to the inner service and back untouched (trailers,
    /// status, compression, deadline), only `Cache-Tag` removed and `Cache-Status` added (with
    /// `detail` saying why an opted-in method was not cached). Not a write either: a gRPC
    /// path names a method, not a stored resource.
    pub(crate) fn pass_grpc<ReqBody, ResBody>(
        &self,
        request: Request<ReqBody>,
        detail: Option<&'static str>,
    ) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
        ResBody: Body,
    {
        let mut status = CacheStatus::forward(Forward::Bypass);
        if let Some(detail) = detail {
            status = status.detail(detail);
        }
        ResponseFuture::passthrough(self.inner_service().oneshot(request), status, self.config())
    }

    /// An HTTP request: served from the cache, forwarded under single-flight, or passed
    /// through; successful writes invalidate what they name.
    pub(crate) fn call_http<ReqBody, ResBody>(
        &self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        // Protocol upgrades (WebSocket) are a connection, not a response to store.
        if is_cacheable_method(request.method()) && !request.headers().contains_key(UPGRADE) {
            return self.call_cacheable(request);
        }
        if is_unsafe_method(request.method()) {
            self.write(request)
        } else if request.headers().contains_key(UPGRADE) {
            ResponseFuture::passthrough(
                self.inner_service().oneshot(request),
                CacheStatus::forward(Forward::Bypass),
                self.config(),
            )
        } else {
            ResponseFuture::passthrough(
                self.inner_service().oneshot(request),
                CacheStatus::forward(Forward::Method),
                self.config(),
            )
        }
    }

    /// A GET or HEAD: answered from the cache, refreshed in the background, looked up in the
    /// shared tier, forwarded under single-flight, or passed through.
    // Inlined: the hit path, as it was before this was split out of `call_http`.
    #[inline(always)]
    fn call_cacheable<ReqBody, ResBody>(
        &self,
        mut request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        // Before anything reads the request: the key, `Vary` and the inner service agree.
        for name in &self.config().strip_request {
            request.headers_mut().remove(name);
        }
        let (decision, request) = self.decide(request);
        match decision {
            // A hit needs no inner service: nothing is cloned.
            Decision::Respond(response) => ResponseFuture::ready(response),
            Decision::Refresh {
                served,
                plan,
                claim,
            } => {
                let (cache, config) = (self.cache(), self.config());
                refresh_in_background(cache, config, self.inner_service(), request, plan, claim);
                ResponseFuture::ready(served)
            }
            Decision::Shared(plan, span) => {
                let (cache, config, inner) = self.for_a_miss();
                let shared = fetch_shared(cache, config, inner, request, (plan, span));
                ResponseFuture::boxed(Box::pin(shared))
            }
            Decision::Fetch(plan) => {
                let (cache, config, inner) = self.for_a_miss();
                ResponseFuture::boxed(Box::pin(fetch(cache, config, inner, request, plan)))
            }
            Decision::Bypass => ResponseFuture::passthrough(
                self.inner_service().oneshot(request),
                CacheStatus::forward(Forward::Bypass),
                self.config(),
            ),
        }
    }

    /// Looks a GET or HEAD request up and decides how to answer it.
    fn decide<B: Body, ReqBody>(
        &self,
        request: Request<ReqBody>,
    ) -> (Decision<B>, Request<ReqBody>) {
        let span = trace::http_lookup(self.cache(), request.method());
        let (mut decision, request) = self.decide_untraced(request);
        if let Decision::Shared(_, lookup) = &mut decision {
            // Recorded once the shared tier has answered (`fetch_shared`).
            *lookup = span;
            return (decision, request);
        }
        let (outcome, tier) = match &decision {
            Decision::Respond(_) => (trace::Outcome::Hit, Some(trace::Tier::Memory)),
            Decision::Refresh { .. } => (trace::Outcome::Stale, Some(trace::Tier::Memory)),
            Decision::Fetch(_) | Decision::Shared(..) => (trace::Outcome::Miss, None),
            Decision::Bypass => (trace::Outcome::Bypass, None),
        };
        trace::outcome(&span, outcome, tier);
        (decision, request)
    }

    /// [`CacheService::decide`] without its span.
    fn decide_untraced<B: Body, ReqBody>(
        &self,
        request: Request<ReqBody>,
    ) -> (Decision<B>, Request<ReqBody>) {
        thread_local! {
            static KEY: RefCell<String> = const { RefCell::new(String::new()) };
        }
        if self.cache().inner().disabled() {
            return (Decision::Bypass, request);
        }
        match &self.config().key_fn {
            Some(key_fn) => {
                let (parts, body) = request.into_parts();
                let decision = match key_fn(&parts) {
                    Some(key) => self.decide_for(&key, &parts.method, &parts.headers),
                    None => Decision::Bypass,
                };
                (decision, Request::from_parts(parts, body))
            }
            // Rendered into a per-thread buffer: a hit allocates no key. The request is read in
            // place, not taken apart and put back together.
            None => {
                let sort_query = self.config().sort_query;
                let decision = KEY.with_borrow_mut(|key| {
                    key.clear();
                    // An invalid authority is never keyed: the request passes through.
                    if write_primary_key(key, request.uri(), request.headers(), sort_query) {
                        self.decide_for(key, request.method(), request.headers())
                    } else {
                        Decision::Bypass
                    }
                });
                (decision, request)
            }
        }
    }

    fn decide_for<B: Body>(
        &self,
        primary: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Decision<B> {
        let directives = request_directives(self.config(), headers);
        // Its primary key is filled only when the plan leaves this function.
        let mut plan = Plan::empty();
        // One clock reading serves the entry's deadlines and the response's age.
        let now = clock::now();
        let request = (method, headers, &directives, now);
        match lookup(self.cache(), primary, headers, now) {
            Found::Stored { variant, entry } => {
                plan.variant = variant;
                let cache = self.cache();
                if let Some(decision) = decide_stored(cache, &entry, primary, request, &mut plan) {
                    return decision;
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
        // Nothing usable in memory: the shared tier may hold the URL or its variant.
        let shared = self.cache().remote().is_some()
            && matches!(plan.forward, Forward::UriMiss | Forward::VaryMiss);
        if directives.only_if_cached && !shared {
            return Decision::Respond(only_if_cached());
        }
        // A HEAD response has no body to store: it must not make GETs queue behind it.
        if method == Method::HEAD {
            plan.coalesce = false;
        }
        plan.primary = primary.to_owned();
        if shared {
            return Decision::Shared(plan, tracing::Span::none());
        }
        self.cache().inner().counters().add(Counter::Miss);
        Decision::Fetch(plan)
    }

    /// An unsafe request: forwarded with its preconditions, which the application decides
    /// (a stored copy may be outdated or another variant: deciding from it could answer a
    /// false 412). A success or redirection drops the stored responses of its URL and of the
    /// same-origin `Location` / `Content-Location` it names.
    fn write<ReqBody, ResBody>(
        &self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        let target = request.uri().clone();
        let request_headers = request.headers().clone();
        let cache = self.cache().clone();
        let config = Arc::clone(self.config());
        let future = self.inner_service().oneshot(request);
        ResponseFuture::boxed(Box::pin(async move {
            let (mut parts, body) = future.await?.into_parts();
            take_tags(
                &mut parts.headers,
                &mut parts.extensions,
                config.forward_tags,
            );
            config.targeted.hide(&mut parts.headers);
            if parts.status.is_success() || parts.status.is_redirection() {
                let mut names = url_keys(&config, &target, &request_headers);
                for header in [LOCATION, CONTENT_LOCATION] {
                    if let Some(named) = parts
                        .headers
                        .get(header)
                        .and_then(|v| same_origin(&target, &request_headers, v.as_bytes()))
                    {
                        names.extend(url_keys(&config, &named, &request_headers));
                    }
                }
                tracing::debug!(cache = cache.name(), keys = ?names, "invalidated by a write");
                // One batch: dropped here at once, and from Redis and the other instances on a
                // task of its own, so a client that leaves meanwhile cannot cut it short.
                cache.invalidate_names(names).await;
            }
            CacheStatus::forward(Forward::Method).append_to(&mut parts.headers);
            Ok(Response::from_parts(parts, CacheBody::inner(body)))
        }))
    }
}

/// The URI a `Location` / `Content-Location` `value` names, when it is on the request's own
/// origin (another origin's URLs are not ours to drop): an absolute URI with the request's
/// authority, or an absolute path, resolved against the request.
fn same_origin(request: &Uri, headers: &HeaderMap, value: &[u8]) -> Option<Uri> {
    let named = Uri::try_from(value).ok()?;
    let authority = authority_of(request, headers)?;
    match named.authority() {
        Some(a) if a.as_str().eq_ignore_ascii_case(authority) => Some(named),
        Some(_) => None,
        None if named.path().starts_with('/') => {
            let mut parts = named.into_parts();
            parts.scheme = Some(request.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP));
            parts.authority = Some(authority.parse().ok()?);
            Uri::from_parts(parts).ok()
        }
        None => None,
    }
}

/// How a stored response answers the request: served (fresh, or stale while it is refreshed
/// in the background), or `None` with `plan` set to revalidate it.
// Inlined: the hit path's one call, as it was before this was split out of `decide_for`.
#[inline(always)]
fn decide_stored<B: Body>(
    cache: &Cache,
    entry: &Arc<Entry>,
    primary: &str,
    request: (&Method, &HeaderMap, &RequestDirectives, clock::Instant),
    plan: &mut Plan,
) -> Option<Decision<B>> {
    let (method, headers, directives, now) = request;
    let counters = &cache.inner().counters();
    let response = response_of(entry);
    let age = response.age(now);
    let entry_age = entry.age(now);
    match response.usability_in(entry_age, age, directives) {
        Usability::Fresh | Usability::StaleAccepted => {
            counters.add(Counter::Hit);
            let status = CacheStatus::hit().ttl(remaining_ttl(response.lifetime, age));
            Some(Decision::Respond(serve(
                response, method, headers, status, age,
            )))
        }
        Usability::StaleWhileRevalidate => {
            counters.add(Counter::Stale);
            // Stale, if only by its entry (a soft purge): no freshness left to report.
            let status = CacheStatus::hit()
                .ttl(remaining_ttl(response.lifetime, age).min(0))
                .detail("stale-while-revalidate");
            let served = serve(response, method, headers, status, age);
            // HEAD gets no body to store: the next GET refreshes.
            let claim = (method == Method::GET)
                .then(|| entry.claim_refresh())
                .flatten();
            let Some(claim) = claim else {
                return Some(Decision::Respond(served));
            };
            plan.primary = primary.to_owned();
            plan.stale = shared_response_of(entry).map(|r| (r, false));
            plan.forward = Forward::Stale;
            Some(Decision::Refresh {
                served,
                plan: std::mem::replace(plan, Plan::empty()),
                claim,
            })
        }
        Usability::Revalidate { stale_if_error } => {
            let fresh_for_anyone =
                response.usability_in(entry_age, age, &RequestDirectives::default())
                    == Usability::Fresh;
            plan.forward = if fresh_for_anyone {
                Forward::Request
            } else {
                Forward::Stale
            };
            plan.stale = shared_response_of(entry).map(|r| (r, stale_if_error));
            None
        }
    }
}

fn refresh_in_background<S, ReqBody, ResBody>(
    cache: &Cache,
    config: &Arc<Config>,
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
    let config = Arc::clone(config);
    let key = plan.key().to_owned();
    let span = trace::http_refresh(cache, request.method());
    pipeline::refresh(
        cache,
        key,
        Box::default(),
        claim,
        span,
        |refresh| async move {
            let leader = Some(refresh.leader);
            let refreshed = forward(refresh.cache, config, inner, request, plan, leader);
            let Ok(response) = refreshed.await else {
                return trace::Outcome::Failed;
            };
            trace::status_code(&refresh.span, response.status());
            let outcome = if response.status().is_server_error() {
                trace::Outcome::Failed
            } else {
                trace::Outcome::Refreshed
            };
            // Reading a streamed body to its end is what stores it.
            let _ = response.into_body().collect().await;
            outcome
        },
    );
}

/// The answer to `only-if-cached` when nothing usable is stored.
fn only_if_cached<B: Body>() -> Response<CacheBody<B>> {
    empty_response(
        StatusCode::GATEWAY_TIMEOUT,
        CacheStatus::default().detail("only-if-cached"),
    )
}

/// Records on a look-up's `span` how the shared tier answered: a hit or a stale hit from
/// Redis, or a miss.
fn traced_shared<B: Body>(span: tracing::Span, decision: Option<&Decision<B>>) {
    let (outcome, tier) = match decision {
        Some(Decision::Respond(_)) => (trace::Outcome::Hit, Some(trace::Tier::Redis)),
        Some(Decision::Refresh { .. }) => (trace::Outcome::Stale, Some(trace::Tier::Redis)),
        _ => (trace::Outcome::Miss, None),
    };
    trace::outcome(&span, outcome, tier);
}

/// A request memory had nothing for, on a cache with a shared tier: answered from what another
/// instance (or this one) stored in Redis as from memory (served, served stale while one
/// refresh runs, or revalidated), else fetched.
async fn fetch_shared<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    (mut plan, span): (Plan, tracing::Span),
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let (method, headers) = (request.method(), request.headers());
    let variant = plan.variant.as_deref();
    let directives = request_directives(&config, headers);
    let decision = match lookup_shared(&cache, &config, &plan.primary, variant, headers).await {
        Found::Stored { variant, entry } => {
            plan.variant = variant;
            let primary = plan.primary.clone();
            let request = (method, headers, &directives, clock::now());
            decide_stored(&cache, &entry, &primary, request, &mut plan)
        }
        Found::VaryMiss(key) => {
            plan.variant = Some(key);
            plan.forward = Forward::VaryMiss;
            None
        }
        Found::Uncacheable | Found::Nothing => None,
    };
    traced_shared(span, decision.as_ref());
    let counters = cache.inner().counters();
    match decision {
        Some(Decision::Respond(response)) => {
            counters.add(Counter::SharedHit);
            return Ok(response);
        }
        Some(Decision::Refresh {
            served,
            plan,
            claim,
        }) => {
            refresh_in_background(&cache, &config, inner, request, plan, claim);
            return Ok(served);
        }
        _ => {}
    }
    if directives.only_if_cached {
        return Ok(only_if_cached());
    }
    counters.add(Counter::Miss);
    fetch(cache, config, inner, request, plan).await
}
