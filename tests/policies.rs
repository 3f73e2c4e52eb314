//! Policies decided by the returned value (`ttl_from`, `cache_if`), on the in-memory store and
//! on a tiered store in front of a real `redis-server`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_layer::{cached, Cache};
use serde::{Deserialize, Serialize};
use support::redis_server::{tiered, RedisServer};

/// An access token that says how long it is valid, as OAuth's `expires_in` does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Token {
    id: u32,
    expires_in: u64,
}

/// A report that is either final or still being computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    id: u32,
    done: bool,
}

#[derive(Debug, PartialEq)]
struct AuthError;

fn token_ttl(token: &Token) -> Duration {
    Duration::from_secs(token.expires_in)
}

/// `None`: the site's `ttl`.
fn maybe_ttl(token: &Token) -> Option<Duration> {
    (token.expires_in > 0).then(|| Duration::from_secs(token.expires_in))
}

fn is_done(report: &Report) -> bool {
    report.done
}

/// One service instance: its cache, and a counter of loads shared by the instances of a test.
#[derive(Clone)]
struct Service {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

impl Service {
    fn new(cache: Cache, loads: &Arc<AtomicUsize>) -> Self {
        Service {
            cache,
            loads: Arc::clone(loads),
        }
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// Token 1 is valid for 1 s, the others for an hour.
    #[cached(ttl = "1h", key = "token:<id>", ttl_from = token_ttl, cache = self.cache, ignore_self = true)]
    async fn token(&self, id: u32) -> Result<Token, AuthError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let expires_in = if id == 1 { 1 } else { 3600 };
        Ok(Token { id, expires_in })
    }

    /// An `Option` return: the policy sees the token inside `Some`; `expires_in = 0` keeps
    /// the site's `ttl`.
    #[cached(ttl = "1s", key = "maybe:<id>", ttl_from = maybe_ttl, jitter = false, cache = self.cache, ignore_self = true)]
    async fn maybe_token(&self, id: u32) -> Option<Token> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Some(Token {
            id,
            expires_in: if id == 1 { 0 } else { 3600 },
        })
    }

    /// Report 1 is still running (not cached); report 2 is final.
    #[cached(ttl = "1h", key = "report:<id>", cache_if = is_done, cache = self.cache, ignore_self = true)]
    async fn report(&self, id: u32) -> Report {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Report { id, done: id != 1 }
    }
}

/// A value with a 1 s TTL expires while its neighbours stay; a value the predicate rejects is
/// loaded on every call. `first` loads; `second` (another instance on the same shared tier, or
/// the same one) reads after the short TTL.
async fn policies_hold(first: &Service, second: &Service) {
    first.token(1).await.unwrap();
    first.token(2).await.unwrap();
    first.maybe_token(1).await.unwrap();
    first.maybe_token(2).await.unwrap();
    assert_eq!(first.loads(), 4);
    first.token(1).await.unwrap();
    first.token(2).await.unwrap();
    assert_eq!(first.loads(), 4, "both tokens are fresh at first");

    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        second.token(2).await,
        Ok(Token {
            id: 2,
            expires_in: 3600
        })
    );
    assert_eq!(second.loads(), 4, "the hour-long token stays");
    assert_eq!(
        second.token(1).await,
        Ok(Token {
            id: 1,
            expires_in: 1
        })
    );
    assert_eq!(second.loads(), 5, "the token valid for 1 s expired");
    second.maybe_token(2).await.unwrap();
    assert_eq!(second.loads(), 5, "the value's TTL outlives the site's 1 s");
    second.maybe_token(1).await.unwrap();
    assert_eq!(second.loads(), 6, "no TTL from the value: the site's 1 s");

    first.report(1).await;
    first.report(2).await;
    assert_eq!(first.loads(), 8);
    second.report(1).await;
    second.report(2).await;
    assert_eq!(
        second.loads(),
        9,
        "the unfinished report is loaded again, the final one is not"
    );
    first.report(1).await;
    assert_eq!(first.loads(), 10);
}

#[tokio::test]
async fn value_policies_in_memory() {
    let loads = Arc::default();
    let service = Service::new(Cache::builder().build().unwrap(), &loads);
    policies_hold(&service, &service).await;
}

#[tokio::test]
async fn value_policies_on_a_tiered_store_reach_redis() {
    let server = RedisServer::start();
    let loads = Arc::default();
    let first = Service::new(tiered(&server, "policies:"), &loads);
    // A second instance with an empty memory tier: whatever it finds comes from Redis, so
    // the TTLs and the skip must have reached Redis too.
    let second = Service::new(tiered(&server, "policies:"), &loads);
    policies_hold(&first, &second).await;
    let stats = second.cache.stats();
    assert!(stats.shared_hits >= 2, "{stats:?}");
}

mod with_stale {
    use super::*;
    use std::sync::LazyLock;

    static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
    static VERSION: AtomicUsize = AtomicUsize::new(0);

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Versioned {
        version: usize,
        valid_ms: u64,
    }

    fn valid_for(value: &Versioned) -> Duration {
        Duration::from_millis(value.valid_ms)
    }

    /// Fresh for the value's 300 ms (the site's hour is not used), then stale for 10 s.
    #[cached(ttl = "1h", stale = "10s", key = "v", ttl_from = valid_for, cache = CACHE)]
    async fn versioned() -> Versioned {
        Versioned {
            version: VERSION.fetch_add(1, Ordering::SeqCst),
            valid_ms: 300,
        }
    }

    #[tokio::test]
    async fn the_stale_window_follows_the_ttl_from_the_value() {
        assert_eq!(versioned().await.version, 0);
        assert_eq!(versioned().await.version, 0);
        assert_eq!(CACHE.stats().stale, 0, "fresh at first");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            versioned().await.version,
            0,
            "served stale past the value's TTL"
        );
        assert_eq!(CACHE.stats().stale, 1);
        // The one background refresh stores version 1; until then the stale value is served.
        let started = std::time::Instant::now();
        loop {
            match versioned().await.version {
                1 => break,
                0 if started.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                other => panic!("version {other} after {:?}", started.elapsed()),
            }
        }
        assert_eq!(VERSION.load(Ordering::SeqCst), 2, "one refresh, no load");
    }
}
