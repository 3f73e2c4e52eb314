//! Soft purge of memoised values (`Cache::soft_invalidate`): by key and by tag the entries stay,
//! stale: the next call is served the old value at once while exactly one refresh runs, and
//! the refreshed value is served after it. In memory, and across instances over a real
//! `redis-server` (pub/sub for memory copies, the stored fresh-until time for Redis itself).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cache_layer::{cached, Cache, Key, LoadOptions};
use tokio::sync::Semaphore;

mod support;

use support::redis_server::{subscribers, tiered, RedisCluster, RedisServer};
use support::relay::Relay;
use support::wait::eventually;

/// A source whose loads are counted and held until the test lets them finish: each load
/// returns `base` plus how many loads had started when it began.
#[derive(Clone)]
struct Source {
    base: u32,
    started: Arc<AtomicU32>,
    gate: Arc<Semaphore>,
}

impl Source {
    fn new() -> Self {
        Self::starting_at(0)
    }

    fn starting_at(base: u32) -> Self {
        Source {
            base,
            started: Arc::new(AtomicU32::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn started(&self) -> u32 {
        self.started.load(Ordering::SeqCst)
    }

    /// Lets `n` loads finish.
    fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    async fn call(&self, cache: &Cache, key: &Key, options: &LoadOptions) -> u32 {
        let source = self.clone();
        cache
            .get_or_load(key, options, move || async move {
                let version = source.base + source.started.fetch_add(1, Ordering::SeqCst) + 1;
                source.gate.acquire().await.expect("open").forget();
                Ok::<_, std::io::Error>(version)
            })
            .await
            .expect("the loader never fails")
    }
}

/// Fresh for a minute, no stale window of its own: a soft purge still serves it stale once.
fn options() -> LoadOptions {
    LoadOptions::new(Duration::from_secs(60))
        .jitter(0.0)
        .tag("prices")
}

fn memory_cache() -> Cache {
    Cache::builder().build().unwrap()
}

/// After a soft purge of `key` (or its tag): stale calls, one refresh, then the new value.
async fn served_stale_then_refreshed_once(cache: &Cache, source: &Source, key: &Key, old: u32) {
    let before = source.started();
    for _ in 0..5 {
        assert_eq!(
            source.call(cache, key, &options()).await,
            old,
            "served stale"
        );
    }
    eventually("the refresh starts", async || {
        source.started() == before + 1
    })
    .await;
    // While it runs, calls are still served stale and start no other load.
    for _ in 0..5 {
        assert_eq!(source.call(cache, key, &options()).await, old);
    }
    assert_eq!(source.started(), before + 1, "exactly one refresh");
    source.release(1);
    let new = source.base + before + 1;
    eventually("the refreshed value is stored", async || {
        cache.get::<u32>(key).await == Some(new)
    })
    .await;
    assert_eq!(source.call(cache, key, &options()).await, new);
    assert_eq!(source.started(), before + 1, "the new value is fresh");
}

#[tokio::test]
async fn a_soft_purged_key_is_served_stale_while_exactly_one_refresh_runs() {
    let cache = memory_cache();
    let source = Source::new();
    let key = Key::new("price").part(7);
    source.release(1);
    assert_eq!(source.call(&cache, &key, &options()).await, 1);
    assert_eq!(source.call(&cache, &key, &options()).await, 1);

    cache.soft_invalidate(key.as_str()).await;
    served_stale_then_refreshed_once(&cache, &source, &key, 1).await;
    assert!(cache.stats().stale >= 10);
}

#[tokio::test]
async fn a_soft_purged_tag_makes_each_tagged_entry_stale() {
    let cache = memory_cache();
    let source = Source::new();
    let (a, b) = (Key::new("price").part(1), Key::new("price").part(2));
    let untagged = LoadOptions::new(Duration::from_secs(60));
    source.release(2);
    assert_eq!(source.call(&cache, &a, &options()).await, 1);
    assert_eq!(source.call(&cache, &b, &options()).await, 2);
    let other = Key::new("other");
    let other_value = cache
        .get_or_load(&other, &untagged, || async {
            Ok::<_, std::io::Error>(3u32)
        })
        .await
        .unwrap();

    cache.soft_invalidate("prices").await;
    served_stale_then_refreshed_once(&cache, &source, &a, 1).await;
    served_stale_then_refreshed_once(&cache, &source, &b, 2).await;
    let again = cache
        .get_or_load(&other, &untagged, || async {
            Ok::<_, std::io::Error>(99u32)
        })
        .await
        .unwrap();
    assert_eq!(again, other_value, "an entry without the tag stays fresh");
}

static MACRO_CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
static RATE_LOADS: AtomicU32 = AtomicU32::new(0);
static RATE_GATE: Semaphore = Semaphore::const_new(0);

/// Without `stale`: its body (which borrows `region`) cannot run after its caller returns.
#[cached(ttl = "1m", key = "rate:<region>", invalidate_on = ["rates"], cache = MACRO_CACHE)]
async fn rate(region: &str) -> u32 {
    let version = RATE_LOADS.fetch_add(1, Ordering::SeqCst) + 1;
    RATE_GATE.acquire().await.expect("open").forget();
    region.len() as u32 * 1000 + version
}

/// A `#[cached]` fn without `stale` refreshes a soft-purged entry in the caller that claims
/// it; concurrent callers are served the stale value meanwhile, and no other load starts.
#[tokio::test]
async fn a_soft_purged_cached_fn_is_reloaded_once_while_others_are_served_stale() {
    RATE_GATE.add_permits(1);
    assert_eq!(rate("eu").await, 2001);
    assert_eq!(rate("eu").await, 2001);
    MACRO_CACHE.soft_invalidate("rates").await;
    let refreshing = tokio::spawn(rate("eu"));
    eventually("the reload starts", async || {
        RATE_LOADS.load(Ordering::SeqCst) == 2
    })
    .await;
    for _ in 0..5 {
        assert_eq!(rate("eu").await, 2001, "served stale meanwhile");
    }
    assert_eq!(RATE_LOADS.load(Ordering::SeqCst), 2, "one reload");
    RATE_GATE.add_permits(1);
    assert_eq!(refreshing.await.unwrap(), 2002);
    assert_eq!(rate("eu").await, 2002);
    assert_eq!(RATE_LOADS.load(Ordering::SeqCst), 2, "fresh again");
}

#[tokio::test]
async fn a_hard_invalidation_still_drops_a_soft_purged_entry() {
    let cache = memory_cache();
    let source = Source::new();
    let key = Key::new("price").part(3);
    source.release(1);
    assert_eq!(source.call(&cache, &key, &options()).await, 1);
    cache.soft_invalidate("prices").await;
    let stats = cache.stats();
    assert_eq!((stats.soft_invalidations, stats.invalidations), (1, 0));
    cache.invalidate("prices").await;
    assert_eq!(cache.get::<u32>(&key).await, None);
    let stats = cache.stats();
    assert_eq!((stats.soft_invalidations, stats.invalidations), (1, 1));
}

/// A load that began before a soft purge may have read the old data: its value is stored,
/// but already stale, so the next call refreshes it.
#[tokio::test]
async fn a_load_in_flight_during_a_soft_purge_is_stored_stale() {
    let cache = memory_cache();
    let source = Source::new();
    let key = Key::new("price").part(9);
    let loading = {
        let (cache, source, key) = (cache.clone(), source.clone(), key.clone());
        tokio::spawn(async move { source.call(&cache, &key, &options()).await })
    };
    eventually("the load starts", async || source.started() == 1).await;
    cache.soft_invalidate(key.as_str()).await;
    source.release(1);
    assert_eq!(loading.await.unwrap(), 1);

    served_stale_then_refreshed_once(&cache, &source, &key, 1).await;
}

#[tokio::test]
async fn soft_purging_a_name_nothing_carries_changes_nothing() {
    let cache = memory_cache();
    let source = Source::new();
    let key = Key::new("price").part(4);
    cache.soft_invalidate("nothing:here").await;
    source.release(1);
    assert_eq!(source.call(&cache, &key, &options()).await, 1);
    assert_eq!(source.call(&cache, &key, &options()).await, 1);
    assert_eq!(source.started(), 1, "fresh: no refresh");
    assert_eq!(cache.entry_count(), 1);
}

/// Waits until `cache` answers `key` as a fresh hit from memory (L1 filled; its first call
/// started the subscriber).
async fn until_a_memory_hit(cache: &Cache, source: &Source, key: &Key) {
    eventually("a memory hit", async || {
        let before = cache.stats();
        source.call(cache, key, &options()).await;
        let after = cache.stats();
        after.hits > before.hits && after.shared_hits == before.shared_hits
    })
    .await;
}

#[tokio::test]
async fn a_soft_purge_from_one_instance_makes_anothers_memory_copy_stale() {
    let server = RedisServer::start();
    let (a, b) = (tiered(&server, "soft:"), tiered(&server, "soft:"));
    let (source_a, source_b) = (Source::new(), Source::starting_at(100));
    let key = Key::new("price").part(7);
    source_a.release(1);
    assert_eq!(source_a.call(&a, &key, &options()).await, 1);
    until_a_memory_hit(&a, &source_a, &key).await;
    until_a_memory_hit(&b, &source_b, &key).await;
    assert_eq!(source_b.started(), 0, "B read A's value from Redis");

    a.soft_invalidate("prices").await;
    // B hears it over pub/sub: its next calls are served stale while B refreshes once.
    eventually("B refreshes", async || {
        assert_eq!(source_b.call(&b, &key, &options()).await, 1);
        source_b.started() == 1
    })
    .await;
    for _ in 0..5 {
        assert_eq!(source_b.call(&b, &key, &options()).await, 1);
    }
    assert_eq!(source_b.started(), 1, "exactly one refresh on B");
    source_b.release(1);
    eventually("B serves its refreshed value", async || {
        b.get::<u32>(&key).await == Some(101)
    })
    .await;
    assert_eq!(source_b.call(&b, &key, &options()).await, 101);
    assert_eq!(source_b.started(), 1, "fresh on B");
    // A was purged too: its memory copy is served stale and refreshed once.
    served_stale_then_refreshed_once(&a, &source_a, &key, 1).await;
}

/// The purging instance hears its own soft purge over pub/sub too: it must not apply it again,
/// or the refresh begun in between would be stored stale and not written to Redis.
#[tokio::test]
async fn the_purging_instance_refreshes_once_and_shares_the_refreshed_value() {
    let server = RedisServer::start();
    // A's connections pass through a relay, which holds A's purge message until A's refresh
    // has begun.
    let relay = Relay::start(server.port()).await;
    let a = Cache::builder()
        .tiered(relay.url())
        .key_prefix("own:")
        .jitter(0.0)
        .build()
        .unwrap();
    let b = Cache::builder()
        .redis(server.url())
        .key_prefix("own:")
        .build()
        .unwrap();
    let source = Source::new();
    let key = Key::new("price").part(5);
    source.release(1);
    assert_eq!(source.call(&a, &key, &options()).await, 1);
    until_a_memory_hit(&a, &source, &key).await;

    relay.hold_subscribers();
    a.soft_invalidate("prices").await;
    assert_eq!(source.call(&a, &key, &options()).await, 1, "served stale");
    eventually("the refresh starts", async || source.started() == 2).await;
    relay.release_subscribers();
    // B is not subscribed: once it reads A's purge from Redis, A's subscriber has it too.
    eventually("the purge is in Redis", async || {
        let stale = b.stats().stale;
        b.get::<u32>(&key).await;
        b.stats().stale > stale
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    source.release(1);
    eventually("the refreshed value is stored", async || {
        a.get::<u32>(&key).await == Some(2)
    })
    .await;
    let stale = a.stats().stale;
    assert_eq!(source.call(&a, &key, &options()).await, 2);
    assert_eq!(a.stats().stale, stale, "fresh: no second refresh");
    assert_eq!(source.started(), 2);
    eventually("the refreshed value is written to Redis", async || {
        b.get::<u32>(&key).await == Some(2)
    })
    .await;
}

/// Without memory in front, the soft purge reaches other instances through the fresh-until
/// time stored with the value in Redis.
#[tokio::test]
async fn a_soft_purge_lowers_the_fresh_until_time_stored_in_redis() {
    let server = RedisServer::start();
    let shared = || {
        Cache::builder()
            .redis(server.url())
            .key_prefix("lua:")
            .jitter(0.0)
            .build()
            .unwrap()
    };
    let (a, b) = (shared(), shared());
    let (source_a, source_b) = (Source::new(), Source::starting_at(100));
    let key = Key::new("price").part(8);
    source_a.release(1);
    assert_eq!(source_a.call(&a, &key, &options()).await, 1);
    eventually("A's write reaches Redis", async || {
        b.get::<u32>(&key).await == Some(1)
    })
    .await;
    assert_eq!(source_b.call(&b, &key, &options()).await, 1);
    assert_eq!(source_b.started(), 0, "fresh in Redis");

    a.soft_invalidate("prices").await;
    assert_eq!(source_b.call(&b, &key, &options()).await, 1, "served stale");
    eventually("B refreshes", async || source_b.started() == 1).await;
    source_b.release(1);
    eventually("the refreshed value is in Redis", async || {
        a.get::<u32>(&key).await == Some(101)
    })
    .await;
    // Fresh again, for every instance: a call on A is neither stale nor a load.
    let stale_before = a.stats().stale;
    assert_eq!(source_a.call(&a, &key, &options()).await, 101);
    assert_eq!(a.stats().stale, stale_before);
    assert_eq!((source_a.started(), source_b.started()), (1, 1));
}

/// Fail open: a soft purge while Redis does not answer returns (after the operation's time
/// budget) without an error, and is replayed as a hard invalidation once Redis answers again,
/// so no instance keeps the entry fresh.
#[tokio::test]
async fn a_soft_purge_that_cannot_reach_redis_is_replayed_as_an_invalidation() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .key_prefix("down:")
        .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
        .build()
        .unwrap();
    let source = Source::new();
    let key = Key::new("price").part(6);
    source.release(1);
    assert_eq!(source.call(&cache, &key, &options()).await, 1);
    eventually("the value is in Redis", async || {
        cache.get::<u32>(&key).await == Some(1)
    })
    .await;

    server.pause();
    cache.soft_invalidate("prices").await;
    server.resume();
    eventually("the replay dropped the entry", async || {
        cache.get::<u32>(&key).await.is_none()
    })
    .await;
}

/// What the soft purge's script reads is checked: a value of another format under a tagged
/// key, or one shorter than the header, is left exactly as it was.
#[tokio::test]
async fn a_soft_purge_leaves_values_of_other_formats_alone() {
    let server = RedisServer::start();
    let cache = tiered(&server, "fmt:");
    let mut raw = server.raw().await;
    let odd: [(&str, &[u8]); 3] = [
        ("fmt:v:short", b"\x01abc"),
        ("fmt:v:other", &[9u8; 40]),
        (
            "fmt:v:text",
            b"hello, this is not a cache-layer value at all",
        ),
    ];
    for (key, value) in odd {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: () = redis::cmd("SADD")
            .arg("fmt:t:odd")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let source = Source::new();
    source.release(1);
    let real = Key::new("real");
    let tagged = LoadOptions::new(Duration::from_secs(60)).tag("odd");
    let loaded = cache
        .get_or_load(&real, &tagged, || async { Ok::<_, std::io::Error>(5u32) })
        .await
        .unwrap();
    assert_eq!(loaded, 5);
    // Written in the background: wait for it.
    let mut real_key = None;
    for _ in 0..1000 {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg("fmt:t:odd")
            .query_async(&mut raw)
            .await
            .unwrap();
        real_key = members
            .into_iter()
            .find(|member| odd.iter().all(|(key, _)| key != member));
        if real_key.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let real_key = real_key.expect("the real entry's key is in the tag's set");
    let before: Vec<u8> = redis::cmd("GET")
        .arg(&real_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    let fresh_until = |bytes: &[u8]| u64::from_be_bytes(bytes[9..17].try_into().unwrap());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    assert!(fresh_until(&before) > now() + 50_000);

    cache.soft_invalidate("odd").await;
    let after: Vec<u8> = redis::cmd("GET")
        .arg(&real_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(fresh_until(&after) <= now(), "lowered to the purge's time");
    assert!(fresh_until(&after) + 10_000 > now());
    assert_eq!((&before[..9], &before[17..]), (&after[..9], &after[17..]));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&real_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 50_000, "the entry keeps its TTL: {ttl} ms");
    for (key, value) in odd {
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(stored, value, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_soft_purge_reaches_tagged_keys_across_slots() {
    let cluster = RedisCluster::start();
    let instance = || {
        Cache::builder()
            .redis_cluster(cluster.urls())
            .key_prefix("cs:")
            .jitter(0.0)
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let (source_a, source_b) = (Source::new(), Source::new());
    let keys: Vec<Key> = (0..24).map(|i| Key::new("price").part(i)).collect();
    source_a.release(keys.len());
    for key in &keys {
        source_a.call(&a, key, &options()).await;
    }
    for key in &keys {
        eventually("A's write reaches Redis", async || {
            b.get::<u32>(key).await.is_some()
        })
        .await;
    }
    a.soft_invalidate("prices").await;
    for key in &keys {
        let before = source_b.started();
        let old = a.get::<u32>(key).await.unwrap();
        assert_eq!(
            source_b.call(&b, key, &options()).await,
            old,
            "served stale"
        );
        eventually("B refreshes", async || source_b.started() == before + 1).await;
        source_b.release(1);
    }
}

/// Instance `a` (through `relay`, subscribed through it alone, so that the test can hold
/// what it hears) loads `key` and reads the old data; then `b` soft-purges `name` (the key or
/// its tag); only then does `a`'s loader return, before `a` hears of the purge. Returns the
/// loaded value once `a`'s caller has it (its write goes on in the background).
async fn a_load_across_another_instances_soft_purge(
    (a, b): (&Cache, &Cache),
    (relay, subscribed): (&Relay, &str),
    key: &Key,
    name: &str,
) -> u32 {
    let source = Source::new();
    let load = {
        let (a, source, key) = (a.clone(), source.clone(), key.clone());
        tokio::spawn(async move { source.call(&a, &key, &options()).await })
    };
    eventually("the load starts", async || source.started() == 1).await;
    eventually("a is subscribed", async || {
        subscribers(subscribed, "race:invalidate").await == 1
    })
    .await;
    relay.hold_subscribers();
    b.soft_invalidate(name).await;
    source.release(1);
    load.await.unwrap()
}

/// Whether `c` reads `key` from Redis as `value`, served stale (asserts it is not another).
async fn read_stale(c: &Cache, key: &Key, value: u32) -> bool {
    let stale = c.stats().stale;
    match c.get::<u32>(key).await {
        None => false,
        Some(read) => {
            assert_eq!(read, value);
            c.stats().stale > stale
        }
    }
}

/// One Redis: a load that began before another instance's soft purge of `name` (its key or
/// its tag), and whose write reaches Redis before its instance hears of the purge, is stored
/// stale: a third instance reading Redis is served it stale (and refreshes it), never fresh.
async fn one_redis_load_across_another_instances_soft_purge_of(name: Option<&str>) {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let shared = |url: String| {
        Cache::builder()
            .redis(url)
            .key_prefix("race:")
            .jitter(0.0)
            .build()
            .unwrap()
    };
    let (a, b, c) = (
        shared(relay.url()),
        shared(server.url()),
        shared(server.url()),
    );
    // Redis already holds an invalidation history (b and c have not used Redis yet).
    a.invalidate("other:1").await;
    let key = Key::new("price").part(3);
    let name = name.unwrap_or(key.as_str());
    let loaded =
        a_load_across_another_instances_soft_purge((&a, &b), (&relay, &server.url()), &key, name)
            .await;
    assert_eq!(loaded, 1);
    // The script writes and lowers in one step: the first read that finds it finds it stale.
    eventually("a's write reaches Redis", async || {
        let stale = c.stats().stale;
        let read = c.get::<u32>(&key).await;
        assert!(
            read.is_none() || c.stats().stale > stale,
            "the value loaded before the soft purge of {name:?} is not stored fresh"
        );
        read.is_some()
    })
    .await;
    assert!(read_stale(&c, &key, 1).await);
    relay.release_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_another_instances_soft_purge_of_its_key_is_stored_stale() {
    one_redis_load_across_another_instances_soft_purge_of(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_another_instances_soft_purge_of_its_tag_is_stored_stale() {
    one_redis_load_across_another_instances_soft_purge_of(Some("prices")).await;
}

/// [`one_redis_load_across_another_instances_soft_purge_of`] on a cluster: `a`'s first seed,
/// the node it subscribes through, is a relay. The write is checked after it is made, so the
/// value may be read fresh for that moment; then it is stale.
async fn cluster_load_across_another_instances_soft_purge_of(name: Option<&str>) {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let first_port = urls[0].trim_end_matches('/').rsplit(':').next();
    let relay = Relay::start(first_port.unwrap().parse().unwrap()).await;
    let build = |seeds: [&String; 3]| {
        Cache::builder()
            .redis_cluster(seeds.map(String::clone))
            .key_prefix("race:")
            .jitter(0.0)
            .build()
            .unwrap()
    };
    let a = build([&relay.url(), &urls[1], &urls[2]]);
    // b and c subscribe through other nodes.
    let b = build([&urls[1], &urls[2], &urls[0]]);
    let c = build([&urls[2], &urls[0], &urls[1]]);
    let key = Key::new("price").part(3);
    let name = name.unwrap_or(key.as_str());
    let loaded =
        a_load_across_another_instances_soft_purge((&a, &b), (&relay, &urls[0]), &key, name).await;
    assert_eq!(loaded, 1);
    eventually("a's write is in Redis, stale", async || {
        read_stale(&c, &key, 1).await
    })
    .await;
    relay.release_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_load_that_began_before_another_instances_soft_purge_of_its_key_is_stored_stale(
) {
    cluster_load_across_another_instances_soft_purge_of(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_load_that_began_before_another_instances_soft_purge_of_its_tag_is_stored_stale(
) {
    cluster_load_across_another_instances_soft_purge_of(Some("prices")).await;
}
