//! `local` sites on a cache with a shared tier: values without serde are memoised in this
//! process's memory, never written to Redis, and still dropped by every instance's
//! invalidations, by key and by tag.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cache_layer::{cached, invalidates, Cache};

use crate::shared;
use crate::support::redis_server::{tiered, RedisServer};
use crate::support::wait::eventually;
use crate::{exist, DEFAULT_OUTAGE_BOUND};

/// A value with no serde impls: a handle holding a closure.
#[derive(Clone)]
struct Handle {
    id: u64,
    call: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// An instance whose `handle` is memoised in memory only.
#[derive(Clone)]
struct Pool {
    cache: Cache,
    opened: Arc<AtomicUsize>,
}

impl Pool {
    fn new(cache: Cache) -> Self {
        Pool {
            cache,
            opened: Arc::default(),
        }
    }

    #[cached(ttl = "1m", key = "handle:<id>", invalidate_on = ["handles"], cache = self.cache, ignore_self = true, local)]
    async fn handle(&self, id: u64) -> Result<Handle, String> {
        let opened = self.opened.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        Ok(Handle {
            id,
            call: Arc::new(move || opened),
        })
    }

    #[invalidates("handle:<id>", cache = self.cache)]
    async fn close(&self, id: u64) -> Result<(), String> {
        Ok(())
    }

    fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn local_values_stay_in_memory_and_every_instance_invalidates_them() {
    let server = RedisServer::start();
    let a = Pool::new(tiered(&server, "local:"));
    let b = Pool::new(tiered(&server, "local:"));

    let first = a.handle(1).await.unwrap();
    let again = a.handle(1).await.unwrap();
    assert_eq!((first.id, (first.call)(), (again.call)()), (1, 1, 1));
    assert_eq!(a.opened(), 1, "the second call was a hit in memory");

    // Nothing went to Redis: the other instance loads its own.
    b.handle(1).await.unwrap();
    assert_eq!(b.opened(), 1);
    let mut raw = server.raw().await;
    assert_eq!(exist(&mut raw, &["local:handle:1"]).await, [false]);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*handle*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys.is_empty(), "a local value reached Redis: {keys:?}");

    // Until a hears invalidations, what it stores lives at most the outage bound: wait for an
    // entry that outlives it, so that only an invalidation can drop it below.
    until_kept_past_the_outage_bound(async || {
        a.handle(1).await.unwrap();
        a.opened()
    })
    .await;

    // A tag invalidated on b drops a's copy.
    let before = a.opened();
    b.cache.invalidate("handles").await;
    eventually("a reloads after b invalidated the tag", async || {
        a.handle(1).await.unwrap();
        a.opened() > before
    })
    .await;

    // So does a key invalidated by b's writer.
    let opened = a.opened();
    b.close(1).await.unwrap();
    eventually(
        "a reloads after b's writer invalidated the key",
        async || {
            a.handle(1).await.unwrap();
            a.opened() > opened
        },
    )
    .await;
}

#[tokio::test]
async fn local_values_are_kept_in_memory_with_redis_alone() {
    let server = RedisServer::start();
    // Redis alone keeps memoised values in Redis only; a local value has nowhere else to go.
    let pool = Pool::new(shared(&server, "alone:"));
    pool.handle(7).await.unwrap();
    pool.handle(7).await.unwrap();
    assert_eq!(pool.opened(), 1, "the second call was a hit in memory");
    let mut raw = server.raw().await;
    assert_eq!(exist(&mut raw, &["alone:handle:7"]).await, [false]);
}

/// A sync fn on a tiered cache: memoised in memory, never in Redis.
#[derive(Clone)]
struct Templates {
    cache: Cache,
    compiled: Arc<AtomicUsize>,
}

impl Templates {
    #[cached(ttl = "1m", key = "template:<name>", invalidate_on = ["templates"], cache = self.cache, ignore_self = true)]
    fn compile(&self, name: &str) -> Handle {
        let compiled = self.compiled.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        let _ = name;
        Handle {
            id: compiled,
            call: Arc::new(move || compiled),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_fn_on_a_tiered_cache_hears_every_instances_invalidations() {
    let server = RedisServer::start();
    let a = Templates {
        cache: tiered(&server, "sync:"),
        compiled: Arc::default(),
    };
    let b = tiered(&server, "sync:");
    assert_eq!(a.compile("home").id, 1);
    assert_eq!(a.compile("home").id, 1, "a hit in memory");
    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*template*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys.is_empty(), "a sync fn's value reached Redis: {keys:?}");

    until_kept_past_the_outage_bound(async || {
        a.compile("home");
        a.compiled.load(Ordering::SeqCst)
    })
    .await;

    // Another instance's tag invalidation drops this instance's copy.
    let compiled = a.compiled.load(Ordering::SeqCst);
    b.invalidate("templates").await;
    eventually("a recompiles after b invalidated the tag", async || {
        a.compile("home");
        a.compiled.load(Ordering::SeqCst) > compiled
    })
    .await;
    // So does its invalidation of the key.
    let compiled = a.compiled.load(Ordering::SeqCst);
    b.invalidate("template:home").await;
    eventually("a recompiles after b invalidated the key", async || {
        a.compile("home");
        a.compiled.load(Ordering::SeqCst) > compiled
    })
    .await;
}

/// Waits until an entry `load` reads (returning how many loads ran so far) stays in memory past
/// the outage bound: one stored while this instance hears every invalidation.
async fn until_kept_past_the_outage_bound(mut load: impl AsyncFnMut() -> usize) {
    for _ in 0..10 {
        let before = load().await;
        tokio::time::sleep(DEFAULT_OUTAGE_BOUND + std::time::Duration::from_millis(100)).await;
        if load().await == before {
            return;
        }
    }
    panic!("never kept in memory past the outage bound");
}
