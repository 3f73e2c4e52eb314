//! Entry lifetimes under Tokio's paused clock (`cache_layer::testing::follow_tokio_time`, feature
//! `test-clock`): fresh → stale (served, refreshed once in the background) → stale-if-error →
//! expired, deterministically, for `#[cached]` and for the imperative API. No test sleeps for
//! real.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_layer::{cached, Cache, Key, LoadOptions};

const SECOND: Duration = Duration::from_secs(1);

/// A source whose value counts its loads, and that can be made to fail.
#[derive(Clone, Default)]
struct Source {
    loads: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Source {
    async fn load(&self) -> Result<usize, String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("source down".to_owned());
        }
        Ok(self.loads.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

/// Lets spawned work (a background refresh) run to its end on the paused runtime.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Walks one entry through its life with `get`: fresh for 10 s, stale for 5 s, servable on
/// errors for 20 s more, then gone. The refresh at 11 s restarts the clock of the entry.
async fn walk_through_the_windows<F, Fut>(source: &Source, get: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    assert_eq!(get().await, Ok(1), "miss: loaded");
    tokio::time::advance(9 * SECOND).await;
    assert_eq!(get().await, Ok(1), "fresh at 9 s");
    assert_eq!(source.loads(), 1);

    tokio::time::advance(2 * SECOND).await;
    assert_eq!(get().await, Ok(1), "stale at 11 s: the old value, at once");
    settle().await;
    assert_eq!(source.loads(), 2, "one background refresh");
    assert_eq!(get().await, Ok(2), "the refreshed value, fresh again");

    source.fail(true);
    tokio::time::advance(16 * SECOND).await;
    assert_eq!(
        get().await,
        Ok(2),
        "16 s after the refresh, loader failing: stale-if-error"
    );
    tokio::time::advance(20 * SECOND).await;
    assert_eq!(
        get().await,
        Err("source down".to_owned()),
        "36 s after the refresh: expired, the error surfaces"
    );
    source.fail(false);
    assert_eq!(get().await, Ok(3), "loaded again");
}

thread_local! {
    static SOURCE: Source = Source::default();
}

fn clock_cache() -> Cache {
    cache_layer::testing::follow_tokio_time();
    Cache::builder().build().unwrap()
}

static CACHED_FN_CACHE: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(clock_cache);

#[cached(
    ttl = "10s",
    stale = "5s",
    stale_if_error = "20s",
    jitter = false,
    key = "windows",
    cache = CACHED_FN_CACHE
)]
async fn windows() -> Result<usize, String> {
    SOURCE.with(Source::clone).load().await
}

#[tokio::test(start_paused = true)]
async fn a_cached_fn_goes_fresh_stale_and_expired_on_the_paused_clock() {
    let source = SOURCE.with(Source::clone);
    walk_through_the_windows(&source, windows).await;
}

#[tokio::test(start_paused = true)]
async fn get_or_load_goes_fresh_stale_and_expired_on_the_paused_clock() {
    let cache = clock_cache();
    let options = LoadOptions::new(10 * SECOND)
        .stale(5 * SECOND)
        .stale_if_error(20 * SECOND)
        .jitter(0.0);
    let source = Source::default();
    let key = Key::new("windows");
    walk_through_the_windows(&source, || {
        let source = source.clone();
        cache.get_or_load(&key, &options, move || async move { source.load().await })
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn get_sees_inserted_values_until_their_stale_window_ends() {
    let cache = clock_cache();
    let options = LoadOptions::new(10 * SECOND)
        .stale(5 * SECOND)
        .stale_if_error(60 * SECOND)
        .jitter(0.0);
    let key = Key::new("inserted");
    cache.insert(&key, 7u32, &options).await;
    tokio::time::advance(14 * SECOND).await;
    assert_eq!(cache.get::<u32>(&key).await, Some(7), "stale: still served");
    tokio::time::advance(2 * SECOND).await;
    assert_eq!(
        cache.get::<u32>(&key).await,
        None,
        "past the stale window: only a failing loader may see it"
    );
}

#[tokio::test(start_paused = true)]
async fn negative_entries_expire_after_none_ttl() {
    let cache = clock_cache();
    let options = LoadOptions::new(60 * SECOND)
        .none_ttl(5 * SECOND)
        .jitter(0.0);
    let loads = Arc::new(AtomicUsize::new(0));
    let key = Key::new("absent");
    let lookup = || {
        let loads = Arc::clone(&loads);
        cache.get_or_load_optional(&key, &options, move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<u32>, String>(None)
        })
    };
    lookup().await.unwrap();
    tokio::time::advance(4 * SECOND).await;
    lookup().await.unwrap();
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "negative entry fresh at 4 s"
    );
    tokio::time::advance(2 * SECOND).await;
    lookup().await.unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 2, "gone at 6 s");
}

#[tokio::test(start_paused = true)]
async fn a_batch_refreshes_its_stale_keys_in_one_background_call() {
    let cache = clock_cache();
    let options = LoadOptions::new(10 * SECOND).stale(5 * SECOND).jitter(0.0);
    let calls = Arc::new(AtomicUsize::new(0));
    let load = {
        let calls = Arc::clone(&calls);
        move |keys: Vec<Key>| {
            let round = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok::<_, String>(
                    keys.into_iter()
                        .map(|k| (k, round))
                        .collect::<std::collections::HashMap<_, _>>(),
                )
            }
        }
    };
    let keys = [Key::new("b").part(1), Key::new("b").part(2)];
    let first = cache.get_or_load_many(&keys, &options, load.clone()).await;
    assert_eq!(first, Ok(vec![Some(1), Some(1)]));
    tokio::time::advance(11 * SECOND).await;
    let stale = cache.get_or_load_many(&keys, &options, load.clone()).await;
    assert_eq!(stale, Ok(vec![Some(1), Some(1)]), "stale values at once");
    settle().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one refresh call for both keys"
    );
    let fresh = cache.get_or_load_many(&keys, &options, load).await;
    assert_eq!(fresh, Ok(vec![Some(2), Some(2)]));
}

static JITTER_CACHE: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(clock_cache);
static JITTER_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "400ms", key = "<id>", jitter = 0.5, cache = JITTER_CACHE)]
async fn jittered(id: u32) -> u32 {
    JITTER_CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

/// Loads every key of `0..keys` through `jittered`; how many ran the body.
async fn jittered_loads(keys: u32) -> usize {
    let before = JITTER_CALLS.load(Ordering::SeqCst);
    for id in 0..keys {
        jittered(id).await;
    }
    JITTER_CALLS.load(Ordering::SeqCst) - before
}

#[tokio::test(start_paused = true)]
async fn entries_expire_within_the_jitter_bounds_and_not_together() {
    let keys = 200u32;
    assert_eq!(jittered_loads(keys).await, keys as usize);
    // ttl 400 ms ± 50%: nothing expires before 200 ms, everything by 600 ms.
    tokio::time::advance(Duration::from_millis(199)).await;
    assert_eq!(
        jittered_loads(keys).await,
        0,
        "all fresh just before 200 ms"
    );
    tokio::time::advance(Duration::from_millis(201)).await; // 400 ms
    let expired = jittered_loads(keys).await;
    assert!(
        expired > 20 && expired < 180,
        "jitter spreads expiry: {expired} of {keys} expired at the nominal TTL"
    );
    tokio::time::advance(Duration::from_millis(601)).await; // > 1 s: every entry gone
    assert_eq!(jittered_loads(keys).await, keys as usize);
}
