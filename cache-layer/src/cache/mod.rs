//! The [`Cache`] handle: what every front-end stores into, reads from and invalidates through.
//!
//! - `mod.rs`: the handle and the state its clones share ([`Inner`]).
//! - `builder`: [`CacheBuilder`], the settings a cache is built from.
//! - `write`: the one write path every entry takes into memory and the shared tier.
//! - `invalidate`: invalidation and soft purge, here, in Redis and in the other instances.
//! - `clear`: clearing everything or a key prefix, here, in Redis and in the other instances.
//! - `imperative`: get, insert, load and remove by hand.
//! - `batch`: [`Cache::get_or_load_many`], one loader call for the missing keys of a batch.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::engine::flight::Flights;
use crate::engine::hooks::{Echoes, Hooks, Invalidated, Origin};
use crate::engine::invalidation::InvalidationLog;
use crate::engine::stats::{Counters, Stats};
use crate::store::{MemoryStore, SharedTier};

mod batch;
mod builder;
mod clear;
mod imperative;
mod invalidate;
mod write;

pub use builder::CacheBuilder;
pub(crate) use write::{detach, EntryKind, SharedWrite};

/// A cache: stores, single-flight, invalidation and counters behind one cheap-to-clone handle.
///
/// `#[cached]` functions use [`Cache::global`] unless given `cache = <expr>`; build your own
/// with [`Cache::builder`] to set a memory budget or a name for metrics.
///
/// ```
/// use cache_layer::Cache;
///
/// let cache = Cache::builder()
///     .name("users")
///     .memory_budget(32 * 1024 * 1024)
///     .build()
///     .expect("valid configuration");
/// assert_eq!(cache.name(), "users");
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// What a [`Cache`] handle shares: its stores, flights, invalidation log, counters and
/// defaults.
pub(crate) struct Inner {
    counters: Arc<Counters>,
    memory: MemoryStore,
    flights: Flights,
    log: InvalidationLog,
    /// Default TTL jitter fraction.
    jitter: f64,
    /// How long a caller waits for a concurrent load of the same key before loading itself.
    max_wait: Duration,
    /// The shared tier, when configured.
    shared: Option<SharedTier>,
    /// Caching off ([`CacheBuilder::disabled`]): every look-up misses, nothing is stored.
    disabled: bool,
    /// Keys recorded on spans ([`CacheBuilder::trace_keys`]).
    trace_keys: bool,
    /// The callbacks set on the builder ([`CacheBuilder::on_eviction`] and the others).
    hooks: Hooks,
    /// This instance's invalidations not heard back yet, while an invalidation hook is set.
    echoes: Echoes,
}

impl Inner {
    /// The counters metrics and [`Cache::stats`] read; their name labels events.
    #[inline]
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The in-process store: always in front of HTTP responses and gRPC calls; memoised values
    /// use it as [`Inner::local`] says. Entries go in through the write path only
    /// ([`Cache::write`]).
    #[inline]
    pub(crate) fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// The loads in flight in this process, by key.
    #[inline]
    pub(crate) fn flights(&self) -> &Flights {
        &self.flights
    }

    /// The invalidations recently made, which a load checks before storing its result.
    #[inline]
    pub(crate) fn log(&self) -> &InvalidationLog {
        &self.log
    }

    /// The default TTL jitter fraction.
    #[inline]
    pub(crate) fn jitter(&self) -> f64 {
        self.jitter
    }

    /// How long a caller waits for a concurrent load of the same key before loading itself.
    #[inline]
    pub(crate) fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The shared tier, when configured. Reading it starts nothing: see
    /// [`Cache::listen_for_invalidations`].
    #[inline]
    pub(crate) fn shared_tier(&self) -> Option<&SharedTier> {
        self.shared.as_ref()
    }

    /// The callbacks set on the builder.
    #[inline]
    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Tells the invalidation hook, if set, of `what` (made at `origin`).
    pub(crate) fn invalidated(&self, what: Invalidated<'_>, origin: Origin) {
        self.hooks.invalidated(&self.counters, what, origin);
    }

    /// Whether `name`, heard on the channel, is this instance's own invalidation coming back
    /// (see [`Echoes`]).
    #[cfg(feature = "redis")]
    pub(crate) fn own_echo(&self, name: &str) -> bool {
        self.echoes.heard(name)
    }

    /// Whether spans record keys ([`CacheBuilder::trace_keys`]).
    #[inline]
    pub(crate) fn trace_keys(&self) -> bool {
        self.trace_keys
    }

    /// Whether caching is off ([`CacheBuilder::disabled`]).
    #[inline]
    pub(crate) fn disabled(&self) -> bool {
        self.disabled
    }

    /// The in-process store when memoised values use it: always without a shared tier, as L1
    /// in the tiered set-up, never with Redis alone. While this instance cannot hear other
    /// instances' invalidations it holds only what was stored under the outage bound (see
    /// [`Inner::admit`] and `store::tiered`), so it is read whatever the shared tier's state.
    #[inline]
    pub(crate) fn local(&self) -> Option<&MemoryStore> {
        match &self.shared {
            Some(shared) if !shared.tiered() => None,
            _ => Some(&self.memory),
        }
    }
}

static GLOBAL: OnceLock<Cache> = OnceLock::new();

impl Cache {
    /// A builder with the defaults: 64 MiB in memory, ±10% TTL jitter, 10 s wait bound.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The process-wide cache used by `#[cached]` functions that name no `cache`.
    ///
    /// It is the one installed with [`Cache::set_global`], or else, on first use, an in-memory
    /// cache named `"default"` with the [`Cache::builder`] defaults.
    pub fn global() -> &'static Cache {
        GLOBAL.get_or_init(|| {
            CacheBuilder::default()
                .name("default")
                .build()
                .expect("the default configuration is valid")
        })
    }

    /// Installs `cache` as the process-wide default. Call it at start-up, before any
    /// `#[cached]` function runs.
    ///
    /// # Errors
    /// Gives `cache` back if a global cache is already in use.
    pub fn set_global(cache: Cache) -> Result<(), Cache> {
        GLOBAL.set(cache)
    }

    /// The name this cache's metrics and events are labelled with.
    pub fn name(&self) -> &str {
        self.inner.counters.name()
    }

    /// A snapshot of this cache's counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// How many entries the in-memory store holds (after pending maintenance).
    pub fn entry_count(&self) -> u64 {
        self.inner.memory.run_pending_tasks();
        self.inner.memory.entry_count()
    }

    /// Estimated bytes the in-memory store holds (after pending maintenance); stays within
    /// the [memory budget](CacheBuilder::memory_budget).
    pub fn weighted_size(&self) -> u64 {
        self.inner.memory.run_pending_tasks();
        self.inner.memory.weighted_size()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The shared tier, when configured.
    #[inline]
    pub(crate) fn shared_tier(&self) -> Option<&SharedTier> {
        self.inner.shared_tier()
    }

    /// Starts, once, the tasks that keep the memory tier usable next to a shared tier: the
    /// subscriber that hears other instances' invalidations, and the recovery that replays
    /// queued ones (it needs a Tokio runtime; outside one, a later call starts them). Until
    /// they run, memory keeps what it stores at most the outage bound. Called where the
    /// shared tier is first used: a read that reaches it, every store and every invalidation.
    pub(crate) fn listen_for_invalidations(&self) {
        if let Some(shared) = &self.inner.shared {
            shared.ensure_subscriber(Arc::downgrade(&self.inner));
        }
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
