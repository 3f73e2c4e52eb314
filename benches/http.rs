//! `CacheLayer` against the handler it caches: a cache hit through the layer vs a plain axum
//! handler returning the same bytes, the 304 path (hit + matching `If-None-Match`), and the
//! hit paths of the peers `axum-response-cache` and `http-cache-tower-server`.
//!
//! - `http_1k`: the `Router` driven in process with `oneshot` (the layer's own cost, exposed).
//! - `loopback_1k`: real servers on `127.0.0.1:0` and a keep-alive hyper client, one request
//!   at a time (what a client sees).
//!
//! - `wrk`: the server's throughput, which the two groups above cannot isolate (their client runs
//!   on the server's thread, so it pays for parsing the `Age`, `Cache-Status` and `ETag` a
//!   cache adds as if the server did). Each server gets one runtime thread, `wrk` (Debian
//!   package) the other core. Rounds of one run per arm; the ratio quoted is the median of the
//!   rounds' ratios, so that a slow spell of the machine does not land on one arm. A reference
//!   arm, `same_headers_static`, is a handler answering the hit's exact head and body from
//!   static memory (no lookup, no allocation): what the headers a cache must send (`Age`,
//!   `Cache-Status`, `ETag`, the stored `Date` and `Content-Length`) cost by themselves.
//!   Skipped, with a note, when `wrk` is not installed.
//!
//! `cargo bench --bench http` prints criterion's report, then the median ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cache_layer::{Cache, CacheLayer};
use criterion::{criterion_group, Criterion};
use http_body_util::{BodyExt, Empty};
use http_cache_tower_server::ServerCacheLayer;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::median;
use tower::{Layer, Service, ServiceExt};

mod support;

/// A 1 KiB JSON-ish payload, as a typical API response.
fn payload() -> String {
    let mut body = String::from("[");
    while body.len() < 1000 {
        body.push_str("{\"id\":42,\"name\":\"Ada\"},");
    }
    body.push_str("{}]");
    body
}

fn app() -> Router {
    let body = payload();
    Router::new().route(
        "/users",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        ("cache-control", "max-age=3600"),
                        ("content-type", "application/json"),
                    ],
                    body,
                )
            }
        }),
    )
}

async fn call<S, B>(service: &S, if_none_match: Option<&str>) -> usize
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut request = Request::get("http://bench.local/users");
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = service
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(status == StatusCode::OK || status == StatusCode::NOT_MODIFIED);
    body.len()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn measure<S, B>(rt: &tokio::runtime::Runtime, n: u64, service: &S, tag: Option<&str>) -> Duration
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..n {
            black_box(call(service, tag).await);
        }
        start.elapsed()
    })
}

