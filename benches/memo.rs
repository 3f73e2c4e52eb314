//! `#[cached]` hit path against a bare moka get of the same key and value and against the
//! `cached` crate's `#[cached]`, single task and 2 tasks; `Cache::get_or_load`'s hit against
//! the macro's (with the key built per call, and built once); a 100-key `get_or_load_many`
//! against 100 `get_or_load`s (hits, and cold keys from a source that takes 1 ms per call);
//! plus a cold-key stampede.
//!
//! `cargo bench --bench memo` prints criterion's report, then the median ratios.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use std::collections::HashMap;
use std::convert::Infallible;

use cache_layer::{cached, Cache, Key, LoadOptions};
use criterion::{criterion_group, Criterion};
use support::{median, user, User};

mod support;

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().expect("cache"));

#[cached(ttl = "5m", key = "user:<id>", cache = CACHE)]
async fn ours(id: u64) -> User {
    user(id)
}

#[cached::proc_macro::cached(ttl_secs = 300)]
async fn peer(id: u64) -> User {
    user(id)
}

static MOKA: LazyLock<moka::future::Cache<String, User>> = LazyLock::new(|| {
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(300))
        .build()
});

async fn bare_moka_prebuilt(key: &str) -> User {
    MOKA.get(key).await.expect("warmed")
}

async fn bare_moka(id: u64) -> User {
    MOKA.get(&format!("user:{id}")).await.expect("warmed")
}

static MOKA_ARC: LazyLock<moka::future::Cache<String, std::sync::Arc<User>>> =
    LazyLock::new(|| moka::future::Cache::builder().max_capacity(10_000).build());

async fn moka_arc(key: &str) -> User {
    (*MOKA_ARC.get(key).await.expect("warmed")).clone()
}

const ID: u64 = 42;

static OPTIONS: LazyLock<LoadOptions> =
    LazyLock::new(|| LoadOptions::new(Duration::from_secs(300)));

/// The imperative twin of `ours`: the same key (`user:42`), so the same entry.
async fn by_hand(id: u64) -> User {
    let loaded = CACHE
        .get_or_load(&Key::new("user").part(id), &OPTIONS, move || async move {
            Ok::<_, Infallible>(user(id))
        })
        .await;
    match loaded {
        Ok(user) => user,
        Err(never) => match never {},
    }
}

/// `by_hand` with its key built once: what the key's building costs a call.
static PREBUILT: LazyLock<Key> = LazyLock::new(|| Key::new("user").part(ID));

async fn by_hand_prebuilt_key(id: u64) -> User {
    let loaded = CACHE
        .get_or_load(&PREBUILT, &OPTIONS, move || async move {
            Ok::<_, Infallible>(user(id))
        })
        .await;
    match loaded {
        Ok(user) => user,
        Err(never) => match never {},
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `op` `iters` times split over `tasks` tasks; returns wall time per operation × tasks
/// (i.e. time per operation as seen by one task).
fn spread<F, Fut>(rt: &tokio::runtime::Runtime, tasks: u64, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future + Send,
{
    rt.block_on(async move {
        let per_task = iters.div_ceil(tasks);
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        black_box(op().await);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        started.elapsed() * tasks as u32 / tasks as u32
    })
}

fn hits(c: &mut Criterion) {
    let rt = runtime(2);
    rt.block_on(async {
        ours(ID).await;
        peer(ID).await;
        MOKA.insert(format!("user:{ID}"), user(ID)).await;
        MOKA_ARC
            .insert(format!("user:{ID}"), std::sync::Arc::new(user(ID)))
            .await;
    });
    for tasks in [1u64, 2] {
        let mut group = c.benchmark_group(format!("hit_{tasks}_task"));
        group.bench_function("moka_get_prebuilt_key", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || bare_moka_prebuilt("user:42")))
        });
        group.bench_function("moka_get", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || bare_moka(ID)))
        });
        group.bench_function("moka_arc", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || moka_arc("user:42")))
        });
        group.bench_function("cache_layer", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || ours(ID)))
        });
        group.bench_function("get_or_load", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || by_hand(ID)))
        });
        group.bench_function("get_or_load_prebuilt_key", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || by_hand_prebuilt_key(ID)))
        });
        group.bench_function("cached_crate", |b| {
            b.iter_custom(|n| spread(&rt, tasks, n, || peer(ID)))
        });
        group.finish();
    }
}

static BATCH_CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().expect("cache"));

/// One round trip to the source: 1 ms, whatever the number of keys.
const ROUND_TRIP: Duration = Duration::from_millis(1);

async fn source_many(keys: Vec<Key>) -> Result<HashMap<Key, User>, Infallible> {
    tokio::time::sleep(ROUND_TRIP).await;
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, user(i as u64)))
        .collect())
}

/// One `get_or_load` per key, keeping the values as the batch returns them (an N+1 caller
/// needs them all at once too: the allocator then holds every value's heap data together).
async fn singles(keys: &[Key]) {
    let mut values = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let loaded = BATCH_CACHE
            .get_or_load(key, &OPTIONS, move || async move {
                tokio::time::sleep(ROUND_TRIP).await;
                Ok::<_, Infallible>(user(i as u64))
            })
            .await;
        values.push(loaded.ok());
    }
    black_box(values);
}

