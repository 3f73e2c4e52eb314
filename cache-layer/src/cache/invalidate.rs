//! Invalidation and soft purge: [`Cache::invalidate`] and [`Cache::soft_invalidate`], made in
//! this process (the invalidation log, flights, memory), then in Redis and, over pub/sub, in
//! the other instances; a large purge on a blocking thread.

use std::sync::Arc;

use super::{Cache, Inner};
use crate::engine::hooks::{Invalidated, Origin};
use crate::engine::stats::Counter;
use crate::store::Queued;

/// How many names and tagged entries a purge may drop on the caller's executor thread (about
/// a millisecond's work); a larger one runs on a blocking thread ([`Cache::purge_names`]).
const LARGE_PURGE: usize = 1024;

impl Cache {
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
                        cache.purge_shared(names, soft).await;
                    }
                };
                let _ = runtime.spawn(purge).await;
            }
            _ => {
                self.inner.purge_local(&names, soft);
                self.purge_shared(names, soft).await;
            }
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

    /// The shared tier's part of [`Cache::purge_names`], after this process's: on a task of
    /// its own, which the caller awaits but cannot cancel (in place outside a Tokio runtime).
    async fn purge_shared(&self, names: Vec<String>, soft: bool) {
        if self.shared_tier().is_none() {
            return;
        }
        // The recovery task replays what could not reach Redis: a process that only writes
        // needs it too.
        self.listen_for_invalidations();
        let cache = self.clone();
        let purge = async move {
            let Some(shared) = &cache.inner.shared else {
                return;
            };
            for name in &names {
                if !soft && cache.inner.hooks.invalidation.is_some() {
                    // Its message will come back: not another instance's invalidation.
                    cache.inner.echoes.sending(name);
                }
                let sent = if soft {
                    shared.store.soft_invalidate(name).await
                } else {
                    shared.store.invalidate(name).await
                };
                if sent == Some(Queued::Overflowed) {
                    // Names were forgotten: whatever memory holds may be one of them.
                    cache.inner.invalidate_everything_local();
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let _ = runtime.spawn(purge).await;
            }
            Err(_) => purge.await,
        }
    }
}

impl Inner {
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
                self.invalidated(Invalidated::SoftPurge(name), Origin::Local);
            } else {
                self.counters.add(Counter::Invalidation);
                tracing::debug!(cache = self.counters.name(), name, "invalidate");
                self.invalidate_local(name);
                self.invalidated(Invalidated::Name(name), Origin::Local);
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
