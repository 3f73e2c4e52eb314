//! Invalidation across a fleet: one `redis-server` this bench starts on a free loopback port,
//! and N tiered caches in this process sharing it and one key prefix (N instances of a fleet,
//! each with its own connections and subscriber). Instance 0 invalidates; every other instance
//! timestamps each invalidation as its `on_invalidation` hook hears it (after it has dropped
//! the name from its memory). For each N:
//!
//! - **flood**: `FLEET_CALLERS` tasks (default 128) on instance 0 invalidate ever new names for
//!   `FLEET_SECS` seconds (default 3): the invalidations per second one instance issues, the
//!   delay from each `invalidate()` returning until the last of the other N - 1 instances
//!   dropped the name (p50 / p99 / max), Redis's CPU per 1,000 invalidations, `PUBLISH`es per
//!   invalidation, the largest client output buffer seen, and this process's CPU per
//!   invalidation (the issuer and every subscriber applying it);
//! - **one at a time**: 500 invalidations, each after the previous one was heard everywhere:
//!   the same delay when nothing queues.
//!
//! `cargo bench --bench fleet` (N = 2, 10, 50; `FLEET_N=10` for one). All of it runs on this
//! machine: Redis, the issuer and every subscriber share its cores.

#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_layer::{Cache, Invalidated, Invalidation, Origin};
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

/// The most invalidations one fleet's run records.
const MOST: usize = 4_000_000;
/// How many invalidations the one-at-a-time phase makes.
const ONE_AT_A_TIME: usize = 500;

