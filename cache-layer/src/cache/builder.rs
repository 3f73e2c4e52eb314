//! [`CacheBuilder`]: a [`Cache`]'s settings, checked and put together by
//! [`CacheBuilder::build`]. The shared tier's settings (Redis, its key prefix, timeouts and
//! certificate, the outage bound) are one field, [`SharedOptions`], set by one `impl` block.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Inner};
use crate::engine::flight::Flights;
use crate::engine::invalidation::InvalidationLog;
use crate::engine::stats::Counters;
use crate::error::BuildError;
use crate::store::{MemoryStore, RedisConfig, RedisStore, SharedTier};

/// Configures a [`Cache`]. Builder methods take and return `self`.
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheBuilder {
    name: String,
    memory_budget: u64,
    jitter: f64,
    max_wait: Duration,
    disabled: bool,
    trace_keys: bool,
    shared: SharedOptions,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            name: "cache".to_owned(),
            memory_budget: 64 * 1024 * 1024,
            jitter: 0.1,
            max_wait: Duration::from_secs(10),
            disabled: false,
            trace_keys: false,
            shared: SharedOptions::default(),
        }
    }
}

impl CacheBuilder {
    /// The name metrics and events are labelled with (default `"cache"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The in-memory store's budget in bytes (default 64 MiB). Entries are weighed by what
    /// they hold: key, tags and their index slots, inline size and heap data, and the store's
    /// own cost per entry (calibrated against a counting allocator to within 25%); the least
    /// recently used go first when the budget is exceeded. Under any traffic the process
    /// holds about the budget plus a fixed few MiB (docs/caching-and-performance.md, "Memory").
    ///
    /// Besides the budget, each thread that reads the cache keeps copies of the last entries it
    /// read (64, of at most 16 KiB each), so a repeated read of a hot key touches no shared
    /// memory; a copy is never served once its entry was invalidated, replaced or evicted, but
    /// it can keep an evicted entry's memory alive until the thread's next read of that slot.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// The default TTL jitter, as a fraction in `[0, 1)` (default `0.1`: each TTL is scaled
    /// by a random factor in 0.9..=1.1, so keys cached together do not expire together).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// How long a caller waits for another caller's load of the same key before running its
    /// own loader (default 10 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Turns caching off: every `#[cached]` call, [`Cache::get_or_load`] and batch runs its
    /// loader (no single-flight, nothing stored, nothing read), [`Cache::get`] finds nothing,
    /// [`Cache::insert`] stores nothing, and a [`CacheLayer`](crate::CacheLayer) on this cache
    /// passes every request through (`Cache-Status: cache-layer; fwd=bypass`). Invalidations
    /// still reach a configured Redis. For tests and for measuring the source without a
    /// cache; `loads` in [`Cache::stats`] still counts the loader runs.
    ///
    /// ```
    /// use cache_layer::{cached, Cache};
    /// use std::sync::LazyLock;
    ///
    /// static OFF: LazyLock<Cache> = LazyLock::new(|| Cache::builder().disabled().build().unwrap());
    ///
    /// #[cached(ttl = "5m", cache = OFF)]
    /// async fn answer() -> u32 { 42 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// answer().await;
    /// answer().await;
    /// assert_eq!(OFF.stats().loads, 2); // both calls ran the body
    /// assert_eq!(OFF.entry_count(), 0);
    /// # }
    /// ```
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// [`disabled`](Self::disabled) when `off` is true (for a `--no-cache` flag); otherwise
    /// the builder as it is.
    pub fn disabled_if(mut self, off: bool) -> Self {
        self.disabled |= off;
        self
    }

