//! `CacheLayer` under hostile clients and unusual origins, end to end: a real axum server on a
//! loopback port. Each test is a leak, a poisoning or a panic that a shared cache must make
//! impossible: one client's session replayed to others through a revalidation, a `Host` that
//! forges another URL's key, a far-future date.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer};

mod support;
use support::loopback::{self, start, Reply, Server};

// The reverse proxy example, compiled in as it is: its forwarding fields are what a test
// attacks. Its command line is not used here.
#[allow(dead_code)]
#[path = "../examples/reverse_proxy.rs"]
mod reverse_proxy;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// An origin with a sliding session: `200` + `ETag: "v1"` with `cache_control`; a request
/// carrying `If-None-Match: "v1"` gets a `304` that echoes the request's cookie in
/// `Set-Cookie`, with a `Cache-Tag` and a field named in `Connection`. Counts the 304s.
fn sliding_session(cache_control: &'static str, not_modified: &Arc<AtomicUsize>) -> Router {
    let not_modified = Arc::clone(not_modified);
    Router::new().route(
        "/page",
        get(move |headers: HeaderMap| {
            let revalidation = headers.get("if-none-match").is_some_and(|v| v == "\"v1\"");
            if revalidation {
                not_modified.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let mut response =
                    Response::new(Body::from(if revalidation { "" } else { "shared page" }));
                let out = response.headers_mut();
                out.insert("cache-control", HeaderValue::from_static(cache_control));
                out.insert("etag", HeaderValue::from_static("\"v1\""));
                if revalidation {
                    *response.status_mut() = StatusCode::NOT_MODIFIED;
                    let out = response.headers_mut();
                    if let Some(cookie) = headers.get("cookie") {
                        out.insert("set-cookie", cookie.clone());
                    }
                    out.insert("cache-tag", HeaderValue::from_static("secret-tag"));
                    out.insert("connection", HeaderValue::from_static("x-hop"));
                    out.insert("x-hop", HeaderValue::from_static("one connection only"));
                }
                response
            }
        }),
    )
}

/// What no client but the one it was meant for may see.
fn assert_clean(reply: &Reply, what: &str) {
    assert!(
        !reply.headers.contains_key("set-cookie"),
        "{what}: another client's Set-Cookie replayed: {:?}",
        reply.headers
    );
    assert!(
        !reply.headers.contains_key("cache-tag"),
        "{what}: Cache-Tag"
    );
    assert!(
        !reply.headers.contains_key("x-hop"),
        "{what}: hop-by-hop field"
    );
}

