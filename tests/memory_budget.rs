//! The memory budget against what the process really allocates, measured with a counting global
//! allocator (so this file is a test binary of its own):
//!
//! - entry weights are within [`MARGIN`] of the heap bytes the entries really hold, for
//!   memoised values and for HTTP responses received from a real origin over loopback;
//! - under traffic to ever new URLs, the heap stays within the budget (plus the margin and a
//!   fixed allowance) and stops growing once the cache is full, whether the responses are
//!   stored or may not be.
//!
//! "Really hold" counts each live allocation's requested size plus [`PER_ALLOCATION`] bytes for
//! the allocator's own header and rounding (glibc malloc: an 8-byte header, 16-byte chunks).

use std::alloc::System;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, VARY};
use axum::http::{Request, Response, StatusCode, Uri};
use axum::Router;
use cache_layer::{cached, Cache, CacheLayer};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::{Layer, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How far the sum of the weights may be from the bytes the entries really hold.
const MARGIN: f64 = 0.25;
/// What the allocator spends per allocation besides the bytes asked for (estimate for glibc).
const PER_ALLOCATION: i64 = 16;

/// Measurements of the global heap must not overlap: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes the live allocations hold, allocator overhead included.
fn heap() -> i64 {
    let s = GLOBAL.stats();
    // `bytes_allocated` and `bytes_deallocated` already count what reallocations added or took.
    let bytes = s.bytes_allocated as i64 - s.bytes_deallocated as i64;
    let allocations = s.allocations as i64 - s.deallocations as i64;
    bytes + allocations * PER_ALLOCATION
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn assert_within_margin(what: &str, real: i64, weighted: u64) {
    let ratio = real as f64 / weighted as f64;
    eprintln!("{what}: real {real} B, weighted {weighted} B, real/weighted {ratio:.3}");
    assert!(
        (1.0 - MARGIN..=1.0 + MARGIN).contains(&ratio),
        "{what}: weights {weighted} B for {real} B really held (ratio {ratio:.3})"
    );
}

// ---- memoised values ----

#[derive(Clone, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    roles: Vec<String>,
}

static MEMO: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .name("memo-weights")
        .memory_budget(256 << 20)
        .build()
        .unwrap()
});

#[cached(ttl = "1h", key = "profile:<id>", cache = MEMO)]
async fn profile(id: u64) -> Profile {
    Profile {
        id,
        name: format!("user number {id}"),
        roles: vec!["reader".to_owned(), format!("team-{}", id % 97)],
    }
}

static SMALL_MEMO: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .name("memo-budget")
        .memory_budget(1 << 20)
        .build()
        .unwrap()
});

#[cached(ttl = "1h", key = "small:<id>", cache = SMALL_MEMO)]
async fn small(id: u64) -> u64 {
    id
}

#[test]
fn memoised_values_are_weighed_within_the_margin_of_their_real_size() {
    let _serial = serial();
    let rt = runtime();
    rt.block_on(async {
        LazyLock::force(&MEMO);
        let _ = profile(u64::MAX).await;
        let weighted_before = MEMO.weighted_size();
        let before = heap();
        for id in 0..20_000 {
            drop(profile(id).await);
        }
        let weighted = MEMO.weighted_size() - weighted_before;
        assert_within_margin("memo", heap() - before, weighted);
    });
}

#[test]
fn memoised_values_stay_within_the_budget_under_ever_new_keys() {
    let _serial = serial();
    let rt = runtime();
    rt.block_on(async {
        LazyLock::force(&SMALL_MEMO);
        let before = heap();
        let mut id = 0;
        let mut churn = |n| {
            let start = id;
            id += n;
            async move {
                for id in start..start + n {
                    small(id).await;
                }
            }
        };
        churn(50_000).await;
        SMALL_MEMO.weighted_size();
        let full = heap() - before;
        churn(100_000).await;
        SMALL_MEMO.weighted_size();
        let after = heap() - before;
        eprintln!("memo, 1 MiB budget: {full} B when full, {after} B after as many again");
        assert!(SMALL_MEMO.weighted_size() <= 1 << 20);
        assert_bounded("memo", 1 << 20, full, after);
    });
}

/// The heap `after` churning on is within the budget, the margin and a fixed allowance, and
/// did not grow since the cache was `full`.
fn assert_bounded(what: &str, budget: i64, full: i64, after: i64) {
    let bound = (budget as f64 * (1.0 + MARGIN)) as i64 + (256 << 10);
    assert!(
        after <= bound,
        "{what}: {after} B held for a {budget} B budget"
    );
    assert!(
        after - full <= budget / 8,
        "{what}: grew from {full} B to {after} B after the cache was full"
    );
}

