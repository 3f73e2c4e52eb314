//! Purge over HTTP (`CacheLayer::purge`): by URL and by tag, guarded by the application's check,
//! and across instances sharing a Redis tier. Real axum servers on loopback ports, a real
//! HTTP client, a real `redis-server`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer};

mod support;

use support::loopback::{self, Reply};

const TOKEN: &str = "purge-s3cret";
const HOST: &str = "shop.test";

/// The purge test's server: every request names `HOST` unless its headers name another.
struct Server(loopback::Server);

impl Server {
    /// Sends `method path` with `headers` (for `HOST` unless they name another).
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = Vec::with_capacity(headers.len() + 1);
        if !headers.iter().any(|(name, _)| *name == "host") {
            all.push(("host", HOST));
        }
        all.extend_from_slice(headers);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        self.0.send(method, path, &all).await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", path, headers).await
    }

    async fn purge(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("PURGE", path, headers).await
    }
}

/// Counts calls per route: `/r` (varies on `Accept-Language`, tagged `products`), `/other`
/// (tagged `pages`); both fresh for a minute.
fn app(calls: &Arc<AtomicUsize>) -> Router {
    let handler = |tag: &'static str, calls: Arc<AtomicUsize>| {
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut response = Response::new(axum::body::Body::from(format!("{tag}-{n}")));
                let headers = response.headers_mut();
                headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
                headers.insert("vary", HeaderValue::from_static("accept-language"));
                headers.insert("cache-tag", HeaderValue::from_static(tag));
                response
            }
        })
    };
    Router::new()
        .route("/r", handler("products", Arc::clone(calls)))
        .route("/other", handler("pages", Arc::clone(calls)))
}

/// `app` behind a `CacheLayer` on `cache`, with the purge service in front of it (`PURGE` on
/// any URL) and at `/_purge`.
async fn start(cache: Cache, calls: &Arc<AtomicUsize>) -> Server {
    let layer = CacheLayer::new(cache);
    let purge = layer.purge_with_token(TOKEN);
    let app = app(calls)
        .layer(layer)
        .layer(purge.clone())
        .route_service("/_purge", purge);
    Server(loopback::serve(app).await)
}

fn memory_cache() -> Cache {
    Cache::builder().jitter(0.0).build().unwrap()
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

const AUTH: (&str, &str) = ("authorization", "Bearer purge-s3cret");

#[tokio::test]
async fn purge_by_path_drops_every_variant_of_that_url_only() {
    let calls = counter();
    let server = start(memory_cache(), &calls).await;
    for language in ["en", "fr"] {
        server.get("/r", &[("accept-language", language)]).await;
    }
    server.get("/other", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(server
        .get("/r", &[("accept-language", "fr")])
        .await
        .cache_status()
        .contains("hit"));

    let purged = server.purge("/r", &[AUTH]).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    for language in ["en", "fr"] {
        let reply = server.get("/r", &[("accept-language", language)]).await;
        assert!(
            !reply.cache_status().contains("hit"),
            "{language}: {}",
            reply.cache_status()
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(server
        .get("/other", &[])
        .await
        .cache_status()
        .contains("hit"));

    // Nothing stored for that URL here: 404 (the purge is still sent to the fleet).
    let none = server.purge("/never", &[AUTH]).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    // Another authority's copy is another URL.
    let elsewhere = server
        .purge("/other", &[AUTH, ("host", "elsewhere.test")])
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn purge_by_tag_with_cache_tag_or_surrogate_key() {
    let calls = counter();
    let server = start(memory_cache(), &calls).await;
    server.get("/r", &[]).await;
    server.get("/other", &[]).await;
    let purged = server
        .purge("/", &[AUTH, ("surrogate-key", "unknown products")])
        .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    assert!(!server.get("/r", &[]).await.cache_status().contains("hit"));
    assert!(server
        .get("/other", &[])
        .await
        .cache_status()
        .contains("hit"));

    // The same through the mounted route, with `Cache-Tag` and another method.
    let purged = server
        .send("POST", "/_purge", &[AUTH, ("cache-tag", "pages, x")])
        .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    assert!(!server
        .get("/other", &[])
        .await
        .cache_status()
        .contains("hit"));
    assert!(server.get("/r", &[]).await.cache_status().contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // Neither tags nor PURGE: not a purge.
    let neither = server.send("POST", "/_purge", &[AUTH]).await;
    assert_eq!(neither.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_403_and_purges_nothing() {
    let calls = counter();
    let server = start(memory_cache(), &calls).await;
    server.get("/r", &[]).await;
    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong")],
        &[("authorization", "Bearer purge-s3cre")],
        &[("authorization", "Basic purge-s3cret")],
        &[("authorization", "Bearer wrong"), ("cache-tag", "products")],
        &[("surrogate-key", "products")],
    ] {
        let refused = server.purge("/r", headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
        let refused = server.send("POST", "/_purge", headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert!(server.get("/r", &[]).await.cache_status().contains("hit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// GETs `path` until it is a hit (an instance on a shared tier keeps responses once its
/// invalidation subscriber is up).
async fn until_hit(server: &Server, path: &str) {
    for _ in 0..500 {
        if server.get(path, &[]).await.cache_status().contains("hit") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never became a hit");
}

/// GETs `path` on `server` until the origin is called again; whether it was.
async fn reaches_origin(server: &Server, path: &str, calls: &Arc<AtomicUsize>) -> bool {
    let before = calls.load(Ordering::SeqCst);
    for _ in 0..500 {
        server.get(path, &[]).await;
        if calls.load(Ordering::SeqCst) > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn a_purge_through_one_instance_drops_the_others_copy() {
    let redis = support::redis_server::RedisServer::start();
    let shared = || {
        Cache::builder()
            .redis(redis.url())
            .key_prefix("http:")
            .jitter(0.0)
            .build()
            .unwrap()
    };
    let (calls_a, calls_b) = (counter(), counter());
    let a = start(shared(), &calls_a).await;
    let b = start(shared(), &calls_b).await;
    for server in [&a, &b] {
        until_hit(server, "/r").await;
        until_hit(server, "/other").await;
    }

    let purged = a.purge("/r", &[AUTH]).await;
    assert_eq!(purged.status, StatusCode::OK);
    assert!(
        reaches_origin(&b, "/r", &calls_b).await,
        "B's /r was purged by A"
    );

    until_hit(&b, "/other").await;
    let purged = a
        .send("POST", "/_purge", &[AUTH, ("surrogate-key", "pages")])
        .await;
    assert_eq!(purged.status, StatusCode::OK);
    assert!(
        reaches_origin(&b, "/other", &calls_b).await,
        "B's pages were purged by A's tag"
    );

    // A refused purge reaches no one.
    until_hit(&b, "/r").await;
    let refused = a.purge("/r", &[("authorization", "Bearer nope")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.get("/r", &[]).await.cache_status().contains("hit"));
}
