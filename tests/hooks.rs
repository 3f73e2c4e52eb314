//! Hooks set on the builder (`on_eviction`, `on_invalidation`, `on_load_error`): each fires
//! with the right cause, and one that panics never breaks the call that made the event.
//! Remote invalidations (heard from another instance): `tests/redis/clear.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_layer::{Cache, EvictionCause, Invalidated, Key, LoadOptions, Origin};

fn options(ttl: Duration) -> LoadOptions {
    LoadOptions::new(ttl).jitter(0.0)
}

type Seen<T> = Arc<Mutex<Vec<T>>>;

#[tokio::test]
async fn evictions_are_told_with_their_cause() {
    let seen: Seen<(String, EvictionCause)> = Arc::default();
    let hook = Arc::clone(&seen);
    let cache = Cache::builder()
        .memory_budget(64 * 1024)
        .on_eviction(move |eviction| {
            hook.lock()
                .unwrap()
                .push((eviction.key.to_owned(), eviction.cause));
        })
        .build()
        .unwrap();
    let minute = options(Duration::from_secs(60));
    let causes = |key: &str| -> Vec<EvictionCause> {
        let seen = seen.lock().unwrap();
        seen.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, cause)| *cause)
            .collect()
    };

    cache.insert(&Key::new("k").part(1), 1u32, &minute).await;
    cache.insert(&Key::new("k").part(1), 2u32, &minute).await;
    assert_eq!(causes("k:1"), [EvictionCause::Replaced]);

    cache.invalidate("k:1").await;
    assert_eq!(
        causes("k:1"),
        [EvictionCause::Replaced, EvictionCause::Invalidated]
    );

    let short = options(Duration::from_millis(20));
    cache.insert(&Key::new("short").part(1), 1u32, &short).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.get::<u32>(&Key::new("short").part(1)).await, None);
    assert_eq!(causes("short:1"), [EvictionCause::Expired]);

    for i in 0..2_000u32 {
        cache.insert(&Key::new("fill").part(i), i, &minute).await;
    }
    cache.entry_count(); // runs the store's maintenance, which evicts
    let evicted = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| *c == EvictionCause::Size)
        .count();
    assert!(
        evicted > 1_000,
        "{evicted} told of evictions for the budget"
    );
    assert_eq!(u64::try_from(evicted).unwrap(), cache.stats().evictions);
}

#[tokio::test]
async fn invalidations_and_clears_are_told() {
    let seen: Seen<String> = Arc::default();
    let hook = Arc::clone(&seen);
    let cache = Cache::builder()
        .on_invalidation(move |event| {
            assert_eq!(event.origin, Origin::Local);
            let what = match event.what {
                Invalidated::Name(name) => format!("name {name}"),
                Invalidated::SoftPurge(name) => format!("soft {name}"),
                Invalidated::Prefix(prefix) => format!("prefix {prefix}"),
                Invalidated::Everything => "everything".to_owned(),
                other => format!("{other:?}"),
            };
            hook.lock().unwrap().push(what);
        })
        .build()
        .unwrap();
    cache.invalidate("user:1").await;
    cache.soft_invalidate("users").await;
    cache.clear_prefix("org:").await;
    cache.clear().await;
    assert_eq!(
        seen.lock().unwrap()[..],
        ["name user:1", "soft users", "prefix org:", "everything"]
    );
}

#[tokio::test]
async fn failed_loads_are_told_with_their_key() {
    let seen: Seen<String> = Arc::default();
    let hook = Arc::clone(&seen);
    let cache = Cache::builder()
        .on_load_error(move |failure| hook.lock().unwrap().push(failure.key.to_owned()))
        .build()
        .unwrap();
    let minute = options(Duration::from_secs(60));
    let failed = cache
        .get_or_load(&Key::new("user").part(7), &minute, || async {
            Err::<u32, _>(std::io::Error::other("down"))
        })
        .await;
    assert!(failed.is_err());
    let loaded = cache
        .get_or_load(&Key::new("user").part(8), &minute, || async {
            Ok::<_, std::io::Error>(8u32)
        })
        .await;
    assert_eq!(loaded.unwrap(), 8);
    assert_eq!(seen.lock().unwrap()[..], ["user:7"]);
}

#[tokio::test]
async fn a_panicking_hook_never_breaks_a_call() {
    let cache = Cache::builder()
        .on_eviction(|_| panic!("eviction hook"))
        .on_invalidation(|_| panic!("invalidation hook"))
        .on_load_error(|_| panic!("load error hook"))
        .build()
        .unwrap();
    let minute = options(Duration::from_secs(60));
    let key = Key::new("user").part(1);
    cache.insert(&key, 1u32, &minute).await;
    cache.insert(&key, 2u32, &minute).await; // replaced: the eviction hook panics
    assert_eq!(cache.get::<u32>(&key).await, Some(2));
    cache.invalidate("user:1").await; // both hooks panic
    assert_eq!(cache.get::<u32>(&key).await, None);
    let failed = cache
        .get_or_load(&key, &minute, || async {
            Err::<u32, _>(std::io::Error::other("down"))
        })
        .await;
    assert_eq!(failed.unwrap_err().to_string(), "down");
    let loaded = cache
        .get_or_load(&key, &minute, || async { Ok::<_, std::io::Error>(3u32) })
        .await;
    assert_eq!(loaded.unwrap(), 3);
    assert_eq!(cache.get::<u32>(&key).await, Some(3));
    assert_eq!(cache.stats().hook_panics, 4);
}