// ---- HTTP responses from a real origin ----

/// An origin on a loopback port answering every path with a body of about 600 bytes and
/// `cache_control`; with `vary`, the responses vary on `Accept-Language`.
async fn origin(cache_control: &'static str, vary: bool) -> SocketAddr {
    let app = Router::new().fallback(move |uri: Uri| async move {
        let body = format!("{} ", uri.path()).repeat(600 / uri.path().len().max(1));
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, cache_control.parse().unwrap());
        headers.insert(CONTENT_TYPE, "text/plain; charset=utf-8".parse().unwrap());
        if vary {
            headers.insert(VARY, "accept-language".parse().unwrap());
        }
        response
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A proxy to `origin` (a hyper client, as in examples/reverse_proxy.rs) behind a
/// `CacheLayer` on `cache`; sends one GET for each path and reads each answer whole.
struct Proxy {
    send: Box<dyn Fn(String, &'static str) -> futures_util::future::BoxFuture<'static, ()>>,
}

impl Proxy {
    fn new(origin: SocketAddr, cache: &Cache) -> Self {
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream = tower::service_fn(move |request: Request<Body>| {
            let client = client.clone();
            async move {
                let uri = format!("http://{origin}{}", request.uri());
                let mut forwarded = Request::get(uri).body(Body::empty()).unwrap();
                *forwarded.headers_mut() = request.headers().clone();
                forwarded.headers_mut().remove(HOST);
                Ok::<_, Infallible>(match client.request(forwarded).await {
                    Ok(response) => response.map(Body::new),
                    Err(_) => Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Body::empty())
                        .unwrap(),
                })
            }
        });
        let service = CacheLayer::new(cache.clone()).layer(upstream);
        Proxy {
            send: Box::new(move |path, language| {
                let service = service.clone();
                Box::pin(async move {
                    let request = Request::get(path)
                        .header(HOST, "proxy.test")
                        .header("accept-language", language)
                        .body(Body::empty())
                        .unwrap();
                    let response = service.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    response.into_body().collect().await.unwrap();
                })
            }),
        }
    }

    async fn get(&self, path: String, language: &'static str) {
        (self.send)(path, language).await;
    }

    /// GETs `count` paths never asked for before (from `next`).
    async fn churn(&self, next: &mut u64, count: u64, languages: &[&'static str]) {
        for _ in 0..count {
            *next += 1;
            let language = languages[(*next % languages.len() as u64) as usize];
            self.get(format!("/k/{next}"), language).await;
        }
    }
}

fn cache(budget: u64) -> Cache {
    Cache::builder()
        .name("http-budget")
        .memory_budget(budget)
        .build()
        .unwrap()
}

#[test]
fn http_responses_are_weighed_within_the_margin_of_their_real_size() {
    let _serial = serial();
    let rt = runtime();
    rt.block_on(async {
        for vary in [false, true] {
            let addr = origin("max-age=3600", vary).await;
            let cache = cache(256 << 20);
            let proxy = Proxy::new(addr, &cache);
            let mut next = 0;
            // Connections, buffers and lazily built tables first.
            proxy.churn(&mut next, 200, &["en"]).await;
            let weighted_before = cache.weighted_size();
            let before = heap();
            proxy.churn(&mut next, 5_000, &["en", "fr"]).await;
            let weighted = cache.weighted_size() - weighted_before;
            let what = if vary { "http, varying" } else { "http" };
            assert_within_margin(what, heap() - before, weighted);
        }
    });
}

#[test]
fn http_responses_stay_within_the_budget_under_ever_new_urls() {
    let _serial = serial();
    let rt = runtime();
    rt.block_on(async {
        let cases = [
            ("stored", "max-age=3600", false),
            ("stored, varying", "max-age=3600", true),
            ("no-store", "no-store", false),
        ];
        for (what, cache_control, vary) in cases {
            let budget = 1 << 20;
            let addr = origin(cache_control, vary).await;
            let cache = cache(budget);
            let proxy = Proxy::new(addr, &cache);
            let mut next = 0;
            // The connection and its buffers.
            proxy.churn(&mut next, 1, &["en"]).await;
            let before = heap();
            proxy.churn(&mut next, 6_000, &["en", "fr", "de"]).await;
            cache.weighted_size();
            let full = heap() - before;
            proxy.churn(&mut next, 12_000, &["en", "fr", "de"]).await;
            cache.weighted_size();
            let after = heap() - before;
            eprintln!("{what}, 1 MiB budget: {full} B when full, {after} B after twice as many");
            assert!(cache.weighted_size() <= budget);
            assert_bounded(what, budget as i64, full, after);
        }
    });
}
