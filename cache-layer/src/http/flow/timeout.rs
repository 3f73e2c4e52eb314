//! A miss forwarded within the layer's timeouts (`CacheLayer::soft_timeout`,
//! `hard_timeout`), through the pipeline's one race ([`pipeline::within`]): past a timeout
//! the request is answered with the stale response it has, when that may be served stale,
//! else (hard timeout) with `504 Gateway Timeout`; the inner service's response is still
//! read to its end in the background, which stores it.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use super::plan::Plan;
use super::respond::{empty_response, serve};
use crate::engine::clock;
use crate::engine::entry::Value;
use crate::engine::flight::Herald;
use crate::engine::pipeline::{self, Leader, Timeouts, Within};
use crate::http::body::CacheBody;
use crate::http::status::{CacheStatus, Forward};
use crate::http::stored::CachedResponse;
use crate::Cache;

/// What a miss answers if its load is past a timeout, taken before the load (which owns the
/// plan and the flight's leader) begins.
pub(crate) struct Timed {
    stale: Option<Arc<CachedResponse>>,
    forward: Forward,
    herald: Option<Herald>,
    method: Method,
    client: HeaderMap,
}

impl Timed {
    /// For a miss of `plan`, asked with `method` and `client`'s headers, led by `leader`.
    pub(crate) fn new(
        plan: &Plan,
        leader: Option<&Leader>,
        method: &Method,
        client: &HeaderMap,
    ) -> Self {
        Timed {
            stale: servable_stale(plan),
            forward: plan.forward,
            herald: leader.map(Leader::herald),
            method: method.clone(),
            client: client.clone(),
        }
    }

    /// Runs `load` (the miss's forwarding, `fetch.rs`'s `load_once`) on a task of its own,
    /// raced against `timeouts`; a late response is read to its end there, which stores it.
    pub(crate) async fn race<W, B, E>(
        self,
        cache: &Cache,
        timeouts: Timeouts,
        load: W,
    ) -> Result<Response<CacheBody<B>>, E>
    where
        W: Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send + 'static,
        E: Send + 'static,
    {
        let stale = self.stale.clone().map(|stale| stale as Value);
        // Reading the body to its end is what stores it (and frees its share of the body budget).
        let orphan = |answered: Result<Response<CacheBody<B>>, E>| async move {
            if let Ok(response) = answered {
                let _ = response.into_body().collect().await;
            }
        };
        let counters = cache.inner().counters();
        match pipeline::within(counters, timeouts, stale, self.herald, load, orphan).await {
            Within::Done(answered) => answered,
            Within::Stale | Within::TimedOut(_) => Ok(timed_out_answer(
                self.stale,
                self.forward,
                &self.method,
                &self.client,
            )),
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
