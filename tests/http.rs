//! `CacheLayer` end to end: a real axum server on a loopback port, a real HTTP client.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cache_layer::{Cache, CacheLayer, CacheTags, EtagMode};
use http_body_util::{BodyExt, Full};

mod support;

use support::loopback::{start, start_on, Server};

#[tokio::test]
async fn on_a_shared_cache_invalidations_reach_every_instances_responses() {
    let redis = support::redis_server::RedisServer::start();
    let calls = counter();
    let headers: &[(&str, &str)] = &[("cache-control", "max-age=60"), ("cache-tag", "catalog")];
    let shared = || {
        Cache::builder()
            .redis(redis.url())
            .key_prefix("http:")
            .build()
            .unwrap()
    };
    let a = start_on(shared(), counted(&calls, headers), CacheLayer::new).await;
    let b = start_on(shared(), counted(&calls, headers), CacheLayer::new).await;
    // Responses are kept once each instance hears invalidations (its subscriber is up).
    for server in [&a, &b] {
        let mut hit = false;
        for _ in 0..500 {
            if server.get("/r", &[]).await.cache_status().contains("hit") {
                hit = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(hit, "responses are served from the cache");
    }
    let before = calls.load(Ordering::SeqCst);
    a.cache().invalidate("catalog").await;
    let mut reloaded = false;
    for _ in 0..500 {
        b.get("/r", &[]).await;
        if calls.load(Ordering::SeqCst) > before {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        reloaded,
        "instance a's invalidation dropped instance b's stored response"
    );
}

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

/// A write whose client leaves while the write's invalidations are on their way to a stalled
/// Redis: every URL it names is still dropped here at once (the later ones were skipped when
/// the names were invalidated one `await` at a time).
#[tokio::test]
async fn a_write_whose_client_leaves_early_still_invalidates_every_url_it_names() {
    let mut redis = support::redis_server::RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .redis_timeouts(Duration::from_secs(30), Duration::from_secs(1))
        .build()
        .unwrap();
    let posts = counter();
    let counted_posts = Arc::clone(&posts);
    let app = Router::new()
        .route(
            "/a",
            get(|| async { ([("cache-control", "max-age=600")], "a") }).post(move || {
                counted_posts.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::CREATED, [("location", "/b")], "") }
            }),
        )
        .route(
            "/b",
            get(|| async { ([("cache-control", "max-age=600")], "b") }),
        );
    let server = start_on(cache, app, CacheLayer::new).await;
    for path in ["/a", "/b"] {
        let mut hit = false;
        for _ in 0..500 {
            if server.get(path, &[]).await.cache_status().contains("hit") {
                hit = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(hit, "{path} is served from the cache");
    }
    redis.pause();
    let mut client = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let post = format!(
        "POST /a HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        server.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, post.as_bytes())
        .await
        .unwrap();
    while posts.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first invalidation now waits for Redis; the client leaves meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for path in ["/a", "/b"] {
        let reply = server.get(path, &[]).await;
        assert!(
            !reply.cache_status().contains("hit"),
            "{path} outlived the write: {}",
            reply.cache_status()
        );
    }
    redis.resume();
}

/// Counts its drops: held by a response body's stream, it tells when the body was let go.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A cacheable stream that never ends (and stays under `max_body`) is read ahead for the cache
/// only while someone may still get it: once its client has left, for at most the cache's
/// `max_wait` (how long coalesced waiters wait for it); then the inner body is dropped and
/// nothing is stored. The liveness bound turns "read forever" into a failure.
#[tokio::test]
async fn an_endless_stream_is_let_go_once_its_client_has_left() {
    let calls = counter();
    let released = counter();
    let (counted_calls, counted_releases) = (Arc::clone(&calls), Arc::clone(&released));
    let app = Router::new().route(
        "/forever",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            let guard = DropCount(Arc::clone(&counted_releases));
            async move {
                let first = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from("tick"))]);
                let endless = futures_util::StreamExt::map(
                    futures_util::StreamExt::chain(first, futures_util::stream::pending()),
                    move |chunk| {
                        let _held = &guard;
                        chunk
                    },
                );
                (
                    [("cache-control", "max-age=60")],
                    Body::from_stream(endless),
                )
            }
        }),
    );
    let cache = Cache::builder()
        .max_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    let server = start_on(cache, app, CacheLayer::new).await;
    let mut client = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let get = format!("GET /forever HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tokio::io::AsyncWriteExt::write_all(&mut client, get.as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let mut chunk = [0; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut chunk)
            .await
            .unwrap();
        assert!(n > 0, "the stream's first chunk");
        seen.extend_from_slice(&chunk[..n]);
    }
    drop(client);
    let mut let_go = false;
    for _ in 0..3000 {
        if released.load(Ordering::SeqCst) == 1 {
            let_go = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        let_go,
        "the endless body is still read 30 s after its client left"
    );
    // Nothing was stored: the next client is forwarded (its endless body is not read here).
    let next = server
        .client
        .get(format!("http://{}/forever", server.addr).parse().unwrap())
        .await
        .unwrap();
    let status = next.headers()["cache-status"].to_str().unwrap();
    assert!(!status.contains("hit"), "{status}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fresh_responses_are_served_from_the_cache() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let first = server.get("/r", &[]).await;
    assert_eq!(first.text(), "body-1");
    assert_eq!(
        first.cache_status(),
        "cache-layer; fwd=uri-miss; fwd-status=200; stored"
    );
    assert!(first.headers.contains_key(header::ETAG), "generated ETag");
    let second = server.get("/r", &[]).await;
    assert_eq!(second.text(), "body-1");
    assert!(second.cache_status().starts_with("cache-layer; hit; ttl="));
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_eq!(second.header("date"), first.header("date"), "Date is kept");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(server.cache().stats().hits, 1);
}

#[tokio::test]
async fn silent_responses_are_stored_only_with_a_default_ttl() {
    let calls = counter();
    let server = start(counted(&calls, &[]), CacheLayer::new).await;
    server.get("/r", &[]).await;
    let second = server.get("/r", &[]).await;
    assert_eq!(second.text(), "body-2");
    assert!(second.cache_status().contains("detail=no-freshness"));

    let calls = counter();
    let server = start(counted(&calls, &[]), |cache| {
        CacheLayer::new(cache).default_ttl(Duration::from_secs(60))
    })
    .await;
    server.get("/r", &[]).await;
    assert_eq!(server.get("/r", &[]).await.text(), "body-1");
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

#[tokio::test]
async fn no_response_for_one_user_is_served_to_another() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static str)],
    );
    let cases: &[Case] = &[
        (
            "no-store",
            &[("cache-control", "no-store, max-age=60")],
            &[],
        ),
        ("private", &[("cache-control", "private, max-age=60")], &[]),
        (
            "set-cookie",
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
            &[],
        ),
        (
            "authorization",
            &[("cache-control", "max-age=60")],
            &[("authorization", "Bearer secret")],
        ),
        (
            "cookie",
            &[("cache-control", "max-age=60")],
            &[("cookie", "session=abc")],
        ),
    ];
    for (name, response_headers, request_headers) in cases {
        let calls = counter();
        let server = start(per_user(&calls, response_headers), |cache| {
            CacheLayer::new(cache).default_ttl(Duration::from_secs(60))
        })
        .await;
        let mut alice = vec![("x-user", "alice")];
        alice.extend_from_slice(request_headers);
        let mut bob = vec![("x-user", "bob")];
        bob.extend_from_slice(request_headers);
        assert_eq!(server.get("/r", &alice).await.text(), "data of alice");
        let reply = server.get("/r", &bob).await;
        assert_eq!(
            reply.text(),
            "data of bob",
            "{name}: {}",
            reply.cache_status()
        );
        // Nor to an anonymous caller.
        assert_eq!(
            server.get("/r", &[("x-user", "carol")]).await.text(),
            "data of carol",
            "{name}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{name}");
    }
}

