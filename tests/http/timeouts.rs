//! The layer's timeouts: a slow inner service (held at a gate the test opens, so nothing
//! depends on the machine's speed) answered with the stale response past the soft timeout,
//! with `504 Gateway Timeout` past the hard one; requests waiting on the same miss get the
//! same answer, and the inner service's response is still stored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use cache_layer::CacheLayer;
use tokio::sync::Semaphore;

use crate::support::loopback::{start, Reply, Server};
use crate::support::wait::eventually;
use crate::{counter, respond};

/// `body-<n>`, fresh for 1 s; calls after the first `fast` ones wait at `gate`.
fn gated(calls: &Arc<AtomicUsize>, gate: &Arc<Semaphore>, fast: usize) -> Router {
    let (calls, gate) = (Arc::clone(calls), Arc::clone(gate));
    Router::new().route(
        "/r",
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let gate = Arc::clone(&gate);
            async move {
                if n > fast {
                    gate.acquire().await.unwrap().forget();
                }
                respond(format!("body-{n}"), &[("cache-control", "max-age=1")])
            }
        }),
    )
}

/// `count` GETs of `/r` at once.
async fn together(server: &Arc<Server>, count: usize) -> Vec<Reply> {
    let requests: Vec<_> = (0..count)
        .map(|_| {
            let server = Arc::clone(server);
            tokio::spawn(async move { server.get("/r", &[]).await })
        })
        .collect();
    let mut replies = Vec::new();
    for request in requests {
        replies.push(request.await.unwrap());
    }
    replies
}

#[tokio::test]
async fn a_soft_timeout_serves_the_stale_response_and_stores_the_late_one() {
    let (calls, gate) = (counter(), Arc::new(Semaphore::new(0)));
    let layer = |cache| {
        CacheLayer::new(cache)
            .stale_if_error(Duration::from_secs(60))
            .soft_timeout(Duration::from_millis(100))
    };
    let server = Arc::new(start(gated(&calls, &gate, 1), layer).await);
    assert_eq!(server.get("/r", &[]).await.text(), "body-1");
    // Past its freshness (max-age=1), inside the layer's stale-if-error window.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let replies = together(&server, 3).await;
    for reply in &replies {
        assert_eq!(
            (reply.status, reply.text()),
            (StatusCode::OK, "body-1".to_owned())
        );
    }
    assert!(
        replies
            .iter()
            .any(|r| r.cache_status().contains("detail=timeout")),
        "{:?}",
        replies.iter().map(Reply::cache_status).collect::<Vec<_>>()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one call for the three requests"
    );
    assert_eq!(server.cache().stats().soft_timeouts, 1);

    gate.add_permits(1);
    eventually("the late response is stored", async || {
        server.get("/r", &[]).await.text() == "body-2"
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_hard_timeout_answers_504_and_stores_the_late_response() {
    let (calls, gate) = (counter(), Arc::new(Semaphore::new(0)));
    let layer = |cache| CacheLayer::new(cache).hard_timeout(Duration::from_millis(100));
    let server = Arc::new(start(gated(&calls, &gate, 0), layer).await);

    let replies = together(&server, 3).await;
    for reply in &replies {
        assert_eq!(
            reply.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one call for the three requests"
    );
    assert_eq!(server.cache().stats().hard_timeouts, 1);

    gate.add_permits(1);
    eventually("the late response is stored", async || {
        let reply = server.get("/r", &[]).await;
        reply.status == StatusCode::OK && reply.cache_status().contains("hit")
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hard_timeout_serves_a_stale_if_error_response() {
    let (calls, gate) = (counter(), Arc::new(Semaphore::new(0)));
    let layer = |cache| {
        CacheLayer::new(cache)
            .stale_if_error(Duration::from_secs(60))
            .hard_timeout(Duration::from_millis(100))
    };
    let server = Arc::new(start(gated(&calls, &gate, 1), layer).await);
    assert_eq!(server.get("/r", &[]).await.text(), "body-1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = server.get("/r", &[]).await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::OK, "body-1".to_owned())
    );
    assert_eq!(server.cache().stats().hard_timeouts, 1);
    gate.add_permits(1);
}
