//! `#[cached]` and `#[invalidates]` through the public API, on the in-memory store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use cache_layer::{cached, invalidates, Cache, KeyArg};
use serde::{Deserialize, Serialize};

fn new_cache() -> Cache {
    Cache::builder().build().expect("valid configuration")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct DbError(&'static str);

mod hits_and_errors {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static FAIL: Mutex<bool> = Mutex::new(false);

    #[cached(ttl = "1m", key = "user:<id>", cache = CACHE)]
    async fn get_user(id: u64) -> Result<User, DbError> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        if *FAIL.lock().unwrap() {
            return Err(DbError("down"));
        }
        Ok(User {
            id,
            name: format!("u{id}"),
        })
    }

    #[tokio::test]
    async fn second_call_is_a_hit_and_errors_are_never_cached() {
        assert_eq!(get_user(1).await.unwrap().name, "u1");
        assert_eq!(get_user(1).await.unwrap().name, "u1");
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            1,
            "second call served from cache"
        );
        assert_eq!(get_user(2).await.unwrap().id, 2);
        assert_eq!(CALLS.load(Ordering::SeqCst), 2, "another key misses");

        *FAIL.lock().unwrap() = true;
        assert_eq!(get_user(3).await, Err(DbError("down")));
        assert_eq!(get_user(3).await, Err(DbError("down")));
        assert_eq!(CALLS.load(Ordering::SeqCst), 4, "an Err is not cached");
        *FAIL.lock().unwrap() = false;
        assert_eq!(get_user(3).await.unwrap().id, 3);

        let stats = CACHE.stats();
        assert_eq!(stats.hits, 1);
        assert_eq!(stats.load_errors, 2);
    }
}

mod stale_while_revalidate {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static VERSION: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "200ms", stale = "10s", jitter = false, key = "v", cache = CACHE)]
    async fn slow_version() -> Result<usize, DbError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(VERSION.fetch_add(1, Ordering::SeqCst))
    }

    #[tokio::test]
    async fn stale_value_returns_without_waiting_and_one_refresh_runs() {
        assert_eq!(slow_version().await, Ok(0));
        tokio::time::sleep(Duration::from_millis(250)).await;

        let started = Instant::now();
        let answers: Vec<_> = futures_join((0..20).map(|_| slow_version())).await;
        let took = started.elapsed();
        assert!(answers.iter().all(|a| *a == Ok(0)), "stale value served");
        assert!(
            took < Duration::from_millis(150),
            "stale answers do not wait for the 300 ms source (took {took:?})"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            VERSION.load(Ordering::SeqCst),
            2,
            "exactly one background refresh"
        );
        assert_eq!(slow_version().await, Ok(1), "refreshed value served");
        assert!(CACHE.stats().stale >= 20);
    }

    async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.expect("task"));
        }
        out
    }
}

mod stale_if_error {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static FAIL: Mutex<bool> = Mutex::new(false);
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "100ms", stale_if_error = "10s", jitter = false, key = "cfg", cache = CACHE)]
    async fn config() -> Result<String, DbError> {
        let call = CALLS.fetch_add(1, Ordering::SeqCst);
        if *FAIL.lock().unwrap() {
            Err(DbError("down"))
        } else {
            Ok(format!("config v{call}"))
        }
    }

    #[tokio::test]
    async fn a_failing_source_is_answered_with_the_stale_value() {
        assert_eq!(config().await, Ok("config v0".into()));
        *FAIL.lock().unwrap() = true;
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(config().await, Ok("config v0".into()), "stale-if-error");
        assert_eq!(CALLS.load(Ordering::SeqCst), 2, "the source was tried");
        assert_eq!(CACHE.stats().stale_if_error, 1);
        *FAIL.lock().unwrap() = false;
        assert_eq!(config().await, Ok("config v2".into()), "recovers");
        assert_eq!(config().await, Ok("config v2".into()), "and caches again");
    }
}

