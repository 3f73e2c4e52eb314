//! Shared responses: two `CacheLayer` instances (two caches built with `.tiered(url)`) over one
//! real `redis-server`, real axum servers on loopback ports, one counted origin. A response
//! stored by one instance is a hit on the other without reaching the origin; privacy rules,
//! `Vary`, invalidations and Redis outages hold across instances.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, Method, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheBuilder, CacheLayer};
use redis::AsyncCommands;

mod support;

use support::loopback::{self, Reply};
use support::redis_server::RedisServer;
use support::spans::Spans;

const HOST: &str = "shop.test";
const PREFIX: &str = "shared:";

/// The Redis key of the response to `GET path` on `HOST` (no `Vary`).
fn response_key(path: &str) -> String {
    format!("{PREFIX}v:GET http://{HOST}{path}")
}

/// One instance: its cache and its server.
struct Instance {
    cache: Cache,
    server: loopback::Server,
}

impl Instance {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers).await
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("host", HOST)];
        all.extend_from_slice(headers);
        self.server.send(method, path, &all).await
    }
}

/// Two instances over one Redis, in front of the same counted origin.
struct Fleet {
    redis: RedisServer,
    calls: Arc<AtomicUsize>,
    a: Instance,
    b: Instance,
}

impl Fleet {
    async fn start() -> Self {
        Self::start_with(|layer| layer).await
    }

    async fn start_with(configure: fn(CacheLayer) -> CacheLayer) -> Self {
        Self::start_configured(|cache| cache, configure).await
    }

    /// Two instances whose caches are built by `cache` (from the defaults of [`instance`]).
    async fn start_with_cache(cache: fn(CacheBuilder) -> CacheBuilder) -> Self {
        Self::start_configured(cache, |layer| layer).await
    }

    async fn start_configured(
        cache: fn(CacheBuilder) -> CacheBuilder,
        layer: fn(CacheLayer) -> CacheLayer,
    ) -> Self {
        let redis = RedisServer::start();
        let calls = Arc::new(AtomicUsize::new(0));
        let a = instance(&redis, &calls, (cache, layer)).await;
        let b = instance(&redis, &calls, (cache, layer)).await;
        Fleet { redis, calls, a, b }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        self.redis.raw().await
    }

    /// Waits until Redis holds `key` (a store's shared write runs off the request's path).
    async fn until_in_redis(&self, key: &str) {
        let mut raw = self.raw().await;
        for _ in 0..500 {
            if raw.exists::<_, bool>(key).await.unwrap() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{key} never reached Redis");
    }

    /// The response keys Redis holds.
    async fn response_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.raw().await.keys(format!("{PREFIX}v:*")).await.unwrap();
        keys.sort();
        keys
    }
}

/// How an instance's cache and layer are configured (from the defaults of [`instance`]).
type Configure = (
    fn(CacheBuilder) -> CacheBuilder,
    fn(CacheLayer) -> CacheLayer,
);

async fn instance(
    redis: &RedisServer,
    calls: &Arc<AtomicUsize>,
    (cache, layer): Configure,
) -> Instance {
    let builder = Cache::builder()
        .tiered(redis.url())
        .key_prefix(PREFIX)
        .jitter(0.0);
    let cache = cache(builder).build().unwrap();
    let layer = layer(CacheLayer::new(cache.clone()));
    let server = loopback::serve(origin(calls).layer(layer)).await;
    Instance { cache, server }
}

/// A response with `body` and `headers`, counted in `calls`.
fn counted(
    calls: &Arc<AtomicUsize>,
    headers: &'static [(&'static str, &'static str)],
    body: fn(usize, &axum::http::HeaderMap) -> String,
) -> axum::routing::MethodRouter {
    let calls = Arc::clone(calls);
    get(move |request_headers: axum::http::HeaderMap| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let mut response = Response::new(axum::body::Body::from(body(n, &request_headers)));
            for (name, value) in headers {
                let value = HeaderValue::from_static(value);
                response.headers_mut().append(*name, value);
            }
            response
        }
    })
}

