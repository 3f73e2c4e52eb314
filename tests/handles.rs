//! `#[cached(handles)]`: `<fn>_key`, `<fn>_refresh`, `<fn>_uncached` and `<fn>_invalidate`
//! reach the entry a call reads and writes, without restating its key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use cache_layer::{cached, Cache, Key, KeyArg};

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());

/// Counts body runs; each run returns a new version.
static RUNS: AtomicU64 = AtomicU64::new(0);

fn run() -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst) + 1
}

mod free_fn {
    use super::*;

    #[cached(ttl = "1h", key = "user:<id>", invalidate_on = ["org:<org>"], cache = CACHE, handles)]
    pub(super) async fn user(id: u64, org: &str) -> Result<String, std::io::Error> {
        Ok(format!("{id}@{org} v{}", run()))
    }
}

#[tokio::test]
async fn handles_reach_the_entry_of_the_call() {
    use free_fn::*;
    let key = user_key(7, "acme");
    assert_eq!(
        key,
        Key::new("user").part(7u64),
        "the template, not restated"
    );

    let first = user(7, "acme").await.unwrap();
    assert_eq!(CACHE.get::<String>(&key).await, Some(first.clone()));
    assert_eq!(user(7, "acme").await.unwrap(), first, "a hit");

    // Bypass: the body runs, nothing is stored.
    let bypassed = user_uncached(7, "acme").await.unwrap();
    assert_ne!(bypassed, first);
    assert_eq!(
        user(7, "acme").await.unwrap(),
        first,
        "the entry is unchanged"
    );

    // Refresh: the body runs now and its value replaces the entry.
    let refreshed = user_refresh(7, "acme").await.unwrap();
    assert_ne!(refreshed, first);
    assert_eq!(user(7, "acme").await.unwrap(), refreshed);
    assert_eq!(CACHE.get::<String>(&key).await, Some(refreshed.clone()));

    // Invalidate: the entry is gone; the next call runs the body.
    user_invalidate(7, "acme").await;
    assert_eq!(CACHE.get::<String>(&key).await, None);
    let reloaded = user(7, "acme").await.unwrap();
    assert_ne!(reloaded, refreshed);
    // The refresh kept the call's tags.
    user_refresh(7, "acme").await.unwrap();
    CACHE.invalidate("org:acme").await;
    assert_eq!(CACHE.get::<String>(&key).await, None);
}

mod method {
    use super::*;

    #[derive(Clone)]
    pub(super) struct Repo {
        pub(super) tenant: u64,
        pub(super) cache: Cache,
    }

    impl Repo {
        #[cached(ttl = "1h", key = "count:<self.tenant>:<kind>", cache = self.cache, handles)]
        pub(super) async fn count(&self, kind: &str) -> u64 {
            self.tenant * 1000 + run()
        }

        /// A receiver taken by value, `mut` bindings, the default key and `stale`.
        #[cached(ttl = "1h", stale = "1m", cache = self.cache, ignore_self = true, handles)]
        pub(super) async fn sum(self: std::sync::Arc<Self>, mut a: u64) -> u64 {
            a += run();
            a
        }
    }
}

#[tokio::test]
async fn a_methods_handles_take_its_receiver() {
    use method::Repo;
    let repo = Repo {
        tenant: 3,
        cache: Cache::builder().build().unwrap(),
    };
    let key = repo.count_key("open");
    assert_eq!(key, Key::new("count").part(3u64).part("open"));
    let first = repo.count("open").await;
    assert_eq!(repo.cache.get::<u64>(&key).await, Some(first));
    let refreshed = repo.count_refresh("open").await;
    assert_ne!(refreshed, first);
    assert_eq!(repo.count("open").await, refreshed);
    repo.count_invalidate("open").await;
    assert_eq!(repo.cache.get::<u64>(&key).await, None);

    let repo = std::sync::Arc::new(repo);
    let key = std::sync::Arc::clone(&repo).sum_key(5);
    let expected = Key::new(concat!(module_path!(), "::method::sum")).part(5u64);
    assert_eq!(key, expected, "the default key");
    let stored = std::sync::Arc::clone(&repo).sum(5).await;
    assert_eq!(repo.cache.get::<u64>(&key).await, Some(stored));
    let uncached = std::sync::Arc::clone(&repo).sum_uncached(5).await;
    assert_ne!(uncached, stored);
    assert_eq!(repo.cache.get::<u64>(&key).await, Some(stored));
}

mod generic {
    use super::*;

    #[cached(ttl = "1h", cache = CACHE, handles)]
    pub(super) async fn describe<T: KeyArg + Send + Sync>(
        id: T,
        extra: impl KeyArg + Send,
    ) -> String {
        let _ = extra;
        format!("v{}", run())
    }

    #[derive(Clone, Copy)]
    pub(super) struct UserId(pub(super) u64);

    impl KeyArg for UserId {
        fn write_key(&self, out: &mut cache_layer::KeyBuf) {
            self.0.write_key(out);
        }
    }
}

#[tokio::test]
async fn a_generic_fns_key_names_its_types_as_the_call_does() {
    use generic::*;
    let plain = describe_key(7u64, "x");
    let typed = describe_key(UserId(7), "x");
    assert_ne!(plain, typed, "each type has its own entry");
    let stored = describe(UserId(7), "x").await;
    assert_eq!(CACHE.get::<String>(&typed).await, Some(stored.clone()));
    assert_eq!(CACHE.get::<String>(&plain).await, None);
    describe_invalidate(UserId(7), "x").await;
    assert_eq!(CACHE.get::<String>(&typed).await, None);
}

mod local {
    use super::*;

    #[cached(ttl = "1h", key = "local:<id>", cache = CACHE, local, handles)]
    pub(super) async fn local_value(id: u64) -> u64 {
        id * 1000 + run()
    }
}

#[tokio::test]
async fn a_local_sites_handles_reach_its_entry() {
    use local::*;
    let key = local_value_key(4);
    assert_eq!(key, Key::new("local").part(4u64));
    let first = local_value(4).await;
    // Without a shared tier, memory holds local values where `get` reads.
    assert_eq!(CACHE.get::<u64>(&key).await, Some(first));
    let refreshed = local_value_refresh(4).await;
    assert_ne!(refreshed, first);
    assert_eq!(local_value(4).await, refreshed);
    assert_ne!(local_value_uncached(4).await, refreshed);
    assert_eq!(local_value(4).await, refreshed);
    local_value_invalidate(4).await;
    assert_eq!(CACHE.get::<u64>(&key).await, None);
}