mod negative_caching {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static WITH: AtomicUsize = AtomicUsize::new(0);
    static WITHOUT: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "1m", none_ttl = "1m", key = "product:<id>", cache = CACHE)]
    async fn product(id: u64) -> Option<String> {
        WITH.fetch_add(1, Ordering::SeqCst);
        (id < 10).then(|| format!("product {id}"))
    }

    #[cached(ttl = "1m", key = "plain:<id>", cache = CACHE)]
    async fn product_without_none_ttl(id: u64) -> Option<String> {
        WITHOUT.fetch_add(1, Ordering::SeqCst);
        (id < 10).then(|| format!("product {id}"))
    }

    static RESULT_CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "1m", none_ttl = "1m", key = "maybe:<id>", cache = CACHE)]
    async fn maybe_product(id: u64) -> Result<Option<String>, DbError> {
        RESULT_CALLS.fetch_add(1, Ordering::SeqCst);
        if id == 0 {
            return Err(DbError("invalid id"));
        }
        Ok((id < 10).then(|| format!("product {id}")))
    }

    #[cached(ttl = "1m", key = "maybe-plain:<id>", cache = CACHE)]
    async fn maybe_product_without_none_ttl(id: u64) -> Result<Option<String>, DbError> {
        RESULT_CALLS.fetch_add(1, Ordering::SeqCst);
        Ok((id < 10).then(|| format!("product {id}")))
    }

    #[tokio::test]
    async fn ok_none_of_a_result_is_negative_too() {
        let calls = || RESULT_CALLS.load(Ordering::SeqCst);
        assert_eq!(maybe_product(99).await, Ok(None));
        assert_eq!(maybe_product(99).await, Ok(None));
        assert_eq!(calls(), 1, "Ok(None) cached with none_ttl");
        assert!(maybe_product(0).await.is_err());
        assert!(maybe_product(0).await.is_err());
        assert_eq!(calls(), 3, "Err never cached");
        assert_eq!(maybe_product_without_none_ttl(99).await, Ok(None));
        assert_eq!(maybe_product_without_none_ttl(99).await, Ok(None));
        assert_eq!(calls(), 5, "Ok(None) not cached without none_ttl");
    }

    #[tokio::test]
    async fn none_is_cached_only_with_none_ttl() {
        assert_eq!(product(99).await, None);
        assert_eq!(product(99).await, None);
        assert_eq!(
            WITH.load(Ordering::SeqCst),
            1,
            "unknown id cached as negative"
        );
        assert_eq!(product(1).await.as_deref(), Some("product 1"));
        assert_eq!(product(1).await.as_deref(), Some("product 1"));
        assert_eq!(WITH.load(Ordering::SeqCst), 2);

        assert_eq!(product_without_none_ttl(99).await, None);
        assert_eq!(product_without_none_ttl(99).await, None);
        assert_eq!(
            WITHOUT.load(Ordering::SeqCst),
            2,
            "None not cached by default"
        );
        product_without_none_ttl(1).await;
        product_without_none_ttl(1).await;
        assert_eq!(WITHOUT.load(Ordering::SeqCst), 3, "Some cached");
    }
}

mod tags_and_writers {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[cached(ttl = "1m", key = "user:<id>", invalidate_on = ["users", "org:<org>"], cache = CACHE)]
    async fn get_user(id: u64, org: u64) -> Result<User, DbError> {
        let _ = org;
        CALLS.fetch_add(1, Ordering::SeqCst);
        let names = NAMES.lock().unwrap();
        Ok(User {
            id,
            name: names.get(id as usize).cloned().unwrap_or_default(),
        })
    }

    #[invalidates("user:<id>", cache = CACHE)]
    async fn rename(id: u64, name: &str) -> Result<(), DbError> {
        if name.is_empty() {
            return Err(DbError("empty name"));
        }
        let mut names = NAMES.lock().unwrap();
        let len = names.len().max(id as usize + 1);
        names.resize(len, String::new());
        names[id as usize] = name.to_owned();
        Ok(())
    }

