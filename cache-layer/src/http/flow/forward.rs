//! A miss forwarded to the inner service (conditionally, when revalidating a stored response)
//! through the load pipeline: its failure served stale when allowed (stale-if-error), its `304`
//! applied to the stored response, its full answer stored and answered.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::answer::answer;
use super::plan::{Exchanged, Plan};
use super::respond::serve;
use super::revalidate::not_modified;
use crate::engine::clock;
use crate::engine::entry::Value;
use crate::engine::pipeline::{self, Leader, Load};
use crate::http::body::CacheBody;
use crate::http::config::Config;
use crate::http::rules::etag::EntityTag;
use crate::http::status::CacheStatus;
use crate::store::SharedSince;
use crate::Cache;

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
    let shared_since = match cache.shared_tier() {
        Some(_) => pipeline::read_shared_since(&cache).await,
        None => SharedSince::Unchecked,
    };
    let loading = Load::begin(&cache);
    let (result, request_time) = loading.call(inner, Request::from_parts(parts, body)).await;
    let response_time = SystemTime::now();
    if let Some(failed_status) = failure(&result) {
        loading.failed(
            plan.key(),
            Some(failed_status.as_u16()).filter(|_| result.is_ok()),
        );
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