    /// Records each key on the `cache.lookup` and `cache.load` spans (field `cache.key`;
    /// default off: keys may hold user data). See the crate docs, "Traces".
    pub fn trace_keys(mut self, on: bool) -> Self {
        self.trace_keys = on;
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// A [`BuildError`] naming the setting that is out of range.
    pub fn build(self) -> Result<Cache, BuildError> {
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(BuildError::Jitter(self.jitter));
        }
        if self.memory_budget == 0 {
            return Err(BuildError::MemoryBudget);
        }
        if self.max_wait.is_zero() {
            return Err(BuildError::MaxWait);
        }
        let counters = Arc::new(Counters::new(&self.name));
        let outage_ttl = self.shared.outage_ttl;
        let shared = self.shared.store(&counters)?;
        Ok(Cache {
            inner: Arc::new_cyclic(|inner| Inner {
                shared: shared.map(|(store, tiered)| {
                    SharedTier::new(store, tiered, outage_ttl, inner.clone())
                }),
                memory: MemoryStore::new(self.memory_budget, Arc::clone(&counters)),
                counters,
                flights: Flights::new(),
                log: InvalidationLog::new(),
                jitter: self.jitter,
                max_wait: self.max_wait,
                disabled: self.disabled,
                trace_keys: self.trace_keys,
            }),
        })
    }
}

/// The shared tier's settings.
impl CacheBuilder {
    /// Stores entries in Redis only (no in-process copy), shared by every instance using the
    /// same Redis and key prefix. `url`: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://...` for TLS (feature `tls`, on by default).
    ///
    /// Redis is connected on first use. If it is down or slow, calls fall back to the source
    /// (fail open); a circuit breaker then skips Redis for a second at a time until it
    /// answers again.
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_target(vec![url.into()], false, false)
    }

    /// Like [`redis`](Self::redis), on a Redis Cluster (or Valkey cluster) given some of its
    /// nodes' URLs; the rest are discovered.
    pub fn redis_cluster<I, U>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.redis_target(nodes.into_iter().map(Into::into).collect(), true, false)
    }

    /// Like [`tiered`](Self::tiered), with a Redis Cluster as L2.
    pub fn tiered_cluster<I, U>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.redis_target(nodes.into_iter().map(Into::into).collect(), true, true)
    }

    /// Memory in front of Redis: hits are served from memory (L1); misses read Redis (L2)
    /// before the source. Invalidations reach every instance's L1 over Redis pub/sub; while
    /// an instance cannot hear them (Redis down or unreachable), it keeps using its L1, but
    /// keeps each value stored meanwhile at most the [outage bound](Self::outage_ttl).
    pub fn tiered(self, url: impl Into<String>) -> Self {
        self.redis_target(vec![url.into()], false, true)
    }

    fn redis_target(mut self, urls: Vec<String>, cluster: bool, tiered: bool) -> Self {
        self.shared.target = Some(RedisTarget {
            urls,
            cluster,
            tiered,
        });
        self
    }

    /// A prefix for every Redis key and channel (default none): applications sharing one
    /// Redis with different prefixes never see each other's entries or invalidations.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.shared.key_prefix = prefix.into();
        self
    }

    /// How long memory keeps what it stores while this instance cannot hear the other
    /// instances' invalidations (default 1 s). Only with a shared tier ([`redis`](Self::redis),
    /// [`tiered`](Self::tiered) and their cluster forms).
    ///
    /// Memory (L1 of memoised values in the tiered set-up; HTTP responses and gRPC calls in
    /// every shared set-up) stays in use while Redis is down, unreachable or slow, so an outage
    /// does not send every call to the source. But an invalidation made by another instance
    /// meanwhile cannot reach this one, so:
    ///
    /// - memory is emptied when this instance notices it stopped hearing invalidations (its
    ///   subscription ends or stops answering its heartbeat, the circuit breaker opens, or
    ///   the Tokio runtime the subscription ran on shuts down): nothing stored before is
    ///   served after that. A subscription that goes silent rather than closing is noticed
    ///   within a heartbeat (500 ms) plus the connect and operation timeouts (850 ms with the
    ///   defaults); what another instance changes before that is served until then;
    /// - until it hears them again (and while its own invalidations wait to be replayed to
    ///   Redis), every entry stored in memory is dropped at most `bound` after it was stored:
    ///   its fresh, stale-while-revalidate, stale-if-error and revalidation windows all close
    ///   by then. A value or response changed elsewhere is served at most `bound` after this
    ///   instance stored it;
    /// - memory is emptied again once invalidations can be heard (resubscribed, Redis answers
    ///   again).
    ///
    /// A longer bound spares the source more during an outage and serves missed changes
    /// longer; `Duration::ZERO` stores nothing in memory meanwhile, so that every call loads
    /// and every request reaches the inner service (concurrent ones still coalesce). Any
    /// bound is accepted; very long ones are cut at the clock's horizon (100 years).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::Cache;
    ///
    /// let cache = Cache::builder()
    ///     .tiered("redis://127.0.0.1:0")
    ///     .outage_ttl(Duration::from_millis(500))
    ///     .build()
    ///     .expect("valid configuration");
    /// # drop(cache);
    /// ```
    pub fn outage_ttl(mut self, bound: Duration) -> Self {
        self.shared.outage_ttl = bound;
        self
    }

    /// How long one Redis operation may take before the call falls back (default 100 ms), and
    /// how long connecting may take (default 250 ms). Together they are the most a call waits
    /// for Redis: only its read is on its path; the write after a miss runs in the background.
    pub fn redis_timeouts(mut self, operation: Duration, connect: Duration) -> Self {
        self.shared.op_timeout = operation;
        self.shared.connect_timeout = connect;
        self
    }

    /// For `rediss://` URLs: trust this CA certificate (PEM) instead of the system's roots.
    pub fn redis_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.shared.root_certificate = Some(pem.into());
        self
    }
}

