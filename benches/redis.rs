//! The Redis tier against its baselines, in one run, on a `redis-server` this bench starts on
//! a free loopback port:
//! - a Redis-backed `#[cached]` hit against a raw `GET` (+ MessagePack decode) of the same
//!   payload on a `ConnectionManager` to the same server;
//! - a tiered L1 hit against a memory-only cache hit;
//! - the `cached` crate's `AsyncRedisCache` get of the same value, as the peer;
//! - a hit on a 100 KiB JSON text and on a 2 KiB one (a catalog page's size) through Redis
//!   alone, written plain and written compressed (`compress_above`), with the bytes Redis holds
//!   for each.
//!
//! `cargo bench --bench redis` prints criterion's report, then the median ratios.

#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::hint::black_box;
use std::time::Duration;

use cache_layer::{cached, Cache};
use cached::ConcurrentCachedAsync;
use criterion::{criterion_group, Criterion};
use support::{median, user, User};

mod support;

#[cached(ttl = "5m", key = "user:<id>", cache = cache)]
async fn get_user(cache: &Cache, id: u64) -> User {
    let _ = cache;
    user(id)
}

const ID: u64 = 42;

#[cached(ttl = "5m", key = "json:<rows>", cache = cache)]
async fn get_json(cache: &Cache, rows: usize) -> String {
    let _ = cache;
    json_rows(rows)
}

/// `rows` rows of JSON, about 50 bytes each.
fn json_rows(rows: usize) -> String {
    (0..rows)
        .map(|i| {
            format!(
                "{{\"course\":{i},\"title\":\"Course {i}\",\"seats\":{}}},",
                i % 40
            )
        })
        .collect()
}

/// The two sizes measured: a catalog page's, and 100 KiB.
const JSON_ROWS: [usize; 2] = [40, 2_000];

fn redis_benches(c: &mut Criterion) {
    let server = redis_server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shared = Cache::builder()
        .redis(server.url())
        .key_prefix("bench:")
        .build()
        .expect("cache");
    let tiered = Cache::builder()
        .tiered(server.url())
        .key_prefix("bench-tiered:")
        .build()
        .expect("cache");
    let memory = Cache::builder().build().expect("cache");
    let (mut raw, peer) = rt.block_on(async {
        get_user(&shared, ID).await;
        get_user(&memory, ID).await;
        // Tiered: wait until the subscriber is up and hits come from L1.
        for _ in 0..200 {
            get_user(&tiered, ID).await;
            let before = tiered.stats();
            get_user(&tiered, ID).await;
            let after = tiered.stats();
            if after.hits > before.hits && after.shared_hits == before.shared_hits {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = redis::Client::open(server.url()).expect("url");
        let raw = client
            .get_connection_manager()
            .await
            .expect("raw connection");
        let peer = cached::AsyncRedisCache::<u64, User>::builder("peer")
            .ttl(Duration::from_secs(300))
            .connection_string(&server.url())
            .connection_manager(true)
            .build()
            .await
            .expect("peer cache");
        let _ = peer.async_cache_set(ID, user(ID)).await;
        (raw, peer)
    });
    // The raw baseline reads the very bytes the Redis-backed hit reads.
    let key = "bench:v:user:42";

    let mut group = c.benchmark_group("redis_hit");
    group.bench_function("raw_get_and_decode", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut raw)
                    .await
                    .expect("get");
                // Same work as a decode: skip the fixed header and tags, read the value.
                black_box(rmp_serde::from_slice::<User>(&bytes[bytes.len() - payload_len()..]).ok())
            }
        })
    });
    group.bench_function("cache_layer", |b| {
        b.to_async(&rt).iter(|| get_user(&shared, ID))
    });
    group.bench_function("cached_crate_redis", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peer.async_cache_get(&ID).await.ok()) })
    });
    group.finish();

    let mut group = c.benchmark_group("l1_hit");
    group.bench_function("memory_only", |b| {
        b.to_async(&rt).iter(|| get_user(&memory, ID))
    });
    group.bench_function("tiered", |b| b.to_async(&rt).iter(|| get_user(&tiered, ID)));
    group.finish();
    let _ = &mut raw;
    compression_benches(c, &rt, &server);
}

/// Redis-alone hits on JSON texts written plain and compressed, and the bytes each takes.
fn compression_benches(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    server: &redis_server::RedisServer,
) {
    let plain = redis_only(server, "plain:", None);
    let compressed = redis_only(server, "lz4:", Some(1024));
    let mut group = c.benchmark_group("redis_hit_json");
    for rows in JSON_ROWS {
        for (name, cache, prefix) in [
            ("plain", &plain, "plain:"),
            ("compressed", &compressed, "lz4:"),
        ] {
            let bytes = rt.block_on(stored_bytes(server, (cache, prefix), rows));
            println!("json {rows} rows, {name}: {bytes} bytes in Redis");
            group.bench_function(format!("{name}_{rows}"), |b| {
                b.to_async(rt).iter(|| get_json(cache, rows))
            });
        }
    }
    group.finish();
}

fn redis_only(server: &redis_server::RedisServer, prefix: &str, above: Option<usize>) -> Cache {
    let mut builder = Cache::builder().redis(server.url()).key_prefix(prefix);
    if let Some(above) = above {
        builder = builder.compress_above(above);
    }
    builder.build().expect("cache")
}

/// Stores `get_json(rows)` through `cache` (keys under `prefix`), then reads how many bytes
/// Redis holds for it once its write (off the caller's path) has landed.
async fn stored_bytes(
    server: &redis_server::RedisServer,
    (cache, prefix): (&Cache, &str),
    rows: usize,
) -> u64 {
    get_json(cache, rows).await;
    let mut raw = server.raw().await;
    for _ in 0..100 {
        let len: u64 = redis::cmd("STRLEN")
            .arg(format!("{prefix}v:json:{rows}"))
            .query_async(&mut raw)
            .await
            .expect("strlen");
        if len > 0 {
            return len;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    0
}

/// Length of the MessagePack payload of `user(ID)` at the end of an entry.
fn payload_len() -> usize {
    rmp_serde::to_vec_named(&user(ID)).expect("encode").len()
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = redis_benches
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nmedian ratios:");
    let pairs = [
        ("redis_hit", "cache_layer", "raw_get_and_decode"),
        ("redis_hit", "cached_crate_redis", "raw_get_and_decode"),
        ("l1_hit", "tiered", "memory_only"),
        ("redis_hit_json", "compressed_40", "plain_40"),
        ("redis_hit_json", "compressed_2000", "plain_2000"),
    ];
    for (group, ours, base) in pairs {
        if let (Some(a), Some(b)) = (median(group, ours), median(group, base)) {
            println!(
                "  {group}: {ours} {a:.0} ns / {base} {b:.0} ns = {:.2}x",
                a / b
            );
        }
    }
}
