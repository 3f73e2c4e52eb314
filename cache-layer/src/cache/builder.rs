//! [`CacheBuilder`]: a [`Cache`]'s settings, checked and put together by
//! [`CacheBuilder::build`]. The shared tier's settings (Redis, its key prefix, timeouts and
//! certificate, the outage bound) are one field, `SharedOptions`, set by one `impl` block in
//! `shared` (feature `redis`; `no_shared` stands in without it).

#[cfg(not(feature = "redis"))]
mod no_shared;
#[cfg(feature = "redis")]
mod shared;

use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Inner};
use crate::engine::flight::Flights;
use crate::engine::hooks::{Echoes, Eviction, Hooks, Invalidation, LoadFailure};
#[cfg(doc)]
use crate::engine::hooks::{EvictionCause, Invalidated, Origin};
use crate::engine::invalidation::InvalidationLog;
use crate::engine::stats::Counters;
use crate::error::BuildError;
use crate::store::MemoryStore;
#[cfg(not(feature = "redis"))]
use no_shared::SharedOptions;
#[cfg(feature = "redis")]
use shared::SharedOptions;

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
    hooks: Hooks,
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
            hooks: Hooks::default(),
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

    /// Calls `hook` for each entry that leaves the in-memory store, with the cause: evicted for
    /// the budget ([`EvictionCause::Size`]), past its last window ([`Expired`], when a read
    /// finds it so), replaced by a newer entry ([`Replaced`]) or removed by an invalidation
    /// or a clear ([`Invalidated`]). Entries removed by a clear of everything are told of as
    /// the store drops them, which may be after the clear returns.
    ///
    /// The hook runs on the thread that removed the entry (a caller's, or the store's
    /// maintenance), so it should be quick: hand slow work (a CDN purge) to a task or a
    /// channel. A hook that panics is caught and counted ([`Stats::hook_panics`]); the call
    /// that removed the entry goes on. Nothing is called, or paid, on a hit.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use cache_layer::{Cache, EvictionCause, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let removed = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&removed);
    /// let cache = Cache::builder()
    ///     .on_eviction(move |eviction| {
    ///         seen.lock().unwrap().push((eviction.key.to_owned(), eviction.cause));
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let key = Key::new("user").part(7);
    /// let options = LoadOptions::new(std::time::Duration::from_secs(60));
    /// cache.insert(&key, "Ada".to_owned(), &options).await;
    /// cache.invalidate("user:7").await;
    /// assert_eq!(removed.lock().unwrap()[..], [("user:7".to_owned(), EvictionCause::Invalidated)]);
    /// # }
    /// ```
    ///
    /// [`Expired`]: EvictionCause::Expired
    /// [`Replaced`]: EvictionCause::Replaced
    /// [`Invalidated`]: EvictionCause::Invalidated
    /// [`Stats::hook_panics`]: crate::Stats::hook_panics
    pub fn on_eviction(mut self, hook: impl Fn(&Eviction<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.eviction = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` for each invalidation applied on this instance, with what it named
    /// ([`Invalidated`]: a name, that is a key or a tag; a soft purge; a prefix clear; a
    /// clear of everything) and its [`Origin`]: made here, or heard from another instance over
    /// the shared tier. For an audit log, or to fan a purge out to a CDN (from `Local` events
    /// only, so that each purge is sent once by the fleet).
    ///
    /// Not called for memory emptied because this instance may have missed invalidations (a
    /// Redis outage; see the crate docs). Runs on the invalidating caller's thread or the
    /// subscriber's task; a hook that panics is caught and counted
    /// ([`Stats::hook_panics`](crate::Stats::hook_panics)).
    pub fn on_invalidation(
        mut self,
        hook: impl Fn(&Invalidation<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.invalidation = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` for each load that fails: a `#[cached]` function or loader that returned
    /// an error (or `None`/`Err` as its shape says), an inner HTTP service that failed or
    /// answered `5xx`, a gRPC method that failed. Called before stale-if-error serves an old
    /// value, if any; on the loading caller's task. A hook that panics is caught and counted
    /// ([`Stats::hook_panics`](crate::Stats::hook_panics)); the caller still gets its answer.
    pub fn on_load_error(
        mut self,
        hook: impl Fn(&LoadFailure<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.load_error = Some(Arc::new(hook));
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
        let shared = self.shared.pending(&counters)?;
        Ok(Cache {
            inner: Arc::new_cyclic(|inner| Inner {
                shared: shared.map(|pending| pending.start(inner.clone())),
                memory: MemoryStore::new(
                    self.memory_budget,
                    Arc::clone(&counters),
                    self.hooks.eviction.clone(),
                ),
                counters,
                flights: Flights::new(),
                log: InvalidationLog::new(),
                jitter: self.jitter,
                max_wait: self.max_wait,
                disabled: self.disabled,
                trace_keys: self.trace_keys,
                hooks: self.hooks,
                echoes: Echoes::default(),
            }),
        })
    }
}
