//! Conditional requests and revalidation: `If-None-Match`, `If-Modified-Since`, `If-Match`,
//! generated `ETag`s, `no-cache`, a stale response refreshed by a `304`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{CacheLayer, EtagMode};

use crate::support::loopback::start;
use crate::{counted, counter, per_user};

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