#[tokio::test]
async fn explicitly_shared_responses_to_authorized_requests_are_stored() {
    let calls = counter();
    let server = start(
        per_user(&calls, &[("cache-control", "public, max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let auth = [("authorization", "Bearer x"), ("x-user", "alice")];
    server.get("/r", &auth).await;
    assert_eq!(server.get("/r", &auth).await.text(), "data of alice");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn vary_stores_one_variant_per_header_value() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/r",
        get(move |headers: HeaderMap| {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            let lang = headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            async move {
                (
                    [("cache-control", "max-age=60"), ("vary", "Accept-Language")],
                    format!("hello in {lang}"),
                )
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(server.get("/r", &en).await.text(), "hello in en");
    assert_eq!(server.get("/r", &fr).await.text(), "hello in fr");
    let reply = server.get("/r", &en).await;
    assert_eq!(reply.text(), "hello in en");
    assert!(reply.cache_status().contains("hit"));
    assert_eq!(server.get("/r", &fr).await.text(), "hello in fr");
    assert_eq!(server.get("/r", &[]).await.text(), "hello in none");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let miss = server.get("/r", &[("accept-language", "de")]).await;
    assert!(miss.cache_status().contains("fwd=vary-miss"));
}

#[tokio::test]
async fn a_hit_with_a_matching_if_none_match_is_304_without_calling_the_handler() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let first = server.get("/r", &[]).await;
    let etag = first.header("etag").to_owned();
    let reply = server.get("/r", &[("if-none-match", &etag)]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), etag);
    assert_eq!(reply.header("cache-control"), "max-age=60");
    assert!(reply.headers.contains_key(header::DATE));
    assert!(!reply.headers.contains_key(header::CONTENT_TYPE));
    // Weak comparison, lists and `*`.
    let weak = format!("W/{etag}");
    let listed = format!("\"other\", {weak}");
    for value in [weak.as_str(), listed.as_str(), "*"] {
        let reply = server.get("/r", &[("if-none-match", value)]).await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{value}");
    }
    let reply = server.get("/r", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    // If-Modified-Since alone: without Last-Modified, a hit compares with the stored Date
    // (RFC 9111 §4.3.2); it is ignored when If-None-Match is present.
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let reply = server.get("/r", &[("if-modified-since", &future)]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let reply = server.get("/r", &[("if-modified-since", &past)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = server
        .get(
            "/r",
            &[
                ("if-modified-since", &future),
                ("if-none-match", "\"other\""),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn preconditions_are_evaluated_for_uncached_responses_too() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "no-store"), ("etag", "\"v1\"")]),
        CacheLayer::new,
    )
    .await;
    let reply = server.get("/r", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag"), "\"v1\"");
    assert!(reply.body.is_empty());
    let reply = server.get("/r", &[("if-match", "\"v2\"")]).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    let reply = server.get("/r", &[("if-match", "\"v1\"")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "body-3");
}

#[tokio::test]
async fn a_writes_preconditions_are_decided_by_the_application_not_by_a_stored_copy() {
    // The stored copy says "v1"; the application is at "v2" (changed behind the cache, or by
    // another instance): a PUT with `If-Match: "v2"` is valid and must reach it.
    let version = Arc::new(AtomicUsize::new(1));
    let writes = counter();
    let (read, write_calls) = (Arc::clone(&version), Arc::clone(&writes));
    let app = Router::new().route(
        "/doc",
        get(move || {
            let etag = format!("\"v{}\"", read.load(Ordering::SeqCst));
            async move {
                (
                    [("cache-control", "max-age=60".to_owned()), ("etag", etag)],
                    "doc",
                )
            }
        })
        .put(move |headers: HeaderMap| {
            write_calls.fetch_add(1, Ordering::SeqCst);
            let ok = headers.get("if-match").is_some_and(|v| v == "\"v2\"");
            async move {
                if ok {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::PRECONDITION_FAILED
                }
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    server.get("/doc", &[]).await;
    version.store(2, Ordering::SeqCst);
    let reply = server
        .send(Method::PUT, "/doc", &[("if-match", "\"v2\"")])
        .await;
    assert_eq!(
        reply.status,
        StatusCode::NO_CONTENT,
        "a false 412 from the stored copy"
    );
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    let reply = server
        .send(Method::PUT, "/doc", &[("if-match", "\"v0\"")])
        .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(writes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        CacheLayer::new,
    )
    .await;
    // A HEAD miss is forwarded and never stored for GET.
    let head = server.send(Method::HEAD, "/r", &[]).await;
    assert!(head.body.is_empty());
    assert_eq!(server.get("/r", &[]).await.text(), "body-2");
    let head = server.send(Method::HEAD, "/r", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert!(head.cache_status().contains("hit"));
    assert_eq!(head.header("content-length"), "6");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn age_counts_the_upstream_age_and_the_time_stored() {
    let app = Router::new().route(
        "/r",
        get(|| async {
            let date = httpdate::fmt_http_date(SystemTime::now());
            (
                [
                    ("cache-control", "max-age=600".to_owned()),
                    ("age", "100".to_owned()),
                    ("date", date),
                ],
                "aged",
            )
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let first = server.get("/r", &[]).await;
    assert!((100..=101).contains(&first.age()), "{}", first.age());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = server.get("/r", &[]).await;
    assert!(second.cache_status().contains("hit"));
    assert!((102..=103).contains(&second.age()), "{}", second.age());
    // An old Date makes the apparent age count.
    let app = Router::new().route(
        "/r",
        get(|| async {
            let date = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(50));
            (
                [("cache-control", "max-age=600".to_owned()), ("date", date)],
                "old",
            )
        }),
    );
    let server = start(app, CacheLayer::new).await;
    server.get("/r", &[]).await;
    let reply = server.get("/r", &[]).await;
    assert!((50..=51).contains(&reply.age()), "{}", reply.age());
}

#[tokio::test]
async fn bodies_over_the_cap_reach_the_client_and_are_not_stored() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/big",
            get(move || {
                counted_calls.fetch_add(1, Ordering::SeqCst);
                async { ([("cache-control", "max-age=60")], vec![7u8; 64 * 1024]) }
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks = (0..64).map(|_| Ok::<_, Infallible>(Bytes::from(vec![1u8; 1024])));
                (
                    [("cache-control", "max-age=60")],
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        );
    let server = start(app, |cache| CacheLayer::new(cache).max_body(16 * 1024)).await;
    for _ in 0..2 {
        let reply = server.get("/big", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 64 * 1024);
        assert!(reply.cache_status().contains("detail=too-large"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    for _ in 0..2 {
        let reply = server.get("/stream", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 64 * 1024);
        assert!(!reply.cache_status().contains("hit"));
    }
}

#[tokio::test]
async fn an_endless_stream_passes_through() {
    let app = Router::new().route(
        "/events",
        get(|| async {
            let ticks = futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((
                    Ok::<_, Infallible>(Bytes::from(format!("data: {n}\n\n"))),
                    n + 1,
                ))
            });
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(ticks),
            )
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let request = Request::get(format!("http://{}/events", server.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = server.client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut seen = String::new();
    for _ in 0..3 {
        let frame = body.frame().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    assert!(seen.starts_with("data: 0\n\ndata: 1\n\n"), "{seen}");
    drop(body);
}

#[tokio::test]
async fn trailers_pass_through_on_uncached_responses() {
    let app = Router::new().route(
        "/t",
        get(|| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("abc"));
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"payload"))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            (
                [("cache-control", "max-age=60"), ("trailer", "x-checksum")],
                Body::new(body),
            )
        }),
    );
    let server = start(app, CacheLayer::new).await;
    for _ in 0..2 {
        let request = Request::get(format!("http://{}/t", server.addr))
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = server.client.request(request).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers arrive");
        assert_eq!(trailers["x-checksum"], "abc");
        assert_eq!(collected.to_bytes(), "payload");
    }
}

#[tokio::test]
async fn concurrent_misses_on_a_cold_url_call_the_handler_once() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/slow",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                ([("cache-control", "max-age=60")], "slow")
            }
        }),
    );
    let server = Arc::new(start(app, CacheLayer::new).await);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.get("/slow", &[]).await })
        })
        .collect();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "slow");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = server.cache().stats();
    assert_eq!(stats.loads, 1, "{stats:?}");
    assert_eq!(stats.coalesced + stats.hits, 99, "{stats:?}");
}

#[tokio::test]
async fn cookie_setting_responses_are_never_shared_with_coalesced_requests() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/login",
        get(move || {
            let n = counted_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (
                    [
                        ("cache-control", "max-age=60".to_owned()),
                        ("set-cookie", format!("session={n}")),
                    ],
                    format!("session {n}"),
                )
            }
        }),
    );
    let server = Arc::new(start(app, CacheLayer::new).await);
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.get("/login", &[]).await })
        })
        .collect();
    let mut sessions = Vec::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(
            reply.header("set-cookie"),
            format!("session={}", &reply.text()[8..])
        );
        sessions.push(reply.text());
    }
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 10, "every caller got its own session");
}

