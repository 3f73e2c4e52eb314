//! Concurrent requests: misses on one URL make one inner call, uncacheable URLs are not
//! serialised, hits do not wait for the inner service's capacity.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer};

use crate::counter;
use crate::support::loopback::{start, Server};

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
    // recorder of this test's own, current on this thread (the runtime's only one) throughout.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.25])
        .unwrap()
        .build_recorder();
    let metrics = recorder.handle();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let cache = Cache::builder().name("capacity").build().unwrap();
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
    // The layer wraps the router from outside: no route is matched yet, the site is `unrouted`.
    assert_eq!(
        line("cache_load_seconds_count{cache=\"capacity\",site=\"unrouted\"}"),
        "3"
    );
    assert_eq!(
        line("cache_load_seconds_bucket{cache=\"capacity\",site=\"unrouted\",le=\"0.25\"}"),
        "2"
    );
}
