//! The imperative API (`get`, `insert`, `prime`, `get_or_load`, `get_or_load_optional`,
//! `remove`) and the batch loader (`get_or_load_many`), on the in-memory store and on the
//! tiered store against a real `redis-server`; caching off with `CacheBuilder::disabled`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_layer::{cached, Cache, Key, LoadOptions};
use support::redis_server::{tiered, RedisCluster, RedisServer};

fn minute() -> LoadOptions {
    LoadOptions::new(Duration::from_secs(60))
}

fn user(id: u64) -> Key {
    Key::new("user").part(id)
}

/// What the batch loader of [`Source`] returns.
type Loaded = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HashMap<Key, String>, std::io::Error>> + Send>,
>;

/// A source that counts its calls, per key for batches.
#[derive(Clone, Default)]
struct Source {
    calls: Arc<AtomicUsize>,
    per_key: Arc<Mutex<HashMap<String, usize>>>,
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    delay: Duration,
}

impl Source {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn one(&self, id: u64) -> Result<String, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(format!("user {id}"))
    }

    /// A batch loader: every key but those ending in `:404`, after `delay`.
    fn batch(&self) -> impl Fn(Vec<Key>) -> Loaded + Send + Sync + 'static {
        let source = self.clone();
        move |keys: Vec<Key>| {
            let source = source.clone();
            Box::pin(async move {
                source.calls.fetch_add(1, Ordering::SeqCst);
                let names: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
                for name in &names {
                    *source
                        .per_key
                        .lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_default() += 1;
                }
                source.batches.lock().unwrap().push(names);
                tokio::time::sleep(source.delay).await;
                Ok(keys
                    .into_iter()
                    .filter(|k| !k.as_str().ends_with(":404"))
                    .map(|k| {
                        let value = format!("value of {k}");
                        (k, value)
                    })
                    .collect())
            })
        }
    }

    fn per_key(&self) -> HashMap<String, usize> {
        self.per_key.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn insert_get_and_remove() {
    let cache = Cache::builder().build().unwrap();
    let key = user(7);
    assert_eq!(cache.get::<String>(&key).await, None);
    cache.insert(&key, "Ada".to_owned(), &minute()).await;
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("Ada"));
    // Another type under the key is a miss, not a panic or a wrong value.
    assert_eq!(cache.get::<u64>(&key).await, None);
    cache.insert(&key, "Grace".to_owned(), &minute()).await;
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("Grace"));
    cache.remove(&key).await;
    assert_eq!(cache.get::<String>(&key).await, None);
}

