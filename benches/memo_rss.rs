//! Soak for memoised values: is the memory budget what the process really uses? A `#[cached]`
//! fn is called with ever new random keys (out of 3 million) for a while; the process's RSS is
//! sampled every 10 s and printed against the target 1.3 x budget + 40 MiB, for budgets of
//! 16, 64 and 256 MiB, each in a fresh process (so that one budget's heap does not count for
//! the next).
//!
//! `cargo bench --bench memo_rss` (env: `BUDGETS="16 64 256"` in MiB, `DURATION=60` seconds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use cache_layer::{cached, Cache};
use support::{user, User};

mod support;

const KEYS: u64 = 3_000_000;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

static BUDGET_MIB: AtomicU64 = AtomicU64::new(64);
static CACHE: LazyLock<Cache> = LazyLock::new(|| {
    Cache::builder()
        .name("memo-soak")
        .memory_budget(BUDGET_MIB.load(Ordering::Relaxed) << 20)
        .build()
        .expect("cache")
});

#[cached(ttl = "1h", key = "user:<id>", cache = CACHE)]
async fn load_user(id: u64) -> User {
    user(id)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// One budget, in this process: calls with random keys for `duration`, printing RSS samples.
fn soak(budget_mib: u64, duration: Duration) {
    BUDGET_MIB.store(budget_mib, Ordering::Relaxed);
    let cache = &*CACHE;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let target = 1.3 * budget_mib as f64 + 40.0;
    let started = Instant::now();
    let mut next_sample = SAMPLE_EVERY;
    let mut calls: u64 = 0;
    // xorshift64: ever new keys without a dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random_key = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % KEYS + 1
    };
    runtime.block_on(async {
        while started.elapsed() < duration {
            for _ in 0..10_000 {
                std::hint::black_box(load_user(random_key()).await);
            }
            calls += 10_000;
            if started.elapsed() >= next_sample {
                let rss = rss_mib();
                println!(
                    "{:<8} {:<6} {:<10} {:<10} {:<10} {:<10} {:.2}",
                    format!("{budget_mib}MiB"),
                    format!("{}s", next_sample.as_secs()),
                    format!("{rss:.0}MiB"),
                    format!("{target:.0}MiB"),
                    cache.entry_count(),
                    format!("{:.1}MiB", cache.weighted_size() as f64 / 1048576.0),
                    rss / budget_mib as f64,
                );
                next_sample += SAMPLE_EVERY;
            }
        }
    });
    println!("  {budget_mib}MiB: {calls} calls");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let duration = Duration::from_secs(
        std::env::var("DURATION")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(60),
    );
    if let Some(at) = args.iter().position(|a| a == "--budget-mib") {
        let budget = args.get(at + 1).and_then(|b| b.parse().ok()).expect("MiB");
        soak(budget, duration);
        return;
    }
    let budgets = std::env::var("BUDGETS").unwrap_or_else(|_| "16 64 256".to_owned());
    println!(
        "#[cached] over {KEYS} random keys, {}s per budget",
        duration.as_secs()
    );
    println!(
        "{:<8} {:<6} {:<10} {:<10} {:<10} {:<10} RSS/budget",
        "budget", "time", "RSS", "target", "entries", "weighted"
    );
    let me = std::env::current_exe().expect("this bench's path");
    for budget in budgets.split_whitespace() {
        let status = std::process::Command::new(&me)
            .args(["--budget-mib", budget])
            .status()
            .expect("run one budget");
        assert!(status.success(), "budget {budget}: {status}");
    }
}
