//! The shared tier: [`RedisStore`] keeps entries, their tags' sets, load locks and the
//! invalidation history in one Redis or a Redis Cluster, and tells every instance what was
//! invalidated over pub/sub. What it keeps there is a stable contract, the
//! [Redis layout](crate::docs::redis_layout).
//!
//! Every operation fails open: an error or a timeout is counted and logged, and the caller
//! proceeds as on a miss. Invalidations that did not reach Redis are queued and replayed
//! before anything else is sent.
//!
//! - `source`: [`RedisSource`], where Redis is as a builder was told.
//! - `connection`: the clients, the one shared connection (one Redis, a cluster, or the
//!   master on Sentinel), TLS; `sentinel`: the master the Sentinels name, asked for again
//!   after a failover.
//! - `keys`: the names of what the store keeps, the channel's message bytes, the bounds.
//! - `scripts`: the Lua scripts, kept in `scripts/*.lua`.
//! - `outage`: the breaker and the time budget every operation runs under.
//! - `read`: reads, and where the invalidation history stands before a load.
//! - `write`: writes, and the write on one Redis; `cluster`: the write on a cluster.
//! - `invalidate`: deletes, invalidations and soft purges; `coalesce`: invalidations asked
//!   for while one is in flight, sent together next; `replay`: the queue's replay.
//! - `clear`: clears of every key or a key prefix.
//! - `lock`: the distributed load lock.

mod clear;
mod cluster;
mod coalesce;
mod connection;
mod invalidate;
mod keys;
mod lock;
mod outage;
mod read;
mod replay;
mod scripts;
mod sentinel;
mod source;
mod write;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::coalesce::Coalesced;
use self::connection::Connection;
pub(crate) use self::connection::Subscriber;
use self::keys::Keys;
pub(crate) use self::keys::{bounded, BATCH, BATCH_SEPARATOR, CLEAR, EVERYTHING, LOAD_ENDED, SOFT};
pub use self::source::RedisSource;
use crate::engine::counters::Counters;
use crate::engine::random;
use crate::error::BuildError;
use crate::store::breaker::Breaker;
use crate::store::queued::QueuedInvalidations;

/// How a [`RedisStore`] connects and how long it waits.
#[derive(Clone, Debug)]
pub(crate) struct RedisConfig {
    /// Where Redis is.
    pub(crate) source: RedisSource,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
    /// A PEM CA certificate to trust for `rediss://` instead of the system's roots.
    pub(crate) root_certificate: Option<Vec<u8>>,
    /// Payloads longer than this are written compressed (`store/compress.rs`).
    pub(crate) compress_above: Option<usize>,
}

/// The shared store of one cache: its connection, its key names, and what an outage leaves
/// behind (the breaker, the invalidations waiting for a replay).
pub(crate) struct RedisStore {
    connection: Connection,
    keys: Keys,
    breaker: Breaker,
    /// Invalidations that did not reach Redis, replayed before anything else is sent.
    pending: QueuedInvalidations,
    /// Invalidations waiting for the one in flight, sent next as one batch.
    coalesced: Coalesced,
    /// How many times the breaker opened, and up to which opening the memory tier has been
    /// emptied since (see [`RedisStore::suspect`]).
    opened: AtomicU64,
    recovered: AtomicU64,
    /// Run each time the breaker opens (see [`RedisStore::when_breaker_opens`]).
    on_open: Option<BreakerOpened>,
    /// Whether the last operation was answered: a load does not wait a second time budget
    /// for [`RedisStore::shared_since`] right after its read went unanswered.
    answering: AtomicBool,
    /// Random, per store: names this instance in its soft purges' messages, so that it does
    /// not apply its own again (see [`SOFT`]).
    instance: u64,
    /// See [`RedisConfig::compress_above`].
    compress_above: Option<usize>,
    counters: Arc<Counters>,
}

/// What a [`RedisStore`] runs when its breaker opens.
pub(crate) type BreakerOpened = Box<dyn Fn() + Send + Sync>;

/// Where the shared tier's invalidation history stood when a load began: what its write is
/// checked against, so that it is not made (or, on a cluster, not kept) if the key or a tag was
/// invalidated since, by any instance (see `scripts/write.lua`, `cluster`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SharedSince {
    /// One Redis: at this epoch of the history (0: Redis held no history yet).
    Epoch(u64),
    /// Redis Cluster: the load began at this instant (real time, on this process's monotonic
    /// clock); the write is checked against the names' invalidation markers afterwards.
    Began(Instant),
    /// Redis did not answer: the write is not made (it only costs a miss).
    Unknown,
    /// Not a load (an explicit insert): written unchecked.
    Unchecked,
}

/// What became of a write (see [`RedisStore::set`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// Made (perhaps stale, after a soft purge).
    Kept,
    /// Not made, or deleted again: the key or a tag was invalidated since the load began.
    Refused,
    /// Not made: a tag's set is full (see `keys::MAX_TAG_MEMBERS`).
    TagSetFull,
}

impl RedisStore {
    /// Validates the configuration; connects lazily, on first use, so that building a cache
    /// never blocks and a Redis that is down at start-up does not stop the application.
    pub(crate) fn new(config: &RedisConfig, counters: Arc<Counters>) -> Result<Self, BuildError> {
        let connection = Connection::new(
            &config.source,
            config.root_certificate.as_deref(),
            config.connect_timeout,
            config.op_timeout,
        )?;
        Ok(RedisStore {
            connection,
            keys: Keys::new(&config.prefix),
            breaker: Breaker::new(3, Duration::from_secs(1)),
            pending: QueuedInvalidations::default(),
            coalesced: Coalesced::default(),
            opened: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            on_open: None,
            answering: AtomicBool::new(true),
            instance: random::u64(),
            compress_above: config.compress_above,
            counters,
        })
    }

    /// The id this instance's soft purges carry (see [`SOFT`]).
    pub(crate) fn instance(&self) -> u64 {
        self.instance
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connection.connect_timeout
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.connection.op_timeout
    }

    /// Where the subscriber's `attempt`-th connection goes: a cluster's nodes in turn (a
    /// classic PUBLISH reaches subscribers on every node); on Sentinel, the master named when
    /// it connects.
    pub(crate) fn subscriber(&self, attempt: usize) -> Subscriber {
        self.connection.subscriber(attempt)
    }

    /// The pub/sub channel every instance listens on for invalidations.
    pub(crate) fn channel(&self) -> String {
        self.keys.channel()
    }
}

/// `ttl` in milliseconds for `PX`: saturated, and at least 1 (Redis refuses `PX 0`).
fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
