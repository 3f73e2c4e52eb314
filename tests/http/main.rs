//! `CacheLayer` end to end: a real axum server on a loopback port, a real HTTP client. One
//! binary, a module per topic; this file holds the handlers the modules share.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod coalescing;
mod conditional;
mod invalidation;
mod privacy;
mod request_cache_control;
mod stale;
mod storing;
mod timeouts;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response};
use axum::routing::get;
use axum::Router;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A response with `body` and the given headers.
fn respond(body: String, headers: &[(&'static str, &'static str)]) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    for (name, value) in headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    response
}

/// A handler answering `body-<n>` (n counts calls) with the given response headers.
fn counted(calls: &Arc<AtomicUsize>, headers: &'static [(&'static str, &'static str)]) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/r",
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { respond(format!("body-{n}"), headers) }
        }),
    )
}

/// A handler echoing the caller's `x-user`, with the given response headers.
fn per_user(calls: &Arc<AtomicUsize>, headers: &'static [(&'static str, &'static str)]) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/r",
        get(move |request_headers: HeaderMap| {
            calls.fetch_add(1, Ordering::SeqCst);
            let user = request_headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nobody")
                .to_owned();
            async move { respond(format!("data of {user}"), headers) }
        }),
    )
}
