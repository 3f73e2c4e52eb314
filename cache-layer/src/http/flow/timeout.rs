//! A miss forwarded within the layer's timeouts (`CacheLayer::soft_timeout`,
//! `hard_timeout`), through the pipeline's one race ([`pipeline::within`]): past a timeout
//! the request is answered with the stale response it has, when that may be served stale,
//! else (hard timeout) with `504 Gateway Timeout`; the inner service's response is still
//! read to its end in the background, which stores it.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::fetch::load_once;
use super::plan::Plan;
use super::respond::{empty_response, serve};
use crate::engine::clock;
use crate::engine::entry::Value;
use crate::engine::pipeline::{self, Leader, Within};
use crate::http::body::CacheBody;
use crate::http::config::Config;
use crate::http::status::{CacheStatus, Forward};
use crate::http::stored::CachedResponse;
use crate::Cache;

/// Forwards a miss (`fetch.rs`'s `load_once`) on a task of its own, raced against the
/// layer's timeouts.
pub(crate) async fn load_within<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    plan: Plan,
    leader: Option<Leader>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let (method, client) = (request.method().clone(), request.headers().clone());
    let servable = servable_stale(&plan);
    let forward = plan.forward;
    let stale = servable.clone().map(|stale| stale as Value);
    let herald = leader.as_ref().map(Leader::herald);
    let timeouts = config.timeouts;
    let work = load_once(cache.clone(), config, inner, request, plan, leader);
    // Reading the body to its end is what stores it (and frees its share of the body budget).
    let orphan = |answered: Result<Response<CacheBody<ResBody>>, S::Error>| async move {
        if let Ok(response) = answered {
            let _ = response.into_body().collect().await;
        }
    };
    match pipeline::within(&cache, timeouts, stale, herald, work, orphan).await {
        Within::Done(answered) => answered,
        Within::Stale | Within::TimedOut(_) => {
            Ok(timed_out_answer(servable, forward, &method, &client))
        }
    }
}

/// The stale response `plan` may serve when its load fails or is too slow: one within a
/// stale-if-error window that allows it (never one that must be revalidated).
pub(crate) fn servable_stale(plan: &Plan) -> Option<Arc<CachedResponse>> {
    match &plan.stale {
        Some((stale, true)) => Some(Arc::clone(stale)),
        _ => None,
    }
}

/// A request's answer when its load (or the one it waits on) is past a timeout: the stale
/// response, when it may be served, else `504 Gateway Timeout`.
pub(crate) fn timed_out_answer<B: Body>(
    stale: Option<Arc<CachedResponse>>,
    forward: Forward,
    method: &Method,
    client: &HeaderMap,
) -> Response<CacheBody<B>> {
    match stale {
        Some(stale) => {
            let status = CacheStatus::forward(forward).detail("timeout");
            serve(&stale, method, client, status, stale.age(clock::now()))
        }
        None => empty_response(
            StatusCode::GATEWAY_TIMEOUT,
            CacheStatus::forward(forward).detail("hard-timeout"),
        ),
    }
}
