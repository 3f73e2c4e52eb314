//! Stale responses: `stale-while-revalidate`, `stale-if-error` (the response's or the
//! layer's), and an inner service that fails.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cache_layer::{Cache, CacheLayer};
use http_body_util::{BodyExt, Full};

use crate::support::loopback::start;
use crate::{counted, counter};

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
