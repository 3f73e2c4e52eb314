//! The [`Cache`] handle and its builder.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Waker};
use std::time::Duration;

use crate::entry::Entry;
use crate::error::BuildError;
use crate::flight::Flights;
use crate::invalidation::InvalidationLog;
use crate::stats::{Counter, Counters, Stats};
use crate::store::{MemoryStore, Queued, RedisConfig, RedisStore, Remote, SharedSince};

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
    remote: Option<Remote>,
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
        self.remote.as_ref()
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
        match &self.remote {
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
        match self.remote.as_ref().and_then(Remote::memory_bound) {
            None => Some(memory),
            Some(bound) if bound.is_zero() => None,
            Some(bound) => {
                let until = crate::clock::after(crate::clock::now(), bound);
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
        let Some(remote) = &self.inner.remote else {
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
        if let Some(remote) = &self.inner.remote {
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
        expires_at: crate::clock::Instant,
        at: (u64, SharedSince),
    ) {
        let (since, shared_since) = at;
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let ttl = expires_at.saturating_duration_since(crate::clock::now());
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

/// Configures a [`Cache`]. Builder methods take and return `self`.
#[derive(Clone, Debug)]
#[must_use]
pub struct CacheBuilder {
    name: String,
    memory_budget: u64,
    jitter: f64,
    max_wait: Duration,
    redis: Option<RedisTarget>,
    key_prefix: String,
    redis_connect_timeout: Duration,
    redis_timeout: Duration,
    redis_root_certificate: Option<Vec<u8>>,
    disabled: bool,
    trace_keys: bool,
    outage_ttl: Duration,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            name: "cache".to_owned(),
            memory_budget: 64 * 1024 * 1024,
            jitter: 0.1,
            max_wait: Duration::from_secs(10),
            redis: None,
            key_prefix: String::new(),
            redis_connect_timeout: Duration::from_millis(250),
            redis_timeout: Duration::from_millis(100),
            redis_root_certificate: None,
            disabled: false,
            trace_keys: false,
            outage_ttl: Duration::from_secs(1),
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
        self.redis = Some(RedisTarget {
            urls,
            cluster,
            tiered,
        });
        self
    }

    /// A prefix for every Redis key and channel (default none): applications sharing one
    /// Redis with different prefixes never see each other's entries or invalidations.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
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
        self.outage_ttl = bound;
        self
    }

    /// How long one Redis operation may take before the call falls back (default 100 ms), and
    /// how long connecting may take (default 250 ms). Together they are the most a call waits
    /// for Redis: only its read is on its path; the write after a miss runs in the background.
    pub fn redis_timeouts(mut self, operation: Duration, connect: Duration) -> Self {
        self.redis_timeout = operation;
        self.redis_connect_timeout = connect;
        self
    }

    /// For `rediss://` URLs: trust this CA certificate (PEM) instead of the system's roots.
    pub fn redis_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.redis_root_certificate = Some(pem.into());
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
        let shared = match self.redis {
            Some(target) => {
                let config = RedisConfig {
                    urls: target.urls,
                    cluster: target.cluster,
                    prefix: self.key_prefix,
                    connect_timeout: self.redis_connect_timeout,
                    op_timeout: self.redis_timeout,
                    root_certificate: self.redis_root_certificate,
                };
                let store = RedisStore::new(&config, Arc::clone(&counters))?;
                Some((store, target.tiered))
            }
            None => None,
        };
        let outage_ttl = self.outage_ttl;
        Ok(Cache {
            inner: Arc::new_cyclic(|inner| Inner {
                remote: shared
                    .map(|(store, tiered)| Remote::new(store, tiered, outage_ttl, inner.clone())),
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

/// Which Redis a [`CacheBuilder`] was pointed at; the other Redis settings are the builder's
/// own fields, combined into a `RedisConfig` by `build`.
#[derive(Clone, Debug)]
struct RedisTarget {
    urls: Vec<String>,
    cluster: bool,
    /// Memory (L1) in front of Redis for memoised values.
    tiered: bool,
}
