//! The call path of an opted-in gRPC method: read the request message, key it, then serve the
//! stored call (fresh, or stale while one background call refreshes it), or forward under
//! single-flight and store the answer when its trailers say `grpc-status: 0`; a stale call
//! stands in when the service fails (stale-if-error).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_service::Service;

use super::config::{GrpcConfig, GrpcMethods};
use super::frame::{supported_encoding, unary_message, FrameError};
use super::is_grpc;
use super::key::{accepts_response, call_key};
use super::request_body::{GrpcRequestBody, ReadBody};
use super::stored::{call_lifetime, grpc_status, CachedCall, PendingCall};
use crate::clock;
use crate::entry::{Age, Entry};
use crate::flight::{Join, Leader, Waited};
use crate::layer::body::{CacheBody, Recording};
use crate::layer::cache_control::ResponseDirectives;
use crate::layer::forward::load;
use crate::layer::freshness;
use crate::layer::future::ResponseFuture;
use crate::layer::gate::{admit, Exchange};
use crate::layer::layer::Config;
use crate::layer::record::{live_entry, mark_uncacheable};
use crate::layer::status::{CacheStatus, Forward};
use crate::layer::stored::Uncacheable;
use crate::layer::tags::take_tags;
use crate::stats::Counter;
use crate::{Cache, CacheService};

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S, GrpcMethods>
where
    S: Service<Request<GrpcRequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, GrpcRequestBody<ReqBody>, ResBody>;

    /// Always ready: see [Readiness](CacheService#readiness).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !is_grpc(request.method(), request.headers()) {
            return self.call_http(request.map(GrpcRequestBody::inner));
        }
        let grpc = Arc::clone(&self.mode.config);
        let Some(ttl) = grpc.ttl_for(request.uri().path()) else {
            return self.pass_grpc(request.map(GrpcRequestBody::inner), None);
        };
        let headers = request.headers();
        let detail = if headers.contains_key(AUTHORIZATION) && !grpc.keys_authorization() {
            Some("authorization")
        } else if headers.contains_key(COOKIE) && !grpc.keys_cookie() {
            Some("cookie")
        } else if !supported_encoding(headers) {
            Some(FrameError::Encoding.as_str())
        } else {
            None
        };
        if detail.is_some() {
            return self.pass_grpc(request.map(GrpcRequestBody::inner), detail);
        }
        let call = Call {
            cache: self.cache().clone(),
            config: Arc::clone(self.config()),
            grpc,
            ttl,
        };
        // The inner service is cloned only if the call reaches it.
        let service = self.clone();
        let inner = move || service.inner_service();
        ResponseFuture::boxed(Box::pin(call.run(inner, request)))
    }
}

/// One call of an opted-in method.
struct Call {
    cache: Cache,
    config: Arc<Config>,
    grpc: Arc<GrpcConfig>,
    /// The method's TTL, for responses whose `cache-control` gives none.
    ttl: Duration,
}

/// What the cache holds under a call's key.
enum Found {
    Stored(Arc<Entry>, Arc<CachedCall>),
    Uncacheable,
    Nothing,
}

fn lookup(cache: &Cache, key: &str, request: &HeaderMap) -> Found {
    let Some(entry) = live_entry(cache, key, clock::now()) else {
        return Found::Nothing;
    };
    if let Ok(call) = Arc::clone(&entry.value).downcast::<CachedCall>() {
        // Never a compressed response to a client that cannot decode it (the key includes the
        // accepted encodings; this holds whatever keyed it).
        if accepts_response(request, call.served.map()) {
            return Found::Stored(entry, call);
        }
        return Found::Nothing;
    }
    if entry.value.is::<Uncacheable>() {
        return Found::Uncacheable;
    }
    Found::Nothing
}

/// Seconds of freshness left (negative when stale), for `Cache-Status`.
fn remaining_ttl(entry: &Entry) -> i64 {
    let (now, until) = (clock::now(), entry.deadlines.fresh_until);
    freshness::remaining_ttl(
        until.saturating_duration_since(now),
        now.saturating_duration_since(until),
    )
}

/// Whether a response head says the service failed, so a stale call may stand in: HTTP 5xx,
/// or a Trailers-Only error that is the server's (UNKNOWN, DEADLINE_EXCEEDED, INTERNAL,
/// UNAVAILABLE, DATA_LOSS), not the caller's.
fn server_failed(status: StatusCode, headers: &HeaderMap) -> bool {
    status.is_server_error()
        || matches!(
            grpc_status(headers),
            Some(b"2" | b"4" | b"13" | b"14" | b"15")
        )
}