#[tokio::test]
async fn get_or_load_loads_once_and_never_stores_errors() {
    let cache = Cache::builder().build().unwrap();
    let failing = cache
        .get_or_load(&user(1), &minute(), || async {
            Err::<String, _>(std::io::Error::other("db down"))
        })
        .await;
    assert!(failing.is_err());
    let source = Source::default();
    for _ in 0..3 {
        let s = source.clone();
        let name = cache
            .get_or_load(&user(1), &minute(), move || async move { s.one(1).await })
            .await
            .unwrap();
        assert_eq!(name, "user 1");
    }
    assert_eq!(source.calls(), 1, "the error was not cached; the value was");
    assert_eq!(cache.stats().loads, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_get_or_load_of_one_key_runs_one_loader() {
    let cache = Cache::builder().build().unwrap();
    let source = Source {
        delay: Duration::from_millis(100),
        ..Source::default()
    };
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (cache, source) = (cache.clone(), source.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(
                        &user(3),
                        &minute(),
                        move || async move { source.one(3).await },
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "user 3");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(cache.stats().coalesced, 15);
}

#[tokio::test]
async fn options_tags_invalidate_and_prime_warms() {
    let cache = Cache::builder().build().unwrap();
    let options = minute().tag("users").tags(["org:1"]);
    cache
        .prime((1..=3).map(|id| (user(id), format!("user {id}"))), &options)
        .await;
    let source = Source::default();
    let s = source.clone();
    let two = cache
        .get_or_load(&user(2), &options, move || async move { s.one(2).await })
        .await
        .unwrap();
    assert_eq!((two.as_str(), source.calls()), ("user 2", 0), "primed");
    cache.invalidate("org:1").await;
    for id in 1..=3 {
        assert_eq!(cache.get::<String>(&user(id)).await, None);
    }
}

#[tokio::test]
async fn negative_results_are_cached_only_with_none_ttl() {
    let cache = Cache::builder().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<String>, std::io::Error>(None)
        }
    };
    for _ in 0..2 {
        let found = cache
            .get_or_load_optional(&user(404), &minute(), load(calls.clone()))
            .await;
        assert!(matches!(found, Ok(None)));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no none_ttl: None is not stored"
    );
    let negative = minute().none_ttl(Duration::from_secs(5));
    for _ in 0..2 {
        let found = cache
            .get_or_load_optional(&user(405), &negative, load(calls.clone()))
            .await;
        assert!(matches!(found, Ok(None)));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "with none_ttl: stored");
}

#[cached(ttl = "1m", key = "member:<id>")]
async fn member(id: u64) -> Result<String, std::io::Error> {
    Ok(format!("loaded {id}"))
}

#[tokio::test]
async fn a_key_meets_the_cached_fn_of_the_same_template_and_nothing_else() {
    // `Key::new("member").part(5)` renders `member:5`, the key of `member(5)`: priming it
    // warms the function.
    let cache = Cache::global();
    cache
        .insert(&Key::new("member").part(5), "primed".to_owned(), &minute())
        .await;
    assert_eq!(member(5).await.unwrap(), "primed");
    member(6).await.unwrap();
    assert_eq!(
        cache
            .get::<String>(&Key::new("member").part(6))
            .await
            .as_deref(),
        Some("loaded 6")
    );
    // A hostile part cannot render another key: its `:` is escaped.
    let real = Key::new("member").part(6).part("x");
    cache.insert(&real, "secret".to_owned(), &minute()).await;
    let forged = Key::new("member").part("6:x");
    assert_eq!(forged.as_str(), "member:6%3Ax");
    assert_eq!(cache.get::<String>(&forged).await, None);
}

#[tokio::test]
async fn a_disabled_cache_loads_every_time_and_stores_nothing() {
    let cache = Cache::builder().disabled().build().unwrap();
    let source = Source::default();
    for _ in 0..2 {
        let s = source.clone();
        cache
            .get_or_load(&user(1), &minute(), move || async move { s.one(1).await })
            .await
            .unwrap();
    }
    assert_eq!(source.calls(), 2);
    cache.insert(&user(2), "x".to_owned(), &minute()).await;
    assert_eq!(cache.get::<String>(&user(2)).await, None);
    let loaded = cache
        .get_or_load_many(&[user(1), user(2)], &minute(), source.batch())
        .await
        .unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(cache.entry_count(), 0);
    assert!(Cache::builder().disabled_if(false).build().is_ok());
}

#[tokio::test]
async fn a_batch_loads_only_missing_keys_and_keeps_order() {
    let cache = Cache::builder().build().unwrap();
    cache
        .insert(&user(2), "cached 2".to_owned(), &minute())
        .await;
    let source = Source::default();
    let keys = [user(1), user(2), Key::new("user").part("404"), user(1)];
    let values = cache
        .get_or_load_many(&keys, &minute(), source.batch())
        .await
        .unwrap();
    assert_eq!(
        values,
        [
            Some("value of user:1".to_owned()),
            Some("cached 2".to_owned()),
            None,
            Some("value of user:1".to_owned()),
        ]
    );
    assert_eq!(
        *source.batches.lock().unwrap(),
        [vec!["user:1".to_owned(), "user:404".to_owned()]],
        "one call, missing keys only, each once"
    );
    // Stored like single loads: a hit for `get_or_load`.
    let s = source.clone();
    let again = cache
        .get_or_load(&user(1), &minute(), move || async move { s.one(1).await })
        .await
        .unwrap();
    assert_eq!(again, "value of user:1");
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn a_failed_batch_returns_the_error_and_stores_nothing() {
    let cache = Cache::builder().build().unwrap();
    let result = cache
        .get_or_load_many(&[user(1), user(2)], &minute(), |_keys: Vec<Key>| async {
            Err::<HashMap<Key, String>, _>(std::io::Error::other("db down"))
        })
        .await;
    assert_eq!(result.unwrap_err().to_string(), "db down");
    assert_eq!(cache.entry_count(), 0);
}

/// Batches `[0, 20)` and `[10, 30)` (and a third, `[5, 25)`) at once, on `cache`, with keys
/// 0..3 cached: every missing key reaches the source exactly once.
async fn overlapping_batches_load_each_key_once(cache: &Cache) {
    for id in 0..3 {
        cache
            .insert(&user(id), format!("cached {id}"), &minute())
            .await;
    }
    let source = Source {
        delay: Duration::from_millis(150),
        ..Source::default()
    };
    let ranges = [0..20u64, 10..30, 5..25];
    let batches = ranges.map(|range| {
        let (cache, load) = (cache.clone(), source.batch());
        tokio::spawn(async move {
            let keys: Vec<Key> = range.clone().map(user).collect();
            (
                range,
                cache
                    .get_or_load_many(&keys, &minute(), load)
                    .await
                    .unwrap(),
            )
        })
    });
    for batch in batches {
        let (range, values) = batch.await.unwrap();
        for (id, value) in range.zip(values) {
            let expected = if id < 3 {
                format!("cached {id}")
            } else {
                format!("value of user:{id}")
            };
            assert_eq!(value, Some(expected));
        }
    }
    let per_key = source.per_key();
    let expected: HashMap<String, usize> = (3..30).map(|id| (format!("user:{id}"), 1)).collect();
    assert_eq!(per_key, expected, "one source call per missing key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_concurrent_batches_load_each_missing_key_once_in_memory() {
    let cache = Cache::builder().build().unwrap();
    overlapping_batches_load_each_key_once(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_concurrent_batches_load_each_missing_key_once_on_the_tiered_store() {
    let server = RedisServer::start();
    let cache = tiered(&server, "imperative:");
    overlapping_batches_load_each_key_once(&cache).await;
    // Another instance, tiered and Redis-only, reads every value from Redis (one pipelined
    // read): no source call.
    let keys: Vec<Key> = (0..30).map(user).collect();
    until_in_redis(&tiered(&server, "imperative:"), &keys).await;
    let redis_only = Cache::builder()
        .redis(server.url())
        .key_prefix("imperative:")
        .build()
        .unwrap();
    for other in [tiered(&server, "imperative:"), redis_only] {
        let source = Source::default();
        let values = other
            .get_or_load_many(&keys, &minute(), source.batch())
            .await
            .unwrap();
        assert_eq!(values[0].as_deref(), Some("cached 0"));
        assert_eq!(values[29].as_deref(), Some("value of user:29"));
        assert_eq!(source.calls(), 0);
        assert_eq!(other.stats().shared_hits, 30);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_on_a_cluster_read_each_key_from_its_node() {
    let cluster = RedisCluster::start();
    let cluster_cache = || {
        Cache::builder()
            .tiered_cluster(cluster.urls())
            .key_prefix("imperative:")
            .build()
            .unwrap()
    };
    let cache = cluster_cache();
    overlapping_batches_load_each_key_once(&cache).await;
    let keys: Vec<Key> = (0..30).map(user).collect();
    until_in_redis(&cluster_cache(), &keys).await;
    let other = cluster_cache();
    let source = Source::default();
    let values = other
        .get_or_load_many(&keys, &minute(), source.batch())
        .await
        .unwrap();
    assert!(values.iter().all(Option::is_some));
    assert_eq!(source.calls(), 0);
    assert_eq!(other.stats().shared_hits, 30);
}

/// Waits until `probe` finds every key in Redis (writes run in the background).
async fn until_in_redis(probe: &Cache, keys: &[Key]) {
    for _ in 0..200 {
        let found = futures_util::future::join_all(keys.iter().map(|k| probe.get::<String>(k)));
        if found.await.iter().all(Option::is_some) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the values never reached Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imperative_api_shares_entries_through_redis() {
    let server = RedisServer::start();
    let (a, b) = (
        tiered(&server, "imperative:"),
        tiered(&server, "imperative:"),
    );
    let options = minute().tag("users");
    a.insert(&user(1), "Ada".to_owned(), &options).await;
    let source = Source::default();
    let mut from_b = None;
    for _ in 0..200 {
        from_b = b.get::<String>(&user(1)).await;
        if from_b.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(from_b.as_deref(), Some("Ada"));
    let s = source.clone();
    let loaded = b
        .get_or_load(&user(1), &options, move || async move { s.one(1).await })
        .await
        .unwrap();
    assert_eq!((loaded.as_str(), source.calls()), ("Ada", 0));
    // A tag invalidated on `a` reaches `b`'s memory and Redis.
    a.invalidate("users").await;
    let mut gone = false;
    for _ in 0..200 {
        if b.get::<String>(&user(1)).await.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the invalidation reached the other instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_never_fails_the_imperative_api() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .tiered(server.url())
        .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
        .build()
        .unwrap();
    server.kill();
    cache.insert(&user(1), "Ada".to_owned(), &minute()).await;
    let _ = cache.get::<String>(&user(1)).await;
    let source = Source::default();
    let s = source.clone();
    let loaded = cache
        .get_or_load(&user(2), &minute(), move || async move { s.one(2).await })
        .await
        .unwrap();
    assert_eq!(loaded, "user 2");
    let batch = cache
        .get_or_load_many(&[user(3), user(4)], &minute(), source.batch())
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    assert!(cache.stats().store_errors > 0);
}

/// An `insert` is made in Redis before it returns: another instance reads it at once (a write
/// detached from the call would leave a window where it does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_is_read_by_another_instance_as_soon_as_it_returns() {
    let server = RedisServer::start();
    let (a, b) = (
        tiered(&server, "imperative:"),
        tiered(&server, "imperative:"),
    );
    for id in 0..50 {
        a.insert(&user(id), format!("inserted {id}"), &minute())
            .await;
        assert_eq!(
            b.get::<String>(&user(id)).await,
            Some(format!("inserted {id}")),
            "instance b reads what a inserted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_misses_on_redis_makes_one_call() {
    let server = RedisServer::start();
    let redis_only = Cache::builder()
        .redis(server.url())
        .key_prefix("one-call:")
        .build()
        .unwrap();
    for cache in [tiered(&server, "imperative:"), redis_only] {
        let source = Source::default();
        let keys: Vec<Key> = (100..120).map(user).collect();
        let values = cache
            .get_or_load_many(&keys, &minute(), source.batch())
            .await
            .unwrap();
        assert!(values.iter().all(Option::is_some));
        assert_eq!(
            source.batches.lock().unwrap().len(),
            1,
            "one call for the batch's misses"
        );
    }
}
