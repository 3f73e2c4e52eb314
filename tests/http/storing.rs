//! What is stored and how it is served: freshness, `Age`, `Date`, `HEAD` from a stored `GET`,
//! `Vary` variants, keys, and what bypasses the cache.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::CacheLayer;

use crate::support::loopback::start;
use crate::{counted, counter};

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