/// The shared tier's settings: which Redis, and how this cache uses it.
#[derive(Clone, Debug)]
struct SharedOptions {
    /// `None`: no shared tier.
    target: Option<RedisTarget>,
    key_prefix: String,
    connect_timeout: Duration,
    op_timeout: Duration,
    root_certificate: Option<Vec<u8>>,
    outage_ttl: Duration,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions {
            target: None,
            key_prefix: String::new(),
            connect_timeout: Duration::from_millis(250),
            op_timeout: Duration::from_millis(100),
            root_certificate: None,
            outage_ttl: Duration::from_secs(1),
        }
    }
}

impl SharedOptions {
    /// The shared tier's store (not connected yet), and whether memory is its L1 for memoised
    /// values; `None` without a Redis.
    fn store(self, counters: &Arc<Counters>) -> Result<Option<(RedisStore, bool)>, BuildError> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let config = RedisConfig {
            urls: target.urls,
            cluster: target.cluster,
            prefix: self.key_prefix,
            connect_timeout: self.connect_timeout,
            op_timeout: self.op_timeout,
            root_certificate: self.root_certificate,
        };
        let store = RedisStore::new(&config, Arc::clone(counters))?;
        Ok(Some((store, target.tiered)))
    }
}

/// Which Redis a [`CacheBuilder`] was pointed at.
#[derive(Clone)]
struct RedisTarget {
    urls: Vec<String>,
    cluster: bool,
    /// Memory (L1) in front of Redis for memoised values.
    tiered: bool,
}

/// Shows the URLs without what may be a credential: user and password, and the query (which
/// may carry them too).
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redacted(url)).collect();
        f.debug_struct("RedisTarget")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("tiered", &self.tiered)
            .finish()
    }
}

/// `url` with its user information and query replaced by `***`.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, "?***"),
        None => (rest, ""),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_owned(),
    };
    format!("{scheme}://{rest}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_credential() {
        let builders = [
            Cache::builder().tiered("redis://user:secret@127.0.0.1:6379/0"),
            Cache::builder().redis("rediss://:secret@cache.internal/"),
            Cache::builder().redis("unix:///run/redis.sock?user=u&pass=secret"),
            Cache::builder().tiered_cluster(["redis://a:secret@n1/", "redis://a:secret@n2:7001"]),
            Cache::builder().redis("redis://user:p%40ss%2Fword@host/"),
        ];
        for builder in builders {
            let shown = format!("{builder:?}");
            assert!(!shown.contains("secret"), "{shown}");
            assert!(!shown.contains("word"), "{shown}");
        }
        assert_eq!(redacted("redis://u:p@host:1/2"), "redis://***@host:1/2");
        assert_eq!(redacted("redis://host:1/2"), "redis://host:1/2");
    }
}
