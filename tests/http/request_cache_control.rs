//! A request's `Cache-Control`: `only-if-cached`, `no-cache`, `max-age`, `min-fresh`,
//! `no-store`, `max-stale`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use cache_layer::CacheLayer;

use crate::support::loopback::start;
use crate::{counted, counter};

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