/// The origin: `/r` (fresh for a minute, tagged `catalog`; POST is a write), `/v` (varies on
/// `Accept-Language`), `/private`, `/cookie` (sets a cookie), `/big` (4 KiB) and `/small`,
/// `/etag` (fresh for 1 s; a revalidation gets a 304 fresh for a minute), `/slow` (answers
/// after 300 ms), `/swr` (may be served stale for a minute while
/// revalidated), `/windows` (fresh for 30 s, then stale-while-revalidate and stale-if-error for
/// 10 minutes each; the origin fails after its first answer).
fn origin(calls: &Arc<AtomicUsize>) -> Router {
    let numbered = |n: usize, _: &axum::http::HeaderMap| format!("body-{n}");
    let fresh = &[("cache-control", "max-age=60"), ("cache-tag", "catalog")];
    Router::new()
        .route(
            "/r",
            counted(calls, fresh, numbered).post(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/v",
            counted(
                calls,
                &[("cache-control", "max-age=60"), ("vary", "accept-language")],
                |n, request| {
                    let lang = request.get("accept-language").map(|v| v.to_str().unwrap());
                    format!("{}-{n}", lang.unwrap_or("none"))
                },
            ),
        )
        .route(
            "/private",
            counted(calls, &[("cache-control", "private, max-age=60")], numbered),
        )
        .route(
            "/cookie",
            counted(
                calls,
                &[("cache-control", "max-age=60"), ("set-cookie", "session=a")],
                numbered,
            ),
        )
        .route(
            "/big",
            counted(calls, &[("cache-control", "max-age=60")], |_, _| {
                "x".repeat(4096)
            }),
        )
        .route(
            "/small",
            counted(calls, &[("cache-control", "max-age=60")], numbered),
        )
        .route("/etag", {
            let calls = Arc::clone(calls);
            get(move |request: axum::http::HeaderMap| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let revalidated = request
                        .get("if-none-match")
                        .is_some_and(|tag| tag == "\"v1\"");
                    if revalidated {
                        let headers = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                        return (StatusCode::NOT_MODIFIED, headers, String::new());
                    }
                    let headers = [("cache-control", "max-age=1"), ("etag", "\"v1\"")];
                    (StatusCode::OK, headers, "tagged".to_owned())
                }
            })
        })
        .route("/slow", {
            let calls = Arc::clone(calls);
            get(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    ([("cache-control", "max-age=60")], format!("slow-{n}"))
                }
            })
        })
        .route(
            "/swr",
            counted(
                calls,
                &[("cache-control", "max-age=60, stale-while-revalidate=60")],
                numbered,
            ),
        )
        .route("/windows", {
            let calls = Arc::clone(calls);
            let answered = Arc::new(AtomicBool::new(false));
            get(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let first = !answered.swap(true, Ordering::SeqCst);
                async move {
                    if !first {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [("cache-control", "no-store")],
                            "down".to_owned(),
                        );
                    }
                    let windows = "max-age=30, stale-while-revalidate=600, stale-if-error=600";
                    (
                        StatusCode::OK,
                        [("cache-control", windows)],
                        format!("windows-{n}"),
                    )
                }
            })
        })
}

