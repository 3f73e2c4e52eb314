//! Invalidations against loads in flight, whatever else is invalidated meanwhile: a load's
//! result is stored unless its own key or a tag was invalidated during it (a soft purge of
//! either stores it stale), however many other names a write flood invalidates. And a large
//! purge: the executor thread stays free while it runs, and nothing it named is served once it
//! returns, here or (over a real `redis-server`) on another instance.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer, Key, LoadOptions};
use tokio::sync::Semaphore;

mod support;

use support::loopback;
use support::redis_server::{subscribers, RedisServer};

/// How many other names a flood invalidates during one load: more than the 4,096 the log
/// once remembered.
const FLOOD: u32 = 10_000;

/// A source whose loads are counted and held until the test lets them finish: each returns
/// how many loads had started when it began.
#[derive(Clone)]
struct Source {
    started: Arc<AtomicU32>,
    gate: Arc<Semaphore>,
}

impl Source {
    fn new() -> Self {
        Source {
            started: Arc::new(AtomicU32::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn started(&self) -> u32 {
        self.started.load(Ordering::SeqCst)
    }

    async fn call(&self, cache: &Cache, key: &Key, options: &LoadOptions) -> u32 {
        let source = self.clone();
        cache
            .get_or_load(key, options, move || async move {
                let version = source.started.fetch_add(1, Ordering::SeqCst) + 1;
                source.gate.acquire().await.expect("open").forget();
                Ok::<_, std::io::Error>(version)
            })
            .await
            .expect("the loader never fails")
    }

    /// Runs one load of `key` and, while it is held, `during`; returns what the load returned.
    async fn load_while(&self, cache: &Cache, key: &Key, during: impl AsyncFnOnce()) -> u32 {
        let loading = {
            let (cache, source, key) = (cache.clone(), self.clone(), key.clone());
            tokio::spawn(async move { source.call(&cache, &key, &options()).await })
        };
        while self.started() == 0 {
            tokio::task::yield_now().await;
        }
        during().await;
        self.gate.add_permits(1);
        loading.await.expect("no panic")
    }
}

/// Fresh for a minute, tagged `prices`; no stale window of its own (a soft-purged entry is
/// still served stale once, while it refreshes).
fn options() -> LoadOptions {
    LoadOptions::new(Duration::from_secs(60))
        .jitter(0.0)
        .tag("prices")
}

async fn flood(cache: &Cache, soft: bool) {
    for i in 0..FLOOD {
        let name = format!("other:{i}");
        if soft {
            cache.soft_invalidate(&name).await;
        } else {
            cache.invalidate(&name).await;
        }
    }
}

#[tokio::test]
async fn a_load_outlasting_a_flood_of_other_invalidations_is_stored() {
    let cache = Cache::builder().build().unwrap();
    let source = Source::new();
    let key = Key::new("price").part(1);
    let loaded = source
        .load_while(&cache, &key, async || {
            flood(&cache, false).await;
            flood(&cache, true).await;
        })
        .await;
    assert_eq!(loaded, 1);
    assert_eq!(cache.get::<u32>(&key).await, Some(1), "stored");
    assert_eq!(source.call(&cache, &key, &options()).await, 1);
    assert_eq!(source.started(), 1, "stored fresh: no other load");
}

/// The load's own key or tag invalidated during it, among a flood of other names before and
/// after it: not stored.
#[tokio::test]
async fn a_load_whose_key_or_tag_is_invalidated_during_a_flood_is_not_stored() {
    for (i, own) in ["price:2", "prices"].into_iter().enumerate() {
        let cache = Cache::builder().build().unwrap();
        let source = Source::new();
        let key = Key::new("price").part(2);
        assert_eq!(key.as_str(), "price:2");
        let loaded = source
            .load_while(&cache, &key, async || {
                flood(&cache, false).await;
                cache.invalidate(own).await;
                flood(&cache, false).await;
            })
            .await;
        assert_eq!(loaded, 1, "case {i}: the caller still gets its answer");
        assert_eq!(cache.get::<u32>(&key).await, None, "case {i}: not stored");
    }
}

/// The load's own key or tag soft-purged during it, among a flood of other names: stored, but
/// stale (the next call is served it while one refresh runs).
#[tokio::test]
async fn a_load_whose_key_or_tag_is_soft_purged_during_a_flood_is_stored_stale() {
    for (i, own) in ["price:3", "prices"].into_iter().enumerate() {
        let cache = Cache::builder().build().unwrap();
        let source = Source::new();
        let key = Key::new("price").part(3);
        let loaded = source
            .load_while(&cache, &key, async || {
                flood(&cache, true).await;
                cache.soft_invalidate(own).await;
                flood(&cache, false).await;
            })
            .await;
        assert_eq!(loaded, 1);
        assert_eq!(cache.get::<u32>(&key).await, Some(1), "case {i}: stored");
        assert_eq!(
            source.call(&cache, &key, &options()).await,
            1,
            "case {i}: stored, served stale"
        );
        while source.started() < 2 {
            tokio::task::yield_now().await;
        }
        source.gate.add_permits(1);
        while cache.get::<u32>(&key).await != Some(2) {
            tokio::task::yield_now().await;
        }
        assert_eq!(source.call(&cache, &key, &options()).await, 2);
        assert_eq!(source.started(), 2, "case {i}: one refresh, then fresh");
    }
}

/// Through `CacheLayer`: a slow response is stored although thousands of successful writes to
/// other URLs (each invalidating its URL's names) ran while it was loading.
#[tokio::test]
async fn a_slow_response_outlasting_a_write_flood_is_stored() {
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    let app = {
        let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
        Router::new()
            .route(
                "/slow",
                get(move || async move {
                    let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.acquire().await.expect("open").forget();
                    ([("cache-control", "max-age=60")], format!("slow {call}"))
                }),
            )
            .route("/items/{id}", axum::routing::post(|| async { "written" }))
    };
    let server = loopback::start(app, CacheLayer::new).await;
    let slow = {
        let client = server.client.clone();
        let uri = format!("http://{}/slow", server.addr);
        tokio::spawn(async move {
            let response = client.get(uri.parse().unwrap()).await.unwrap();
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes()
        })
    };
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for i in 0..FLOOD / 2 {
        let reply = server
            .send(axum::http::Method::POST, &format!("/items/{i}"), &[])
            .await;
        assert_eq!(reply.status, 200);
    }
    // One permit for this load, one for a second should the first not have been stored.
    gate.add_permits(2);
    assert_eq!(slow.await.unwrap(), "slow 1");
    let reply = server.send(axum::http::Method::GET, "/slow", &[]).await;
    assert_eq!(reply.text(), "slow 1");
    assert!(
        reply.cache_status().contains("hit"),
        "{}",
        reply.cache_status()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A purge of a tag that thousands of entries carry runs off the executor thread: on a
/// single-threaded runtime, another task runs while it is under way. When it returns, none of
/// the entries is served.
#[test]
fn a_large_purge_leaves_the_executor_free_and_is_complete_when_it_returns() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = Cache::builder().build().unwrap();
        let options = LoadOptions::new(Duration::from_secs(60)).tag("products");
        let keys: Vec<Key> = (0..5_000).map(|i| Key::new("product").part(i)).collect();
        for (i, key) in keys.iter().enumerate() {
            cache.insert(key, i, &options).await;
        }
        // The one blocking thread is held until the other task has run.
        let (free, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::task::spawn_blocking(move || held.recv());
        let purged = AtomicBool::new(false);
        let purge = async {
            cache.invalidate("products").await;
            purged.store(true, Ordering::SeqCst);
        };
        let other = async {
            let meanwhile = !purged.load(Ordering::SeqCst);
            free.send(()).unwrap();
            meanwhile
        };
        let ((), ran_meanwhile) = tokio::join!(purge, other);
        holder.await.unwrap().unwrap();
        assert!(
            ran_meanwhile,
            "another task ran while the purge was under way"
        );
        for key in &keys {
            assert_eq!(cache.get::<usize>(key).await, None, "{key:?} purged");
        }
    });
}

/// Many tags purged at once while other tasks read them: once the purge returns, nothing it
/// named is served, and what it did not name still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_large_purge_named_is_served_once_it_returns() {
    let cache = Cache::builder().build().unwrap();
    let tagged = |i: u32| LoadOptions::new(Duration::from_secs(60)).tag(format!("tag:{}", i % 500));
    let keys: Vec<Key> = (0..10_000).map(|i| Key::new("item").part(i)).collect();
    for (i, key) in (0..).zip(&keys) {
        cache.insert(key, i, &tagged(i)).await;
    }
    let kept = Key::new("kept");
    let untagged = LoadOptions::new(Duration::from_secs(60));
    cache.insert(&kept, 7u32, &untagged).await;
    let reading = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cache, keys, reading) = (cache.clone(), keys.clone(), Arc::clone(&reading));
            tokio::spawn(async move {
                while reading.load(Ordering::SeqCst) {
                    for key in keys.iter().step_by(97) {
                        std::hint::black_box(cache.get::<u32>(key).await);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let names: Vec<String> = (0..500).map(|i| format!("tag:{i}")).collect();
    for name in &names {
        // One call per name, as a purge of many tags makes them (see `Purge`).
        cache.invalidate(name).await;
    }
    for key in &keys {
        assert_eq!(cache.get::<u32>(key).await, None, "{key:?} purged");
    }
    reading.store(false, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(cache.get::<u32>(&kept).await, Some(7));
}

/// Another instance's purge of a tag that thousands of entries carry here is applied off the
/// subscriber's executor thread, in order: none of them is served once it arrived, and what
/// was invalidated after it is applied too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_purge_heard_from_another_instance_drops_every_entry() {
    let server = RedisServer::start();
    let tiered = || {
        Cache::builder()
            .tiered(server.url())
            .key_prefix("large:")
            .build()
            .unwrap()
    };
    let (a, b) = (tiered(), tiered());
    // B's first use of Redis starts its subscriber; its entries are then kept their lifetime.
    assert_eq!(b.get::<u32>(&Key::new("nothing")).await, None);
    while subscribers(&server.url(), "large:invalidate").await < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let options = LoadOptions::new(Duration::from_secs(60)).tag("products");
    let keys: Vec<Key> = (0..2_000).map(|i| Key::new("product").part(i)).collect();
    for (i, key) in (0..).zip(&keys) {
        b.insert(key, i, &options).await;
    }
    let last = Key::new("last");
    b.insert(&last, 1u32, &LoadOptions::new(Duration::from_secs(60)))
        .await;
    assert_eq!(b.entry_count(), 2_001);
    a.invalidate("products").await;
    a.invalidate(last.as_str()).await;
    while b.entry_count() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for key in keys.iter().chain([&last]) {
        assert_eq!(b.get::<u32>(key).await, None, "{key:?} dropped on B");
    }
}
