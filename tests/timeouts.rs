//! Loader timeouts (`soft_timeout`, `hard_timeout`) for `#[cached]` and the imperative API
//! (`LoadOptions::soft_timeout` for every loader, `HardTimeout` for `get_or_load_within`),
//! on Tokio's paused clock (`cache_layer::testing::follow_tokio_time`): a slow load is held
//! at a gate the test opens, so no test depends on how fast the machine is. The HTTP layer's
//! timeouts are tested in `tests/http/timeouts.rs`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_layer::{cached, Cache, HardTimeout, Key, LoadOptions, TimeoutError};
use tokio::sync::Semaphore;

const SECOND: Duration = Duration::from_secs(1);

/// An application's error enum, as `thiserror` would derive it: it holds a hard timeout only
/// because it says so.
#[derive(Debug)]
enum DbError {
    Timeout(TimeoutError),
}

impl From<TimeoutError> for DbError {
    fn from(error: TimeoutError) -> Self {
        DbError::Timeout(error)
    }
}

/// An error enum that knows nothing of timeouts: plain `get_or_load` still takes it.
#[derive(Debug, PartialEq)]
enum LookupError {}

/// A source whose loads wait at a gate the test opens, one load per permit.
#[derive(Clone)]
struct Slow {
    gate: Arc<Semaphore>,
    loads: Arc<AtomicUsize>,
}

impl Slow {
    fn new() -> Self {
        Slow {
            gate: Arc::new(Semaphore::new(0)),
            loads: Arc::default(),
        }
    }

    /// A load returning `value` once the gate lets it through, with any error type.
    fn load<E>(&self, value: &str) -> impl std::future::Future<Output = Result<String, E>> {
        let (gate, loads, value) = (self.gate.clone(), self.loads.clone(), value.to_owned());
        async move {
            loads.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            Ok(value)
        }
    }

