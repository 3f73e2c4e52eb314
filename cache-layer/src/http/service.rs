//! [`CacheService`]: decides how each request is answered (from memory, from what Redis holds
//! on a shared cache, refreshed in the background, or forwarded), and invalidates stored
//! responses after successful writes.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::UPGRADE;
use http::{Request, Response};
use http_body::Body;
use tower::ServiceExt;
use tower_service::Service;

use super::body::CacheBody;
use super::config::{Config, HttpOnly};
use super::flow::decide::{decide, Decision};
use super::flow::fetch::{fetch, fetch_shared};
use super::flow::invalidate::write;
use super::flow::refresh::refresh_in_background;
use super::future::ResponseFuture;
use super::rules::key::{is_cacheable_method, is_unsafe_method};
use super::status::{CacheStatus, Forward};
use crate::grpc::is_grpc;
use crate::Cache;

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
    // Inlined: the hit path.
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
        let (decision, request) = decide(self.cache(), self.config(), request);
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

    /// An unsafe request: forwarded with its preconditions, which the application decides
    /// (a stored copy may be outdated or another variant: deciding from it could answer a
    /// false 412); a success or redirection then invalidates what it names.
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
        let named = (request.uri().clone(), request.headers().clone());
        let (cache, config) = (self.cache().clone(), Arc::clone(self.config()));
        let response = self.inner_service().oneshot(request);
        ResponseFuture::boxed(Box::pin(write(cache, config, named, response)))
    }
}