impl Call {
    async fn run<S, B, ResBody>(
        self,
        inner: impl FnOnce() -> S + Send + 'static,
        request: Request<B>,
    ) -> Result<Response<CacheBody<ResBody>>, S::Error>
    where
        S: Service<Request<GrpcRequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        let (parts, body) = request.into_parts();
        let read = ReadBody::read(body, self.config.max_body).await;
        let key = match read.complete() {
            None => Err("too-large"),
            Some(body) => unary_message(body, &parts.headers, self.config.max_body)
                .map_err(FrameError::as_str)
                .and_then(|message| {
                    call_key(&parts, &self.grpc.key_metadata, &message).ok_or("authority")
                }),
        };
        let key = match key {
            Ok(key) => key,
            Err(detail) => {
                let request = Request::from_parts(parts, GrpcRequestBody::read(read));
                let status = CacheStatus::forward(Forward::Bypass).detail(detail);
                return ResponseFuture::passthrough(inner().oneshot(request), status).await;
            }
        };
        let engine = self.cache.inner();
        let mut stale = None;
        let mut forward = Forward::UriMiss;
        match lookup(&self.cache, &key, &parts.headers) {
            Found::Stored(entry, call) => match entry.age(clock::now()) {
                Age::Fresh => {
                    engine.counters.add(Counter::Hit);
                    return Ok(call.serve(&CacheStatus::hit().ttl(remaining_ttl(&entry))));
                }
                Age::Stale => {
                    engine.counters.add(Counter::Stale);
                    let status = CacheStatus::hit()
                        .ttl(remaining_ttl(&entry))
                        .detail("stale-while-revalidate");
                    if let Some(claim) = entry.claim_refresh() {
                        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                            let request = Request::from_parts(parts, GrpcRequestBody::read(read));
                            runtime.spawn(async move {
                                let refreshed =
                                    self.forward(inner(), request, key, None, None, Forward::Stale);
                                if let Ok(response) = refreshed.await {
                                    // Reading the body to its end is what stores it.
                                    let _ = response.into_body().collect().await;
                                }
                                drop(claim);
                            });
                        }
                    }
                    return Ok(call.serve(&status));
                }
                Age::Fallback => {
                    stale = Some(call);
                    forward = Forward::Stale;
                }
                Age::Expired => {}
            },
            Found::Uncacheable => forward = Forward::Miss,
            Found::Nothing => {}
        }
        engine.counters.add(Counter::Miss);
        let mut leader = None;
        if forward != Forward::Miss {
            loop {
                let waiter = match engine.flights.join(&key, &[]) {
                    Join::Lead(lead) => {
                        leader = Some(lead);
                        break;
                    }
                    Join::Wait(waiter) => waiter,
                };
                engine.counters.add(Counter::Coalesced);
                match waiter.wait(engine.max_wait).await {
                    Waited::Done(value) => {
                        if let Ok(call) = value.downcast::<CachedCall>() {
                            return Ok(call.serve(&CacheStatus::hit().detail("coalesced")));
                        }
                    }
                    Waited::Retry => {}
                    Waited::TimedOut => break,
                }
                // The leader stored nothing: perhaps a later load did; else lead or go alone.
                match lookup(&self.cache, &key, &parts.headers) {
                    Found::Stored(entry, call) if entry.age(clock::now()) == Age::Fresh => {
                        engine.counters.add(Counter::Hit);
                        return Ok(call.serve(&CacheStatus::hit().ttl(remaining_ttl(&entry))));
                    }
                    Found::Uncacheable => break,
                    _ => {}
                }
            }
        }
        let request = Request::from_parts(parts, GrpcRequestBody::read(read));
        self.forward(inner(), request, key, stale, leader, forward)
            .await
    }

    /// Calls the inner service; serves `stale` if it fails, else streams its answer to the
    /// client while keeping a copy to store.
    async fn forward<S, B, ResBody>(
        self,
        inner: S,
        request: Request<GrpcRequestBody<B>>,
        key: String,
        stale: Option<Arc<CachedCall>>,
        leader: Option<Leader>,
        forward: Forward,
    ) -> Result<Response<CacheBody<ResBody>>, S::Error>
    where
        S: Service<Request<GrpcRequestBody<B>>, Response = Response<ResBody>>,
        B: Body,
        ResBody: Body<Data = Bytes>,
    {
        let path = request.uri().path().to_owned();
        let engine = self.cache.inner();
        let since = engine.log.current();
        let (result, _) = load(engine, inner, request).await;
        let failed = match &result {
            Ok(response) => server_failed(response.status(), response.headers()),
            Err(_) => true,
        };
        if failed {
            engine.counters.add(Counter::LoadError);
            if let Some(stale) = stale {
                engine.counters.add(Counter::StaleIfError);
                tracing::warn!(
                    cache = self.cache.name(),
                    key,
                    "inner service failed; serving the stale call (stale-if-error)"
                );
                let status = CacheStatus::forward(forward).detail("stale-if-error");
                return Ok(stale.serve(&status));
            }
        }
        let (mut parts, body) = result?.into_parts();
        let tags = take_tags(&mut parts.headers, &mut parts.extensions);
        let status = CacheStatus::forward(forward).forward_status(parts.status.as_u16());
        let cc = ResponseDirectives::parse(&parts.headers);
        let verdict = if parts.status != StatusCode::OK || grpc_status(&parts.headers).is_some() {
            // An HTTP error, or a Trailers-Only response: gRPC errors are never stored.
            Err("status")
        } else if body.size_hint().lower() > self.config.max_body as u64 {
            Err("too-large")
        } else {
            admit(Exchange::GrpcCall, parts.headers.clone(), &cc).map_err(|r| r.as_str())
        };
        let admitted = match verdict {
            Ok(admitted) => admitted,
            Err(reason) => {
                drop(leader);
                mark_uncacheable(&self.cache, &self.config, &key);
                status.detail(reason).append_to(&mut parts.headers);
                return Ok(Response::from_parts(parts, CacheBody::inner(body)));
            }
        };
        let stated = cc.s_maxage.or(cc.max_age);
        let ttl = stated.unwrap_or(self.ttl);
        let windows = (
            cc.stale_while_revalidate
                .unwrap_or(self.config.stale_while_revalidate),
            cc.stale_if_error.unwrap_or(self.config.stale_if_error),
        );
        let pending = PendingCall {
            cache: self.cache,
            config: Arc::clone(&self.config),
            key,
            path,
            status: parts.status,
            headers: admitted,
            lifetime: call_lifetime(ttl, windows, stated.is_some()),
            tags,
            since,
            leader,
        };
        status.append_to(&mut parts.headers);
        let recording =
            Recording::call(self.config.max_body, self.config.in_flight.start(), pending);
        Ok(Response::from_parts(parts, CacheBody::tee(body, recording)))
    }
}