    fn calls() -> usize {
        CALLS.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn writers_and_tags_invalidate() {
        get_user(1, 10).await.unwrap();
        get_user(2, 20).await.unwrap();
        get_user(1, 10).await.unwrap();
        assert_eq!(calls(), 2);

        rename(1, "Ada").await.unwrap();
        assert_eq!(
            get_user(1, 10).await.unwrap().name,
            "Ada",
            "writer invalidated user:1"
        );
        assert_eq!(calls(), 3);
        get_user(2, 20).await.unwrap();
        assert_eq!(calls(), 3, "user:2 untouched");

        assert_eq!(rename(1, "").await, Err(DbError("empty name")));
        get_user(1, 10).await.unwrap();
        assert_eq!(calls(), 3, "a failed writer invalidates nothing");

        CACHE.invalidate("org:20").await;
        get_user(1, 10).await.unwrap();
        get_user(2, 20).await.unwrap();
        assert_eq!(calls(), 4, "only the entry tagged org:20 was dropped");

        CACHE.invalidate("users").await;
        get_user(1, 10).await.unwrap();
        get_user(2, 20).await.unwrap();
        assert_eq!(calls(), 6, "the shared tag dropped both");
    }
}

mod single_flight {
    use super::*;
    use tokio::sync::Notify;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "1m", key = "hot:<id>", cache = CACHE)]
    async fn hot(id: u64) -> Result<u64, DbError> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(id * 2)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_hundred_callers_on_a_cold_key_call_the_source_once() {
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    hot(21).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(42));
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert!(CACHE.stats().coalesced >= 150, "{:?}", CACHE.stats());
    }

    static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);
    static GATE: LazyLock<Notify> = LazyLock::new(Notify::new);

    /// The first call blocks until released; later calls return at once.
    #[cached(ttl = "1m", key = "gated", cache = CACHE)]
    async fn gated() -> Result<usize, DbError> {
        let call = SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            GATE.notified().await;
        }
        Ok(call)
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_strand_its_waiters() {
        let leader = tokio::spawn(gated());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiters: Vec<_> = (0..10).map(|_| tokio::spawn(gated())).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        leader.abort();
        let started = Instant::now();
        for waiter in waiters {
            let value = tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("waiters are released after the leader is cancelled")
                .unwrap();
            assert_eq!(value, Ok(1), "one waiter took over and shared its value");
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            SLOW_CALLS.load(Ordering::SeqCst),
            2,
            "one more load, not ten"
        );
    }

    static PANIC_CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "1m", key = "panicky", cache = CACHE)]
    async fn panicky() -> Result<usize, DbError> {
        let call = PANIC_CALLS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if call == 0 {
            panic!("the first load panics");
        }
        Ok(call)
    }

    #[tokio::test]
    async fn a_panicking_leader_hands_over_to_a_waiter() {
        let leader = tokio::spawn(panicky());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiters: Vec<_> = (0..5).map(|_| tokio::spawn(panicky())).collect();
        assert!(leader.await.unwrap_err().is_panic());
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Ok(1));
        }
        assert_eq!(PANIC_CALLS.load(Ordering::SeqCst), 2);
    }
}

mod invalidation_race {
    use super::*;
    use tokio::sync::Notify;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Notify> = LazyLock::new(Notify::new);
    static RELEASE: LazyLock<Notify> = LazyLock::new(Notify::new);

    #[cached(ttl = "1m", key = "balance", cache = CACHE)]
    async fn balance() -> Result<usize, DbError> {
        let call = CALLS.fetch_add(1, Ordering::SeqCst);
        if call == 0 {
            STARTED.notify_one();
            RELEASE.notified().await;
        }
        Ok(call)
    }

    #[tokio::test]
    async fn a_load_that_read_before_a_write_is_not_stored() {
        let reader = tokio::spawn(balance());
        STARTED.notified().await;
        CACHE.invalidate("balance").await; // the write happens while the read is in flight
        RELEASE.notify_one();
        assert_eq!(
            reader.await.unwrap(),
            Ok(0),
            "the caller still gets its answer"
        );
        assert_eq!(
            balance().await,
            Ok(1),
            "but the outdated value was not cached"
        );
        assert_eq!(balance().await, Ok(1));
    }
}

mod signatures {
    use super::*;
    use std::fmt::Display;

    type DbResult<T> = Result<T, DbError>;

    static CACHE: LazyLock<Cache> = LazyLock::new(new_cache);

    #[derive(Clone)]
    struct Repo {
        calls: Arc<AtomicUsize>,
        tenant: String,
    }

    fn parse(s: &str) -> Result<u64, std::num::ParseIntError> {
        s.parse()
    }

    #[derive(Debug, PartialEq)]
    enum AppError {
        Parse,
    }

    impl From<std::num::ParseIntError> for AppError {
        fn from(_: std::num::ParseIntError) -> Self {
            AppError::Parse
        }
    }

