//! `#[cached]` and `#[invalidates]` on sync fns: the memory tier, the same keys, tags,
//! invalidation and single-flight as an `async fn`'s, with no Tokio runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, LazyLock};
use std::time::{Duration, Instant};

use cache_layer::{cached, invalidates, Cache, Key};

mod single_flight {
    use super::*;

    pub(super) static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
    pub(super) static LOADS: AtomicU64 = AtomicU64::new(0);
    /// How many other callers must be waiting on the flight before the body returns.
    pub(super) const WAITERS: u64 = 31;

    /// Returns once every other caller waits on its flight (a liveness bound keeps a broken
    /// single-flight from hanging the test: it then fails on the count of loads).
    #[cached(ttl = "1h", key = "parse:<text>", cache = CACHE)]
    pub(super) fn parse(text: &str) -> usize {
        LOADS.fetch_add(1, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(30);
        while CACHE.stats().coalesced < WAITERS && Instant::now() < give_up {
            std::thread::yield_now();
        }
        text.len()
    }
}

#[test]
fn a_sync_fn_under_32_threads_loads_once_without_a_runtime() {
    use single_flight::*;
    let start = Arc::new(Barrier::new(WAITERS as usize + 1));
    let threads: Vec<_> = (0..=WAITERS)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                parse("hello")
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 5);
    }
    assert_eq!(LOADS.load(Ordering::SeqCst), 1, "one load for 32 callers");
    assert_eq!(CACHE.stats().coalesced, WAITERS);
    assert_eq!(parse("hello"), 5);
    assert_eq!(LOADS.load(Ordering::SeqCst), 1, "then a hit");
}

mod invalidation {
    use super::*;

    pub(super) static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
    pub(super) static VERSION: AtomicU64 = AtomicU64::new(0);

    #[cached(ttl = "1h", key = "config:<name>", invalidate_on = ["configs"], cache = CACHE, handles)]
    pub(super) fn config(name: &str) -> Result<String, String> {
        if name.is_empty() {
            return Err("no name".to_owned());
        }
        Ok(format!(
            "{name} v{}",
            VERSION.fetch_add(1, Ordering::SeqCst)
        ))
    }

    #[invalidates("config:<name>", cache = CACHE)]
    pub(super) fn write_config(name: &str, fail: bool) -> Result<(), String> {
        if fail {
            return Err("write failed".to_owned());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_sync_fn_is_invalidated_by_tag_by_key_and_by_a_sync_writer() {
    use invalidation::*;
    assert_eq!(config("db").unwrap(), "db v0");
    assert_eq!(config("db").unwrap(), "db v0", "a hit");

    CACHE.invalidate("configs").await;
    assert_eq!(config("db").unwrap(), "db v1", "dropped by its tag");

    write_config("db", true).unwrap_err();
    assert_eq!(
        config("db").unwrap(),
        "db v1",
        "a failed write invalidates nothing"
    );
    write_config("db", false).unwrap();
    assert_eq!(config("db").unwrap(), "db v2", "dropped by the sync writer");

    CACHE.invalidate("config:db").await;
    assert_eq!(config("db").unwrap(), "db v3", "dropped by its key");

    assert!(config("").is_err());
    assert!(config("").is_err());
    assert_eq!(CACHE.stats().load_errors, 2, "an Err is never cached");
}

mod handles {
    use super::*;

    static VERSION: AtomicU64 = AtomicU64::new(0);

    #[cached(ttl = "1h", key = "config:<name>", cache = invalidation::CACHE, handles)]
    pub(super) fn config(name: &str) -> Result<String, String> {
        Ok(format!(
            "{name} v{}",
            VERSION.fetch_add(1, Ordering::SeqCst)
        ))
    }
}

#[test]
fn a_sync_fns_handles_are_sync() {
    use handles::*;
    let key = config_key("app");
    assert_eq!(key, Key::new("config").part("app"));
    let first = config("app").unwrap();
    let uncached = config_uncached("app").unwrap();
    assert_ne!(uncached, first);
    assert_eq!(config("app").unwrap(), first, "bypass stores nothing");
    let refreshed = config_refresh("app").unwrap();
    assert_ne!(refreshed, first);
    assert_eq!(config("app").unwrap(), refreshed, "refresh replaces");
    config_invalidate("app");
    let reloaded = config("app").unwrap();
    assert_ne!(reloaded, refreshed, "invalidate drops");
}
