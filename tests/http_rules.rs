//! `CacheLayer` end to end on the rules beyond `Cache-Control`: targeted fields (RFC 9213),
//! `Age` edge cases and interim responses (RFC 9111 §5.1, §3), and byte ranges served from a
//! stored response (RFC 9110 §14). A real axum server on a loopback port, a real HTTP client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::CacheLayer;

mod support;
use support::loopback::{start, Reply};

/// A handler at `/r` answering `body` with `headers` (a fresh `Date` unless given), counting
/// its calls.
fn counted(
    calls: &Arc<AtomicUsize>,
    body: &'static str,
    headers: Vec<(&'static str, String)>,
) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/r",
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let headers = headers.clone();
            async move {
                let mut response = Response::new(Body::from(body));
                for (name, value) in headers {
                    response.headers_mut().append(
                        HeaderName::from_static(name),
                        HeaderValue::from_str(&value).unwrap(),
                    );
                }
                if !response.headers().contains_key("date") {
                    let date = httpdate::fmt_http_date(SystemTime::now());
                    response
                        .headers_mut()
                        .insert("date", HeaderValue::from_str(&date).unwrap());
                }
                response
            }
        }),
    )
}

fn fields(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(n, v)| (*n, (*v).to_owned())).collect()
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn age(reply: &Reply) -> u64 {
    reply.header("age").parse().expect("an Age header")
}

#[tokio::test]
async fn cdn_cache_control_takes_precedence_and_is_not_forwarded() {
    let calls = counter();
    let headers = fields(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=60"),
    ]);
    let server = start(counted(&calls, "body", headers), CacheLayer::new).await;
    let first = server.get("/r", &[]).await;
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    let second = server.get("/r", &[]).await;
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for reply in [&first, &second] {
        assert!(!reply.headers.contains_key("cdn-cache-control"));
        assert_eq!(
            reply.header("cache-control"),
            "no-store",
            "meant for the client"
        );
    }
}

