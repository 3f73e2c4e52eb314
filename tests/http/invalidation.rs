//! Invalidation: by a successful write (its URL and `Location`), by tag (`Cache-Tag`,
//! [`CacheTags`](cache_layer::CacheTags)), and across instances sharing Redis.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer, CacheTags};

use crate::support;
use crate::support::loopback::{start, start_on};
use crate::{counted, counter};

#[tokio::test]
async fn a_successful_post_invalidates_the_url() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/items",
        get(move || {
            let n = counted_calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { ([("cache-control", "max-age=60")], format!("items v{n}")) }
        })
        .post(|| async { StatusCode::CREATED }),
    );
    let server = start(app, CacheLayer::new).await;
    server.get("/items", &[]).await;
    assert_eq!(server.get("/items", &[]).await.text(), "items v1");
    let created = server.send(Method::POST, "/items", &[]).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(server.get("/items", &[]).await.text(), "items v2");
}

#[tokio::test]
async fn cache_tags_are_stripped_and_invalidate_responses() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/users/7",
            get(move || {
                let n = counted_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [
                            ("cache-control", "max-age=60"),
                            ("cache-tag", "user:7, users"),
                        ],
                        format!("user 7 v{n}"),
                    )
                }
            }),
        )
        .route(
            "/teams",
            get(|| async {
                let mut response = Response::new(Body::from("teams"));
                response
                    .headers_mut()
                    .insert("cache-control", HeaderValue::from_static("max-age=60"));
                response.extensions_mut().insert(CacheTags::new(["users"]));
                response
            }),
        );
    let server = start(app, CacheLayer::new).await;
    let first = server.get("/users/7", &[]).await;
    assert!(!first.headers.contains_key("cache-tag"));
    assert_eq!(server.get("/users/7", &[]).await.text(), "user 7 v1");
    server.cache().invalidate("user:7").await;
    assert_eq!(server.get("/users/7", &[]).await.text(), "user 7 v2");
    server.get("/teams", &[]).await;
    assert!(server
        .get("/teams", &[])
        .await
        .cache_status()
        .contains("hit"));
    server.cache().invalidate("users").await;
    assert_eq!(server.get("/users/7", &[]).await.text(), "user 7 v3");
    assert!(!server
        .get("/teams", &[])
        .await
        .cache_status()
        .contains("hit"));
}

#[tokio::test]
async fn a_write_invalidates_its_same_origin_location() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/items/9",
            get(move || {
                let n = counted_calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { ([("cache-control", "max-age=60")], format!("item v{n}")) }
            }),
        )
        .route(
            "/items",
            axum::routing::post(|| async { (StatusCode::CREATED, [("location", "/items/9")], "") }),
        )
        .route(
            "/elsewhere",
            axum::routing::post(|| async {
                (
                    StatusCode::SEE_OTHER,
                    [("location", "http://other.example/items/9")],
                    "",
                )
            }),
        );
    let server = start(app, CacheLayer::new).await;
    server.get("/items/9", &[]).await;
    server.send(Method::POST, "/elsewhere", &[]).await;
    assert_eq!(server.get("/items/9", &[]).await.text(), "item v1");
    server.send(Method::POST, "/items", &[]).await;
    assert_eq!(server.get("/items/9", &[]).await.text(), "item v2");
}

#[tokio::test]
async fn on_a_shared_cache_invalidations_reach_every_instances_responses() {
    let redis = support::redis_server::RedisServer::start();
    let calls = counter();
    let headers: &[(&str, &str)] = &[("cache-control", "max-age=60"), ("cache-tag", "catalog")];
    let shared = || {
        Cache::builder()
            .redis(redis.url())
            .key_prefix("http:")
            .build()
            .unwrap()
    };
    let a = start_on(shared(), counted(&calls, headers), CacheLayer::new).await;
    let b = start_on(shared(), counted(&calls, headers), CacheLayer::new).await;
    // Responses are kept once each instance hears invalidations (its subscriber is up).
    for server in [&a, &b] {
        let mut hit = false;
        for _ in 0..500 {
            if server.get("/r", &[]).await.cache_status().contains("hit") {
                hit = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(hit, "responses are served from the cache");
    }
    let before = calls.load(Ordering::SeqCst);
    a.cache().invalidate("catalog").await;
    let mut reloaded = false;
    for _ in 0..500 {
        b.get("/r", &[]).await;
        if calls.load(Ordering::SeqCst) > before {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        reloaded,
        "instance a's invalidation dropped instance b's stored response"
    );
}

/// A write whose client leaves while the write's invalidations are on their way to a stalled
/// Redis: every URL it names is still dropped here at once (invalidating the names one `await`
/// at a time would skip the later ones).
#[tokio::test]
async fn a_write_whose_client_leaves_early_still_invalidates_every_url_it_names() {
    let mut redis = support::redis_server::RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .redis_timeouts(Duration::from_secs(30), Duration::from_secs(1))
        .build()
        .unwrap();
    let posts = counter();
    let counted_posts = Arc::clone(&posts);
    let app = Router::new()
        .route(
            "/a",
            get(|| async { ([("cache-control", "max-age=600")], "a") }).post(move || {
                counted_posts.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::CREATED, [("location", "/b")], "") }
            }),
        )
        .route(
            "/b",
            get(|| async { ([("cache-control", "max-age=600")], "b") }),
        );
    let server = start_on(cache, app, CacheLayer::new).await;
    for path in ["/a", "/b"] {
        let mut hit = false;
        for _ in 0..500 {
            if server.get(path, &[]).await.cache_status().contains("hit") {
                hit = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(hit, "{path} is served from the cache");
    }
    redis.pause();
    let mut client = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let post = format!(
        "POST /a HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        server.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, post.as_bytes())
        .await
        .unwrap();
    while posts.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first invalidation now waits for Redis; the client leaves meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for path in ["/a", "/b"] {
        let reply = server.get(path, &[]).await;
        assert!(
            !reply.cache_status().contains("hit"),
            "{path} outlived the write: {}",
            reply.cache_status()
        );
    }
    redis.resume();
}