#[tokio::test]
async fn a_successful_post_invalidates_the_url() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/items",
        get(move || {
            let n = counted_calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { ([("cache-control", "max-age=60")], format!("items v{n}")) }
        })
        .post(|| async { StatusCode::CREATED }),
    );
    let server = start(app, CacheLayer::new).await;
    server.get("/items", &[]).await;
    assert_eq!(server.get("/items", &[]).await.text(), "items v1");
    let created = server.send(Method::POST, "/items", &[]).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(server.get("/items", &[]).await.text(), "items v2");
}

#[tokio::test]
async fn cache_tags_are_stripped_and_invalidate_responses() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/users/7",
            get(move || {
                let n = counted_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [
                            ("cache-control", "max-age=60"),
                            ("cache-tag", "user:7, users"),
                        ],
                        format!("user 7 v{n}"),
                    )
                }
            }),
        )
        .route(
            "/teams",
            get(|| async {
                let mut response = Response::new(Body::from("teams"));
                response
                    .headers_mut()
                    .insert("cache-control", HeaderValue::from_static("max-age=60"));
                response
                    .extensions_mut()
                    .insert(CacheTags(vec!["users".into()]));
                response
            }),
        );
    let server = start(app, CacheLayer::new).await;
    let first = server.get("/users/7", &[]).await;
    assert!(!first.headers.contains_key("cache-tag"));
    assert_eq!(server.get("/users/7", &[]).await.text(), "user 7 v1");
    server.cache().invalidate("user:7").await;
    assert_eq!(server.get("/users/7", &[]).await.text(), "user 7 v2");
    server.get("/teams", &[]).await;
    assert!(server
        .get("/teams", &[])
        .await
        .cache_status()
        .contains("hit"));
    server.cache().invalidate("users").await;
    assert_eq!(server.get("/users/7", &[]).await.text(), "user 7 v3");
    assert!(!server
        .get("/teams", &[])
        .await
        .cache_status()
        .contains("hit"));
}

