//! A caching reverse proxy in one file: `CacheLayer` in front of a hyper client that forwards
//! every request to one upstream and streams the answer back.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --listen 127.0.0.1:PORT --upstream http://HOST:PORT \
//!     [--memory-budget BYTES] [--purge-token TOKEN] [--redis redis://HOST:PORT]
//! ```
//!
//! `--memory-budget` sets the cache's budget (default 64 MiB, the builder's default);
//! benches/soak.sh checks the process's RSS against it. The layer runs with its default configuration: only what the upstream allows is stored
//! (no invented freshness), conditional requests are answered, concurrent misses coalesce.
//!
//! `--redis URL` shares responses across instances: the cache is tiered (memory in front of
//! that Redis), so a response one instance stored is a hit on every other, a miss reaches the
//! upstream once however many instances ask at the same time (the URL's distributed lock), and
//! a purge through any instance reaches all of them. Instances share what clients ask for under
//! the same host (behind a load balancer they do); run two on different ports and send
//! `Host: shop.example` to both to try it. If Redis is down or slow, each instance serves from
//! the upstream on its own until Redis answers again.
//!
//! `--purge-token TOKEN` enables purging (`CacheLayer::purge_with_token`): a request with
//! `Authorization: Bearer TOKEN` and method `PURGE` drops that URL's stored responses
//! (`curl -X PURGE -H 'Authorization: Bearer TOKEN' http://127.0.0.1:PORT/products/7`), and one
//! with `Cache-Tag` or `Surrogate-Key` values (any path, method `PURGE`) drops everything
//! tagged with them. A wrong or missing token is answered 403; without the flag, `PURGE`
//! requests are forwarded upstream like any other.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use cache_layer::{Cache, CacheLayer};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
struct Proxy {
    client: Client<HttpConnector, Body>,
    upstream: Uri,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Fields the `Connection` header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| name.trim().parse().ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut uri = proxy.upstream.clone().into_parts();
    uri.path_and_query = path.parse().ok();
    let Ok(uri) = Uri::from_parts(uri) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    // The client sets Host from the upstream URI.
    parts.headers.remove(header::HOST);
    match proxy.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => {
            eprintln!("upstream error: {error}");
            (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response()
        }
    }
}

fn argument(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let usage = "usage: reverse_proxy --listen 127.0.0.1:PORT --upstream http://HOST:PORT \
                 [--memory-budget BYTES] [--purge-token TOKEN] [--redis redis://HOST:PORT]";
    let (Some(listen), Some(upstream)) = (argument("--listen"), argument("--upstream")) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut cache = Cache::builder().name("proxy");
    if let Some(budget) = argument("--memory-budget") {
        let Ok(bytes) = budget.parse::<u64>() else {
            eprintln!("bad --memory-budget {budget}: a number of bytes\n{usage}");
            std::process::exit(2);
        };
        cache = cache.memory_budget(bytes);
    }
    if let Some(url) = argument("--redis") {
        cache = cache.tiered(url);
    }
    let cache = match cache.build() {
        Ok(cache) => cache,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let upstream: Uri = match upstream.parse() {
        Ok(uri) => uri,
        Err(error) => {
            eprintln!("bad --upstream {upstream}: {error}");
            std::process::exit(2);
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        // Short-lived idle connections: an upstream restart is noticed within seconds.
        .pool_idle_timeout(Duration::from_secs(3))
        .build(connector);
    let layer = CacheLayer::new(cache);
    let purge = match argument("--purge-token") {
        Some(token) if token.is_empty() => {
            eprintln!("bad --purge-token: empty\n{usage}");
            std::process::exit(2);
        }
        Some(token) => Some(layer.purge_with_token(token)),
        None => None,
    };
    let mut app = Router::new()
        .fallback(forward)
        .with_state(Proxy { client, upstream })
        .layer(layer);
    if let Some(purge) = purge {
        // In front of the cache: `PURGE` requests never reach it or the upstream.
        app = app.layer(purge);
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "proxying http://{} -> {}",
        listener.local_addr()?,
        std::env::args()
            .skip_while(|a| a != "--upstream")
            .nth(1)
            .unwrap_or_default()
    );
    axum::serve(listener, app).await
}
