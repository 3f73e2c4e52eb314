//! `#[cached(stale = ...)]` end to end: a stale value is served at once while exactly one
//! background task refreshes it, for a `&self` method (on the in-memory and on a tiered store
//! in front of a real `redis-server`), a `self: Arc<Self>` method, and a free fn with
//! reference and `impl Trait` arguments. Each refresh must run the body on what the caller
//! passed: the value names the receiver and the arguments it was computed from.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cache_layer::{cached, Cache, KeyArg};
use support::redis_server::{tiered, RedisServer};
use support::wait::eventually;
use tokio::sync::Semaphore;

/// More permits than loads in any test: taking them all holds every load at the gate.
const PERMITS: u32 = 1_000;

/// What the loads of one test share: how many ran, and a gate that holds them while closed.
#[derive(Clone)]
struct Source {
    loads: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Source {
    fn new() -> Self {
        Source {
            loads: Arc::default(),
            gate: Arc::new(Semaphore::new(PERMITS as usize)),
        }
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// One load: counted as it starts, then held while the gate is closed. Returns the number
    /// of loads before it (the value's version).
    async fn load(&self) -> usize {
        let version = self.loads.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.expect("the gate is never closed");
        version
    }
}

/// `call` (a `stale = "1m"` site with a 200 ms TTL) first loads `expected(0)`; once stale, it
/// answers `expected(0)` without waiting for the refresh, which is started once (held at the
/// gate meanwhile); after the refresh, it answers `expected(1)` and nothing else loaded.
async fn serves_stale_and_refreshes_once<F, Fut>(
    source: &Source,
    mut call: F,
    expected: impl Fn(usize) -> String,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = String>,
{
    assert_eq!(call().await, expected(0));
    assert_eq!(source.loads(), 1);
    assert_eq!(call().await, expected(0), "fresh: a hit");
    assert_eq!(source.loads(), 1);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = source
        .gate
        .acquire_many(PERMITS)
        .await
        .expect("the gate is never closed");
    for _ in 0..5 {
        // The safety net of a caller that would wait for the held refresh; not a speed check.
        let answer = tokio::time::timeout(Duration::from_secs(5), call())
            .await
            .expect("a stale answer does not wait for the refresh");
        assert_eq!(answer, expected(0), "the stale value is served");
    }
    eventually("the background refresh starts", async || {
        source.loads() == 2
    })
    .await;
    drop(closed);

    let mut answer = String::new();
    for _ in 0..500 {
        answer = call().await;
        if answer != expected(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answer, expected(1), "the refreshed value is served");
    assert_eq!(source.loads(), 2, "exactly one background refresh, no load");
}

/// A repository of one tenant: the key names the receiver's tenant.
#[derive(Clone)]
struct Repo {
    cache: Cache,
    tenant: u64,
    source: Source,
}

impl Repo {
    #[cached(
        ttl = "200ms",
        stale = "1m",
        jitter = false,
        key = "greeting:<self.tenant>:<name>",
        cache = self.cache
    )]
    async fn greeting(&self, name: &str) -> String {
        let version = self.source.load().await;
        format!("v{version} {name}@{}", self.tenant)
    }

    #[cached(
        ttl = "200ms",
        stale = "1m",
        jitter = false,
        key = "shared:<self.tenant>:<times>",
        cache = self.cache
    )]
    async fn shared(self: Arc<Self>, times: usize) -> Result<String, std::fmt::Error> {
        let version = self.source.load().await;
        let tenant: u8 = u8::try_from(self.tenant).map_err(|_| std::fmt::Error)?;
        Ok(format!("v{version} {tenant}").repeat(times))
    }
}

#[tokio::test]
async fn a_borrowed_receiver_is_refreshed_on_a_clone_in_memory() {
    let repo = Repo {
        cache: Cache::builder().build().unwrap(),
        tenant: 7,
        source: Source::new(),
    };
    serves_stale_and_refreshes_once(
        &repo.source,
        || repo.greeting("ada"),
        |v| format!("v{v} ada@7"),
    )
    .await;
}

#[tokio::test]
async fn a_borrowed_receiver_is_refreshed_on_a_clone_on_a_tiered_store() {
    let server = RedisServer::start();
    let repo = Repo {
        cache: tiered(&server, "stale:"),
        tenant: 7,
        source: Source::new(),
    };
    serves_stale_and_refreshes_once(
        &repo.source,
        || repo.greeting("ada"),
        |v| format!("v{v} ada@7"),
    )
    .await;
    // Another instance, with an empty memory tier, reads the refreshed value from Redis.
    let other = Repo {
        cache: tiered(&server, "stale:"),
        ..repo.clone()
    };
    assert_eq!(other.greeting("ada").await, "v1 ada@7");
    assert_eq!(repo.source.loads(), 2, "the refresh reached Redis");
}

#[tokio::test]
async fn an_owned_receiver_is_moved_into_the_refresh() {
    let repo = Arc::new(Repo {
        cache: CACHE.clone(),
        tenant: 3,
        source: Source::new(),
    });
    serves_stale_and_refreshes_once(
        &repo.source,
        || async { Arc::clone(&repo).shared(2).await.unwrap() },
        |v| format!("v{v} 3v{v} 3"),
    )
    .await;
}

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
static SOURCE: LazyLock<Source> = LazyLock::new(Source::new);

/// No receiver: a reference argument (copied for the refresh) and an `impl Trait` one (moved).
#[cached(
    ttl = "200ms",
    stale = "1m",
    jitter = false,
    key = "label:<name>:<suffix>",
    cache = CACHE
)]
async fn label(name: &str, suffix: impl KeyArg + std::fmt::Display + Send + 'static) -> String {
    let version = SOURCE.load().await;
    format!("v{version} {name}{suffix}")
}

#[tokio::test]
async fn a_fn_with_reference_and_impl_trait_arguments_is_refreshed_with_copies() {
    let name = String::from("ada");
    serves_stale_and_refreshes_once(&SOURCE, || label(&name, 42u32), |v| format!("v{v} ada42"))
        .await;
}