    fn open(&self) {
        self.gate.add_permits(1);
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

fn cache() -> Cache {
    cache_layer::testing::follow_tokio_time();
    Cache::builder().jitter(0.0).build().unwrap()
}

/// Lets spawned work (a load finishing in the background) run to its end.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Stores "old" under `key`, then lets it age past its TTL into its stale-if-error window.
async fn old_value(cache: &Cache, key: &Key, options: &LoadOptions) {
    let old = cache
        .get_or_load(key, options, || async {
            Ok::<_, Infallible>("old".to_owned())
        })
        .await;
    assert_eq!(old.as_deref(), Ok("old"));
    tokio::time::advance(2 * SECOND).await;
    assert_eq!(cache.get::<String>(key).await, None, "past its TTL");
}

#[tokio::test(start_paused = true)]
async fn a_soft_timeout_serves_the_stale_value_and_the_load_then_stores() {
    let cache = cache();
    let key = Key::new("soft");
    let options = LoadOptions::new(SECOND)
        .stale_if_error(3600 * SECOND)
        .soft_timeout(SECOND / 10);
    old_value(&cache, &key, &options).await;

    // A loader that cannot fail: a soft timeout asks nothing of its error type.
    let slow = Slow::new();
    let load = slow.load::<Infallible>("new");
    let served = cache.get_or_load(&key, &options, || load).await;
    assert_eq!(
        served.as_deref(),
        Ok("old"),
        "the stale value, past the soft timeout"
    );
    assert_eq!(cache.stats().soft_timeouts, 1);
    assert_eq!(cache.stats().hard_timeouts, 0);

    slow.open();
    settle().await;
    assert_eq!(
        cache.get::<String>(&key).await.as_deref(),
        Some("new"),
        "stored meanwhile"
    );
    assert_eq!(slow.loads(), 1);
}

#[tokio::test(start_paused = true)]
async fn get_or_load_optional_takes_a_soft_timeout_with_any_error_type() {
    let cache = cache();
    let key = Key::new("soft-optional");
    let options = LoadOptions::new(SECOND)
        .stale_if_error(3600 * SECOND)
        .soft_timeout(SECOND / 10);
    let old = cache
        .get_or_load_optional(&key, &options, || async {
            Ok::<_, LookupError>(Some("old".to_owned()))
        })
        .await;
    assert_eq!(old, Ok(Some("old".to_owned())));
    tokio::time::advance(2 * SECOND).await;

    let slow = Slow::new();
    let load = slow.load::<LookupError>("new");
    let served = cache
        .get_or_load_optional(&key, &options, || async move { load.await.map(Some) })
        .await;
    assert_eq!(served, Ok(Some("old".to_owned())), "past the soft timeout");
    assert_eq!(cache.stats().soft_timeouts, 1);
    slow.open();
    settle().await;
    let stored = cache.get::<Option<String>>(&key).await;
    assert_eq!(stored, Some(Some("new".to_owned())), "stored meanwhile");
}

#[tokio::test(start_paused = true)]
async fn a_load_faster_than_its_timeouts_answers_as_usual() {
    let cache = cache();
    let key = Key::new("fast");
    let options = LoadOptions::new(SECOND)
        .stale_if_error(3600 * SECOND)
        .soft_timeout(SECOND);
    old_value(&cache, &key, &options).await;
    let within = HardTimeout::after(2 * SECOND);
    let served = cache
        .get_or_load_within(&key, &options, within, || async {
            Ok::<_, TimeoutError>("new".to_owned())
        })
        .await;
    assert_eq!(served.as_deref(), Ok("new"));
    assert_eq!(
        (cache.stats().soft_timeouts, cache.stats().hard_timeouts),
        (0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_returns_the_typed_error_and_the_load_still_stores() {
    let cache = cache();
    let key = Key::new("hard");
    let options = LoadOptions::new(60 * SECOND);
    let slow = Slow::new();
    let load = slow.load::<DbError>("late");
    let within = HardTimeout::after(SECOND);
    let answer = cache.get_or_load_within(&key, &options, within, || load);
    let DbError::Timeout(error) = answer
        .await
        .expect_err("past the hard timeout, without a stale value");
    assert_eq!(error.after(), SECOND);
    // `std::io::Error` carries it too.
    let io: std::io::Error = error.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(cache.stats().hard_timeouts, 1);

    slow.open();
    settle().await;
    assert_eq!(
        cache.get::<String>(&key).await.as_deref(),
        Some("late"),
        "finished and stored"
    );
}

#[tokio::test(start_paused = true)]
async fn get_or_load_optional_within_returns_the_typed_error() {
    let cache = cache();
    let key = Key::new("hard-optional");
    let options = LoadOptions::new(60 * SECOND).none_ttl(60 * SECOND);
    let slow = Slow::new();
    let load = slow.load::<DbError>("late");
    let within = HardTimeout::after(SECOND);
    let answer = cache
        .get_or_load_optional_within(
            &key,
            &options,
            within,
            || async move { load.await.map(Some) },
        )
        .await;
    assert!(matches!(answer, Err(DbError::Timeout(_))), "{answer:?}");
    assert_eq!(cache.stats().hard_timeouts, 1);
    slow.open();
    settle().await;
    let stored = cache.get::<Option<String>>(&key).await;
    assert_eq!(stored, Some(Some("late".to_owned())), "finished and stored");
}

#[tokio::test(start_paused = true)]
async fn without_finish_on_hard_timeout_the_load_is_cancelled() {
    let cache = cache();
    let key = Key::new("cancelled");
    let options = LoadOptions::new(60 * SECOND);
    let within = HardTimeout::after(SECOND).finish_on_hard_timeout(false);
    let slow = Slow::new();
    let load = slow.load::<TimeoutError>("late");
    let answer = cache.get_or_load_within(&key, &options, within, || load);
    assert!(answer.await.is_err());
    slow.open();
    settle().await;
    assert_eq!(
        cache.get::<String>(&key).await,
        None,
        "the load was dropped"
    );
    assert_eq!(
        slow.gate.available_permits(),
        1,
        "nobody went through the gate"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_holds_with_caching_off() {
    cache_layer::testing::follow_tokio_time();
    let cache = Cache::builder().disabled().build().unwrap();
    let options = LoadOptions::new(60 * SECOND);
    let slow = Slow::new();
    let load = slow.load::<DbError>("late");
    let opener = slow.clone();
    tokio::spawn(async move {
        tokio::time::sleep(10 * SECOND).await;
        opener.open(); // were the timeout ignored, the load would answer here
    });
    let within = HardTimeout::after(SECOND);
    let key = Key::new("off");
    let answer = cache.get_or_load_within(&key, &options, within, || load);
    assert!(matches!(answer.await, Err(DbError::Timeout(_))));
    assert_eq!(cache.stats().hard_timeouts, 1);
}

/// `count` callers of one key at once: the first leads, the others wait on its load; each
/// with the hard timeout `within`, if any.
async fn together(
    cache: &Cache,
    key: &Key,
    options: &LoadOptions,
    within: Option<HardTimeout>,
    slow: &Slow,
    count: usize,
) -> Vec<Result<String, DbError>> {
    let calls = (0..count).map(|_| {
        let (cache, key, options, load) = (
            cache.clone(),
            key.clone(),
            options.clone(),
            slow.load("new"),
        );
        tokio::spawn(async move {
            match within {
                Some(within) => {
                    let call = cache.get_or_load_within(&key, &options, within, || load);
                    call.await
                }
                None => cache.get_or_load(&key, &options, || load).await,
            }
        })
    });
    let handles: Vec<_> = calls.collect();
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    answers
}

#[tokio::test(start_paused = true)]
async fn waiters_follow_the_leaders_soft_timeout() {
    let cache = cache();
    let key = Key::new("soft-waiters");
    let options = LoadOptions::new(SECOND)
        .stale_if_error(3600 * SECOND)
        .soft_timeout(SECOND / 10);
    old_value(&cache, &key, &options).await;
    let slow = Slow::new();
    let answers = together(&cache, &key, &options, None, &slow, 4).await;
    assert!(
        answers.iter().all(|a| matches!(a.as_deref(), Ok("old"))),
        "{answers:?}"
    );
    assert_eq!(slow.loads(), 1, "one load for all of them");
    assert_eq!(cache.stats().coalesced, 3);
    slow.open();
    settle().await;
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("new"));
}

#[tokio::test(start_paused = true)]
async fn waiters_follow_the_leaders_hard_timeout() {
    let cache = cache();
    let key = Key::new("hard-waiters");
    let options = LoadOptions::new(60 * SECOND);
    let within = Some(HardTimeout::after(SECOND));
    let slow = Slow::new();
    let answers = together(&cache, &key, &options, within, &slow, 4).await;
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    assert_eq!(slow.loads(), 1, "one load for all of them");
    assert_eq!(
        cache.stats().hard_timeouts,
        1,
        "counted once, by the leader"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hard_timeout_serves_a_stale_if_error_value_when_there_is_one() {
    let cache = cache();
    let key = Key::new("hard-stale");
    let options = LoadOptions::new(SECOND).stale_if_error(3600 * SECOND);
    old_value(&cache, &key, &options).await;
    let slow = Slow::new();
    let load = slow.load::<TimeoutError>("new");
    let within = HardTimeout::after(SECOND);
    let answer = cache.get_or_load_within(&key, &options, within, || load);
    assert_eq!(answer.await.as_deref(), Ok("old"));
    assert_eq!(cache.stats().hard_timeouts, 1);
}

static SLOW: std::sync::LazyLock<Slow> = std::sync::LazyLock::new(Slow::new);

#[cached(ttl = "1s", stale_if_error = "1h", soft_timeout = "100ms", hard_timeout = "2s", key = "report:<id>", cache = *REPORTS)]
async fn report(id: &str) -> Result<String, std::io::Error> {
    SLOW.load(&format!("{id} v{}", SLOW.loads() + 1)).await
}

static REPORTS: std::sync::LazyLock<&'static Cache> =
    std::sync::LazyLock::new(|| Box::leak(Box::new(cache())));

#[tokio::test(start_paused = true)]
async fn cached_fns_take_both_timeouts() {
    SLOW.open();
    assert_eq!(report("a").await.unwrap(), "a v1", "a miss loads");
    tokio::time::advance(2 * SECOND).await;
    assert_eq!(
        report("a").await.unwrap(),
        "a v1",
        "soft timeout: the stale value"
    );
    assert_eq!(REPORTS.stats().soft_timeouts, 1);
    SLOW.open();
    settle().await;
    assert_eq!(
        report("a").await.unwrap(),
        "a v2",
        "stored in the background"
    );

    let error = report("b")
        .await
        .expect_err("no stale value: the hard timeout");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(REPORTS.stats().hard_timeouts, 1);
}

/// A value without serde: only a `local` site can keep it.
#[derive(Clone, Debug, PartialEq)]
struct Compiled(Arc<str>);

static GATE: std::sync::LazyLock<Slow> = std::sync::LazyLock::new(Slow::new);

#[cached(ttl = "1s", stale_if_error = "1h", soft_timeout = "100ms", key = "compiled:<name>", cache = *COMPILED, local)]
async fn compiled(name: &str) -> Result<Compiled, Infallible> {
    let text = GATE.load::<Infallible>(&format!("{name} v{}", GATE.loads() + 1));
    let text = text.await?;
    Ok(Compiled(text.into()))
}

static COMPILED: std::sync::LazyLock<&'static Cache> =
    std::sync::LazyLock::new(|| Box::leak(Box::new(cache())));

#[tokio::test(start_paused = true)]
async fn local_sites_take_a_soft_timeout() {
    GATE.open();
    assert_eq!(compiled("a").await, Ok(Compiled("a v1".into())));
    tokio::time::advance(2 * SECOND).await;
    assert_eq!(
        compiled("a").await,
        Ok(Compiled("a v1".into())),
        "the stale value, past the soft timeout"
    );
    assert_eq!(COMPILED.stats().soft_timeouts, 1);
    GATE.open();
    settle().await;
    assert_eq!(compiled("a").await, Ok(Compiled("a v2".into())));
}