    impl Repo {
        #[cached(ttl = "1m", key = "tenant:<self.tenant>:user:<user.id>", cache = CACHE)]
        async fn profile(&self, user: &User) -> DbResult<String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(format!("{}@{}", user.name, self.tenant))
        }

        #[cached(ttl = "1m", key = "num:<self.tenant>:<text>", cache = CACHE, stale = "1m")]
        async fn number(&self, text: &str) -> Result<u64, AppError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let n = parse(text)?;
            Ok(n)
        }
    }

    #[cached(ttl = "1m", key = "shout:<word>:<times>", cache = CACHE)]
    async fn shout(word: impl KeyArg + Display + Send, times: usize) -> String {
        format!("{word}!").repeat(times)
    }

    #[cached(ttl = "1m", cache = CACHE)]
    async fn default_key(a: u32, b: &str) -> std::io::Result<String> {
        Ok(format!("{a}{b}"))
    }

    #[tokio::test]
    async fn methods_references_impl_trait_question_mark_and_aliases() {
        let repo = Repo {
            calls: Arc::default(),
            tenant: "acme".into(),
        };
        let ada = User {
            id: 1,
            name: "ada".into(),
        };
        assert_eq!(repo.profile(&ada).await, Ok("ada@acme".into()));
        assert_eq!(repo.profile(&ada).await, Ok("ada@acme".into()));
        assert_eq!(repo.calls.load(Ordering::SeqCst), 1);
        let other_tenant = Repo {
            calls: Arc::clone(&repo.calls),
            tenant: "globex".into(),
        };
        assert_eq!(other_tenant.profile(&ada).await, Ok("ada@globex".into()));
        assert_eq!(
            repo.calls.load(Ordering::SeqCst),
            2,
            "tenants do not share entries"
        );

        assert_eq!(repo.number("12").await, Ok(12));
        assert_eq!(repo.number("x").await, Err(AppError::Parse));
        assert_eq!(repo.number("12").await, Ok(12));
        assert_eq!(repo.calls.load(Ordering::SeqCst), 4);

        assert_eq!(shout("hi", 2).await, "hi!hi!");
        assert_eq!(default_key(1, "a:b").await.unwrap(), "1a:b");
        assert_eq!(default_key(1, "a:b").await.unwrap(), "1a:b");
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Other(u8);

    #[cached(ttl = "1m", key = "shared", cache = CACHE)]
    async fn shared_as_string() -> String {
        "text".into()
    }

    #[cached(ttl = "1m", key = "shared", cache = CACHE)]
    async fn shared_as_other() -> Other {
        Other(1)
    }

    #[tokio::test]
    async fn two_types_under_one_key_never_confuse_each_other() {
        assert_eq!(shared_as_string().await, "text");
        assert_eq!(shared_as_other().await, Other(1));
        assert_eq!(shared_as_string().await, "text");
    }
}

mod memory_budget {
    use super::*;

    static CACHE: LazyLock<Cache> = LazyLock::new(|| {
        Cache::builder()
            .memory_budget(256 * 1024)
            .build()
            .expect("valid configuration")
    });
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[cached(ttl = "1m", key = "blob:<id>", cache = CACHE)]
    async fn blob(id: u32) -> Vec<u8> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        vec![id as u8; 4096]
    }

    #[tokio::test]
    async fn the_budget_holds_and_new_keys_are_admitted() {
        for id in 0..500 {
            blob(id).await;
        }
        let used = CACHE.weighted_size();
        assert!(used <= 256 * 1024, "budget respected: {used} bytes");
        assert!(used > 128 * 1024, "budget used: {used} bytes");
        assert!(CACHE.stats().evictions > 0);
        // The newest keys were admitted and are served from memory.
        let before = CALLS.load(Ordering::SeqCst);
        for id in 490..500 {
            blob(id).await;
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), before, "recent keys are hits");
    }
}

#[test]
fn builder_rejects_bad_settings_with_clear_errors() {
    let err = Cache::builder().jitter(1.5).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid cache configuration: jitter must be a fraction in [0, 1), got 1.5"
    );
    assert!(Cache::builder().memory_budget(0).build().is_err());
    assert!(Cache::builder().max_wait(Duration::ZERO).build().is_err());
}