#[tokio::test]
async fn request_cache_control_is_honoured() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let miss = server
        .get("/r", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(miss.status, StatusCode::GATEWAY_TIMEOUT);
    server.get("/r", &[]).await;
    let hit = server
        .get("/r", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(hit.text(), "body-1");
    let forced = server.get("/r", &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.text(), "body-2");
    assert!(forced.cache_status().contains("fwd=request"));
    let fresh_enough = server.get("/r", &[("cache-control", "max-age=30")]).await;
    assert_eq!(fresh_enough.text(), "body-2");
    let demanding = server
        .get("/r", &[("cache-control", "min-fresh=120")])
        .await;
    assert_eq!(demanding.text(), "body-3");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let calls = counter();
    let server = start(
        counted(
            &calls,
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
        ),
        CacheLayer::new,
    )
    .await;
    assert_eq!(server.get("/r", &[]).await.text(), "body-1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = server.get("/r", &[]).await;
    assert_eq!(stale.text(), "body-1");
    assert!(stale
        .cache_status()
        .contains("detail=stale-while-revalidate"));
    // The background refresh lands soon; until then the stale copy is served, and no second
    // refresh starts.
    let mut refreshed = server.get("/r", &[]).await;
    for _ in 0..100 {
        if refreshed.text() == "body-2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        refreshed = server.get("/r", &[]).await;
    }
    assert_eq!(refreshed.text(), "body-2");
    assert!(refreshed.cache_status().contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_handler_fails() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/r",
        get(move || {
            let n = counted_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (
                        StatusCode::OK,
                        [("cache-control", "max-age=1, stale-if-error=30")],
                        "good",
                    )
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("cache-control", "no-store")],
                        "down",
                    )
                }
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    assert_eq!(server.get("/r", &[]).await.text(), "good");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = server.get("/r", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "good");
    assert!(reply.cache_status().contains("detail=stale-if-error"));
    assert!(reply.cache_status().contains("fwd-status=503"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_responses_are_revalidated_and_a_304_refreshes_them() {
    let full = counter();
    let not_modified = counter();
    let (f, nm) = (Arc::clone(&full), Arc::clone(&not_modified));
    let app = Router::new().route(
        "/r",
        get(move |headers: HeaderMap| {
            let matched = headers.get("if-none-match").is_some_and(|v| v == "\"v1\"");
            if matched {
                nm.fetch_add(1, Ordering::SeqCst);
            } else {
                f.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let cc = [("cache-control", "max-age=1"), ("etag", "\"v1\"")];
                if matched {
                    (StatusCode::NOT_MODIFIED, cc, "")
                } else {
                    (StatusCode::OK, cc, "the body")
                }
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    server.get("/r", &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = server.get("/r", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "the body");
    assert!(
        reply
            .cache_status()
            .contains("fwd=stale; fwd-status=304; stored"),
        "{}",
        reply.cache_status()
    );
    assert_eq!(reply.age(), 0);
    let hit = server.get("/r", &[]).await;
    assert!(hit.cache_status().contains("hit"));
    assert_eq!(
        (
            full.load(Ordering::SeqCst),
            not_modified.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn a_key_fn_can_drop_the_query_and_bypass_paths() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        |cache| {
            CacheLayer::new(cache).key_fn(|parts| {
                let path = parts.uri.path();
                (path != "/r" || parts.uri.query() != Some("nocache"))
                    .then(|| format!("page:{path}"))
            })
        },
    )
    .await;
    assert_eq!(server.get("/r?a=1", &[]).await.text(), "body-1");
    assert_eq!(server.get("/r?b=2", &[]).await.text(), "body-1");
    let bypassed = server.get("/r?nocache", &[]).await;
    assert_eq!(bypassed.text(), "body-2");
    assert_eq!(bypassed.cache_status(), "cache-layer; fwd=bypass");
    server.cache().invalidate("page:/r").await;
    assert_eq!(server.get("/r", &[]).await.text(), "body-3");
}

#[tokio::test]
async fn a_write_invalidates_its_same_origin_location() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/items/9",
            get(move || {
                let n = counted_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { ([("cache-control", "max-age=60")], format!("item v{n}")) }
            }),
        )
        .route(
            "/items",
            axum::routing::post(|| async { (StatusCode::CREATED, [("location", "/items/9")], "") }),
        )
        .route(
            "/elsewhere",
            axum::routing::post(|| async {
                (
                    StatusCode::SEE_OTHER,
                    [("location", "http://other.example/items/9")],
                    "",
                )
            }),
        );
    let server = start(app, CacheLayer::new).await;
    server.get("/items/9", &[]).await;
    server.send(Method::POST, "/elsewhere", &[]).await;
    assert_eq!(server.get("/items/9", &[]).await.text(), "item v1");
    server.send(Method::POST, "/items", &[]).await;
    assert_eq!(server.get("/items/9", &[]).await.text(), "item v2");
}

#[tokio::test]
async fn only_the_newest_variants_are_kept() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/r",
        get(move |headers: HeaderMap| {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            let lang = headers["accept-language"].to_str().unwrap().to_owned();
            async move {
                (
                    [("cache-control", "max-age=60"), ("vary", "accept-language")],
                    lang,
                )
            }
        }),
    );
    let server = start(app, |cache| {
        CacheLayer::new(cache).max_variants(NonZeroUsize::new(2).unwrap())
    })
    .await;
    for lang in ["en", "fr", "de"] {
        server.get("/r", &[("accept-language", lang)]).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let de = server.get("/r", &[("accept-language", "de")]).await;
    assert!(de.cache_status().contains("hit"));
    let en = server.get("/r", &[("accept-language", "en")]).await;
    assert!(
        en.cache_status().contains("fwd=vary-miss"),
        "{}",
        en.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn requests_for_uncacheable_urls_are_not_serialised() {
    let running = counter();
    let most = counter();
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let app = Router::new().route(
        "/live",
        get(move || {
            let (r, m) = (Arc::clone(&r), Arc::clone(&m));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                ([("cache-control", "no-store")], "live")
            }
        }),
    );
    let server = Arc::new(start(app, CacheLayer::new).await);
    // The first response teaches the layer that the URL is not cacheable.
    server.get("/live", &[]).await;
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.get("/live", &[]).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().text(), "live");
    }
    assert!(most.load(Ordering::SeqCst) > 1, "requests ran concurrently");
}

#[tokio::test]
async fn layer_defaults_give_stale_windows_to_responses_without_them() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/r",
        get(move || {
            let n = counted_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (StatusCode::OK, [("cache-control", "max-age=1")], "good")
                } else {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("cache-control", "no-store")],
                        "bad",
                    )
                }
            }
        }),
    );
    let server = start(app, |cache| {
        CacheLayer::new(cache).stale_if_error(Duration::from_secs(60))
    })
    .await;
    server.get("/r", &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(server.get("/r", &[]).await.text(), "good");
}

#[tokio::test]
async fn streamed_bodies_under_the_cap_are_stored_once_complete() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/stream",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            async {
                let chunks = (0..4).map(|i| Ok::<_, Infallible>(Bytes::from(format!("part {i};"))));
                (
                    [("cache-control", "max-age=60")],
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let first = server.get("/stream", &[]).await;
    assert_eq!(first.text(), "part 0;part 1;part 2;part 3;");
    assert!(first.cache_status().contains("fwd=uri-miss"));
    let second = server.get("/stream", &[]).await;
    assert_eq!(second.text(), first.text());
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(second.header("content-length"), "28");
    assert!(second.headers.contains_key(header::ETAG));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn max_stale_accepts_stale_responses_unless_they_must_revalidate() {
    type Case = (&'static [(&'static str, &'static str)], &'static str);
    let cases: [Case; 2] = [
        (&[("cache-control", "max-age=1")], "body-1"),
        (&[("cache-control", "max-age=1, must-revalidate")], "body-2"),
    ];
    for (headers, expected) in cases {
        let calls = counter();
        let server = start(counted(&calls, headers), CacheLayer::new).await;
        server.get("/r", &[]).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let reply = server.get("/r", &[("cache-control", "max-stale=60")]).await;
        assert_eq!(reply.text(), expected, "{headers:?}");
    }
}

#[tokio::test]
async fn a_request_no_store_is_not_stored_and_does_not_stop_caching() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let reply = server.get("/r", &[("cache-control", "no-store")]).await;
    assert!(reply.cache_status().contains("detail=no-store"));
    server.get("/r", &[]).await;
    assert_eq!(server.get("/r", &[]).await.text(), "body-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn uncached_responses_get_a_generated_etag_and_304s() {
    let calls = counter();
    let server = start(
        per_user(
            &calls,
            &[("cache-control", "private"), ("set-cookie", "seen=1")],
        ),
        CacheLayer::new,
    )
    .await;
    let first = server.get("/r", &[("x-user", "ada")]).await;
    let etag = first.header("etag").to_owned();
    assert!(etag.starts_with('"'), "a strong generated ETag: {etag:?}");
    let again = server
        .get("/r", &[("x-user", "ada"), ("if-none-match", &etag)])
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        again.header("set-cookie"),
        "seen=1",
        "the cookie survives the 304"
    );
    let other = server
        .get("/r", &[("x-user", "bob"), ("if-none-match", &etag)])
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.text(), "data of bob");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "never served from the cache"
    );
}