async fn batch(keys: &[Key]) {
    let loaded = BATCH_CACHE
        .get_or_load_many(keys, &OPTIONS, source_many)
        .await;
    black_box(loaded.ok());
}

/// 100 keys as one batch and as 100 single loads: all hits, and all cold (fresh keys each
/// round, a source that takes [`ROUND_TRIP`] per call).
fn batches(c: &mut Criterion) {
    let rt = runtime(2);
    let hot: Vec<Key> = (0..100).map(|i| Key::new("hot").part(i)).collect();
    rt.block_on(batch(&hot));
    let mut group = c.benchmark_group("batch_100_hit");
    group.bench_function("single_loads", |b| b.iter(|| rt.block_on(singles(&hot))));
    group.bench_function("get_or_load_many", |b| b.iter(|| rt.block_on(batch(&hot))));
    group.finish();
    let mut group = c.benchmark_group("batch_100_cold");
    group.sample_size(10);
    let mut round = 0u64;
    let mut cold = move |kind: &'static str| {
        round += 1;
        (0..100)
            .map(|i| Key::new(kind).part(round).part(i))
            .collect::<Vec<_>>()
    };
    group.bench_function("single_loads", |b| {
        b.iter_batched(
            || cold("single"),
            |keys| rt.block_on(singles(&keys)),
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("get_or_load_many", |b| {
        b.iter_batched(
            || cold("batch"),
            |keys| rt.block_on(batch(&keys)),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

static SOURCE_CALLS: AtomicUsize = AtomicUsize::new(0);
static STAMPEDE_CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().expect("cache"));

#[cached(ttl = "5m", key = "cold:<id>", cache = STAMPEDE_CACHE)]
async fn cold(id: u64) -> User {
    SOURCE_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    user(id)
}

static PEER_SOURCE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached::proc_macro::cached(ttl_secs = 300)]
async fn peer_cold(id: u64) -> User {
    PEER_SOURCE_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    user(id)
}

fn stampede(c: &mut Criterion) {
    let rt = runtime(2);
    let mut group = c.benchmark_group("stampede_1000_callers");
    group.sample_size(10);
    let mut next_id = 0u64;
    let mut rounds = 0usize;
    group.bench_function("cache_layer", |b| {
        b.iter(|| {
            next_id += 1;
            rounds += 1;
            let id = next_id;
            rt.block_on(async move {
                let calls: Vec<_> = (0..1000).map(|_| tokio::spawn(cold(id))).collect();
                for call in calls {
                    call.await.expect("task");
                }
            })
        })
    });
    let mut peer_rounds = 0usize;
    group.bench_function("cached_crate", |b| {
        b.iter(|| {
            next_id += 1;
            peer_rounds += 1;
            let id = next_id;
            rt.block_on(async move {
                let calls: Vec<_> = (0..1000).map(|_| tokio::spawn(peer_cold(id))).collect();
                for call in calls {
                    call.await.expect("task");
                }
            })
        })
    });
    group.finish();
    println!(
        "\nstampede: cache-layer made {} source calls for {} cold keys x 1000 callers ({:.2} per key); \
         the cached crate made {} for {} ({:.1} per key)",
        SOURCE_CALLS.load(Ordering::SeqCst),
        rounds,
        SOURCE_CALLS.load(Ordering::SeqCst) as f64 / rounds as f64,
        PEER_SOURCE_CALLS.load(Ordering::SeqCst),
        peer_rounds,
        PEER_SOURCE_CALLS.load(Ordering::SeqCst) as f64 / peer_rounds.max(1) as f64,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hits, batches, stampede
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nmedian ratios (lower is better for cache-layer):");
    for tasks in [1, 2] {
        let group = format!("hit_{tasks}_task");
        let ours = median(&group, "cache_layer");
        for by_hand in ["get_or_load", "get_or_load_prebuilt_key"] {
            if let (Some(by_hand_ns), Some(macro_hit)) = (median(&group, by_hand), ours) {
                println!(
                    "  {group}: {by_hand} {by_hand_ns:.1} ns / #[cached] {macro_hit:.1} ns = {:.2}x",
                    by_hand_ns / macro_hit
                );
            }
        }
        for baseline in ["moka_get_prebuilt_key", "moka_get", "cached_crate"] {
            if let (Some(ours), Some(base)) = (ours, median(&group, baseline)) {
                println!(
                    "  {group}: cache_layer {ours:.1} ns / {baseline} {base:.1} ns = {:.2}x",
                    ours / base
                );
            }
        }
    }
    for group in ["batch_100_hit", "batch_100_cold"] {
        if let (Some(batch), Some(singles)) = (
            median(group, "get_or_load_many"),
            median(group, "single_loads"),
        ) {
            println!(
                "  {group}: get_or_load_many {:.1} us / 100 get_or_load {:.1} us = {:.3}x",
                batch / 1000.0,
                singles / 1000.0,
                batch / singles
            );
        }
    }
}
