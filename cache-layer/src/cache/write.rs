//! The one write path every entry takes (a memoised value, an HTTP response or its `Vary`
//! record, a gRPC call, the "uncacheable" marker, a copy of what the shared tier holds):
//!
//! 1. through the gate into memory ([`Inner::admit`], which knows the entry's
//!    [`EntryKind`] and the outage bound), and inserted there;
//! 2. its copy in the shared tier started ([`Write::shared`]): awaited, detached or spawned,
//!    as the caller can wait; not made when its key or a tag was invalidated by name or
//!    soft-purged since the load began;
//! 3. checked against the invalidation log ([`Write::finish`]): an entry invalidated since
//!    the load began is removed again, one soft-purged meanwhile is kept but stale.
//!
//! The entry points name what they store: [`Cache::store`] (memoised values),
//! [`Cache::store_response`] and [`Cache::store_in_memory`] (what the HTTP and gRPC front-ends
//! keep), and [`Cache::write`] for a copy of the shared tier's entry (`pipeline::adopt_shared`).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Waker};

use super::{Cache, Inner};
use crate::engine::clock;
use crate::engine::entry::Entry;
use crate::engine::stats::Counter;
use crate::store::{MemoryStore, SharedSince, SharedTier};

/// What an entry in memory holds, for [`Inner::admit`]: a memoised value (memory is its L1 in
/// the tiered set-up only), a `local` site's value or a response (HTTP responses, gRPC calls
/// and their records), which every set-up keeps in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Memoised,
    Local,
    Response,
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

impl SharedWrite {
    /// What the shared tier's history is checked against before the write.
    fn since(self) -> SharedSince {
        match self {
            SharedWrite::Detached(shared_since) => shared_since,
            SharedWrite::Awaited => SharedSince::Unchecked,
        }
    }
}

impl Inner {
    /// The store that holds entries of `kind`: `None` for memoised values with Redis alone.
    #[inline]
    pub(crate) fn memory_for(&self, kind: EntryKind) -> Option<&MemoryStore> {
        match kind {
            EntryKind::Memoised => self.local(),
            EntryKind::Local | EntryKind::Response => Some(&self.memory),
        }
    }

    /// The one gate into memory, for every store and update of an entry (a load's result, an
    /// HTTP 304's update, a background refresh, a copy of what the shared tier holds): the
    /// store `entry` goes into now, or `None` when memory is not for it (memoised values with
    /// Redis alone) or the outage bound is zero. While this instance cannot hear other
    /// instances' invalidations, every window of `entry` is cut to close within the outage
    /// bound from now ([`CacheBuilder::outage_ttl`](super::CacheBuilder::outage_ttl)).
    fn admit(&self, kind: EntryKind, entry: &mut Entry) -> Option<&MemoryStore> {
        let memory = self.memory_for(kind)?;
        match self.shared.as_ref().and_then(SharedTier::memory_bound) {
            None => Some(memory),
            Some(bound) if bound.is_zero() => None,
            Some(bound) => {
                let until = clock::after(clock::now(), bound);
                entry.deadlines = entry.deadlines.at_most(until);
                Some(memory)
            }
        }
    }
}

/// An entry on the write path: in memory if admitted there, its shared copy perhaps started,
/// not yet checked against the invalidation log.
pub(crate) struct Write<'a> {
    cache: &'a Cache,
    key: &'a str,
    entry: Arc<Entry>,
    /// Where the invalidation log stood when the load began.
    since: u64,
    /// The store the entry went into, if any.
    memory: Option<&'a MemoryStore>,
    /// The entry's own end: the shared tier keeps the whole lifetime, memory perhaps only the
    /// outage bound.
    expires_at: clock::Instant,
    /// Whether its shared copy was started.
    shared: bool,
}

