//! The [`Cache`] handle: what every front-end stores into, reads from and invalidates through.
//!
//! - `mod.rs`: the handle, the state its clones share ([`Inner`]), invalidation.
//! - `builder`: [`CacheBuilder`], the settings a cache is built from.
//! - `write`: the one write path every entry takes into memory and the shared tier.
//! - `imperative`: get, insert, load and remove by hand.
//! - `batch`: [`Cache::get_or_load_many`], one loader call for the missing keys of a batch.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Waker};
use std::time::Duration;

use crate::engine::clock;
use crate::engine::entry::Entry;
use crate::engine::flight::Flights;
use crate::engine::invalidation::InvalidationLog;
use crate::engine::stats::{Counter, Counters, Stats};
use crate::store::{MemoryStore, Queued, Remote, SharedSince};

mod batch;
mod builder;
mod imperative;

pub use builder::CacheBuilder;

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
    shared: Option<Remote>,
    /// Caching off ([`CacheBuilder::disabled`]): every look-up misses, nothing is stored.
    disabled: bool,
    /// Keys recorded on spans ([`CacheBuilder::trace_keys`]).
    trace_keys: bool,
}

impl Inner {
    /// The counters metrics and [`Cache::stats`] read; their name labels events.
    #[inline]
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The in-process store: always in front of HTTP responses and gRPC calls; memoised values
    /// use it as [`Inner::local`] says. Entries go in through [`Inner::admit`] only.
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
    pub(crate) fn remote(&self) -> Option<&Remote> {
        self.shared.as_ref()
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
            Some(remote) if !remote.tiered() => None,
            _ => Some(&self.memory),
        }
    }

    /// The one gate into memory, for every store and update of an entry (a load's result, an
    /// HTTP 304's update, a background refresh, a copy of what the shared tier holds): the
    /// store `entry` goes into now, or `None` when memory is not for it (memoised values with
    /// Redis alone) or the outage bound is zero. While this instance cannot hear other
    /// instances' invalidations, every window of `entry` is cut to close within the outage
    /// bound from now ([`CacheBuilder::outage_ttl`]).
    pub(crate) fn admit(&self, kind: EntryKind, entry: &mut Entry) -> Option<&MemoryStore> {
        let memory = match kind {
            EntryKind::Memoised => self.local()?,
            EntryKind::Response => &self.memory,
        };
        match self.shared.as_ref().and_then(Remote::memory_bound) {
            None => Some(memory),
            Some(bound) if bound.is_zero() => None,
            Some(bound) => {
                let until = clock::after(clock::now(), bound);
                entry.deadlines = entry.deadlines.at_most(until);
                Some(memory)
            }
        }
    }

    /// The in-process part of an invalidation (also run for invalidations published by other
    /// instances).
    pub(crate) fn invalidate_local(&self, name: &str) {
        self.log.record(name);
        self.flights.forget(name);
        self.memory.invalidate(name);
    }

    /// The in-process part of a soft purge (also run for soft purges published by other
    /// instances): entries stay, but stale.
    pub(crate) fn soft_invalidate_local(&self, name: &str) {
        self.log.record_soft(name);
        self.memory.mark_stale(name);
    }

    /// [`Inner::invalidate_local`] (or, when `soft`, [`Inner::soft_invalidate_local`]) for
    /// each of `names`, counted and logged.
    fn purge_local(&self, names: &[String], soft: bool) {
        for name in names {
            if soft {
                self.counters.add(Counter::SoftInvalidation);
                tracing::debug!(cache = self.counters.name(), name, "soft purge");
                self.soft_invalidate_local(name);
            } else {
                self.counters.add(Counter::Invalidation);
                tracing::debug!(cache = self.counters.name(), name, "invalidate");
                self.invalidate_local(name);
            }
        }
    }

    /// Whether purging `names` here takes long enough to be kept off executor threads: more
    /// than [`LARGE_PURGE`] names and entries they tag in memory.
    pub(crate) fn large_purge<S: AsRef<str>>(&self, names: &[S]) -> bool {
        match LARGE_PURGE.checked_sub(names.len()) {
            Some(room) => self.memory.tagged(names, room) > room,
            None => true,
        }
    }

    /// Empties the memory tier, for when invalidations may have been missed; reads and loads
    /// that began before are not stored.
    pub(crate) fn invalidate_everything_local(&self) {
        self.log.record_everything();
        self.memory.invalidate_all();
    }
}

