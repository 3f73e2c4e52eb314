//! Clearing a cache in one process (`Cache::clear`, `Cache::clear_prefix`): memoised values
//! and HTTP responses (their `Vary` variants included) alike; a namespace clear leaves the
//! other keys; a load in flight when the clear is made does not store its result. Across
//! instances over Redis: `tests/redis/clear.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Response};
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer, Key, LoadOptions};

mod support;

use support::loopback;

fn minute() -> LoadOptions {
    LoadOptions::new(Duration::from_secs(60))
}

/// `/a/<n>` and `/b/<n>`, fresh for a minute, varying on `Accept-Language`; counts calls.
fn app(calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    let handler = get(move || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(axum::body::Body::from(format!("call {n}")));
            let headers = response.headers_mut();
            headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
            headers.insert("vary", HeaderValue::from_static("accept-language"));
            response
        }
    });
    Router::new()
        .route("/a/{n}", handler.clone())
        .route("/b/{n}", handler)
}

#[tokio::test]
async fn a_namespace_clear_drops_its_memoised_values_and_responses_and_leaves_the_rest() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = loopback::start(app(&calls), CacheLayer::new).await;
    let cache = server.cache().clone();
    let headers = |language| [("host", "shop.test"), ("accept-language", language)];
    for path in ["/a/1", "/b/1"] {
        for language in ["en", "fr"] {
            server.get(path, &headers(language)).await;
        }
    }
    for key in [Key::new("user").part(1), Key::new("users").part(1)] {
        cache.insert(&key, 1u32, &minute()).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    cache.clear_prefix("GET http://shop.test/a/").await;
    cache.clear_prefix("user:").await;
    for language in ["en", "fr"] {
        let reply = server.get("/a/1", &headers(language)).await;
        assert!(
            !reply.cache_status().contains("hit"),
            "{}",
            reply.cache_status()
        );
        let reply = server.get("/b/1", &headers(language)).await;
        assert!(
            reply.cache_status().contains("hit"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "both variants of /a/1, nothing else"
    );
    assert_eq!(cache.get::<u32>(&Key::new("user").part(1)).await, None);
    assert_eq!(cache.get::<u32>(&Key::new("users").part(1)).await, Some(1));

    cache.clear().await;
    assert_eq!(cache.get::<u32>(&Key::new("users").part(1)).await, None);
    let reply = server.get("/b/1", &headers("en")).await;
    assert!(
        !reply.cache_status().contains("hit"),
        "{}",
        reply.cache_status()
    );
    assert_eq!(cache.stats().clears, 3);
}

/// A load that began before a clear of its key's namespace returns its value to its caller,
/// but does not store it: the next call loads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_in_flight_during_a_clear_is_not_stored() {
    for prefix in ["user:", ""] {
        let cache = Cache::builder().build().unwrap();
        let (started, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let loads = Arc::new(AtomicUsize::new(0));
        let load = {
            let (cache, started, release, loads) = (
                cache.clone(),
                started.clone(),
                release.clone(),
                loads.clone(),
            );
            tokio::spawn(async move {
                cache
                    .get_or_load(&Key::new("user").part(1), &minute(), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        started.notify_one();
                        release.notified().await;
                        Ok::<_, std::io::Error>(1u32)
                    })
                    .await
            })
        };
        started.notified().await;
        cache.clear_prefix(prefix).await;
        release.notify_one();
        assert_eq!(load.await.unwrap().unwrap(), 1, "its caller has its value");
        assert_eq!(
            cache.get::<u32>(&Key::new("user").part(1)).await,
            None,
            "{prefix:?}: not stored"
        );
        cache
            .get_or_load(&Key::new("user").part(1), &minute(), || async {
                Ok::<_, std::io::Error>(2u32)
            })
            .await
            .unwrap();
        assert_eq!(cache.get::<u32>(&Key::new("user").part(1)).await, Some(2));
    }
}