#[tokio::test]
async fn no_cache_responses_are_stored_and_revalidated_on_every_use() {
    let full = counter();
    let not_modified = counter();
    let (f, nm) = (Arc::clone(&full), Arc::clone(&not_modified));
    let app = Router::new().route(
        "/r",
        get(move |headers: HeaderMap| {
            let matched = headers.get("if-none-match").is_some_and(|v| v == "\"v7\"");
            let counter = if matched { &nm } else { &f };
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let cc = [("cache-control", "no-cache"), ("etag", "\"v7\"")];
                if matched {
                    (StatusCode::NOT_MODIFIED, cc, "")
                } else {
                    (StatusCode::OK, cc, "validated body")
                }
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    assert_eq!(server.get("/r", &[]).await.text(), "validated body");
    for _ in 0..3 {
        let reply = server.get("/r", &[]).await;
        assert_eq!(reply.text(), "validated body");
        assert!(
            reply.cache_status().contains("fwd-status=304"),
            "{}",
            reply.cache_status()
        );
    }
    // A client that has the body gets a 304 from the validated response.
    let reply = server.get("/r", &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        (
            full.load(Ordering::SeqCst),
            not_modified.load(Ordering::SeqCst)
        ),
        (1, 4)
    );
}

#[tokio::test]
async fn upgrade_requests_bypass_the_cache() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let reply = server
        .get("/r", &[("upgrade", "websocket"), ("connection", "upgrade")])
        .await;
    assert_eq!(reply.cache_status(), "cache-layer; fwd=bypass");
    assert_eq!(server.get("/r", &[]).await.text(), "body-2");
}

#[tokio::test]
async fn etag_modes_and_ignoring_client_revalidation() {
    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        |cache| {
            CacheLayer::new(cache)
                .etag(EtagMode::Weak)
                .request_cache_control(false)
        },
    )
    .await;
    let first = server.get("/r", &[]).await;
    assert!(
        first.header("etag").starts_with("W/\""),
        "{}",
        first.header("etag")
    );
    let forced = server.get("/r", &[("cache-control", "no-cache")]).await;
    assert_eq!(forced.text(), "body-1", "client no-cache is ignored");
    assert!(forced.cache_status().contains("hit"));

    let calls = counter();
    let server = start(
        counted(&calls, &[("cache-control", "max-age=60")]),
        |cache| CacheLayer::new(cache).etag(EtagMode::Off),
    )
    .await;
    assert!(!server
        .get("/r", &[])
        .await
        .headers
        .contains_key(header::ETAG));
    assert!(!server
        .get("/r", &[])
        .await
        .headers
        .contains_key(header::ETAG));
}

#[tokio::test]
async fn waiters_receive_a_streamed_response_once_it_is_complete() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/stream",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            async {
                let chunks = futures_util::stream::unfold(0u8, |i| async move {
                    if i == 5 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    Some((
                        Ok::<_, Infallible>(Bytes::from(format!("chunk {i};"))),
                        i + 1,
                    ))
                });
                ([("cache-control", "max-age=60")], Body::from_stream(chunks))
            }
        }),
    );
    let server = Arc::new(start(app, CacheLayer::new).await);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.get("/stream", &[]).await })
        })
        .collect();
    for request in requests {
        assert_eq!(
            request.await.unwrap().text(),
            "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_inner_service_error_is_answered_with_the_stale_response() {
    use tower::{Layer, ServiceExt};

    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let service = tower::service_fn(move |_request: Request<Full<Bytes>>| {
        let n = counted_calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                let response = Response::builder()
                    .header("cache-control", "max-age=1, stale-if-error=60")
                    .body(Full::new(Bytes::from("first")))
                    .unwrap();
                Ok(response)
            } else {
                Err(std::io::Error::other("upstream down"))
            }
        }
    });
    let cache = Cache::builder().build().unwrap();
    let service = CacheLayer::new(cache).layer(service);
    let request = || {
        Request::get("http://example.com/r")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let first = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "first"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = service
        .clone()
        .oneshot(request())
        .await
        .expect("the stale response");
    assert!(stale.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("detail=stale-if-error"));
    assert_eq!(
        stale.into_body().collect().await.unwrap().to_bytes(),
        "first"
    );
    // Without a stale response to fall back on, the inner error reaches the caller unchanged.
    let other = Request::get("http://example.com/other")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let error = service.oneshot(other).await.expect_err("the inner error");
    assert_eq!(error.to_string(), "upstream down");
}

