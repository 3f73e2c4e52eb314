//! `--demo`: the service started twice in this process (caching off, then on), each driven by
//! the same mixed read/write load over loopback, then a before/after table and a chart.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::app::db::{tenant_name, PRODUCTS, TENANTS, USERS};
use crate::app::{self, Options};
use crate::chart;

/// How the load is shaped.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    /// How long each phase runs.
    pub(crate) duration: Duration,
    /// Requests in flight at any time (one connection each).
    pub(crate) concurrency: usize,
}

/// What one phase measured.
pub(crate) struct Phase {
    pub(crate) label: &'static str,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) elapsed: Duration,
    /// Every request's latency in microseconds, sorted.
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) db_queries: u64,
    /// Cache lookups answered from the cache (fresh or stale), when caching was on.
    pub(crate) hit_ratio: Option<f64>,
    /// Lookups answered stale while one refresh ran, and misses that waited for another
    /// caller's load instead of querying (stampede protection at work).
    pub(crate) stale_and_coalesced: Option<(u64, u64)>,
    pub(crate) rss_kib: Option<u64>,
    pub(crate) cache_bytes: Option<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1e3
    }
}

/// Runs both phases, prints the table, writes the chart.
pub(crate) async fn run(load: &Load, redis: Option<String>) -> Result<(), String> {
    println!(
        "cache-layer catalog demo: {} s of mixed load per phase, {} concurrent requests, \
         ~95% reads over a skewed hot set, ~5% writes\n",
        load.duration.as_secs_f64(),
        load.concurrency
    );
    let phases = measure(load, redis).await?;
    println!();
    print!("{}", table(&phases[0], &phases[1]));
    let path = chart_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, chart::latency_cdf(&phases))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\nlatency chart: {}", path.display());
    Ok(())
}

/// Both phases: caching off, then on, each on a fresh service on a free loopback port.
pub(crate) async fn measure(load: &Load, redis: Option<String>) -> Result<Vec<Phase>, String> {
    let mut phases = Vec::new();
    for (label, no_cache) in [("caching off", true), ("caching on", false)] {
        let options = Options {
            no_cache,
            redis: redis.clone(),
        };
        let running = app::start("127.0.0.1:0", &options).await?;
        eprintln!("{label}: service on http://{}", running.addr);
        let phase = drive(label, &running, load).await;
        running.stop();
        phases.push(phase);
    }
    Ok(phases)
}

/// `target/catalog-demo.svg` in the workspace.
fn chart_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("catalog-demo.svg")
}

/// One request of the mix.
enum Call {
    Get(String),
    Me(u64),
    Rename(u64, u64),
}

/// A small xorshift generator: the load must not depend on a crate or on the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An id in `1..=n`, Zipf-like (probability ~ 1/rank): a few hot ids take most requests.
    fn zipf(&mut self, n: u64) -> u64 {
        ((n as f64).powf(self.unit()) as u64).clamp(1, n)
    }

    fn call(&mut self) -> Call {
        let roll = self.next() % 100;
        match roll {
            0..=4 => Call::Rename(self.zipf(USERS), self.next() % 1000),
            5..=34 => Call::Get("/courses/featured".to_owned()),
            35..=59 => Call::Get(format!("/users/{}", self.zipf(USERS))),
            // One product lookup in ten is for an id that does not exist (penetration).
            60..=79 if roll < 62 => Call::Get(format!("/products/{}", PRODUCTS + self.zipf(500))),
            60..=79 => Call::Get(format!("/products/{}", self.zipf(PRODUCTS))),
            80..=89 => Call::Get(format!(
                "/tenants/{}/settings",
                tenant_name(self.zipf(TENANTS) - 1)
            )),
            _ => Call::Me(self.zipf(USERS)),
        }
    }
}