#[tokio::test]
async fn a_304_revalidation_never_stores_the_revalidating_clients_session() {
    let not_modified = counter();
    let server = start(sliding_session("max-age=1", &not_modified), CacheLayer::new).await;
    assert_eq!(server.get("/page", &[]).await.text(), "shared page");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let alice = server.get("/page", &[("cookie", "sid=alice")]).await;
    assert_eq!(not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(alice.text(), "shared page");
    // The client that triggered the revalidation keeps its own session.
    assert_eq!(alice.header("set-cookie"), "sid=alice");
    assert!(!alice.headers.contains_key("cache-tag"), "Cache-Tag");
    for _ in 0..3 {
        let anonymous = server.get("/page", &[]).await;
        assert_eq!(anonymous.text(), "shared page");
        assert_clean(&anonymous, "after alice's revalidation");
    }
}

#[tokio::test]
async fn a_background_revalidation_never_stores_the_triggering_clients_session() {
    let not_modified = counter();
    let server = start(
        sliding_session("max-age=1, stale-while-revalidate=60", &not_modified),
        CacheLayer::new,
    )
    .await;
    assert_eq!(server.get("/page", &[]).await.text(), "shared page");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let alice = server.get("/page", &[("cookie", "sid=alice")]).await;
    assert!(
        alice.cache_status().contains("stale-while-revalidate"),
        "{}",
        alice.cache_status()
    );
    for _ in 0..200 {
        if not_modified.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(not_modified.load(Ordering::SeqCst), 1, "background refresh");
    // The refresh stores (or declines to store) right after its 304 arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let anonymous = server.get("/page", &[]).await;
        assert_eq!(anonymous.text(), "shared page");
        assert_clean(&anonymous, "after alice's background revalidation");
    }
}

/// An origin whose `/page` answers `200` + `ETag: "v1"` + `max-age=1` ("old"), and answers a
/// revalidation with a 304 carrying `not_modified` headers. Counts every call.
fn revalidated_with(
    not_modified: &'static [(&'static str, &'static str)],
    calls: &Arc<AtomicUsize>,
) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/page",
        get(move |headers: HeaderMap| {
            calls.fetch_add(1, Ordering::SeqCst);
            let revalidation = headers.contains_key("if-none-match");
            async move {
                let mut response = Response::new(Body::from(if revalidation { "" } else { "old" }));
                if revalidation {
                    *response.status_mut() = StatusCode::NOT_MODIFIED;
                    for (name, value) in not_modified {
                        response
                            .headers_mut()
                            .append(*name, HeaderValue::from_static(value));
                    }
                } else {
                    let out = response.headers_mut();
                    out.insert("cache-control", HeaderValue::from_static("max-age=1"));
                    out.insert("etag", HeaderValue::from_static("\"v1\""));
                }
                response
            }
        }),
    )
}

