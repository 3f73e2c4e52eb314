//! The shared tier's settings (feature `redis`): the [`CacheBuilder`] methods that point a
//! cache at Redis, and [`SharedOptions`], the one field they set.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::CacheBuilder;
use crate::cache::Inner;
use crate::engine::counters::Counters;
use crate::error::BuildError;
use crate::store::{RedisConfig, RedisSource, RedisStore, SharedTier};

/// The shared tier's settings.
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl CacheBuilder {
    /// Stores entries in Redis only (no in-process copy), shared by every instance using the
    /// same Redis and key prefix. `url`: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://...` for TLS (feature `tls`, on by default).
    ///
    /// Redis is connected on first use. If it is down or slow, calls fall back to the source
    /// (fail open); a circuit breaker then skips Redis for a second at a time until it
    /// answers again.
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_target(RedisSource::urls(vec![url.into()], false), false)
    }

    /// Like [`redis`](Self::redis), on a Redis Cluster (or Valkey cluster) given some of its
    /// nodes' URLs; the rest are discovered.
    pub fn redis_cluster<I, U>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let urls = nodes.into_iter().map(Into::into).collect();
        self.redis_target(RedisSource::urls(urls, true), false)
    }

    /// Like [`tiered`](Self::tiered), with a Redis Cluster as L2.
    pub fn tiered_cluster<I, U>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let urls = nodes.into_iter().map(Into::into).collect();
        self.redis_target(RedisSource::urls(urls, true), true)
    }

    /// Memory in front of Redis: hits are served from memory (L1); misses read Redis (L2)
    /// before the source. Invalidations reach every instance's L1 over Redis pub/sub; while
    /// an instance cannot hear them (Redis down or unreachable), it keeps using its L1, but
    /// keeps each value stored meanwhile at most the [outage bound](Self::outage_ttl).
    pub fn tiered(self, url: impl Into<String>) -> Self {
        self.redis_target(RedisSource::urls(vec![url.into()], false), true)
    }

    /// Like [`redis`](Self::redis), on the master that the Redis Sentinels at `sentinels`
    /// (URLs such as `redis://10.0.0.5:26379`) know as `master`. After a failover, calls and
    /// invalidations follow the new master: see [`RedisSource::sentinel`].
    pub fn redis_sentinel<I, U>(self, sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.redis_with(RedisSource::sentinel(sentinels, master))
    }

    /// Like [`tiered`](Self::tiered), with the master the Redis Sentinels name as L2: see
    /// [`redis_sentinel`](Self::redis_sentinel).
    ///
    /// ```
    /// # use cache_layer::Cache;
    /// let cache = Cache::builder()
    ///     .tiered_sentinel(["redis://10.0.0.5:26379", "redis://10.0.0.6:26379"], "main")
    ///     .build()
    ///     .expect("valid configuration");
    /// # drop(cache);
    /// ```
    pub fn tiered_sentinel<I, U>(self, sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        self.tiered_with(RedisSource::sentinel(sentinels, master))
    }

    /// Like [`redis`](Self::redis), reaching Redis through `source`: a client or connection
    /// manager the application already has, or Sentinel.
    pub fn redis_with(self, source: RedisSource) -> Self {
        self.redis_target(source, false)
    }

    /// Like [`tiered`](Self::tiered), reaching Redis through `source`: a client or connection
    /// manager the application already has, or Sentinel.
    ///
    /// ```
    /// use cache_layer::{redis, Cache, RedisSource};
    ///
    /// # async fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let manager = client.get_connection_manager().await?;
    /// let cache = Cache::builder()
    ///     .tiered_with(RedisSource::connection_manager(manager.clone(), client))
    ///     .build()
    ///     .expect("valid configuration");
    /// // `manager` serves the application's own commands on the same connection.
    /// # Ok(()) }
    /// ```
    pub fn tiered_with(self, source: RedisSource) -> Self {
        self.redis_target(source, true)
    }

    fn redis_target(mut self, source: RedisSource, tiered: bool) -> Self {
        self.shared.target = Some(RedisTarget { source, tiered });
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

    /// Writes entries to Redis compressed (LZ4) when their payload (the encoded value, or an
    /// HTTP response's header block and body) is longer than `bytes` and compressing makes it
    /// shorter; off by default. Entries are read back in either form whatever this setting, so
    /// instances of this version can turn it on one at a time; an instance of a version
    /// without compression treats a compressed entry as a miss (counted as a decode error) and
    /// overwrites it, so turn it on once every instance runs a version that reads it. A few
    /// KiB is a sensible threshold: smaller payloads gain little, and JSON-like values and
    /// text bodies shrink severalfold (`--bench redis` has the figures).
    ///
    /// ```
    /// # use cache_layer::Cache;
    /// let cache = Cache::builder()
    ///     .tiered("redis://127.0.0.1:6379/")
    ///     .compress_above(4096)
    ///     .build()
    ///     .expect("valid configuration");
    /// # drop(cache);
    /// ```
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.shared.compress_above = Some(bytes);
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
pub(super) struct SharedOptions {
    /// `None`: no shared tier.
    target: Option<RedisTarget>,
    key_prefix: String,
    connect_timeout: Duration,
    op_timeout: Duration,
    root_certificate: Option<Vec<u8>>,
    outage_ttl: Duration,
    compress_above: Option<usize>,
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
            compress_above: None,
        }
    }
}

impl SharedOptions {
    /// The shared tier's store (not connected yet); `None` without a Redis.
    pub(super) fn pending(
        self,
        counters: &Arc<Counters>,
    ) -> Result<Option<PendingTier>, BuildError> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let config = RedisConfig {
            source: target.source,
            prefix: self.key_prefix,
            connect_timeout: self.connect_timeout,
            op_timeout: self.op_timeout,
            root_certificate: self.root_certificate,
            compress_above: self.compress_above,
        };
        let store = RedisStore::new(&config, Arc::clone(counters))?;
        Ok(Some(PendingTier {
            store,
            tiered: target.tiered,
            outage_ttl: self.outage_ttl,
        }))
    }
}

/// A shared tier checked by [`CacheBuilder::build`], made once its cache exists.
pub(super) struct PendingTier {
    store: RedisStore,
    /// Memory (L1) in front of Redis for memoised values.
    tiered: bool,
    outage_ttl: Duration,
}

impl PendingTier {
    /// The shared tier of the cache `inner` will point to.
    pub(super) fn start(self, inner: Weak<Inner>) -> SharedTier {
        SharedTier::new(self.store, self.tiered, self.outage_ttl, inner)
    }
}

/// Which Redis a [`CacheBuilder`] was pointed at (shown without credentials: see
/// [`RedisSource`]'s `Debug`).
#[derive(Clone, Debug)]
struct RedisTarget {
    source: RedisSource,
    /// Memory (L1) in front of Redis for memoised values.
    tiered: bool,
}