#[tokio::test]
async fn connection_fields_are_not_replayed_from_the_cache() {
    let calls = counter();
    let server = start(
        counted(
            &calls,
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-hop"),
                ("x-hop", "per-connection"),
                ("x-kept", "yes"),
            ],
        ),
        CacheLayer::new,
    )
    .await;
    server.get("/r", &[]).await;
    let hit = server.get("/r", &[]).await;
    assert!(hit.cache_status().contains("hit"));
    assert_eq!(hit.header("x-kept"), "yes");
    assert!(!hit.headers.contains_key("x-hop"));
}

#[tokio::test]
async fn hits_are_served_while_the_inner_service_is_at_capacity() {
    use tower::limit::ConcurrencyLimitLayer;
    use tower::Layer;

    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (entered_in, release_in) = (Arc::clone(&entered), Arc::clone(&release));
    let app = Router::new()
        .route(
            "/r",
            get(|| async { ([("cache-control", "max-age=60")], "stored") }),
        )
        .route(
            "/slow",
            get(move || async move {
                entered_in.notify_one();
                release_in.notified().await;
                "slow"
            }),
        )
        .route("/other", get(|| async { "other" }));
    // One request at a time reaches the application. The cache reports its load times to a
    // recorder of this test's own.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.25])
        .unwrap()
        .build_recorder();
    let metrics = recorder.handle();
    let cache = metrics::with_local_recorder(&recorder, || {
        Cache::builder().name("capacity").build().unwrap()
    });
    let service = CacheLayer::new(cache.clone()).layer(ConcurrencyLimitLayer::new(1).layer(app));
    let service = tower::ServiceExt::<Request<Body>>::map_response(service, |response| {
        response.map(Body::new)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::ServiceExt::<Request<Body>>::into_make_service(service),
        )
        .await
        .unwrap()
    });
    let server = Arc::new(Server::at(addr, Some(cache)));
    assert!(server
        .get("/r", &[])
        .await
        .cache_status()
        .contains("stored"));

    // `/slow` holds the only slot.
    let slow = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.get("/slow", &[]).await }
    });
    entered.notified().await;
    let hit = tokio::time::timeout(Duration::from_secs(10), server.get("/r", &[]))
        .await
        .expect("a hit does not wait for the inner service's capacity");
    assert_eq!(hit.text(), "stored");
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());

    // A request the cache cannot answer waits for the slot (the inner service's readiness is
    // honoured: `ConcurrencyLimit` panics on a call it did not make ready).
    let other = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.get("/other", &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !other.is_finished(),
        "a miss went past the concurrency limit"
    );
    release.notify_one();
    assert_eq!(slow.await.unwrap().text(), "slow");
    let other = tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("the miss proceeds once the slot is free")
        .unwrap();
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.text(), "other");
    // Three loads: `/r`, `/slow` (held for 300 ms and more) and `/other`, whose wait for the
    // slot is not load time: two loads took under 250 ms.
    let text = metrics.render();
    let line = |prefix: &str| {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(line("cache_load_seconds_count{cache=\"capacity\"}"), "3");
    assert_eq!(
        line("cache_load_seconds_bucket{cache=\"capacity\",le=\"0.25\"}"),
        "2"
    );
}