fn main() {
    let sizes = setting("FLEET_N", "2,10,50");
    let secs: u64 = setting("FLEET_SECS", "3")
        .parse()
        .expect("FLEET_SECS: seconds");
    let callers: usize = setting("FLEET_CALLERS", "128")
        .parse()
        .expect("FLEET_CALLERS: a count");
    let server = redis_server::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in sizes
        .split(',')
        .map(|n| n.trim().parse::<usize>().expect("FLEET_N"))
    {
        let n = n.max(2);
        runtime.block_on(run(&server, n, Duration::from_secs(secs), callers));
    }
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// When each invalidation was made and heard, by sequence number (the name is `f:<seq>`).
struct Arrivals {
    epoch: Instant,
    /// Instances that have not heard it yet.
    remaining: Vec<AtomicU32>,
    /// Nanoseconds since `epoch`: the call returned; the last instance heard it.
    returned: Vec<AtomicU64>,
    heard: Vec<AtomicU64>,
    everywhere: Notify,
}

impl Arrivals {
    fn new(listeners: u32) -> Self {
        Arrivals {
            epoch: Instant::now(),
            remaining: (0..MOST).map(|_| AtomicU32::new(listeners)).collect(),
            returned: (0..MOST).map(|_| AtomicU64::new(0)).collect(),
            heard: (0..MOST).map(|_| AtomicU64::new(0)).collect(),
            everywhere: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn heard(&self, invalidation: &Invalidation<'_>) {
        let (Invalidated::Name(name), Origin::Remote) = (invalidation.what, invalidation.origin)
        else {
            return;
        };
        let Some(seq) = name
            .strip_prefix("f:")
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return;
        };
        if seq >= MOST {
            return;
        }
        self.heard[seq].fetch_max(self.now(), Ordering::AcqRel);
        if self.remaining[seq].fetch_sub(1, Ordering::AcqRel) == 1 {
            self.everywhere.notify_one();
        }
    }

    /// Delays (µs) from return to heard everywhere for `seqs`, sorted, and how many were not
    /// heard everywhere.
    fn delays(&self, seqs: std::ops::Range<usize>) -> (Vec<f64>, usize) {
        let mut delays = Vec::with_capacity(seqs.len());
        let mut missing = 0;
        for seq in seqs {
            if self.remaining[seq].load(Ordering::Acquire) != 0 {
                missing += 1;
                continue;
            }
            let returned = self.returned[seq].load(Ordering::Acquire);
            let heard = self.heard[seq].load(Ordering::Acquire);
            delays.push(heard.saturating_sub(returned) as f64 / 1000.0);
        }
        delays.sort_by(f64::total_cmp);
        (delays, missing)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn run(server: &redis_server::RedisServer, n: usize, secs: Duration, callers: usize) {
    let prefix = format!("fleet{n}:");
    let arrivals = Arc::new(Arrivals::new(u32::try_from(n - 1).expect("N")));
    let fleet: Vec<Cache> = (0..n)
        .map(|_| {
            let arrivals = Arc::clone(&arrivals);
            Cache::builder()
                .tiered(server.url())
                .key_prefix(&prefix)
                .on_invalidation(move |invalidation| arrivals.heard(invalidation))
                .build()
                .expect("cache")
        })
        .collect();
    let mut raw = server.raw().await;
    subscribe_all(&fleet, &mut raw, &format!("{prefix}invalidate")).await;
    let issuer = fleet[0].clone();
    // Warm-up: connections made, scripts cached.
    for seq in 0..1000 {
        issuer.invalidate(&format!("warm:{seq}")).await;
    }
    let before = redis_counts(&mut raw).await;
    let cpu_before = process_cpu();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(largest_output_buffer(
        server.raw().await,
        Arc::clone(&sampling),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + secs;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (issuer, next, arrivals) =
                (issuer.clone(), Arc::clone(&next), Arc::clone(&arrivals));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let seq = next.fetch_add(1, Ordering::AcqRel);
                    if seq >= MOST {
                        return;
                    }
                    issuer.invalidate(&format!("f:{seq}")).await;
                    arrivals.returned[seq].store(arrivals.now(), Ordering::Release);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    let took = started.elapsed();
    let sent = next.load(Ordering::Acquire).min(MOST);
    let waited = wait_heard(&arrivals, 0..sent).await;
    sampling.store(false, Ordering::Release);
    let largest_buffer = sampler.await.expect("sampler");
    let after = redis_counts(&mut raw).await;
    let cpu = process_cpu() - cpu_before;
    let (delays, missing) = arrivals.delays(0..sent);
    let rate = sent as f64 / took.as_secs_f64();
    println!(
        "fleet N={n:>2} flood: {rate:>8.0} invalidations/s ({sent} in {took:.2?}, {callers} \
         callers); heard everywhere after return p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs \
         ({missing} not heard{}); Redis CPU {:.1} ms per 1,000, {:.3} PUBLISH per \
         invalidation, largest output buffer {largest_buffer} B; this process's CPU {:.1} µs per \
         invalidation ({:.1} per instance)",
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        quantile(&delays, 1.0),
        if waited { "" } else { " within 10 s" },
        (after.cpu - before.cpu) * 1e6 / sent as f64,
        (after.publishes - before.publishes) as f64 / sent as f64,
        cpu * 1e6 / sent as f64,
        cpu * 1e6 / sent as f64 / n as f64,
    );
    let first = sent;
    for seq in first..first + ONE_AT_A_TIME {
        let everywhere = arrivals.everywhere.notified();
        issuer.invalidate(&format!("f:{seq}")).await;
        arrivals.returned[seq].store(arrivals.now(), Ordering::Release);
        if arrivals.remaining[seq].load(Ordering::Acquire) != 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), everywhere).await;
        }
    }
    wait_heard(&arrivals, first..first + ONE_AT_A_TIME).await;
    let (delays, missing) = arrivals.delays(first..first + ONE_AT_A_TIME);
    println!(
        "fleet N={n:>2} one at a time: heard everywhere after return p50 {:.0} µs, p99 {:.0} \
         µs, max {:.0} µs ({missing} not heard)",
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        quantile(&delays, 1.0),
    );
}

/// Starts every instance's subscriber and waits until Redis counts them all.
async fn subscribe_all(fleet: &[Cache], raw: &mut MultiplexedConnection, channel: &str) {
    for cache in fleet {
        cache.invalidate("start").await;
    }
    for _ in 0..500 {
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(raw)
            .await
            .expect("PUBSUB NUMSUB");
        if count >= fleet.len() {
            // Each subscriber empties its memory as it starts listening: let that pass.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the fleet did not subscribe");
}

/// Waits until every one of `seqs` was heard everywhere (at most 10 s); whether it was.
async fn wait_heard(arrivals: &Arrivals, seqs: std::ops::Range<usize>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    for seq in seqs {
        while arrivals.remaining[seq].load(Ordering::Acquire) != 0 {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    true
}

/// Seconds of CPU this process has used, user and system (`/proc/self/stat`, at 100 ticks a
/// second); 0 where that cannot be read.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    (ticks(11) + ticks(12)) / 100.0
}

struct RedisCounts {
    /// Seconds of CPU, user and system.
    cpu: f64,
    publishes: u64,
}

async fn redis_counts(raw: &mut MultiplexedConnection) -> RedisCounts {
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(raw)
        .await
        .expect("INFO");
    let field = |name: &str| -> Option<&str> {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
    };
    let cpu = ["used_cpu_user", "used_cpu_sys"]
        .iter()
        .filter_map(|name| field(name)?.trim().parse::<f64>().ok())
        .sum();
    let publishes = field("cmdstat_publish")
        .and_then(|stats| stats.strip_prefix("calls="))
        .and_then(|calls| calls.split(',').next()?.parse().ok())
        .unwrap_or(0);
    RedisCounts { cpu, publishes }
}

/// The largest output buffer (`omem`) of any client, sampled every 50 ms while `sampling`.
async fn largest_output_buffer(mut raw: MultiplexedConnection, sampling: Arc<AtomicBool>) -> u64 {
    let mut largest = 0;
    while sampling.load(Ordering::Acquire) {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw)
            .await
            .unwrap_or_default();
        let omem = clients
            .split_whitespace()
            .filter_map(|field| field.strip_prefix("omem=")?.parse::<u64>().ok());
        largest = omem.fold(largest, u64::max);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    largest
}