/// How many names and tagged entries a purge may drop on the caller's executor thread (about
/// a millisecond's work); a larger one runs on a blocking thread ([`Cache::purge_names`]).
const LARGE_PURGE: usize = 1024;

/// What an entry in memory holds, for [`Inner::admit`]: a memoised value (memory is its L1 in
/// the tiered set-up only), or a response (HTTP responses, gRPC calls and their records, which
/// every set-up keeps in memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Memoised,
    Response,
}

/// Runs `task` off the caller's path, on the current Tokio runtime. It is polled once first, so
/// that what it sends first on the multiplexed Redis connection goes out before anything the
/// caller sends next (a read after a write still finds it). Outside a runtime it runs in place.
pub(crate) async fn detach<F: Future<Output = ()> + Send + 'static>(task: F) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return task.await;
    };
    spawn_polled(&runtime, task);
}

/// [`detach`] on `runtime`, from code that cannot await.
fn spawn_polled<F: Future<Output = ()> + Send + 'static>(
    runtime: &tokio::runtime::Handle,
    task: F,
) {
    let mut task = Box::pin(task);
    let mut context = Context::from_waker(Waker::noop());
    if task.as_mut().poll(&mut context).is_pending() {
        runtime.spawn(task);
    }
}

/// Whether [`Cache::store`] returns before the shared tier's write is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SharedWrite {
    /// Off the caller's path (see [`detach`]): a load's result, whose caller has its value,
    /// not written if any instance invalidated it since the load began (`SharedSince`).
    Detached(SharedSince),
    /// Before returning: an explicit `insert`, after which any instance reads the value.
    Awaited,
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
    /// This is what `#[invalidates(...)]` calls after a writer succeeds. One that drops many
    /// entries (more than about a thousand) runs on Tokio's blocking threads, so that it holds
    /// up no executor thread; it returns once nothing it names is served.
    ///
    /// # With Redis
    /// The entries are deleted from Redis and every instance is told over pub/sub, on a task of
    /// its own: it completes even if the caller stops waiting. An invalidation that cannot
    /// reach Redis (down, slow, breaker open) is kept and replayed before Redis is used again;
    /// see the crate docs, "Invalidations when Redis is unreachable", for the bound.
    pub async fn invalidate(&self, name: &str) {
        self.invalidate_names(vec![name.to_owned()]).await;
    }

    /// [`Cache::invalidate`] for each of `names` (see [`Cache::purge_names`]).
    pub(crate) async fn invalidate_names(&self, names: Vec<String>) {
        self.purge_names(names, false).await;
    }

    /// [`Cache::invalidate`] for each of `names`, or [`Cache::soft_invalidate`] when `soft`: in
    /// this process, then in Redis and the other instances on a spawned task that the caller
    /// awaits but cannot cancel. A small purge is made in this process at once; a large one
    /// ([`Inner::large_purge`]) on a blocking thread, so that it holds up no executor thread,
    /// in a task of its own with the rest, which the caller awaits but cannot cancel either.
    pub(crate) async fn purge_names(&self, names: Vec<String>, soft: bool) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.inner.large_purge(&names) => {
                let cache = self.clone();
                let purge = async move {
                    let local = Arc::clone(&cache.inner);
                    let purged = tokio::task::spawn_blocking(move || {
                        local.purge_local(&names, soft);
                        names
                    });
                    if let Ok(names) = purged.await {
                        cache.purge_remote(names, soft).await;
                    }
                };
                let _ = runtime.spawn(purge).await;
            }
            _ => {
                self.inner.purge_local(&names, soft);
                self.purge_remote(names, soft).await;
            }
        }
    }

    /// The part of [`Cache::purge_names`] after this process's.
    async fn purge_remote(&self, names: Vec<String>, soft: bool) {
        if self.remote().is_none() {
            return;
        }
        // The recovery task replays what could not reach Redis: a process that only writes
        // needs it too.
        self.listen_for_invalidations();
        let cache = self.clone();
        let shared = async move { cache.purge_shared(&names, soft).await };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let _ = runtime.spawn(shared).await;
            }
            Err(_) => shared.await,
        }
    }

    /// Soft purge: makes the entry stored under `name` and every entry tagged `name` stale
    /// instead of dropping them. The next call (or request, for
    /// [`CacheLayer`](crate::CacheLayer) responses) is served the old value at once while one
    /// refresh runs in the background (stale-while-revalidate), and the refreshed value is
    /// served after it. What a cache can answer while its source is slow or down is kept;
    /// what it serves is revalidated. (A `#[cached]` fn without `stale` cannot refresh in the
    /// background: its first caller reloads and waits, the others are served stale meanwhile.)
    ///
    /// An entry keeps its windows: the fresh time it had left becomes stale time, so it is
    /// served stale (at least once, even with a zero `stale` window) until it would have
    /// stopped being servable anyway, and then within its `stale_if_error` window only if the
    /// refresh fails. An entry already stale is left as it is. A load that was in flight when
    /// the purge was made may have read the old data: its value is stored, but already stale
    /// (its next use refreshes again), and not written to Redis.
    ///
    /// # With Redis
    /// Each entry's stored fresh-until time is lowered to now in Redis, and every instance
    /// is told over pub/sub to mark its memory copies stale; on a task of its own, as for
    /// [`Cache::invalidate`]. A soft purge that cannot reach Redis never fails the caller: it
    /// is kept and replayed as a hard [invalidation](Cache::invalidate) (the entries are then
    /// dropped rather than left fresh anywhere). See the crate docs, "Soft purge".
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::io::Error> {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60)).tag("prices");
    /// let key = Key::new("price").part(7);
    /// let load = |price: u32| move || async move { Ok::<_, std::io::Error>(price) };
    /// assert_eq!(cache.get_or_load(&key, &options, load(100)).await?, 100);
    ///
    /// cache.soft_invalidate("prices").await;
    /// // Served stale at once; the loader runs in the background.
    /// assert_eq!(cache.get_or_load(&key, &options, load(120)).await?, 100);
    /// # while cache.stats().loads < 2 || cache.get::<u32>(&key).await != Some(120) {
    /// #     tokio::task::yield_now().await;
    /// # }
    /// assert_eq!(cache.get_or_load(&key, &options, load(130)).await?, 120);
    /// # Ok(()) }
    /// ```
    pub async fn soft_invalidate(&self, name: &str) {
        self.purge_names(vec![name.to_owned()], true).await;
    }

    /// The shared tier's part of [`Cache::purge_names`].
    async fn purge_shared(&self, names: &[String], soft: bool) {
        let Some(remote) = &self.inner.shared else {
            return;
        };
        for name in names {
            let sent = if soft {
                remote.store.soft_invalidate(name).await
            } else {
                remote.store.invalidate(name).await
            };
            if sent == Some(Queued::Overflowed) {
                // Names were forgotten: whatever memory holds may be one of them.
                self.inner.invalidate_everything_local();
            }
        }
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
    pub(crate) fn remote(&self) -> Option<&Remote> {
        self.inner.remote()
    }

    /// Starts, once, the tasks that keep the memory tier usable next to a shared tier: the
    /// subscriber that hears other instances' invalidations, and the recovery that replays
    /// queued ones (it needs a Tokio runtime; outside one, a later call starts them). Until
    /// they run, memory keeps what it stores at most the outage bound. Called where the
    /// shared tier is first used: a read that reaches it, every store and every invalidation.
    pub(crate) fn listen_for_invalidations(&self) {
        if let Some(remote) = &self.inner.shared {
            remote.ensure_subscriber(Arc::downgrade(&self.inner));
        }
    }

    /// Stores `entry` under `key` in memory only (through [`Inner::admit`]), unless `key`
    /// or one of its tags was invalidated after the load began (`since`); returns whether it
    /// was kept.
    pub(crate) fn store_in_memory(&self, key: &str, entry: Entry, since: u64) -> bool {
        self.store_response(key, entry, since, None)
    }

    /// Stores a response's `entry` (HTTP responses, their records) under `key`: in memory as
    /// [`Inner::admit`] decides, and, with `shared` (its encoded bytes, and where Redis's
    /// invalidation history stood when the load began), in the shared tier off the caller's
    /// path. Nothing is kept when `key` or a tag was invalidated
    /// after the load began (`since`); returns whether it was kept somewhere.
    pub(crate) fn store_response(
        &self,
        key: &str,
        mut entry: Entry,
        since: u64,
        shared: Option<(Vec<u8>, SharedSince)>,
    ) -> bool {
        let inner = &*self.inner;
        if inner.disabled {
            return false;
        }
        self.listen_for_invalidations();
        // Redis keeps the whole lifetime; memory perhaps only the outage bound.
        let expires_at = entry.deadlines.expires_at;
        let memory = inner.admit(EntryKind::Response, &mut entry);
        let entry = Arc::new(entry);
        if let Some(memory) = memory {
            memory.insert(key, Arc::clone(&entry));
            inner.counters.add(Counter::Insert);
        }
        // Checked after the insert: an invalidation either removed our entry or is in the log.
        if inner.log.touched_since(since, key, &entry.tags) {
            if let Some(memory) = memory {
                memory.remove(key);
            }
            return false;
        }
        // A load that began before a soft purge may hold what was read before it (the shared
        // write below then keeps Redis's purged copy; see `store_shared`).
        if inner.log.soft_since(since, key, &entry.tags) {
            entry.mark_stale();
        }
        let written = match (shared, tokio::runtime::Handle::try_current()) {
            (Some((bytes, shared_since)), Ok(runtime)) if self.remote().is_some() => {
                let (cache, key) = (self.clone(), key.to_owned());
                let at = (since, shared_since);
                spawn_polled(&runtime, async move {
                    cache
                        .store_shared(&key, bytes, &entry, expires_at, at)
                        .await;
                });
                true
            }
            _ => false,
        };
        memory.is_some() || written
    }

    /// Stores `entry` under `key` (in memory, and `encoded` in the shared tier) unless `key` or
    /// one of its tags was invalidated after the load began (`since`); returns whether it was
    /// kept.
    pub(crate) async fn store(
        &self,
        key: &str,
        mut entry: Entry,
        since: u64,
        encoded: Option<Vec<u8>>,
        write: SharedWrite,
    ) -> bool {
        let inner = &*self.inner;
        if inner.disabled {
            return false;
        }
        self.listen_for_invalidations();
        // Redis keeps the whole lifetime; memory perhaps only the outage bound.
        let expires_at = entry.deadlines.expires_at;
        let memory = inner.admit(EntryKind::Memoised, &mut entry);
        let entry = Arc::new(entry);
        if let Some(memory) = memory {
            memory.insert(key, Arc::clone(&entry));
        }
        if let (Some(_), Some(bytes)) = (self.remote(), encoded) {
            let (cache, key, entry) = (self.clone(), key.to_owned(), Arc::clone(&entry));
            let shared_since = match write {
                SharedWrite::Detached(shared_since) => shared_since,
                SharedWrite::Awaited => SharedSince::Unchecked,
            };
            let shared = async move {
                let at = (since, shared_since);
                cache
                    .store_shared(&key, bytes, &entry, expires_at, at)
                    .await;
            };
            match write {
                SharedWrite::Detached(_) => detach(shared).await,
                SharedWrite::Awaited => shared.await,
            }
        }
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
        // A load that began before a soft purge may hold what was read before it.
        if inner.log.soft_since(since, key, &entry.tags) {
            entry.mark_stale();
        }
        true
    }

    /// The shared tier's part of [`Cache::store`], off the caller's path: writes `bytes` (to
    /// expire at `expires_at`, the entry's own lifetime) unless
    /// `key` or a tag was invalidated by name since the load began (`at`: this process's log
    /// position, and where Redis's invalidation history stood, which also knows the other
    /// instances' invalidations, even those not heard yet), and deletes them again if that
    /// happened here during the write (an invalidation either deleted our write or is in the
    /// log); a delete that does not reach Redis is queued like an invalidation. Emptying
    /// memory, for missed invalidations, says nothing against a value just loaded from the
    /// source. A value loaded before a soft purge heard here is not written (Redis keeps the
    /// purged, stale copy), and is made stale again if the purge came during the write.
    async fn store_shared(
        &self,
        key: &str,
        bytes: Vec<u8>,
        entry: &Entry,
        expires_at: clock::Instant,
        at: (u64, SharedSince),
    ) {
        let (since, shared_since) = at;
        let Some(remote) = &self.inner.shared else {
            return;
        };
        let ttl = expires_at.saturating_duration_since(clock::now());
        let log = &self.inner.log;
        if log.named_since(since, key, &entry.tags) || log.soft_since(since, key, &entry.tags) {
            return;
        }
        remote
            .store
            .set(key, bytes, ttl, &entry.tags, shared_since)
            .await;
        if self.inner.log.named_since(since, key, &entry.tags) {
            remote.store.delete(key).await;
        } else if self.inner.log.soft_since(since, key, &entry.tags) {
            remote.store.soft_invalidate(key).await;
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