impl Cache {
    /// The write path's first step, for `entry` (of `kind`) under `key`, loaded (or read) after
    /// the invalidation log stood at `since`: through the gate into memory. The rest is
    /// [`Write`]'s.
    pub(crate) fn write<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
        mut entry: Entry,
        since: u64,
    ) -> Write<'a> {
        let expires_at = entry.deadlines.expires_at;
        let memory = self.inner.admit(kind, &mut entry);
        let entry = Arc::new(entry);
        if let Some(memory) = memory {
            memory.insert(key, Arc::clone(&entry));
        }
        Write {
            cache: self,
            key,
            entry,
            since,
            memory,
            expires_at,
            shared: false,
        }
    }

    /// [`Cache::write`] of a new entry: nothing when caching is off; otherwise the shared
    /// tier's tasks are started first (see [`Cache::listen_for_invalidations`]).
    fn begin_store<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
        entry: Entry,
        since: u64,
    ) -> Option<Write<'a>> {
        if self.inner.disabled {
            return None;
        }
        self.listen_for_invalidations();
        Some(self.write(kind, key, entry, since))
    }

    /// Stores a memoised value's `entry` (of `kind`: `Memoised` or `Local`) under `key` (in
    /// memory, and `encoded` in the shared tier, before returning or off the caller's path as
    /// `how` says) unless `key` or one of its tags was invalidated after the load began
    /// (`since`); returns whether it was kept.
    pub(crate) async fn store(
        &self,
        kind: EntryKind,
        key: &str,
        entry: Entry,
        since: u64,
        encoded: Option<Vec<u8>>,
        how: SharedWrite,
    ) -> bool {
        let Some(mut write) = self.begin_store(kind, key, entry, since) else {
            return false;
        };
        if let Some(task) = encoded.and_then(|bytes| write.shared(bytes, how.since())) {
            match how {
                SharedWrite::Detached(_) => detach(task).await,
                SharedWrite::Awaited => task.await,
            }
        }
        write.finish()
    }

    /// Stores a response's `entry` (HTTP responses, their records, gRPC calls) under `key`: in
    /// memory as [`Inner::admit`] decides, and, with `shared` (its encoded bytes, and where
    /// Redis's invalidation history stood when the load began), in the shared tier off the
    /// caller's path (on the current Tokio runtime; outside one it is not written). Nothing is
    /// kept when `key` or a tag was invalidated after the load began (`since`); returns
    /// whether it was kept somewhere.
    pub(crate) fn store_response(
        &self,
        key: &str,
        entry: Entry,
        since: u64,
        shared: Option<(Vec<u8>, SharedSince)>,
    ) -> bool {
        let Some(mut write) = self.begin_store(EntryKind::Response, key, entry, since) else {
            return false;
        };
        if let (Some((bytes, at)), Ok(runtime)) = (shared, tokio::runtime::Handle::try_current()) {
            if let Some(task) = write.shared(bytes, at) {
                spawn_polled(&runtime, task);
            }
        }
        write.finish()
    }

    /// [`Cache::store_response`] in memory only.
    pub(crate) fn store_in_memory(&self, key: &str, entry: Entry, since: u64) -> bool {
        self.store_response(key, entry, since, None)
    }
}

impl Write<'_> {
    /// The task that writes `bytes`, the entry encoded, to the shared tier (checked against
    /// `shared_since` there); `None` without a shared tier. The caller runs it: before its
    /// own check of the log ([`Write::finish`]), so that an invalidation made during the write
    /// is either in the log then or undoes the write ([`Cache::store_shared`]).
    fn shared(
        &mut self,
        bytes: Vec<u8>,
        shared_since: SharedSince,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.cache.shared_tier()?;
        self.shared = true;
        let (cache, key, entry) = (
            self.cache.clone(),
            self.key.to_owned(),
            Arc::clone(&self.entry),
        );
        let (expires_at, since) = (self.expires_at, self.since);
        Some(async move {
            let at = (since, shared_since);
            cache
                .store_shared(&key, bytes, &entry, expires_at, at)
                .await;
        })
    }

    /// The last step of a store: counts the entry when it went anywhere, then
    /// [`settles`](Write::settle) it; whether it was kept.
    fn finish(self) -> bool {
        let counters = self.cache.inner.counters();
        let kept = self.memory.is_some() || self.shared;
        if kept {
            counters.add(Counter::Insert);
        }
        if !self.settle() {
            tracing::debug!(
                cache = counters.name(),
                key = self.key,
                "discarded a load invalidated while in flight"
            );
            return false;
        }
        kept
    }

    /// The entry, [settled](Write::settle): what a copy of the shared tier's entry serves.
    pub(crate) fn settled(self) -> Arc<Entry> {
        self.settle();
        self.entry
    }

    /// Checks the entry against the invalidation log, after the insert (an invalidation either
    /// removed it or is in the log): removes it from memory again when its key or a tag was
    /// invalidated since the load began (then `false`), and marks it stale when one was
    /// soft-purged meanwhile (what was loaded may predate the purge).
    fn settle(&self) -> bool {
        let log = self.cache.inner.log();
        let invalidated = log.touched_since(self.since, self.key, &self.entry.tags);
        if let (true, Some(memory)) = (invalidated, self.memory) {
            memory.remove(self.key);
        }
        if log.soft_since(self.since, self.key, &self.entry.tags) {
            self.entry.mark_stale();
        }
        !invalidated
    }
}