#[tokio::test]
async fn a_304_that_says_no_store_is_not_stored_and_drops_the_old_copy() {
    let calls = counter();
    let server = start(
        revalidated_with(&[("cache-control", "no-store"), ("etag", "\"v1\"")], &calls),
        CacheLayer::new,
    )
    .await;
    server.get("/page", &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = server.get("/page", &[]).await;
    assert_eq!(revalidated.text(), "old");
    assert!(
        !revalidated.cache_status().contains("stored"),
        "{}",
        revalidated.cache_status()
    );
    let next = server.get("/page", &[]).await;
    assert!(
        !next.cache_status().contains("hit"),
        "{}",
        next.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_304_for_another_representation_does_not_refresh_the_stored_one() {
    let calls = counter();
    let server = start(
        revalidated_with(
            &[("cache-control", "max-age=600"), ("etag", "\"v2\"")],
            &calls,
        ),
        CacheLayer::new,
    )
    .await;
    server.get("/page", &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = server.get("/page", &[]).await;
    assert_ne!(revalidated.header("etag"), "\"v2\"");
    // "v1" was not refreshed for ten minutes by a 304 about "v2": the next request asks again.
    let next = server.get("/page", &[]).await;
    assert!(
        !next.cache_status().contains("hit"),
        "{}",
        next.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A response stored without `Vary`, revalidated for Alice (`Cookie: sid=alice`) by a 304 that
/// now says `Vary: Cookie` and carries her own field: the update would select by cookie, but the
/// stored copy was kept under the URL alone, so it must not become everyone's answer.
#[tokio::test]
async fn a_304_that_adds_vary_never_serves_the_revalidating_clients_fields_to_others() {
    let calls = counter();
    let server = start(
        revalidated_with(
            &[
                ("cache-control", "max-age=600"),
                ("etag", "\"v1\""),
                ("vary", "Cookie"),
                ("x-user", "alice"),
            ],
            &calls,
        ),
        CacheLayer::new,
    )
    .await;
    assert_eq!(server.get("/page", &[]).await.text(), "old");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let alice = server.get("/page", &[("cookie", "sid=alice")]).await;
    assert_eq!(alice.text(), "old");
    assert_eq!(
        alice.header("x-user"),
        "alice",
        "Alice gets her 304's update"
    );
    for who in [&[][..], &[("cookie", "sid=bob")][..]] {
        let other = server.get("/page", who).await;
        assert_eq!(other.text(), "old");
        assert_eq!(
            other.header("x-user"),
            "",
            "{who:?} was served Alice's field: {}",
            other.cache_status()
        );
    }
}

#[tokio::test]
async fn far_future_and_huge_values_neither_panic_nor_stop_caching() {
    let calls = counter();
    let c = Arc::clone(&calls);
    let app = Router::new().route(
        "/far",
        get(move |headers: HeaderMap| {
            c.fetch_add(1, Ordering::SeqCst);
            let variant = headers
                .get("x-case")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            async move {
                let mut response = Response::new(Body::from("far"));
                let out = response.headers_mut();
                out.insert("vary", HeaderValue::from_static("x-case"));
                let fields: &[(&str, &str)] = match variant.as_str() {
                    "expires" => &[("expires", "Fri, 31 Dec 9999 23:59:59 GMT")],
                    "max-age" => &[("cache-control", "max-age=99999999999999999999999")],
                    "s-maxage" => &[("cache-control", "s-maxage=18446744073709551615")],
                    "age" => &[
                        (
                            "cache-control",
                            "max-age=60, stale-while-revalidate=99999999999999",
                        ),
                        ("age", "99999999999999999999999"),
                    ],
                    _ => &[(
                        "cache-control",
                        "max-age=60, stale-if-error=18446744073709551616",
                    )],
                };
                for (name, value) in fields {
                    out.append(*name, HeaderValue::from_static(value));
                }
                out.insert(
                    "last-modified",
                    HeaderValue::from_static("Mon, 01 Jan 0001 00:00:00 GMT"),
                );
                response
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    for case in ["expires", "max-age", "s-maxage", "age", "sie"] {
        let before = calls.load(Ordering::SeqCst);
        for _ in 0..3 {
            let reply = server.get("/far", &[("x-case", case)]).await;
            assert_eq!(reply.status, StatusCode::OK, "{case}");
            assert_eq!(reply.text(), "far", "{case}");
        }
        // Stored once and then hit; a huge Age makes a response stale at once instead.
        if case != "age" {
            assert_eq!(calls.load(Ordering::SeqCst), before + 1, "{case}");
        }
    }
}

#[tokio::test]
async fn if_range_travels_with_range() {
    // The origin's representation is "new"; a client holding part of "old" asks for the rest
    // with If-Range: it must get the whole new representation, never a piece of it.
    let app = Router::new().route(
        "/file",
        get(|headers: HeaderMap| async move {
            let range = headers.contains_key("range");
            let current = headers.get("if-range").is_none_or(|v| v == "\"new\"");
            let mut response = if range && current {
                let mut partial = Response::new(Body::from("ne"));
                *partial.status_mut() = StatusCode::PARTIAL_CONTENT;
                partial
                    .headers_mut()
                    .insert("content-range", HeaderValue::from_static("bytes 0-1/10"));
                partial
            } else {
                Response::new(Body::from("new-whole!"))
            };
            let out = response.headers_mut();
            out.insert("etag", HeaderValue::from_static("\"new\""));
            out.insert("cache-control", HeaderValue::from_static("max-age=60"));
            response
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let outdated = server
        .get("/file", &[("range", "bytes=0-1"), ("if-range", "\"old\"")])
        .await;
    assert_eq!(outdated.status, StatusCode::OK, "{:?}", outdated.headers);
    assert_eq!(outdated.text(), "new-whole!");
    let current = server
        .get("/file", &[("range", "bytes=0-1"), ("if-range", "\"new\"")])
        .await;
    assert!(
        current.status == StatusCode::PARTIAL_CONTENT && current.text() == "ne"
            || current.status == StatusCode::OK && current.text() == "new-whole!",
        "{} {}",
        current.status,
        current.text()
    );
}

/// An origin answering `/r` with `body-<n>` (n counts calls) and the given headers.
fn counted(calls: &Arc<AtomicUsize>, headers: &'static [(&'static str, &'static str)]) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/r",
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut response = Response::new(Body::from(format!("body-{n}")));
                for (name, value) in headers {
                    response
                        .headers_mut()
                        .append(*name, HeaderValue::from_static(value));
                }
                response
            }
        }),
    )
}

#[tokio::test]
async fn s_maxage_is_never_served_stale() {
    let calls = counter();
    let server = start(
        counted(
            &calls,
            &[("cache-control", "s-maxage=1, stale-while-revalidate=60")],
        ),
        |cache| {
            CacheLayer::new(cache)
                .stale_while_revalidate(std::time::Duration::from_secs(60))
                .stale_if_error(std::time::Duration::from_secs(60))
        },
    )
    .await;
    assert_eq!(server.get("/r", &[]).await.text(), "body-1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = server.get("/r", &[]).await;
    assert_eq!(after.text(), "body-2", "{}", after.cache_status());
}

#[tokio::test]
async fn a_malformed_vary_member_makes_a_response_unstorable() {
    let calls = counter();
    let server = start(
        counted(
            &calls,
            &[("cache-control", "max-age=60"), ("vary", "accept, x y")],
        ),
        CacheLayer::new,
    )
    .await;
    let first = server.get("/r", &[]).await;
    assert!(
        first.cache_status().contains("detail=vary-invalid"),
        "{}",
        first.cache_status()
    );
    assert_eq!(server.get("/r", &[("accept", "a")]).await.text(), "body-2");
}

#[tokio::test]
async fn requests_with_new_header_values_cannot_push_out_the_variant_in_use() {
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
        CacheLayer::new(cache).max_variants(std::num::NonZeroUsize::new(2).unwrap())
    })
    .await;
    server.get("/r", &[("accept-language", "en")]).await;
    // An attacker's new values, each stored, between the popular variant's hits.
    for (n, lang) in ["x1", "x2", "x3", "x4", "x5"].into_iter().enumerate() {
        server.get("/r", &[("accept-language", lang)]).await;
        let en = server.get("/r", &[("accept-language", "en")]).await;
        assert!(
            en.cache_status().contains("hit"),
            "{n}: {}",
            en.cache_status()
        );
        assert_eq!(en.text(), "en");
        assert_eq!(calls.load(Ordering::SeqCst), n + 2);
    }
    // The least recently used went: the attacker's older values.
    let x4 = server.get("/r", &[("accept-language", "x4")]).await;
    assert!(
        x4.cache_status().contains("fwd=vary-miss"),
        "{}",
        x4.cache_status()
    );
}

/// An origin that builds its redirect from `X-Forwarded-Host` (else `Host`), as frameworks
/// behind a proxy do, and lets it be stored for a minute; keeps the request headers it saw.
fn redirecting_origin(seen: &Arc<Mutex<Vec<HeaderMap>>>) -> Router {
    let seen = Arc::clone(seen);
    Router::new().route(
        "/login",
        get(move |headers: HeaderMap| {
            let host = headers
                .get("x-forwarded-host")
                .or(headers.get("host"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown")
                .to_owned();
            seen.lock().unwrap().push(headers);
            async move {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
                let out = response.headers_mut();
                let location = format!("https://{host}/login/");
                out.insert("location", HeaderValue::from_str(&location).unwrap());
                out.insert("cache-control", HeaderValue::from_static("max-age=60"));
                response
            }
        }),
    )
}

/// What an attacker adds to a request for `shop.example`: forwarding fields and the rewrite
/// and override fields some frameworks obey.
const ATTACK: [(&str, &str); 8] = [
    ("host", "shop.example"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-for", "203.0.113.66"),
    ("x-forwarded-proto", "https"),
    ("forwarded", "for=203.0.113.66;host=evil.example"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-http-method-override", "DELETE"),
];

#[tokio::test]
async fn the_reverse_proxy_sets_the_forwarding_fields_and_a_client_cannot_poison_a_redirect() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let origin = loopback::serve(redirecting_origin(&seen)).await;
    let upstream = format!("http://{}", origin.addr).parse().unwrap();
    let cache = Cache::builder().jitter(0.0).build().unwrap();
    let app = reverse_proxy::app(cache, upstream, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    let proxy = Server::at(addr, None);

    let attack = proxy.get("/login", &ATTACK).await;
    assert_eq!(attack.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(attack.header("location"), "https://shop.example/login/");
    let clean = proxy.get("/login", &[("host", "shop.example")]).await;
    assert!(
        clean.cache_status().contains("hit"),
        "{}",
        clean.cache_status()
    );
    assert_eq!(clean.header("location"), "https://shop.example/login/");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "the clean request was a hit");
    let upstream_saw = |name: &str| seen[0].get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        upstream_saw("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(upstream_saw("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        upstream_saw("x-forwarded-host").as_deref(),
        Some("shop.example")
    );
    assert_eq!(
        upstream_saw("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=\"shop.example\"")
    );
    for (name, _) in &ATTACK[5..] {
        assert_eq!(upstream_saw(name), None, "{name} reached the upstream");
    }
}

#[tokio::test]
async fn the_reverse_proxy_forwards_no_host_it_cannot_validate() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let origin = loopback::serve(redirecting_origin(&seen)).await;
    let upstream = format!("http://{}", origin.addr).parse().unwrap();
    let cache = Cache::builder().jitter(0.0).build().unwrap();
    let proxy = loopback::serve(reverse_proxy::app(cache, upstream, None)).await;
    // Without connect info: no peer address to forward.
    proxy
        .get("/login", &[("host", "a@evil.example"), ATTACK[1]])
        .await;
    let seen = seen.lock().unwrap();
    let forwarded: Vec<_> = ["x-forwarded-host", "x-forwarded-for", "forwarded"]
        .iter()
        .map(|name| seen[0].get(*name).map(|v| v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(forwarded, [None, None, Some("proto=http".to_owned())]);
}

#[tokio::test]
async fn strip_request_headers_keeps_an_unkeyed_header_from_poisoning_what_is_stored() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let untrusted = ["x-forwarded-host", "x-original-url"].map(HeaderName::from_static);
    let server = start(redirecting_origin(&seen), |cache| {
        CacheLayer::new(cache).strip_request_headers(untrusted)
    })
    .await;
    let attack = server.get("/login", &ATTACK[..2]).await;
    assert_eq!(attack.header("location"), "https://shop.example/login/");
    let clean = server.get("/login", &[("host", "shop.example")]).await;
    assert!(
        clean.cache_status().contains("hit"),
        "{}",
        clean.cache_status()
    );
    assert_eq!(clean.header("location"), "https://shop.example/login/");
    assert!(!seen.lock().unwrap()[0].contains_key("x-forwarded-host"));
}

#[test]
fn the_reverse_proxy_reads_its_purge_token_from_a_file_or_the_environment() {
    let path = std::env::temp_dir().join(format!("purge-token-{}", std::process::id()));
    std::fs::write(&path, "s3cret-from-file\n").unwrap();
    let file = Some(path.to_str().unwrap().to_owned());
    let token = reverse_proxy::purge_token(None, file.clone(), None);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(token, Ok(Some("s3cret-from-file".to_owned())));
    let env = Some("s3cret-from-env".to_owned());
    assert_eq!(
        reverse_proxy::purge_token(None, None, env.clone()),
        Ok(Some("s3cret-from-env".to_owned()))
    );
    assert_eq!(reverse_proxy::purge_token(None, None, None), Ok(None));
    // Never two sources, never an empty token, never a file that cannot be read.
    assert!(reverse_proxy::purge_token(Some("a".into()), None, env).is_err());
    assert!(reverse_proxy::purge_token(None, None, Some(" \n".into())).is_err());
    assert!(reverse_proxy::purge_token(None, file, None).is_err());
}
