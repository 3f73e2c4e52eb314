//! The [`Cache`] handle and its builder.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::entry::Entry;
use crate::flight::Flights;
use crate::invalidation::InvalidationLog;
use crate::stats::{Counter, Counters, Stats};
use crate::store::MemoryStore;

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

pub(crate) struct Inner {
    pub(crate) counters: Arc<Counters>,
    pub(crate) memory: MemoryStore,
    pub(crate) flights: Flights,
    pub(crate) log: InvalidationLog,
    /// Default TTL jitter fraction.
    pub(crate) jitter: f64,
    /// How long a caller waits for a concurrent load of the same key before loading itself.
    pub(crate) max_wait: Duration,
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

    /// Drops the entry stored under `name` and every entry tagged `name`, and makes loads that
    /// were in flight for them discard their (possibly outdated) result instead of storing it.
    ///
    /// This is what `#[invalidates(...)]` calls after a writer succeeds.
    pub async fn invalidate(&self, name: &str) {
        let inner = &*self.inner;
        inner.counters.add(Counter::Invalidation);
        tracing::debug!(cache = inner.counters.name(), name, "invalidate");
        inner.log.record(name);
        inner.flights.forget(name);
        inner.memory.invalidate(name);
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

    /// Stores `entry` under `key` unless `key` or one of its tags was invalidated after the
    /// load began (`since`); returns whether it was kept.
    pub(crate) fn store(&self, key: &str, entry: Entry, since: u64) -> bool {
        let inner = &*self.inner;
        let entry = Arc::new(entry);
        inner.memory.insert(key, Arc::clone(&entry));
        inner.counters.add(Counter::Insert);
        // Checked after the insert: an invalidation either removed our entry or is in the log.
        if inner.log.touched_since(since, key, &entry.tags) {
            inner.memory.remove(key);
            tracing::debug!(
                cache = inner.counters.name(),
                key,
                "discarded a load invalidated while in flight"
            );
            return false;
        }
        true
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

/// Configures a [`Cache`]. Builder methods take and return `self`.
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheBuilder {
    name: String,
    memory_budget: u64,
    jitter: f64,
    max_wait: Duration,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            name: "cache".to_owned(),
            memory_budget: 64 * 1024 * 1024,
            jitter: 0.1,
            max_wait: Duration::from_secs(10),
        }
    }
}

impl CacheBuilder {
    /// The name metrics and events are labelled with (default `"cache"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The in-memory store's budget in bytes (default 64 MiB). Entries are weighed by their
    /// key, tags, inline size and heap data; the least recently used go first when the
    /// budget is exceeded.
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

    /// Builds the cache.
    ///
    /// # Errors
    /// A [`BuildError`] naming the setting that is out of range.
    pub fn build(self) -> Result<Cache, BuildError> {
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(BuildError(format!(
                "jitter must be a fraction in [0, 1), got {}",
                self.jitter
            )));
        }
        if self.memory_budget == 0 {
            return Err(BuildError("memory_budget must be at least 1 byte".into()));
        }
        if self.max_wait.is_zero() {
            return Err(BuildError("max_wait must be longer than zero".into()));
        }
        let counters = Arc::new(Counters::new(&self.name));
        Ok(Cache {
            inner: Arc::new(Inner {
                memory: MemoryStore::new(self.memory_budget, Arc::clone(&counters)),
                counters,
                flights: Flights::new(),
                log: InvalidationLog::new(),
                jitter: self.jitter,
                max_wait: self.max_wait,
            }),
        })
    }
}

/// A [`CacheBuilder`] setting that is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cache configuration: {}", self.0)
    }
}

impl std::error::Error for BuildError {}
