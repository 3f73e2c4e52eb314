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
use tower::ServiceExt;
use tower_service::Service;

use super::config::{GrpcConfig, GrpcMethods};
use super::frame::{supported_encoding, unary_message, FrameError};
use super::is_grpc;
use super::key::call_key;
use super::lookup::{lookup, remaining_ttl, CallWaiting, Held, Replay};
use super::request_body::{GrpcRequestBody, ReadBody};
use super::stored::{call_lifetime, grpc_status, CachedCall, CallBeingRecorded};
use crate::engine::clock;
use crate::engine::entry::{RefreshClaim, Value};
use crate::engine::pipeline::{self, Found, Joined, Leader, Load};
use crate::engine::stats::Counter;
use crate::engine::trace::{self, Outcome, Tier};
use crate::http::for_grpc::{
    admit, mark_uncacheable, refresh_outcome, take_tags, Admitted, CacheStatus, Config, Exchange,
    Forward, ResponseDirectives,
};
use crate::{Cache, CacheBody, CacheService, ResponseFuture};

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

/// How a call is answered after its look-up.
enum Decision {
    /// Replayed from the cache.
    Serve(Replay),
    /// Replayed stale while `claim` refreshes it in the background.
    Refresh(Replay, RefreshClaim),
    /// Forwarded, with a stale call for stale-if-error.
    Forward(Forward, Option<Arc<CachedCall>>),
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
        let key = match self.key(&parts, &read) {
            Ok(key) => key,
            Err(detail) => {
                let request = Request::from_parts(parts, GrpcRequestBody::read(read));
                let status = CacheStatus::forward(Forward::Bypass).detail(detail);
                let config = &self.config;
                return ResponseFuture::passthrough(inner().oneshot(request), status, config).await;
            }
        };
        let (forward, stale) = match self.decide(&key, &parts.headers) {
            Decision::Serve((call, status)) => return Ok(call.serve(&status)),
            Decision::Refresh((call, status), claim) => {
                let request = Request::from_parts(parts, GrpcRequestBody::read(read));
                self.refresh_in_background(inner, request, key, claim);
                return Ok(call.serve(&status));
            }
            Decision::Forward(forward, stale) => (forward, stale),
        };
        self.cache.inner().counters().add(Counter::Miss);
        let mut leader = None;
        if forward != Forward::Miss {
            let mut waiting = CallWaiting {
                cache: &self.cache,
                key: &key,
                request: &parts.headers,
                forward,
            };
            match pipeline::join(&self.cache, &[], &mut waiting).await {
                Joined::Served((call, status)) => return Ok(call.serve(&status)),
                Joined::Lead(lead) => leader = Some(lead),
                Joined::Alone => {}
            }
        }
        let request = Request::from_parts(parts, GrpcRequestBody::read(read));
        self.forward(inner(), request, key, stale, leader, forward)
            .await
    }

    /// Stale-while-revalidate: calls the inner service in the background, as the key's flight
    /// leader, and stores its answer.
    fn refresh_in_background<S, B, ResBody>(
        self,
        inner: impl FnOnce() -> S + Send + 'static,
        request: Request<GrpcRequestBody<B>>,
        key: String,
        claim: RefreshClaim,
    ) where
        S: Service<Request<GrpcRequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        let cache = self.cache.clone();
        let span = trace::http_refresh(&cache, request.method());
        pipeline::refresh(
            &cache,
            key,
            Box::default(),
            claim,
            span,
            |refresh| async move {
                let leader = Some(refresh.leader);
                let refreshed =
                    self.forward(inner(), request, refresh.key, None, leader, Forward::Stale);
                // A call's failure is in its `grpc-status`, not its HTTP status.
                refresh_outcome(&refresh.span, refreshed.await, |_| false).await
            },
        );
    }

    /// The call's key, from its request message; else why it is not cached.
    fn key<B: Body<Data = Bytes>>(
        &self,
        parts: &http::request::Parts,
        read: &ReadBody<B>,
    ) -> Result<String, &'static str> {
        let body = read.complete().ok_or("too-large")?;
        let message = unary_message(body, &parts.headers, self.config.max_body)
            .map_err(FrameError::as_str)?;
        call_key(parts, &self.grpc.key_metadata, &message).ok_or("authority")
    }

    /// Looks the call up and decides how to answer it, under a `cache.lookup` span (as an
    /// HTTP request's look-up) that records the outcome.
    fn decide(&self, key: &str, request: &HeaderMap) -> Decision {
        let span = trace::http_lookup(&self.cache, &http::Method::POST);
        let (decision, outcome) = self.decide_untraced(key, request);
        let tier = matches!(outcome, Outcome::Hit | Outcome::Stale).then_some(Tier::Memory);
        trace::outcome(&span, outcome, tier);
        decision
    }

    /// [`Call::decide`] without its span: the decision and the look-up's outcome.
    fn decide_untraced(&self, key: &str, request: &HeaderMap) -> (Decision, Outcome) {
        let counters = self.cache.inner().counters();
        let miss = |forward, stale| (Decision::Forward(forward, stale), Outcome::Miss);
        let (entry, call) = match lookup(&self.cache, key, request) {
            Held::Stored(entry, call) => (entry, call),
            Held::Uncacheable => return miss(Forward::Miss, None),
            Held::Nothing => return miss(Forward::UriMiss, None),
        };
        match pipeline::found::<CachedCall>(&entry, clock::now()) {
            Found::Fresh(_) => {
                counters.add(Counter::Hit);
                let status = CacheStatus::hit().ttl(remaining_ttl(&entry));
                (Decision::Serve((call, status)), Outcome::Hit)
            }
            Found::Stale(_, claim) => {
                counters.add(Counter::Stale);
                // Stale, if only by a soft purge: no freshness left to report.
                let status = CacheStatus::hit()
                    .ttl(remaining_ttl(&entry).min(0))
                    .detail("stale-while-revalidate");
                let decision = match claim {
                    Some(claim) => Decision::Refresh((call, status), claim),
                    None => Decision::Serve((call, status)),
                };
                (decision, Outcome::Stale)
            }
            Found::Fallback => miss(Forward::Stale, Some(call)),
            Found::Expired | Found::OtherType => miss(Forward::UriMiss, None),
        }
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
        let loading = Load::begin(&self.cache);
        let (result, _) = loading.call(inner, request).await;
        let failed = match &result {
            Ok(response) => server_failed(response.status(), response.headers()),
            Err(_) => true,
        };
        if failed {
            let status = result
                .as_ref()
                .ok()
                .map(|response| response.status().as_u16());
            loading.failed(&key, status);
            if let Some(stale) = stale {
                pipeline::stale_if_error(&self.cache, &key, Arc::clone(&stale) as Value, leader);
                let status = CacheStatus::forward(forward).detail("stale-if-error");
                return Ok(stale.serve(&status));
            }
        }
        let (mut parts, body) = result?.into_parts();
        let tags = take_tags(
            &mut parts.headers,
            &mut parts.extensions,
            self.config.forward_tags,
        );
        let status = CacheStatus::forward(forward).forward_status(parts.status.as_u16());
        let cc = ResponseDirectives::parse(&parts.headers);
        let admitted = match self.admit(&parts, &body, &cc) {
            Ok(admitted) => admitted,
            Err(reason) => {
                drop(leader);
                mark_uncacheable(&self.cache, &self.config, &key);
                status.detail(reason).append_to(&mut parts.headers);
                return Ok(Response::from_parts(parts, CacheBody::inner(body)));
            }
        };
        status.append_to(&mut parts.headers);
        let since = loading.since();
        let config = Arc::clone(&self.config);
        let recorded =
            self.being_recorded((key, path), &parts, admitted, &cc, tags, (since, leader));
        let recording = config.recording(Box::new(recorded));
        Ok(Response::from_parts(parts, CacheBody::tee(body, recording)))
    }

    /// The admitted call, to be stored once its trailers arrive: the lifetime the
    /// service states in `cache-control` metadata, else the method's TTL and the layer's
    /// windows.
    fn being_recorded(
        self,
        (key, path): (String, String),
        parts: &http::response::Parts,
        admitted: Admitted,
        cc: &ResponseDirectives,
        tags: Vec<String>,
        (since, leader): (u64, Option<Leader>),
    ) -> CallBeingRecorded {
        let stated = cc.s_maxage.or(cc.max_age);
        let windows = (
            cc.stale_while_revalidate
                .unwrap_or(self.config.stale_while_revalidate),
            cc.stale_if_error.unwrap_or(self.config.stale_if_error),
        );
        CallBeingRecorded {
            lifetime: call_lifetime(stated.unwrap_or(self.ttl), windows, stated.is_some()),
            cache: self.cache,
            config: self.config,
            key,
            path,
            status: parts.status,
            headers: admitted,
            tags,
            since,
            leader,
        }
    }

    /// Whether a response head may be stored: HTTP 200 without a Trailers-Only status, a body
    /// that may fit, and the storage gate's rules; else why not.
    fn admit<B: Body>(
        &self,
        parts: &http::response::Parts,
        body: &B,
        cc: &ResponseDirectives,
    ) -> Result<Admitted, &'static str> {
        if parts.status != StatusCode::OK || grpc_status(&parts.headers).is_some() {
            // An HTTP error, or a Trailers-Only response: gRPC errors are never stored.
            Err("status")
        } else if body.size_hint().lower() > self.config.max_body as u64 {
            Err("too-large")
        } else {
            let keep_tags = self.config.forward_tags;
            admit(Exchange::GrpcCall { keep_tags }, parts.headers.clone(), cc)
                .map_err(|r| r.as_str())
        }
    }
}
