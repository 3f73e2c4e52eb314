//! What the shared tier costs and keeps at its bounds, over a real `redis-server`: a caller
//! waiting for another instance's load reads the value once, when the load ends, not on every
//! poll; a tag set that is full leaves no entry its tag cannot purge, and deletes none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_layer::{Cache, Key, LoadOptions};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

mod support;

use support::redis_server::{subscribers, RedisServer};

fn tiered(server: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .tiered(server.url())
        .key_prefix(prefix)
        .build()
        .expect("valid configuration")
}

/// How many times Redis ran `command` since it started (`INFO commandstats`).
async fn calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut server.raw().await)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

/// Waits until both instances listen on the invalidation channel.
async fn subscribed(server: &RedisServer, caches: &[&Cache], channel: &str) {
    for cache in caches {
        // Any read of the shared tier starts the subscriber.
        cache.get::<u32>(&Key::new("warm-up")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribers(&server.url(), channel).await < caches.len() as u64 {
        assert!(Instant::now() < deadline, "the instances subscribe");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_for_another_instances_load_reads_the_value_once() {
    let server = RedisServer::start();
    let (a, b) = (tiered(&server, "w:"), tiered(&server, "w:"));
    subscribed(&server, &[&a, &b], "w:invalidate").await;
    let mut channel = redis::Client::open(server.url())
        .expect("url")
        .get_async_pubsub()
        .await
        .expect("a subscriber");
    channel.subscribe("w:invalidate").await.expect("subscribed");
    let options = LoadOptions::new(Duration::from_secs(60)).lock(Duration::from_secs(30));
    let key = Key::new("slow");
    let gate = Arc::new(Semaphore::new(0));
    let holder = {
        let (a, key, options, gate) = (a.clone(), key.clone(), options.clone(), gate.clone());
        tokio::spawn(async move {
            a.get_or_load(&key, &options, || async move {
                gate.acquire().await.expect("open").forget();
                Ok::<_, std::io::Error>(7u32)
            })
            .await
        })
    };
    while a.stats().loads == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // `a` holds the lock and loads: `b` waits for it.
    let reads_before = calls(&server, "getrange").await;
    let checks_before = calls(&server, "exists").await;
    let waiting_since = Instant::now();
    let waiter = {
        let (b, key, options) = (b.clone(), key.clone(), options.clone());
        tokio::spawn(async move {
            b.get_or_load(&key, &options, || async { Ok::<_, std::io::Error>(0u32) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.add_permits(1);
    assert_eq!(holder.await.unwrap().unwrap(), 7);
    assert_eq!(waiter.await.unwrap().unwrap(), 7, "the holder's value");
    let waited = waiting_since.elapsed();
    assert_eq!(b.stats().loads, 0, "the waiter did not load");
    assert_eq!(b.stats().coalesced, 1);
    let reads = calls(&server, "getrange").await - reads_before;
    // Its look-up, then one read when the load ended (not one every 20 ms, ~50 in a second).
    assert!(
        reads <= 3,
        "{reads} reads of the value in a {waited:?} wait"
    );
    // Told when the load ends, it checks the lock itself only now and then meanwhile.
    let checks = calls(&server, "exists").await - checks_before;
    let bound = waited.as_millis() / 100 + 3;
    assert!(
        u128::from(checks) <= bound,
        "{checks} lock checks in a {waited:?} wait"
    );
    // What woke it: the holder's release, published (`0xFC` and the key).
    let mut messages = channel.on_message();
    let ended = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a message on the channel")
        .expect("the subscription is open");
    assert_eq!(ended.get_payload_bytes(), b"\xfcslow");
}

/// The most entries one tag names in Redis (documented in "Redis layout").
const MAX_TAG_MEMBERS: u32 = 10_000;

async fn value_keys(server: &RedisServer, prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}v:*"))
        .query_async(&mut server.raw().await)
        .await
        .expect("KEYS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tag_set_deletes_no_entry_and_leaves_none_its_tag_cannot_purge() {
    let server = RedisServer::start();
    let cache = tiered(&server, "t:");
    let options = LoadOptions::new(Duration::from_secs(3600)).tag("all");
    let key = |i: u32| Key::new("item").part(i);
    // Filled to the bound, 20 writers at a time.
    let writers: Vec<_> = (0..20)
        .map(|writer| {
            let (cache, options) = (cache.clone(), options.clone());
            tokio::spawn(async move {
                for i in (writer..MAX_TAG_MEMBERS).step_by(20) {
                    cache.insert(&key(i), i, &options).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        value_keys(&server, "t:").await.len(),
        MAX_TAG_MEMBERS as usize
    );
    // Past the bound: each new entry stays in memory only.
    for i in MAX_TAG_MEMBERS..MAX_TAG_MEMBERS + 20 {
        cache.insert(&key(i), i, &options).await;
    }
    let mut stored = value_keys(&server, "t:").await;
    stored.sort();
    let mut first: Vec<String> = (0..MAX_TAG_MEMBERS)
        .map(|i| format!("t:v:{}", key(i).as_str()))
        .collect();
    first.sort();
    assert_eq!(stored, first, "no entry was deleted to make room");
    assert_eq!(cache.stats().tag_sets_full, 20);
    assert_eq!(cache.stats().store_errors, 0);
    assert_eq!(
        cache.get::<u32>(&key(MAX_TAG_MEMBERS)).await,
        Some(MAX_TAG_MEMBERS)
    );
    // A member already named is still rewritten.
    cache.insert(&key(0), 100u32, &options).await;
    let other = tiered(&server, "t:");
    assert_eq!(other.get::<u32>(&key(0)).await, Some(100));
    cache.invalidate("all").await;
    assert_eq!(
        value_keys(&server, "t:").await,
        Vec::<String>::new(),
        "invalidating the tag purged every entry Redis held"
    );
    assert_eq!(cache.get::<u32>(&key(MAX_TAG_MEMBERS)).await, None);
    assert_eq!(cache.get::<u32>(&key(1)).await, None);
}
