//! Clears: [`Cache::clear`] (every entry) and [`Cache::clear_prefix`] (every key starting with
//! a prefix, a namespace), made in this process (the invalidation log, flights, memory), then in
//! Redis and, over pub/sub, in the other instances; with the guarantee of an invalidation: a
//! load that began before is not stored.

use std::sync::Arc;

use super::{Cache, Inner};
use crate::engine::hooks::{Invalidated, Origin};
use crate::engine::stats::Counter;

/// How many entries memory may hold for a prefix clear to run on the caller's executor thread
/// (one pass over them); above, it runs on a blocking thread.
const LARGE_CLEAR: u64 = 4096;

impl Cache {
    /// Clears the cache: every entry, memoised values and HTTP responses (and their `Vary`
    /// records) alike, in memory and in Redis, in this instance and every other one that
    /// shares its Redis. Loads in flight when it is made do not store their (possibly
    /// outdated) result, here or in Redis, whichever instance runs them; callers arriving after
    /// it start new loads.
    ///
    /// [`clear_prefix`](Self::clear_prefix) clears a namespace only; both are counted in
    /// [`Stats::clears`](crate::Stats::clears) and told to the
    /// [`on_invalidation`](crate::CacheBuilder::on_invalidation) hook.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = Cache::builder().build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60));
    /// cache.insert(&Key::new("user").part(1), 1u32, &options).await;
    /// cache.clear().await;
    /// assert_eq!(cache.get::<u32>(&Key::new("user").part(1)).await, None);
    /// # }
    /// ```
    ///
    /// # With Redis
    /// As for [`clear_prefix`](Self::clear_prefix): every value key of the cache's
    /// [key prefix](crate::CacheBuilder::key_prefix) is deleted, found by `SCAN`.
    pub async fn clear(&self) {
        self.clear_prefix("").await;
    }

    /// Clears a namespace: every entry whose key starts with `prefix` (`""`: every entry, as
    /// [`clear`](Self::clear)), with the same guarantees. Keys are as stored: a `#[cached]`
    /// key template's or [`Key`](crate::Key)'s text (`Key::new("user").part(7)` is
    /// `user:7`, so `clear_prefix("user:")` clears every user, and not `users:`); HTTP
    /// responses are keyed `GET <url>` (`clear_prefix("GET https://example.com/api/")` clears
    /// that part of a site, its `Vary` variants included). Tags are not matched: invalidate
    /// a tag with [`invalidate`](Self::invalidate).
    ///
    /// In memory, a prefix clear is one pass over the entries (on a blocking thread when there
    /// are many); a clear of everything empties memory at once.
    ///
    /// # With Redis
    /// First recorded in Redis, so that no instance's load that began before writes its result
    /// there; then the entries deleted (`SCAN` over the keyspace in batches of 1,000 keys,
    /// `UNLINK`: about one round trip per 1,000 keys Redis holds, of any prefix); then every
    /// instance told over pub/sub, which clears its memory. Another instance may serve what it
    /// read before until it hears the clear, as after an invalidation. A clear that cannot reach
    /// Redis is kept and replayed before Redis is used again (never forgotten: many of them
    /// become one clear of everything). In Redis, a prefix longer than 200 bytes is cut there,
    /// and a key longer than 200 bytes (stored under its digest) is found by its first 60
    /// bytes: Redis may lose a few more entries than named, never fewer. See the crate docs,
    /// "Redis layout".
    pub async fn clear_prefix(&self, prefix: &str) {
        self.inner.counters.add(Counter::Clear);
        tracing::debug!(cache = self.inner.counters.name(), prefix, "clear");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !prefix.is_empty() && self.inner.large_clear() => {
                let (inner, owned) = (Arc::clone(&self.inner), prefix.to_owned());
                let local = move || inner.clear_local(&owned, Origin::Local);
                let _ = runtime.spawn_blocking(local).await;
            }
            _ => self.inner.clear_local(prefix, Origin::Local),
        }
        self.clear_shared(prefix).await;
    }

    /// The shared tier's part of a clear, on a task of its own, which the caller awaits but
    /// cannot cancel (in place outside a Tokio runtime).
    async fn clear_shared(&self, prefix: &str) {
        if self.shared_tier().is_none() {
            return;
        }
        self.listen_for_invalidations();
        let (cache, prefix) = (self.clone(), prefix.to_owned());
        let clear = async move {
            if let Some(shared) = cache.shared_tier() {
                shared.store.clear(&prefix).await;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let _ = runtime.spawn(clear).await;
            }
            Err(_) => clear.await,
        }
    }
}

impl Inner {
    /// The in-process part of a clear of the keys starting with `prefix` (also run for clears
    /// published by other instances): recorded first, so that a concurrent store either is
    /// removed or sees the record; then the flights detached and memory cleared.
    pub(crate) fn clear_local(&self, prefix: &str, origin: Origin) {
        self.log.record_clear(prefix);
        self.flights.forget_prefix(prefix);
        self.memory.remove_prefix(prefix);
        let what = match prefix {
            "" => Invalidated::Everything,
            prefix => Invalidated::Prefix(prefix),
        };
        self.invalidated(what, origin);
    }

    /// Whether a prefix clear here takes long enough to be kept off executor threads.
    pub(crate) fn large_clear(&self) -> bool {
        self.memory.entry_count() > LARGE_CLEAR
    }
}