#[tokio::test]
async fn a_targeted_private_or_no_store_wins_over_a_permissive_cache_control() {
    for targeted in ["private", "no-store", "private, max-age=60"] {
        let calls = counter();
        let headers = fields(&[
            ("cache-control", "public, max-age=600"),
            ("cdn-cache-control", targeted),
        ]);
        let server = start(counted(&calls, "alice's", headers), CacheLayer::new).await;
        let first = server.get("/r", &[("cookie", "sid=alice")]).await;
        assert_eq!(first.text(), "alice's");
        let other = server.get("/r", &[]).await;
        assert!(
            !other.cache_status().contains("hit"),
            "{targeted}: {}",
            other.cache_status()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{targeted}: never stored");
        assert!(!other.headers.contains_key("cdn-cache-control"));
    }
}

#[tokio::test]
async fn the_applications_own_field_comes_first_and_an_invalid_one_is_ignored() {
    let own = HeaderName::from_static("cachelayer-cache-control");
    let calls = counter();
    let headers = fields(&[
        ("cache-control", "max-age=60"),
        ("cdn-cache-control", "max-age=60"),
        ("cachelayer-cache-control", "no-store"),
    ]);
    let server = start(counted(&calls, "body", headers), |cache| {
        CacheLayer::new(cache).targeted_cache_control(own.clone())
    })
    .await;
    let first = server.get("/r", &[]).await;
    server.get("/r", &[]).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the own field's no-store rules"
    );
    assert!(
        first.cache_status().contains("no-store"),
        "{}",
        first.cache_status()
    );
    assert!(!first.headers.contains_key("cachelayer-cache-control"));
    assert!(!first.headers.contains_key("cdn-cache-control"));

    // Invalid (not a Structured Fields Dictionary): ignored, Cache-Control applies.
    let calls = counter();
    let headers = fields(&[
        ("cache-control", "max-age=60"),
        ("cachelayer-cache-control", "No-Store"),
    ]);
    let server = start(counted(&calls, "body", headers), |cache| {
        CacheLayer::new(cache).targeted_cache_control(own.clone())
    })
    .await;
    server.get("/r", &[]).await;
    let second = server.get("/r", &[]).await;
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn targeted_fields_reach_clients_when_forwarded() {
    let calls = counter();
    let headers = fields(&[("cdn-cache-control", "max-age=60")]);
    let server = start(counted(&calls, "body", headers), |cache| {
        CacheLayer::new(cache).forward_targeted_cache_control(true)
    })
    .await;
    let first = server.get("/r", &[]).await;
    let second = server.get("/r", &[]).await;
    assert!(second.cache_status().contains("hit"));
    for reply in [&first, &second] {
        assert_eq!(reply.header("cdn-cache-control"), "max-age=60");
    }
}

#[tokio::test]
async fn a_targeted_field_replaces_expires_too() {
    let calls = counter();
    let later = httpdate::fmt_http_date(SystemTime::now() + std::time::Duration::from_secs(600));
    // Expires alone would make this fresh for ten minutes; the targeted field says revalidate.
    let headers = vec![
        ("expires", later),
        ("cdn-cache-control", "max-age=0".to_owned()),
    ];
    let server = start(counted(&calls, "body", headers), CacheLayer::new).await;
    server.get("/r", &[]).await;
    let second = server.get("/r", &[]).await;
    assert!(
        !second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn several_age_values_count_as_the_first() {
    for (lines, want) in [
        (&["100", "5000"][..], 100),
        (&["100, 5000"][..], 100),
        (&["7", "abc"][..], 7),
    ] {
        let calls = counter();
        let mut headers = fields(&[("cache-control", "max-age=600")]);
        headers.extend(lines.iter().map(|l| ("age", (*l).to_owned())));
        let server = start(counted(&calls, "body", headers), CacheLayer::new).await;
        let first = server.get("/r", &[]).await;
        assert!(
            (want..=want + 1).contains(&age(&first)),
            "{lines:?}: {}",
            age(&first)
        );
        let second = server.get("/r", &[]).await;
        assert!(second.cache_status().contains("hit"), "{lines:?}");
    }
}

#[tokio::test]
async fn an_invalid_age_is_ignored_and_a_huge_one_saturates() {
    for lines in [&["abc"][..], &["-5"], &["abc", "500"], &["1.5"]] {
        let calls = counter();
        let mut headers = fields(&[("cache-control", "max-age=60")]);
        headers.extend(lines.iter().map(|l| ("age", (*l).to_owned())));
        let server = start(counted(&calls, "body", headers), CacheLayer::new).await;
        let first = server.get("/r", &[]).await;
        assert!(age(&first) <= 1, "{lines:?}: {}", age(&first));
        let second = server.get("/r", &[]).await;
        assert!(second.cache_status().contains("hit"), "{lines:?}");
    }
    let calls = counter();
    let headers = fields(&[
        ("cache-control", "max-age=60"),
        ("age", "99999999999999999999999999"),
    ]);
    let server = start(counted(&calls, "body", headers), CacheLayer::new).await;
    let first = server.get("/r", &[]).await;
    assert_eq!(age(&first), 2_147_483_648, "saturated at 2^31 seconds");
    let second = server.get("/r", &[]).await;
    assert!(!second.cache_status().contains("hit"), "stale at once");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_responses_are_never_stored() {
    let calls = counter();
    let app = {
        let calls = Arc::clone(&calls);
        Router::new().route(
            "/r",
            get(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = StatusCode::EARLY_HINTS;
                    response
                        .headers_mut()
                        .insert("cache-control", HeaderValue::from_static("max-age=60"));
                    response
                }
            }),
        )
    };
    let server = start(app, |cache| {
        CacheLayer::new(cache).default_ttl(std::time::Duration::from_secs(60))
    })
    .await;
    server.get("/r", &[]).await;
    server.get("/r", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A stored `0123456789` (fetched once, without a range).
async fn stored_digits() -> (support::loopback::Server, Arc<AtomicUsize>, String) {
    let calls = counter();
    let headers = fields(&[("cache-control", "max-age=600")]);
    let server = start(counted(&calls, "0123456789", headers), CacheLayer::new).await;
    let full = server.get("/r", &[]).await;
    assert_eq!(full.text(), "0123456789");
    let etag = full.header("etag").to_owned();
    assert!(!etag.is_empty() && !etag.starts_with("W/"));
    (server, calls, etag)
}

#[tokio::test]
async fn a_single_range_is_served_from_a_stored_response() {
    let (server, calls, _) = stored_digits().await;
    for (range, body, content_range) in [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=5-100", "56789", "bytes 5-9/10"),
        ("Bytes=0-0", "0", "bytes 0-0/10"),
    ] {
        let reply = server.get("/r", &[("range", range)]).await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(reply.text(), body, "{range}");
        assert_eq!(reply.header("content-range"), content_range, "{range}");
        assert_eq!(reply.header("content-length"), body.len().to_string());
        assert!(reply.cache_status().contains("hit"), "{range}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unsatisfiable_multiple_and_foreign_ranges() {
    let (server, calls, _) = stored_digits().await;
    for range in ["bytes=10-", "bytes=-0", "bytes=20-30"] {
        let reply = server.get("/r", &[("range", range)]).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(reply.header("content-range"), "bytes */10", "{range}");
        assert!(reply.body.is_empty());
    }
    // Several ranges, another unit, or a malformed one: the whole response.
    for range in [
        "bytes=0-1,4-5",
        "items=0-1",
        "bytes=5-2",
        "bytes=a-b",
        "bytes=--1",
    ] {
        let reply = server.get("/r", &[("range", range)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{range}");
        assert_eq!(reply.text(), "0123456789", "{range}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn if_range_serves_the_range_only_for_the_same_representation() {
    let (server, _, etag) = stored_digits().await;
    let reply = server
        .get("/r", &[("range", "bytes=0-1"), ("if-range", &etag)])
        .await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.text(), "01");
    let weak = format!("W/{etag}");
    for validator in [
        "\"other\"",
        weak.as_str(),
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "junk",
    ] {
        let reply = server
            .get("/r", &[("range", "bytes=0-1"), ("if-range", validator)])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{validator}");
        assert_eq!(reply.text(), "0123456789", "{validator}");
    }
}

#[tokio::test]
async fn a_range_on_a_miss_is_served_from_the_response_just_stored() {
    let calls = counter();
    let headers = fields(&[("cache-control", "max-age=600")]);
    let server = start(counted(&calls, "0123456789", headers), CacheLayer::new).await;
    let first = server.get("/r", &[("range", "bytes=1-2")]).await;
    assert_eq!(first.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(first.text(), "12");
    let full = server.get("/r", &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.text(), "0123456789");
    assert!(full.cache_status().contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_304_refreshes_by_the_targeted_field_and_clients_never_see_it() {
    let calls = counter();
    let app = {
        let calls = Arc::clone(&calls);
        Router::new().route(
            "/r",
            get(move |headers: axum::http::HeaderMap| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let revalidating = headers.get("if-none-match").is_some_and(|v| v == "\"v1\"");
                    let mut response =
                        Response::new(Body::from(if revalidating { "" } else { "v1" }));
                    let h = response.headers_mut();
                    h.insert("etag", HeaderValue::from_static("\"v1\""));
                    h.insert("cache-control", HeaderValue::from_static("max-age=0"));
                    if revalidating {
                        *response.status_mut() = StatusCode::NOT_MODIFIED;
                        response
                            .headers_mut()
                            .insert("cdn-cache-control", HeaderValue::from_static("max-age=600"));
                    } else {
                        response
                            .headers_mut()
                            .insert("cdn-cache-control", HeaderValue::from_static("max-age=1"));
                    }
                    response
                }
            }),
        )
    };
    let server = start(app, CacheLayer::new).await;
    let first = server.get("/r", &[]).await;
    assert!(
        first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let revalidated = server.get("/r", &[]).await;
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.text(), "v1");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "revalidated once");
    let hit = server.get("/r", &[]).await;
    assert!(
        hit.cache_status().contains("hit"),
        "fresh for 600 s by the 304's targeted field"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    for reply in [&first, &revalidated, &hit] {
        assert!(!reply.headers.contains_key("cdn-cache-control"));
        assert_eq!(reply.header("cache-control"), "max-age=0");
    }
}

#[tokio::test]
async fn targeted_fields_are_hidden_on_responses_passed_through_too() {
    let calls = counter();
    let app = counted(
        &calls,
        "body",
        fields(&[("cdn-cache-control", "max-age=60")]),
    )
    .route(
        "/w",
        axum::routing::post(|| async { ([("cdn-cache-control", "no-store")], "written") }),
    );
    let server = start(app, |cache| {
        // `/r?bypass` is declined by the key function: passed through uncached.
        CacheLayer::new(cache)
            .key_fn(|parts| (parts.uri.query() != Some("bypass")).then(|| parts.uri.to_string()))
    })
    .await;
    let bypassed = server.get("/r?bypass", &[]).await;
    assert!(
        bypassed.cache_status().contains("fwd=bypass"),
        "{}",
        bypassed.cache_status()
    );
    assert!(!bypassed.headers.contains_key("cdn-cache-control"));
    let written = server.send(axum::http::Method::POST, "/w", &[]).await;
    assert_eq!(written.text(), "written");
    assert!(!written.headers.contains_key("cdn-cache-control"));
}
