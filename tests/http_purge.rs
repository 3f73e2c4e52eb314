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
        &[("fastly-soft-purge", "1")],
        &[
            ("authorization", "Bearer wrong"),
            ("fastly-soft-purge", "1"),
        ],
        &[
            ("authorization", "Bearer nope"),
            ("fastly-soft-purge", "1"),
            ("cache-tag", "products"),
        ],
    ] {
        let refused = server.purge("/r", headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
        let refused = server.send("POST", "/_purge", headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // Neither dropped nor made stale.
    let kept = server.get("/r", &[]).await;
    assert!(
        kept.cache_status().contains("hit"),
        "{}",
        kept.cache_status()
    );
    assert!(
        !kept.cache_status().contains("stale"),
        "{}",
        kept.cache_status()
    );
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

/// A cache on `redis` (responses shared there), for a purge across instances.
fn shared_cache(redis: &support::redis_server::RedisServer) -> Cache {
    Cache::builder()
        .redis(redis.url())
        .key_prefix("http:")
        .jitter(0.0)
        .build()
        .unwrap()
}

/// A purge through an instance that never held the URL answers for the fleet: `200` when
/// another instance stored the response in Redis, then `404` once it is gone everywhere.
#[tokio::test]
async fn a_purge_answers_for_what_the_shared_tier_held() {
    let redis = support::redis_server::RedisServer::start();
    let (calls_a, calls_b) = (counter(), counter());
    let a = start(shared_cache(&redis), &calls_a).await;
    let b = start(shared_cache(&redis), &calls_b).await;
    until_hit(&a, "/r").await;
    let mut raw = redis.raw().await;
    for _ in 0..500 {
        let stored: Vec<String> = redis::cmd("KEYS")
            .arg("http:v:*/r")
            .query_async(&mut raw)
            .await
            .unwrap();
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let purged = b.purge("/r", &[AUTH]).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    let again = b.purge("/r", &[AUTH]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text());
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        0,
        "B never asked its origin"
    );
}

#[tokio::test]
async fn a_purge_through_one_instance_drops_the_others_copy() {
    let redis = support::redis_server::RedisServer::start();
    let (calls_a, calls_b) = (counter(), counter());
    let a = start(shared_cache(&redis), &calls_a).await;
    let b = start(shared_cache(&redis), &calls_b).await;
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

const SOFT: (&str, &str) = ("fastly-soft-purge", "1");

/// Whether `reply` was served stale while a background request revalidates it.
fn served_stale(reply: &Reply) -> bool {
    let status = reply.cache_status();
    status.contains("hit") && status.contains("stale-while-revalidate")
}

/// Waits until the origin has been called `n` times in all.
async fn until_calls(calls: &Arc<AtomicUsize>, n: usize) {
    for _ in 0..1000 {
        if calls.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the origin was called {calls:?} times, not {n}");
}

/// GETs `path` (with `headers`) until it is a fresh hit; returns its body.
async fn until_fresh(server: &Server, path: &str, headers: &[(&str, &str)]) -> String {
    for _ in 0..500 {
        let reply = server.get(path, headers).await;
        if reply.cache_status().contains("hit") && !reply.cache_status().contains("stale") {
            return reply.text();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never became a fresh hit");
}

#[tokio::test]
async fn a_soft_purge_by_path_serves_every_variant_stale_while_one_request_revalidates_it() {
    let calls = counter();
    let server = start(memory_cache(), &calls).await;
    for language in ["en", "fr"] {
        server.get("/r", &[("accept-language", language)]).await;
    }
    server.get("/other", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let purged = server.purge("/r", &[AUTH, SOFT]).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    assert_eq!(purged.text(), "soft-purged\n");
    for (language, old) in [("en", "products-1"), ("fr", "products-2")] {
        let reply = server.get("/r", &[("accept-language", language)]).await;
        assert!(served_stale(&reply), "{language}: {}", reply.cache_status());
        assert!(
            reply.cache_status().contains("ttl=0"),
            "{}",
            reply.cache_status()
        );
        assert_eq!(reply.text(), old);
    }
    // One background request per variant, then the new responses are fresh.
    until_calls(&calls, 5).await;
    let mut refreshed = Vec::new();
    for language in ["en", "fr"] {
        refreshed.push(until_fresh(&server, "/r", &[("accept-language", language)]).await);
    }
    refreshed.sort();
    assert_eq!(refreshed, ["products-4", "products-5"]);
    assert_eq!(calls.load(Ordering::SeqCst), 5, "exactly one per variant");
    let other = server.get("/other", &[]).await;
    assert!(!served_stale(&other), "another URL is untouched");
    assert_eq!(other.text(), "pages-3");

    // A hard purge still removes: the next request waits for the origin.
    let purged = server.purge("/r", &[AUTH]).await;
    assert_eq!(purged.text(), "purged\n");
    let reply = server.get("/r", &[("accept-language", "en")]).await;
    assert!(
        !reply.cache_status().contains("hit"),
        "{}",
        reply.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_soft_purge_by_tag_serves_stale_while_one_request_revalidates() {
    let calls = counter();
    let server = start(memory_cache(), &calls).await;
    server.get("/r", &[]).await;
    server.get("/other", &[]).await;
    let purged = server
        .send(
            "POST",
            "/_purge",
            &[AUTH, SOFT, ("surrogate-key", "products")],
        )
        .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    assert_eq!(purged.text(), "soft-purged 1 tag(s)\n");

    let reply = server.get("/r", &[]).await;
    assert!(served_stale(&reply), "{}", reply.cache_status());
    assert_eq!(reply.text(), "products-1");
    until_calls(&calls, 3).await;
    assert_eq!(until_fresh(&server, "/r", &[]).await, "products-3");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(until_fresh(&server, "/other", &[]).await, "pages-2");

    // Any other value of the header is a hard purge.
    let purged = server
        .purge(
            "/",
            &[AUTH, ("fastly-soft-purge", "0"), ("cache-tag", "pages")],
        )
        .await;
    assert_eq!(purged.text(), "purged 1 tag(s)\n");
    let reply = server.get("/other", &[]).await;
    assert!(
        !reply.cache_status().contains("hit"),
        "{}",
        reply.cache_status()
    );
    assert_eq!(reply.text(), "pages-4");
}

#[tokio::test]
async fn a_soft_purge_through_one_instance_makes_the_others_copy_stale() {
    let redis = support::redis_server::RedisServer::start();
    let shared = || {
        Cache::builder()
            .redis(redis.url())
            .key_prefix("soft-http:")
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
    let before = calls_b.load(Ordering::SeqCst);

    let purged = a.purge("/r", &[AUTH, SOFT]).await;
    assert_eq!(purged.status, StatusCode::OK);
    let mut stale = None;
    for _ in 0..500 {
        let reply = b.get("/r", &[]).await;
        if served_stale(&reply) {
            stale = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stale.is_some(), "B's copy was made stale by A's soft purge");
    until_calls(&calls_b, before + 1).await;
    until_fresh(&b, "/r", &[]).await;
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        before + 1,
        "one background request"
    );

    let purged = a
        .send("POST", "/_purge", &[AUTH, SOFT, ("surrogate-key", "pages")])
        .await;
    assert_eq!(purged.status, StatusCode::OK);
    let mut stale = false;
    for _ in 0..500 {
        if served_stale(&b.get("/other", &[]).await) {
            stale = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stale, "B's pages were made stale by A's tag");
    until_calls(&calls_b, before + 2).await;
}

/// Counts calls; every response is fresh for a minute and tagged `Surrogate-Key: a b`, as a
/// Fastly or Varnish xkey origin tags it.
fn surrogate_keyed(calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    Router::new().route(
        "/s",
        get(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut response = Response::new(axum::body::Body::from(format!("s-{n}")));
                let headers = response.headers_mut();
                headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
                headers.insert("surrogate-key", HeaderValue::from_static("a b"));
                response
            }
        }),
    )
}

/// `app` behind `layer`, with `layer`'s purge service in front of it.
async fn start_with(app: Router, layer: CacheLayer) -> Server {
    let purge = layer.purge_with_token(TOKEN);
    Server(loopback::serve(app.layer(layer).layer(purge)).await)
}

#[tokio::test]
async fn a_surrogate_key_tags_the_response_and_is_not_shown_to_clients() {
    let calls = counter();
    let server = start_with(surrogate_keyed(&calls), CacheLayer::new(memory_cache())).await;
    let miss = server.get("/s", &[]).await;
    let hit = server.get("/s", &[]).await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    for reply in [&miss, &hit] {
        assert!(
            !reply.headers.contains_key("surrogate-key"),
            "{:?}",
            reply.headers
        );
    }
    let purged = server.purge("/", &[AUTH, ("surrogate-key", "b")]).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    let after = server.get("/s", &[]).await;
    assert!(
        !after.cache_status().contains("hit"),
        "{}",
        after.cache_status()
    );
    assert_eq!(after.text(), "s-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn forwarded_tag_headers_reach_clients_on_misses_and_hits() {
    let calls = counter();
    let layer = CacheLayer::new(memory_cache()).forward_tag_headers(true);
    let server = start_with(surrogate_keyed(&calls), layer).await;
    let miss = server.get("/s", &[]).await;
    let hit = server.get("/s", &[]).await;
    assert!(hit.cache_status().contains("hit"), "{}", hit.cache_status());
    for reply in [&miss, &hit] {
        assert_eq!(reply.header("surrogate-key"), "a b", "{:?}", reply.headers);
    }
    let purged = server.purge("/", &[AUTH, ("surrogate-key", "a")]).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    assert_eq!(server.get("/s", &[]).await.text(), "s-2");
}

#[tokio::test]
async fn a_purge_taken_before_later_settings_names_urls_as_the_layer_keys_them() {
    let calls = counter();
    let layer = CacheLayer::new(memory_cache());
    let purge = layer.purge_with_token(TOKEN);
    // Set after the purge service was taken: the layer keys by path alone.
    let layer = layer.key_fn(|parts| Some(format!("page:{}", parts.uri.path())));
    let app = surrogate_keyed(&calls).layer(layer).layer(purge);
    let server = Server(loopback::serve(app).await);
    server.get("/s", &[]).await;
    assert!(server.get("/s", &[]).await.cache_status().contains("hit"));
    let purged = server.purge("/s", &[AUTH]).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    let after = server.get("/s", &[]).await;
    assert!(
        !after.cache_status().contains("hit"),
        "{}",
        after.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