/// Drives `load` against `running` and measures it, printing progress every second.
async fn drive(label: &'static str, running: &app::Running, load: &Load) -> Phase {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(load.concurrency)
        .build(connector);
    let base = format!("http://{}", running.addr);
    let done = Arc::new(AtomicU64::new(0));
    let queries_before = running.catalog.db.queries();
    let started = Instant::now();
    let deadline = started + load.duration;

    let progress = {
        let done = Arc::clone(&done);
        let catalog = Arc::clone(&running.catalog);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprint!(
                    "\r  {label:<12} {secs:>4.0} s  {n:>9} requests  {:>9.0} req/s  {:>8} db queries ",
                    n as f64 / secs,
                    catalog.db.queries() - queries_before
                );
            }
        })
    };

    let workers: Vec<_> = (0..load.concurrency)
        .map(|worker| {
            let client = client.clone();
            let base = base.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((worker as u64 + 1) * 0x9e37_79b9));
                let mut latencies = Vec::with_capacity(64 * 1024);
                let mut failures = 0u64;
                while Instant::now() < deadline {
                    let request = match rng.call() {
                        Call::Get(path) => Request::get(format!("{base}{path}"))
                            .body(Full::default())
                            .expect("valid request"),
                        Call::Me(id) => Request::get(format!("{base}/me"))
                            .header("authorization", format!("Bearer user-{id}"))
                            .body(Full::default())
                            .expect("valid request"),
                        Call::Rename(id, n) => Request::builder()
                            .method(Method::PUT)
                            .uri(format!("{base}/users/{id}"))
                            .body(Full::new(Bytes::from(format!("user{id} v{n}"))))
                            .expect("valid request"),
                    };
                    let sent = Instant::now();
                    let ok = match client.request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            let body = response.into_body().collect().await;
                            body.is_ok() && (status.is_success() || status.as_u16() == 404)
                        }
                        Err(_) => false,
                    };
                    let took = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    latencies.push(took);
                    failures += u64::from(!ok);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (latencies, failures)
            })
        })
        .collect();

    let mut latencies_us = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await.expect("load worker");
        latencies_us.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    progress.abort();
    latencies_us.sort_unstable();
    let catalog = &running.catalog;
    let caching = catalog.caching();
    let stats = catalog.cache.stats();
    let answered = stats.hits + stats.stale;
    let looked_up = answered + stats.misses;
    eprintln!(
        "\r  {label:<12} done: {} requests in {:.1} s{:40}",
        latencies_us.len(),
        elapsed.as_secs_f64(),
        ""
    );
    Phase {
        label,
        requests: latencies_us.len() as u64,
        failures,
        elapsed,
        db_queries: catalog.db.queries() - queries_before,
        hit_ratio: (caching && looked_up > 0).then(|| answered as f64 / looked_up as f64),
        stale_and_coalesced: caching.then_some((stats.stale, stats.coalesced)),
        rss_kib: rss_kib(),
        cache_bytes: caching.then(|| catalog.cache.weighted_size()),
        latencies_us,
    }
}

/// This process's resident set size, from `/proc/self/status` (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The before/after table.
pub(crate) fn table(off: &Phase, on: &Phase) -> String {
    let mut out = String::new();
    // "12.3x more" for throughput, "45.6x less" for latency and queries.
    let ratio = |after: f64, before: f64| {
        if after <= 0.0 || before <= 0.0 {
            "-".to_owned()
        } else if after >= before {
            format!("{:.1}x more", after / before)
        } else {
            format!("{:.1}x less", before / after)
        }
    };
    let row = |out: &mut String, name: &str, a: String, b: String, change: String| {
        let _ = writeln!(out, "| {name:<22} | {a:>13} | {b:>13} | {change:>13} |");
    };
    let _ = writeln!(
        out,
        "| {:<22} | {:>13} | {:>13} | {:>13} |",
        "", off.label, on.label, "change"
    );
    let _ = writeln!(
        out,
        "| {:-<22} | {:->13}:| {:->13}:| {:->13}:|",
        "", "", "", ""
    );
    row(
        &mut out,
        "requests",
        off.requests.to_string(),
        on.requests.to_string(),
        String::new(),
    );
    row(
        &mut out,
        "requests/s",
        format!("{:.0}", off.rate()),
        format!("{:.0}", on.rate()),
        ratio(on.rate(), off.rate()),
    );
    for (name, q) in [
        ("p50 latency", 0.5),
        ("p95 latency", 0.95),
        ("p99 latency", 0.99),
    ] {
        let (a, b) = (off.quantile_ms(q), on.quantile_ms(q));
        row(
            &mut out,
            name,
            format!("{a:.3} ms"),
            format!("{b:.3} ms"),
            ratio(b, a),
        );
    }
    row(
        &mut out,
        "database queries",
        off.db_queries.to_string(),
        on.db_queries.to_string(),
        String::new(),
    );
    let per_request = |p: &Phase| p.db_queries as f64 / p.requests.max(1) as f64;
    row(
        &mut out,
        "queries per request",
        format!("{:.3}", per_request(off)),
        format!("{:.3}", per_request(on)),
        ratio(per_request(on), per_request(off)),
    );
    let hit = |p: &Phase| {
        p.hit_ratio
            .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
    };
    row(
        &mut out,
        "cache hit ratio",
        hit(off),
        hit(on),
        String::new(),
    );
    let stale = |p: &Phase| {
        p.stale_and_coalesced
            .map_or("-".to_owned(), |(s, c)| format!("{s} / {c}"))
    };
    row(
        &mut out,
        "stale / coalesced",
        stale(off),
        stale(on),
        String::new(),
    );
    let mib = |kib: Option<u64>| {
        kib.map_or("n/a".to_owned(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    row(
        &mut out,
        "process RSS after",
        mib(off.rss_kib),
        mib(on.rss_kib),
        String::new(),
    );
    row(
        &mut out,
        "cache size",
        mib(off.cache_bytes.map(|b| b / 1024)),
        mib(on.cache_bytes.map(|b| b / 1024)),
        String::new(),
    );
    row(
        &mut out,
        "failed requests",
        off.failures.to_string(),
        on.failures.to_string(),
        String::new(),
    );
    out
}
