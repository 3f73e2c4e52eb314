//! One load pipeline under `#[cached]` and `CacheLayer`: the same rules for a waiter that
//! waited too long and for a leader whose load failed with a stale value at hand, whichever
//! front-end the caller came through.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use cache_layer::{cached, Cache, CacheLayer};
use support::loopback::start_on;
use tokio::sync::Notify;

/// Bounds each wait in these tests so that a regression fails instead of hanging.
const BOUND: Duration = Duration::from_secs(10);

fn cache(max_wait: Duration) -> Cache {
    Cache::builder()
        .jitter(0.0)
        .max_wait(max_wait)
        .build()
        .unwrap()
}

mod waiting_too_long {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(|| cache(Duration::from_millis(100)));
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static GATE: LazyLock<Notify> = LazyLock::new(Notify::new);

    /// The first call blocks until released; later calls return at once.
    #[cached(ttl = "1m", key = "gated", cache = CACHE)]
    async fn gated() -> usize {
        let call = CALLS.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            GATE.notified().await;
        }
        call
    }

    #[tokio::test]
    async fn a_memo_waiter_loads_alone_after_max_wait() {
        let leader = tokio::spawn(gated());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = tokio::time::timeout(BOUND, gated()).await;
        assert_eq!(waiter, Ok(1), "the waiter ran its own load");
        assert!(!leader.is_finished(), "while the leader still loads");
        assert_eq!(CACHE.stats().coalesced, 1);
        GATE.notify_one();
        assert_eq!(leader.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_http_waiter_loads_alone_after_max_wait() {
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let (counted, released) = (Arc::clone(&calls), Arc::clone(&gate));
        let app = Router::new().route(
            "/gated",
            get(move || {
                let call = counted.fetch_add(1, Ordering::SeqCst);
                let released = Arc::clone(&released);
                async move {
                    if call == 0 {
                        released.notified().await;
                    }
                    call.to_string()
                }
            }),
        );
        let cache = cache(Duration::from_millis(100));
        let server = Arc::new(start_on(cache.clone(), app, CacheLayer::new).await);
        let leader = tokio::spawn({
            let server = Arc::clone(&server);
            async move { server.get("/gated", &[]).await.text() }
        });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = tokio::time::timeout(BOUND, server.get("/gated", &[])).await;
        assert_eq!(waiter.unwrap().text(), "1", "the waiter ran its own load");
        assert!(!leader.is_finished(), "while the leader still loads");
        assert_eq!(cache.stats().coalesced, 1);
        gate.notify_one();
        assert_eq!(leader.await.unwrap(), "0");
    }
}

mod stale_if_error_with_waiters {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(|| cache(Duration::from_secs(30)));
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    /// The first load succeeds; later ones fail, slowly.
    #[cached(ttl = "100ms", stale_if_error = "30s", jitter = false, key = "flaky", cache = CACHE)]
    async fn flaky() -> Result<String, String> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok("good".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err("down".to_owned())
    }

    #[tokio::test]
    async fn memo_waiters_get_the_stale_value_the_leader_fell_back_to() {
        assert_eq!(flaky().await.as_deref(), Ok("good"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let callers: Vec<_> = (0..5).map(|_| tokio::spawn(flaky())).collect();
        for caller in callers {
            let served = tokio::time::timeout(BOUND, caller).await.unwrap().unwrap();
            assert_eq!(served.as_deref(), Ok("good"));
        }
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            2,
            "one failing load, not five"
        );
        assert_eq!(CACHE.stats().stale_if_error, 1);
    }

    #[tokio::test]
    async fn http_waiters_get_the_stale_response_the_leader_fell_back_to() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let app = Router::new().route(
            "/flaky",
            get(move || {
                let call = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if call == 0 {
                        let cc = [("cache-control", "max-age=1, stale-if-error=30")];
                        return (StatusCode::OK, cc, "good");
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("cache-control", "no-store")],
                        "down",
                    )
                }
            }),
        );
        let cache = cache(Duration::from_secs(30));
        let server = Arc::new(start_on(cache.clone(), app, CacheLayer::new).await);
        assert_eq!(server.get("/flaky", &[]).await.text(), "good");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let clients: Vec<_> = (0..5)
            .map(|_| {
                let server = Arc::clone(&server);
                tokio::spawn(async move { server.get("/flaky", &[]).await })
            })
            .collect();
        for client in clients {
            let reply = tokio::time::timeout(BOUND, client).await.unwrap().unwrap();
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (StatusCode::OK, "good")
            );
            assert!(reply.cache_status().contains("detail=stale-if-error"));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one failing call, not five"
        );
        assert_eq!(cache.stats().stale_if_error, 1);
    }
}