impl Cache {
    /// The shared tier's part of a store, off the caller's path: writes `bytes` (to expire at
    /// `expires_at`, the entry's own lifetime) unless `key` or a tag was invalidated by name
    /// since the load began (`at`: this process's log position, and where Redis's invalidation
    /// history stood, which also knows the other instances' invalidations, even those not heard
    /// yet), and deletes them again if that happened here during the write (an invalidation
    /// either deleted our write or is in the log); a delete that does not reach Redis is queued
    /// like an invalidation. Emptying memory, for missed invalidations, says nothing against a
    /// value just loaded from the source. A value loaded before a soft purge heard here is not
    /// written (Redis keeps the purged, stale copy), and is made stale again if the purge came
    /// during the write.
    async fn store_shared(
        &self,
        key: &str,
        bytes: Vec<u8>,
        entry: &Entry,
        expires_at: clock::Instant,
        at: (u64, SharedSince),
    ) {
        let (since, shared_since) = at;
        let Some(shared) = &self.inner.shared else {
            return;
        };
        let ttl = expires_at.saturating_duration_since(clock::now());
        let log = &self.inner.log;
        if log.named_since(since, key, &entry.tags) || log.soft_since(since, key, &entry.tags) {
            return;
        }
        shared
            .store
            .set(key, bytes, ttl, &entry.tags, shared_since)
            .await;
        if log.named_since(since, key, &entry.tags) {
            shared.store.delete(key).await;
        } else if log.soft_since(since, key, &entry.tags) {
            shared.store.soft_invalidate(key).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::entry::{Age, Deadlines};

    /// An entry tagged `tag`, fresh for an hour.
    fn entry() -> Entry {
        let hour = Duration::from_secs(3600);
        let deadlines = Deadlines::from_windows(clock::now(), hour, hour, hour);
        Entry::new(Arc::new(1u8), deadlines, Box::new(["tag".into()]), 1)
    }

    /// Stores `entry()` under `key` as its front-end does, for a load begun at `since`.
    async fn store(cache: &Cache, kind: EntryKind, key: &str, since: u64) -> bool {
        match kind {
            EntryKind::Memoised | EntryKind::Local => {
                let how = SharedWrite::Detached(SharedSince::Unchecked);
                cache.store(kind, key, entry(), since, None, how).await
            }
            EntryKind::Response => cache.store_response(key, entry(), since, None),
        }
    }

    /// Where the entry under `key` is in its life, if memory holds it.
    fn age(cache: &Cache, key: &str) -> Option<Age> {
        let entry = cache.inner().memory().get(key)?;
        Some(entry.age(clock::now()))
    }

    #[tokio::test]
    async fn memoised_values_and_responses_take_the_same_rules() {
        for kind in [EntryKind::Memoised, EntryKind::Local, EntryKind::Response] {
            let cache = Cache::builder().build().unwrap();
            let since = cache.inner().log().current();
            assert!(store(&cache, kind, "kept", since).await, "{kind:?}");
            assert_eq!(age(&cache, "kept"), Some(Age::Fresh), "{kind:?}");

            let since = cache.inner().log().current();
            cache.invalidate("tag").await;
            assert!(!store(&cache, kind, "invalidated", since).await, "{kind:?}");
            assert_eq!(age(&cache, "invalidated"), None, "{kind:?}");

            let since = cache.inner().log().current();
            cache.soft_invalidate("tag").await;
            assert!(store(&cache, kind, "purged", since).await, "{kind:?}");
            assert_eq!(age(&cache, "purged"), Some(Age::Stale), "{kind:?}");

            let off = Cache::builder().disabled().build().unwrap();
            assert!(!store(&off, kind, "off", 0).await, "{kind:?}");
            assert_eq!(off.entry_count(), 0, "{kind:?}");
            assert_eq!(cache.stats().inserts, 3, "{kind:?}");
        }
    }
}
