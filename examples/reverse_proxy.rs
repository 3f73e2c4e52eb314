//! A caching reverse proxy in one file: `CacheLayer` in front of a hyper client that forwards
//! every request to one upstream and streams the answer back.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --listen 127.0.0.1:PORT --upstream http://HOST:PORT \
//!     [--memory-budget BYTES] [--purge-token-file PATH] [--redis redis://HOST:PORT] \
//!     [--stats-path PATH]
//! ```
//!
//! `--memory-budget` sets the cache's budget (default 64 MiB, the builder's default);
//! benches/soak.sh checks the process's RSS against it. The layer runs with its default configuration: only what the upstream allows is stored
//! (no invented freshness), conditional requests are answered, concurrent misses coalesce.
//!
//! The proxy sets the forwarding fields itself, as an nginx or Varnish set-up in front of an
//! application does: `X-Forwarded-For` (the connection's peer address), `X-Forwarded-Proto`,
//! `X-Forwarded-Host` (the request's `Host`, validated as the cache validates it for the key)
//! and `Forwarded` (RFC 7239) with the same values. Copies a client sent are dropped, with the
//! URL-rewrite and method-override fields some frameworks obey (`X-Original-URL`,
//! `X-Rewrite-URL`, `X-HTTP-Method-Override`...): none of them is part of the cache key, so an
//! upstream that read a client's copy (a redirect built from `X-Forwarded-Host`) would have
//! its answer stored for everyone. See `set_forwarding_headers`.
//!
//! `--stats-path PATH` (say `/__cache-stats`) answers GETs for that path itself, before the
//! cache, with the cache's entry count and weighted size (the bytes its memory budget counts)
//! as `entries=N weighted_size=BYTES`: benches/stored_size.sh reads it.
//!
//! `--redis URL` shares responses across instances: the cache is tiered (memory in front of
//! that Redis), so a response one instance stored is a hit on every other, a miss reaches the
//! upstream once however many instances ask at the same time (the URL's distributed lock), and
//! a purge through any instance reaches all of them. Instances share what clients ask for under
//! the same host (behind a load balancer they do); run two on different ports and send
//! `Host: shop.example` to both to try it. If Redis is down or slow, each instance serves from
//! the upstream on its own until Redis answers again.
//!
//! A purge token enables purging (`CacheLayer::purge_with_token`): a request with
//! `Authorization: Bearer TOKEN` and method `PURGE` drops that URL's stored responses
//! (`curl -X PURGE -H 'Authorization: Bearer TOKEN' http://127.0.0.1:PORT/products/7`), and one
//! with `Cache-Tag` or `Surrogate-Key` values (any path, method `PURGE`) drops everything
//! tagged with them. With `Fastly-Soft-Purge: 1` as well, the purge is soft: the responses stay,
//! stale, and the next request is served from them while one background request revalidates.
//! A wrong or missing token is answered 403; without a token, `PURGE` requests are forwarded
//! upstream like any other. Give the token as `--purge-token-file PATH` (the file's content,
//! surrounding white space removed) or in the `PURGE_TOKEN` environment variable:
//! `--purge-token TOKEN` works too, but a command line is visible to every local user (`ps`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::Authority;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Request headers no client may set: the forwarding fields (the proxy sets its own) and the
/// URL-rewrite and method-override fields some frameworks obey. None is in the cache key.
const UNTRUSTED: [HeaderName; 13] = [
    header::FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
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

/// The request's authority as the cache keys it: the URI's or the one `Host` line (the two
/// agreeing when both are given), a valid `host[:port]` without user info; else `None`.
fn validated_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let mut lines = headers.get_all(header::HOST).iter();
    let (line, None) = (lines.next(), lines.next()) else {
        return None;
    };
    let host = match (uri.authority(), line) {
        (Some(authority), None) => authority.as_str(),
        (Some(authority), Some(line))
            if line
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            authority.as_str()
        }
        (None, Some(line)) => line.to_str().ok()?,
        _ => return None,
    };
    let valid = host.parse::<Authority>().is_ok() && !host.contains(['@', '"', '\\']);
    valid.then_some(host)
}