/// GETs `path` on `instance` until it is a hit.
async fn until_hit(instance: &Instance, path: &str) -> Reply {
    for _ in 0..500 {
        let reply = instance.get(path, &[]).await;
        if reply.cache_status().contains("hit") {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never became a hit");
}

#[tokio::test]
async fn a_response_stored_by_one_instance_is_a_hit_on_the_other() {
    let fleet = Fleet::start().await;
    let first = fleet.a.get("/r", &[]).await;
    assert_eq!(first.text(), "body-1");
    fleet.until_in_redis(&response_key("/r")).await;

    let shared = fleet.b.get("/r", &[]).await;
    assert_eq!(shared.status, StatusCode::OK);
    assert_eq!(shared.text(), "body-1", "B serves A's response");
    assert!(
        shared.cache_status().contains("hit"),
        "{}",
        shared.cache_status()
    );
    assert_eq!(fleet.calls(), 1, "B did not reach the origin");
    assert_eq!(fleet.b.cache.stats().shared_hits, 1);
    assert!(
        shared.header("etag").starts_with('"'),
        "validators travel too"
    );
    assert_eq!(shared.header("cache-tag"), "", "tags are never shown");
    assert_eq!(fleet.b.get("/r", &[]).await.text(), "body-1");
    assert_eq!(fleet.calls(), 1);
}

/// What is in Redis answers `only-if-cached` and HEAD on an instance that never saw the URL.
#[tokio::test]
async fn only_if_cached_and_head_are_answered_from_redis() {
    let fleet = Fleet::start().await;
    fleet.a.get("/r", &[]).await;
    fleet.until_in_redis(&response_key("/r")).await;
    let only = [("cache-control", "only-if-cached")];
    let reply = fleet.b.get("/r", &only).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "body-1");
    let head = fleet.b.send(Method::HEAD, "/r", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert!(head.cache_status().contains("hit"));
    let missing = fleet.b.get("/small", &only).await;
    assert_eq!(missing.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(fleet.calls(), 1);
}

#[tokio::test]
async fn the_age_counts_from_when_the_first_instance_received_the_response() {
    let fleet = Fleet::start().await;
    fleet.a.get("/r", &[]).await;
    fleet.until_in_redis(&response_key("/r")).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let shared = fleet.b.get("/r", &[]).await;
    assert!(shared.cache_status().contains("hit"));
    let age: u64 = shared.header("age").parse().unwrap();
    assert!((2..=4).contains(&age), "Age {age}: stored by A 2 s ago");
}

#[tokio::test]
async fn vary_variants_hold_across_instances() {
    let fleet = Fleet::start().await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(fleet.a.get("/v", &en).await.text(), "en-1");
    fleet.until_in_redis(&response_key("/v")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let reply = fleet.b.get("/v", &en).await;
    assert_eq!(reply.text(), "en-1");
    assert!(reply.cache_status().contains("hit"));
    assert_eq!(fleet.calls(), 1);

    let reply = fleet.b.get("/v", &fr).await;
    assert_eq!(reply.text(), "fr-2", "another variant is not served for fr");
    assert_eq!(fleet.calls(), 2);
    for _ in 0..500 {
        if fleet.response_keys().await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = fleet.a.get("/v", &fr).await;
    assert_eq!(reply.text(), "fr-2", "A serves B's variant");
    assert_eq!(fleet.calls(), 2);
    assert_eq!(fleet.a.get("/v", &[]).await.text(), "none-3");
}

#[tokio::test]
async fn private_responses_are_stored_by_no_instance() {
    let fleet = Fleet::start().await;
    let auth = [("authorization", "Bearer alice")];
    let cases: [(&str, &[(&str, &str)]); 3] =
        [("/private", &[]), ("/cookie", &[]), ("/small", &auth)];
    for (path, headers) in cases {
        let before = fleet.calls();
        for instance in [&fleet.a, &fleet.a, &fleet.b, &fleet.b] {
            let reply = instance.get(path, headers).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(!reply.cache_status().contains("hit"), "{path}");
        }
        assert_eq!(
            fleet.calls() - before,
            4,
            "{path} reached the origin each time"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fleet.response_keys().await, Vec::<String>::new());
}

/// `instance` stops serving `old` for `path`: its stored copy is gone.
async fn until_replaced(instance: &Instance, path: &str, old: &str) {
    for _ in 0..500 {
        if instance.get(path, &[]).await.text() != old {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{path} still served {old}");
}

#[tokio::test]
async fn invalidation_by_path_and_by_tag_reaches_both_instances() {
    let fleet = Fleet::start().await;
    until_hit(&fleet.a, "/r").await;
    fleet.until_in_redis(&response_key("/r")).await;
    assert_eq!(until_hit(&fleet.b, "/r").await.text(), "body-1");

    // A write through A drops the URL in Redis and in both memories.
    let write = fleet.a.send(Method::POST, "/r", &[]).await;
    assert_eq!(write.status, StatusCode::NO_CONTENT);
    assert_eq!(fleet.a.get("/r", &[]).await.text(), "body-2");
    until_replaced(&fleet.b, "/r", "body-1").await;
    let current = until_hit(&fleet.b, "/r").await.text();

    // A tag invalidated through A's cache.
    fleet.a.cache.invalidate("catalog").await;
    assert!(!fleet.a.get("/r", &[]).await.text().eq(&current));
    until_replaced(&fleet.b, "/r", &current).await;
}

#[tokio::test]
async fn redis_killed_mid_run_fails_no_request_and_sharing_resumes_after_a_restart() {
    let mut fleet = Fleet::start().await;
    fleet.a.get("/r", &[]).await;
    fleet.until_in_redis(&response_key("/r")).await;
    assert!(fleet.b.get("/r", &[]).await.cache_status().contains("hit"));

    fleet.redis.kill();
    for i in 0..20 {
        for instance in [&fleet.a, &fleet.b] {
            for path in ["/r".to_owned(), format!("/small?down={i}")] {
                let reply = instance.get(&path, &[]).await;
                assert_eq!(reply.status, StatusCode::OK, "{path} while Redis is down");
            }
        }
    }

    fleet.redis.restart();
    until_sharing_resumes(&fleet).await;
}

/// Waits until a response A stores reaches Redis and is a hit on B without the origin.
async fn until_sharing_resumes(fleet: &Fleet) {
    for i in 0..200 {
        let path = format!("/small?up={i}");
        fleet.a.get(&path, &[]).await;
        let mut raw = fleet.raw().await;
        for _ in 0..20 {
            if raw.exists::<_, bool>(response_key(&path)).await.unwrap() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = fleet.calls();
        let reply = fleet.b.get(&path, &[]).await;
        if reply.cache_status().contains("hit") && fleet.calls() == before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sharing did not resume after Redis restarted");
}

/// GETs `path` on `instance` until the origin is called: what memory held for it is gone.
async fn until_origin_reached(fleet: &Fleet, instance: &Instance, path: &str) -> Reply {
    for _ in 0..500 {
        let before = fleet.calls();
        let reply = instance.get(path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        if fleet.calls() > before {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never reached the origin");
}

/// The outage bound of a cache built without `outage_ttl`.
const DEFAULT_OUTAGE_BOUND: Duration = Duration::from_secs(1);

/// While Redis is down, memory still stands in front of the origin: a response is kept at
/// most the outage bound, so one URL asked for again and again reaches the origin about once
/// per bound, not once per request. No request fails, and sharing resumes after a restart.
#[tokio::test]
async fn a_killed_redis_keeps_responses_in_memory_for_the_outage_bound() {
    let mut fleet = Fleet::start().await;
    until_hit(&fleet.a, "/r").await;
    fleet.redis.kill();
    // What A stored before the outage is dropped once it notices.
    until_origin_reached(&fleet, &fleet.a, "/r").await;

    let before = fleet.calls();
    let (started, mut requests) = (Instant::now(), 0);
    while started.elapsed() < DEFAULT_OUTAGE_BOUND * 5 / 2 {
        let reply = fleet.a.get("/r", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "no failed request");
        requests += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let origin = fleet.calls() - before;
    println!("{origin} origin calls for {requests} requests while Redis was down");
    assert!(requests >= 50, "{requests} requests");
    assert!(
        (2..=5).contains(&origin),
        "about one origin call per bound, not one per request: {origin} for {requests}"
    );
    // A write through A during the outage drops A's copy at once.
    let kept = fleet.a.get("/r", &[]).await.text();
    assert_eq!(
        fleet.a.send(Method::POST, "/r", &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_ne!(fleet.a.get("/r", &[]).await.text(), kept);

    fleet.redis.restart();
    until_sharing_resumes(&fleet).await;
}

/// What memory kept during an outage (stored under the bound, but perhaps after an
/// invalidation this instance could not hear) is dropped as soon as it hears invalidations
/// again: with a bound of a minute, the copy stored during the outage is not served on.
#[tokio::test]
async fn responses_kept_during_an_outage_are_dropped_once_redis_answers_again() {
    let mut fleet =
        Fleet::start_with_cache(|cache| cache.outage_ttl(Duration::from_secs(60))).await;
    until_hit(&fleet.a, "/r").await;
    fleet.redis.kill();
    let outage_copy = until_origin_reached(&fleet, &fleet.a, "/r").await.text();
    let again = fleet.a.get("/r", &[]).await;
    assert_eq!(
        again.text(),
        outage_copy,
        "kept in memory during the outage"
    );
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );

    fleet.redis.restart();
    for _ in 0..1_000 {
        if fleet.a.get("/r", &[]).await.text() != outage_copy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the copy stored during the outage outlived it");
}

/// `outage_ttl(Duration::ZERO)`: nothing is kept in memory while Redis is down, every request
/// reaches the origin.
#[tokio::test]
async fn an_outage_ttl_of_zero_sends_every_request_to_the_origin_during_an_outage() {
    let mut fleet = Fleet::start_with_cache(|cache| cache.outage_ttl(Duration::ZERO)).await;
    until_hit(&fleet.a, "/r").await;
    fleet.redis.kill();
    until_origin_reached(&fleet, &fleet.a, "/r").await;
    let before = fleet.calls();
    for _ in 0..20 {
        let reply = fleet.a.get("/r", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(fleet.calls() - before, 20);
}

/// The outage bound covers every window of a response: past it, a response that says it may
/// be served stale for ten minutes (while revalidated, or when the origin fails) is not served
/// from memory any more; the origin's answer is.
#[tokio::test]
async fn the_outage_bound_covers_the_stale_windows() {
    let mut fleet = Fleet::start().await;
    until_hit(&fleet.a, "/r").await;
    fleet.redis.kill();
    until_origin_reached(&fleet, &fleet.a, "/r").await;

    let first = fleet.a.get("/windows", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = fleet.a.get("/windows", &[]).await;
    assert_eq!(
        (again.status, again.text()),
        (StatusCode::OK, first.text()),
        "kept in memory during the outage: {}",
        again.cache_status()
    );
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );

    tokio::time::sleep(DEFAULT_OUTAGE_BOUND + Duration::from_millis(200)).await;
    let after = fleet.a.get("/windows", &[]).await;
    assert_eq!(
        after.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "past the bound, neither stale-while-revalidate nor stale-if-error: {} {}",
        after.text(),
        after.cache_status()
    );
}

#[tokio::test]
async fn garbage_under_a_response_key_is_a_miss_and_is_overwritten() {
    let fleet = Fleet::start().await;
    let mut raw = fleet.raw().await;
    fleet.a.get("/small?valid", &[]).await;
    let valid_key = response_key("/small?valid");
    fleet.until_in_redis(&valid_key).await;
    let valid: Vec<u8> = raw.get(&valid_key).await.unwrap();
    let mut other_version = valid.clone();
    other_version[1] ^= 0xff;
    let corrupt: [(&str, Vec<u8>); 4] = [
        ("garbage", b"garbage".to_vec()),
        ("truncated", valid[..valid.len() - 3].to_vec()),
        ("version", other_version),
        ("payload", [&valid[..40], b"\xc1\xc1\xc1"].concat()),
    ];
    for (n, (what, bytes)) in corrupt.iter().enumerate() {
        let path = format!("/small?{what}");
        let key = response_key(&path);
        let _: () = raw.set(&key, bytes).await.unwrap();
        let before = fleet.calls();
        let reply = fleet.b.get(&path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_eq!(fleet.calls(), before + 1, "{what}: a miss");
        assert_eq!(fleet.b.cache.stats().decode_errors, n as u64 + 1, "{what}");
        let mut overwritten = false;
        for _ in 0..500 {
            let now: Vec<u8> = raw.get(&key).await.unwrap();
            if now != *bytes && now.first() == Some(&1) {
                overwritten = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(overwritten, "{what} was overwritten by the next store");
        assert!(fleet.a.get(&path, &[]).await.cache_status().contains("hit"));
    }
}

#[tokio::test]
async fn bodies_over_max_shared_body_stay_in_memory() {
    let fleet = Fleet::start_with(|layer| layer.max_shared_body(1024)).await;
    fleet.a.get("/small", &[]).await;
    fleet.until_in_redis(&response_key("/small")).await;
    until_hit(&fleet.a, "/big").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fleet.response_keys().await, vec![response_key("/small")]);
    let before = fleet.calls();
    let reply = fleet.b.get("/big", &[]).await;
    assert_eq!(reply.body.len(), 4096);
    assert_eq!(
        fleet.calls(),
        before + 1,
        "B asked the origin for the big body"
    );
}

/// A soft purge marks a shared response stale by moving the fresh deadline in its header
/// (`SETRANGE` at offset 9): the header's deadlines cap the response's own freshness, so the
/// next instance to read it serves it stale while one refresh runs.
#[tokio::test]
async fn a_shared_response_whose_header_says_stale_is_served_stale_and_refreshed() {
    let fleet = Fleet::start().await;
    fleet.a.get("/swr", &[]).await;
    let key = response_key("/swr");
    fleet.until_in_redis(&key).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut raw = fleet.raw().await;
    let _: () = redis::cmd("SETRANGE")
        .arg(&key)
        .arg(9)
        .arg(&now.to_be_bytes()[..])
        .query_async(&mut raw)
        .await
        .unwrap();
    let reply = fleet.b.get("/swr", &[]).await;
    assert_eq!(
        reply.text(),
        "body-1",
        "the stale response is served at once"
    );
    assert!(
        reply.cache_status().contains("stale-while-revalidate"),
        "{}",
        reply.cache_status()
    );
    // The background refresh's response replaces the shared one: fresh for a minute again.
    for _ in 0..500 {
        if fleet.calls() == 2 && fresh_for(&mut raw, &key).await > Duration::from_secs(30) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no refresh reached the origin and Redis");
}

/// A soft purge reaches what only Redis holds: an instance that never had the response in
/// memory reads the purged copy, serves it stale at once and refreshes it once.
#[tokio::test]
async fn a_soft_purge_reaches_an_instance_that_reads_the_response_from_redis() {
    let fleet = Fleet::start().await;
    assert_eq!(fleet.a.get("/r", &[]).await.text(), "body-1");
    let key = response_key("/r");
    fleet.until_in_redis(&key).await;
    fleet.a.cache.soft_invalidate("catalog").await;
    let mut raw = fleet.raw().await;
    assert_eq!(fresh_for(&mut raw, &key).await, Duration::ZERO);
    // A third instance: nothing in its memory, so the copy comes from Redis.
    let c = instance(&fleet.redis, &fleet.calls, (|cache| cache, |layer| layer)).await;
    let reply = c.get("/r", &[]).await;
    assert_eq!(reply.text(), "body-1", "the purged copy is served at once");
    assert!(
        reply.cache_status().contains("stale-while-revalidate"),
        "{}",
        reply.cache_status()
    );
    for _ in 0..500 {
        if fleet.calls() == 2 && fresh_for(&mut raw, &key).await > Duration::from_secs(30) {
            assert_eq!(until_hit(&fleet.b, "/r").await.text(), "body-2");
            assert_eq!(fleet.calls(), 2, "one refresh, shared with the fleet");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no refresh reached the origin and Redis");
}

/// An instance's look-up span says where its answer came from: a miss, then a hit from Redis
/// (a response another instance stored).
#[tokio::test]
async fn lookup_spans_name_the_tier_that_answered() {
    let lookups = Spans::named("cache.lookup");
    let _guard = lookups.install();
    let fleet = Fleet::start().await;
    fleet.a.get("/r", &[]).await;
    fleet.until_in_redis(&response_key("/r")).await;
    assert!(fleet.b.get("/r", &[]).await.cache_status().contains("hit"));
    assert_eq!(lookups.values("cache.outcome"), ["miss", "hit"]);
    assert_eq!(lookups.values("cache.tier"), ["redis"]);
}

/// How long the shared entry under `key` stays fresh, from its header's "fresh until".
async fn fresh_for(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Duration {
    let bytes: Vec<u8> = raw.get(key).await.unwrap();
    let Some(word) = bytes.get(9..17) else {
        return Duration::ZERO;
    };
    let until = u64::from_be_bytes(word.try_into().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Duration::from_millis(until.saturating_sub(now))
}

/// A 304's update is shared like a first store: the other instance serves the revalidated
/// response without asking the origin.
#[tokio::test]
async fn a_revalidated_response_is_shared() {
    let fleet = Fleet::start().await;
    let key = response_key("/etag");
    assert_eq!(fleet.a.get("/etag", &[]).await.text(), "tagged");
    fleet.until_in_redis(&key).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidated = fleet.a.get("/etag", &[]).await;
    assert_eq!(revalidated.text(), "tagged");
    assert!(revalidated.cache_status().contains("fwd-status=304"));
    assert_eq!(fleet.calls(), 2);
    let mut raw = fleet.raw().await;
    for _ in 0..500 {
        if fresh_for(&mut raw, &key).await > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = fleet.b.get("/etag", &[]).await;
    assert_eq!(reply.text(), "tagged");
    assert!(
        reply.cache_status().contains("hit"),
        "{}",
        reply.cache_status()
    );
    assert_eq!(fleet.calls(), 2, "B served the update without the origin");
}

/// A Redis that stops answering (paused: connections open, no replies) fails no request on
/// either instance.
#[tokio::test]
async fn a_paused_redis_fails_no_request() {
    let mut fleet = Fleet::start().await;
    fleet.a.get("/r", &[]).await;
    fleet.until_in_redis(&response_key("/r")).await;
    fleet.redis.pause();
    for i in 0..10 {
        for instance in [&fleet.a, &fleet.b] {
            for path in ["/r".to_owned(), format!("/small?paused={i}")] {
                let reply = instance.get(&path, &[]).await;
                assert_eq!(reply.status, StatusCode::OK, "{path} while Redis is paused");
            }
        }
    }
    fleet.redis.resume();
}

/// Two instances behind a balancer miss the same URL at once: one asks the origin, the other
/// waits for the response it stores (the URL's distributed lock).
#[tokio::test]
async fn concurrent_misses_on_two_instances_reach_the_origin_once() {
    let fleet = Fleet::start().await;
    let (a, b) = tokio::join!(fleet.a.get("/slow", &[]), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fleet.b.get("/slow", &[]).await
    });
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(a.text(), "slow-1");
    assert_eq!(b.text(), "slow-1");
    assert_eq!(fleet.calls(), 1, "one origin call for both instances");
    assert!(
        b.cache_status().contains("coalesced"),
        "{}",
        b.cache_status()
    );

    // Without the lock, each instance asks for itself.
    let fleet = Fleet::start_with(|layer| layer.shared_lock(Duration::ZERO)).await;
    let (a, b) = tokio::join!(fleet.a.get("/slow", &[]), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fleet.b.get("/slow", &[]).await
    });
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(fleet.calls(), 2);
}

/// A client that leaves while its instance holds a URL's load lock releases the lock: the
/// other instances do not wait for it to expire.
#[tokio::test]
async fn a_cancelled_miss_releases_its_lock() {
    let fleet = Fleet::start_with(|layer| layer.shared_lock(Duration::from_secs(60))).await;
    let lock = format!("{PREFIX}l:GET http://{HOST}/slow");
    let leaving = tokio::time::timeout(Duration::from_millis(150), fleet.a.get("/slow", &[]));
    assert!(leaving.await.is_err(), "the client left before the answer");
    let mut raw = fleet.raw().await;
    for _ in 0..500 {
        if !raw.exists::<_, bool>(&lock).await.unwrap() {
            assert_eq!(fleet.b.get("/slow", &[]).await.text(), "slow-2");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the lock outlived the request that took it");
}
