//! Caching through a write flood: `get_or_load` calls whose loads take 1 s, started every
//! 10 ms for 4 s, while another thread invalidates 100,000 unrelated names a second (what a
//! client sending unsafe requests to ever new URLs causes). Prints the flood's rate and the
//! share of loads whose value was stored (the goal: at least 99%).
//!
//! `cargo bench --bench write_flood`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_layer::{Cache, Key, LoadOptions};

/// Unrelated names invalidated a second.
const RATE: f64 = 100_000.0;
/// How many loads, one started every [`EVERY`].
const LOADS: u64 = 400;
const EVERY: Duration = Duration::from_millis(10);
const LOAD_TIME: Duration = Duration::from_secs(1);

fn main() {
    let cache = Cache::builder().name("write_flood").build().expect("cache");
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (cache, flooding) = (cache.clone(), Arc::clone(&flooding));
        std::thread::spawn(move || flood(&cache, &flooding))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let stored = runtime.block_on(loads(&cache));
    flooding.store(false, Ordering::SeqCst);
    let (sent, took) = flood.join().expect("the flood thread");
    println!(
        "write_flood: {sent} unrelated names invalidated in {took:.2?} ({:.0}/s); \
         {stored} of {LOADS} loads of {LOAD_TIME:?} stored ({:.1}%)",
        sent as f64 / took.as_secs_f64(),
        stored as f64 * 100.0 / LOADS as f64,
    );
}

/// Invalidates `other:<n>` for ever new `n` at [`RATE`] until `flooding` is cleared; returns
/// how many it invalidated and in what time.
fn flood(cache: &Cache, flooding: &AtomicBool) -> (u64, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let sent = AtomicU64::new(0);
    let started = Instant::now();
    runtime.block_on(async {
        let mut n = 0u64;
        while flooding.load(Ordering::SeqCst) {
            let due = (started.elapsed().as_secs_f64() * RATE) as u64;
            while n < due {
                cache.invalidate(&format!("other:{n}")).await;
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent.store(n, Ordering::SeqCst);
    });
    (sent.into_inner(), started.elapsed())
}

/// Runs the loads, each tagged as a `#[cached]` fn's would be; returns how many were stored.
async fn loads(cache: &Cache) -> u64 {
    let calls: Vec<_> = (0..LOADS)
        .map(|n| {
            let cache = cache.clone();
            let start = tokio::time::Instant::now() + EVERY * n as u32;
            tokio::spawn(async move {
                tokio::time::sleep_until(start).await;
                let key = Key::new("slow").part(n);
                let options =
                    LoadOptions::new(Duration::from_secs(300)).tag(format!("group:{}", n % 10));
                let loaded = cache
                    .get_or_load(&key, &options, || async move {
                        tokio::time::sleep(LOAD_TIME).await;
                        Ok::<_, std::convert::Infallible>(n)
                    })
                    .await;
                loaded.is_ok() && cache.get::<u64>(&key).await == Some(n)
            })
        })
        .collect();
    let mut stored = 0;
    for call in calls {
        stored += u64::from(call.await.expect("a load task"));
    }
    stored
}