/// Replaces the client's forwarding fields with the proxy's own, from the connection's `peer`
/// address and the request's validated `Host`, and drops the rewrite and override fields, as
/// nginx (`proxy_set_header`) or Varnish in front of an application would. A client's copy
/// would reach the upstream without being part of the cache key: an upstream that builds a
/// redirect from `X-Forwarded-Host` would answer one attacker with a redirect stored for
/// everyone.
pub(crate) fn set_forwarding_headers(uri: &Uri, headers: &mut HeaderMap, peer: Option<SocketAddr>) {
    let host = validated_host(uri, headers).and_then(|host| HeaderValue::from_str(host).ok());
    for name in &UNTRUSTED {
        headers.remove(name);
    }
    let mut forwarded = Vec::with_capacity(3);
    if let Some(peer) = peer {
        let ip = peer.ip().to_canonical();
        forwarded.push(match ip {
            IpAddr::V4(ip) => format!("for={ip}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
        });
        if let Ok(value) = HeaderValue::from_str(&ip.to_string()) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    forwarded.push("proto=http".to_owned());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = host {
        // Validated: no quote or backslash, so it needs no escaping in a quoted string.
        let quoted = String::from_utf8_lossy(host.as_bytes());
        forwarded.push(format!("host=\"{quoted}\""));
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Ok(value) = HeaderValue::from_str(&forwarded.join(";")) {
        headers.insert(header::FORWARDED, value);
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    set_forwarding_headers(&parts.uri, &mut parts.headers, peer);
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

/// The proxy: a `CacheLayer` on `cache` in front of `upstream`, with purging when a token is
/// given. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the peer
/// address is what `X-Forwarded-For` says.
pub(crate) fn app(cache: Cache, upstream: Uri, purge_token: Option<String>) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        // Short-lived idle connections: an upstream restart is noticed within seconds.
        .pool_idle_timeout(Duration::from_secs(3))
        .build(connector);
    let layer = CacheLayer::new(cache);
    let purge = purge_token.map(|token| layer.purge_with_token(token));
    let app = Router::new()
        .fallback(forward)
        .with_state(Proxy { client, upstream })
        .layer(layer);
    match purge {
        // In front of the cache: `PURGE` requests never reach it or the upstream.
        Some(purge) => app.layer(purge),
        None => app,
    }
}

/// The purge token from at most one of `--purge-token-file PATH` (`file`), the `PURGE_TOKEN`
/// environment variable (`env`) and `--purge-token TOKEN` (`flag`), surrounding white space
/// removed; `None` when none is given.
pub(crate) fn purge_token(
    flag: Option<String>,
    file: Option<String>,
    env: Option<String>,
) -> Result<Option<String>, String> {
    let token = match (flag, file, env) {
        (None, None, None) => return Ok(None),
        (Some(token), None, None) | (None, None, Some(token)) => token,
        (None, Some(path), None) => std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read --purge-token-file {path}: {error}"))?,
        _ => {
            return Err("give one of --purge-token-file, PURGE_TOKEN and --purge-token".to_owned())
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("the purge token is empty".to_owned());
    }
    Ok(Some(token.to_owned()))
}

/// The cache's entry count and the bytes its memory budget counts, after pending maintenance.
async fn stats(cache: Cache) -> String {
    format!(
        "entries={} weighted_size={}\n",
        cache.entry_count(),
        cache.weighted_size()
    )
}

fn argument(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// `PURGE_TOKEN`, unless unset; an error when it is not Unicode.
fn token_from_env() -> Result<Option<String>, String> {
    match std::env::var("PURGE_TOKEN") {
        Ok(token) => Ok(Some(token)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err("PURGE_TOKEN is not Unicode".to_owned()),
    }
}

/// Prints `message` and the usage, and exits with status 2.
fn fail(message: &str) -> ! {
    eprintln!(
        "{message}\nusage: reverse_proxy --listen 127.0.0.1:PORT --upstream http://HOST:PORT \
         [--memory-budget BYTES] [--purge-token-file PATH] [--redis redis://HOST:PORT] \
         [--stats-path PATH]\n\
         (the purge token may also come from PURGE_TOKEN, or --purge-token TOKEN, which ps shows)"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (Some(listen), Some(upstream)) = (argument("--listen"), argument("--upstream")) else {
        fail("--listen and --upstream are required");
    };
    let mut cache = Cache::builder().name("proxy");
    if let Some(budget) = argument("--memory-budget") {
        let Ok(bytes) = budget.parse::<u64>() else {
            fail(&format!("bad --memory-budget {budget}: a number of bytes"));
        };
        cache = cache.memory_budget(bytes);
    }
    if let Some(url) = argument("--redis") {
        cache = cache.tiered(url);
    }
    let cache = cache
        .build()
        .unwrap_or_else(|error| fail(&error.to_string()));
    let upstream_uri: Uri = upstream
        .parse()
        .unwrap_or_else(|error| fail(&format!("bad --upstream {upstream}: {error}")));
    let token = token_from_env()
        .and_then(|env| {
            purge_token(
                argument("--purge-token"),
                argument("--purge-token-file"),
                env,
            )
        })
        .unwrap_or_else(|error| fail(&error));
    let stats_cache = cache.clone();
    let mut app = app(cache, upstream_uri, token);
    if let Some(path) = argument("--stats-path") {
        // Braces and `*` would be a route pattern's captures.
        if !path.starts_with('/') || path.contains(['{', '}', '*']) {
            fail(&format!(
                "bad --stats-path {path}: a plain path starting with /"
            ));
        }
        app = Router::new()
            .route(&path, get(move || stats(stats_cache.clone())))
            .fallback_service(app);
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("proxying http://{} -> {upstream}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