fn hits(c: &mut Criterion) {
    let rt = runtime();
    // `with_state` finalises the routes once, as `axum::serve` does.
    let plain = app().with_state(());
    let cache = Cache::builder().build().expect("cache");
    let cached = app().layer(CacheLayer::new(cache)).with_state(());
    let etag = rt.block_on(async {
        let response = cached
            .clone()
            .oneshot(
                Request::get("http://bench.local/users")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        response.headers()["etag"].to_str().unwrap().to_owned()
    });
    let mut group = c.benchmark_group("http_1k");
    group.bench_function("plain_handler", |b| {
        b.iter_custom(|n| measure(&rt, n, &plain, None))
    });
    group.bench_function("cache_layer_hit", |b| {
        b.iter_custom(|n| measure(&rt, n, &cached, None))
    });
    group.bench_function("cache_layer_304", |b| {
        b.iter_custom(|n| measure(&rt, n, &cached, Some(&etag)))
    });
    // Peers, layered the same way where they can be (http-cache-tower-server changes the error
    // type, which `Router::layer` does not accept, so it wraps the router from outside).
    let peer = app()
        .layer(axum_response_cache::CacheLayer::with_lifespan(
            Duration::from_secs(3600),
        ))
        .with_state(());
    rt.block_on(call(&peer, None));
    group.bench_function("axum_response_cache_hit", |b| {
        b.iter_custom(|n| measure(&rt, n, &peer, None))
    });
    let peer =
        ServerCacheLayer::new(http_cache::MokaManager::default()).layer(app().with_state(()));
    rt.block_on(call(&peer, None));
    group.bench_function("http_cache_tower_server_hit", |b| {
        b.iter_custom(|n| measure(&rt, n, &peer, None))
    });
    group.finish();
}

/// Serves `router` on an ephemeral loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/users")
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn fetch(client: &HttpClient, url: &str, if_none_match: Option<&str>) -> usize {
    let mut request = Request::get(url);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = client
        .request(request.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .len()
}

fn loopback(c: &mut Criterion) {
    // Client and servers on one thread: no cross-core wake-ups, whose cost on a busy 2-core
    // machine swings by several times and would swamp the difference being measured.
    let rt = runtime();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let cache = Cache::builder().build().expect("cache");
    let (plain, cached) = rt.block_on(async {
        let plain = serve(app()).await;
        let cached = serve(app().layer(CacheLayer::new(cache))).await;
        fetch(&client, &cached, None).await;
        (plain, cached)
    });
    let etag = rt.block_on(async {
        let response = client
            .request(Request::get(&cached).body(Empty::new()).unwrap())
            .await
            .unwrap();
        response.headers()["etag"].to_str().unwrap().to_owned()
    });
    let run = |n: u64, url: &str, tag: Option<&str>| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                black_box(fetch(&client, url, tag).await);
            }
            start.elapsed()
        })
    };
    let mut group = c.benchmark_group("loopback_1k");
    group.bench_function("plain_handler", |b| b.iter_custom(|n| run(n, &plain, None)));
    group.bench_function("cache_layer_hit", |b| {
        b.iter_custom(|n| run(n, &cached, None))
    });
    group.bench_function("cache_layer_304", |b| {
        b.iter_custom(|n| run(n, &cached, Some(&etag)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hits, loopback
}

/// A handler answering `head` and `body`, all from static memory: the cheapest way to send
/// exactly these bytes through axum.
fn static_app(head: &HeaderMap, body: &[u8]) -> Router {
    let leak = |bytes: &[u8]| -> &'static [u8] { Box::leak(bytes.to_vec().into_boxed_slice()) };
    let head: Vec<(HeaderName, HeaderValue)> = head
        .iter()
        .map(|(name, value)| {
            let text = std::str::from_utf8(leak(value.as_bytes())).expect("ASCII header");
            (name.clone(), HeaderValue::from_static(text))
        })
        .collect();
    let body = Bytes::from_static(leak(body));
    Router::new().route(
        "/users",
        get(move || {
            let mut response = Response::new(Body::from(body.clone()));
            response.headers_mut().extend(head.clone());
            async move { response }
        }),
    )
}

/// `wrk`'s requests/s against `url` (with `header`, if any).
fn wrk(url: &str, header: Option<&str>, seconds: u32) -> Option<f64> {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t1", "-c16", &format!("-d{seconds}s")]);
    if let Some(header) = header {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("Requests/sec:"))?;
    line.trim_start_matches("Requests/sec:").trim().parse().ok()
}

/// Server throughput under `wrk`: plain handler, cache hit, 304, and the reference arm; medians
/// of interleaved runs.
fn under_wrk() {
    // Only when no filter leaves it out (`cargo bench --bench http -- wrk` runs it alone), and
    // never under `--profile-time`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if args.iter().any(|a| a == "--profile-time")
        || (!filters.is_empty() && !filters.iter().any(|f| "wrk".contains(f.as_str())))
    {
        return;
    }
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("\nwrk: not installed (apt-get install wrk): server-throughput ratios skipped");
        return;
    }
    let server = |router: Router| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let url = runtime.block_on(serve(router));
        (runtime, url)
    };
    let (_plain_rt, plain) = server(app());
    let cache = Cache::builder().build().expect("cache");
    let (_cached_rt, cached) = server(app().layer(CacheLayer::new(cache)));
    let (head, body) = runtime().block_on(async {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        fetch(&client, &cached, None).await;
        let response = client
            .request(Request::get(&cached).body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        (parts.headers, body.collect().await.unwrap().to_bytes())
    });
    assert!(head["cache-status"].to_str().unwrap().contains("hit"));
    let if_none_match = format!("If-None-Match: {}", head["etag"].to_str().unwrap());
    let (_static_rt, same_headers) = server(static_app(&head, &body));
    let arms: [(&str, &str, Option<&str>); 4] = [
        ("plain_handler", &plain, None),
        ("cache_layer_hit", &cached, None),
        ("cache_layer_304", &cached, Some(&if_none_match)),
        ("same_headers_static", &same_headers, None),
    ];
    // Rounds rather than blocks: each round runs every arm once, back to back, so a ratio
    // compares runs that saw the same machine. The order rotates between rounds.
    const ROUNDS: usize = 9;
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); arms.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); arms.len()];
    for (_, url, header) in &arms {
        wrk(url, *header, 1); // warm-up
    }
    for round in 0..ROUNDS {
        let mut this_round = vec![None; arms.len()];
        for k in 0..arms.len() {
            let i = (round + k) % arms.len();
            let (_, url, header) = arms[i];
            this_round[i] = wrk(url, header, 3);
        }
        for (i, rps) in this_round.iter().enumerate() {
            if let Some(rps) = rps {
                results[i].push(*rps);
                if let Some(plain) = this_round[0] {
                    ratios[i].push(rps / plain);
                }
            }
        }
    }
    let median_of = |runs: &mut Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs.get(runs.len() / 2).copied()
    };
    println!(
        "\nwrk -t1 -c16 -d3s, server on one runtime thread, {ROUNDS} rounds (each arm once per \
         round): median requests/s, and the median of the rounds' ratios to the plain handler:"
    );
    if results[0].is_empty() {
        println!("  wrk produced no result");
        return;
    }
    for (i, (name, _, _)) in arms.iter().enumerate() {
        let (Some(rps), Some(ratio)) = (median_of(&mut results[i]), median_of(&mut ratios[i]))
        else {
            continue;
        };
        let spread = ratios[i].first().zip(ratios[i].last());
        let spread = spread.map_or(String::new(), |(low, high)| {
            format!(" (rounds {low:.2}-{high:.2})")
        });
        println!("  wrk/{name} {rps:.0} requests/s: {ratio:.2}x the plain handler{spread}");
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nmedian ratios (throughput relative to the plain handler; higher is better):");
    for group in ["http_1k", "loopback_1k"] {
        let Some(plain) = median(group, "plain_handler") else {
            continue;
        };
        for arm in [
            "cache_layer_hit",
            "cache_layer_304",
            "axum_response_cache_hit",
            "http_cache_tower_server_hit",
        ] {
            if let Some(ours) = median(group, arm) {
                println!(
                    "  {group}/{arm} {ours:.0} ns vs plain_handler {plain:.0} ns: {:.2}x throughput",
                    plain / ours
                );
            }
        }
    }
    under_wrk();
}
