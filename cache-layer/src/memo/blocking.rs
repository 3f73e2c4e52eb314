//! Sync `#[cached]` and `#[invalidates]` fns: the same look-up, single-flight, store gate and
//! invalidation as an `async fn`'s, without a future. A sync site keeps its values in this
//! process's memory (its shape is [`Local`](super::Local)), so nothing on its path waits for
//! Redis: a miss blocks its thread while the key's leader loads (`pipeline::join_blocking`),
//! and its value is stored through the write path's memory part (`Cache::store_blocking`).
//! Invalidations reach its entries as they reach any entry in memory, from every instance.

use std::sync::Arc;
use std::time::Instant;

use tracing::Span;

use super::handles::supersede;
use super::keep::{entry_kind, KeepLocal, Storable};
use super::load::{boxed, entry_of, to_store, MemoWaiting, Miss};
use super::lookup::{lookup_now, Lookup};
use super::options::{Policy, Site};
use super::returns::Shape;
use crate::cache::Cache;
use crate::engine::entry::Value;
use crate::engine::pipeline::{self, Joined, Load};
use crate::engine::trace;

/// [`lookup_now`] for a sync fn: memory's answer, or a miss.
#[inline]
pub fn lookup_blocking<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    shape: S,
    key: &'a str,
) -> Lookup<'a, R, S>
where
    S: Shape<R, Keep = KeepLocal>,
    S::Value: Storable<KeepLocal>,
{
    match lookup_now(cache, site, shape, key) {
        Ok(found) => found,
        // Only a site whose values the shared tier holds reads it, and a sync site's never
        // are; answered as a miss all the same.
        Err(pending) => pending.answer(None),
    }
}

impl<S> Miss<'_, S> {
    /// [`Miss::load`] for a sync fn: runs `load` on this thread once per key across
    /// concurrent callers, which block until its value is stored (at most the cache's
    /// `max_wait`, then they load themselves), and stores what it returns.
    ///
    /// # Concurrent calls on the same key
    /// As for [`Miss::load`]: if the leader panics or fails, a waiter takes over with its
    /// own loader. A failed load is never cached.
    pub fn load_blocking<R, F>(
        self,
        tags: Vec<String>,
        policy: Policy<<S as Shape<R>>::Success>,
        load: F,
    ) -> R
    where
        S: Shape<R, Keep = KeepLocal>,
        S::Value: Storable<KeepLocal>,
        F: FnOnce() -> R,
    {
        let span = trace::memo_load(self.cache, self.site.name, self.key);
        let _entered = span.enter();
        if self.cache.inner().disabled() {
            trace::outcome(&span, trace::Outcome::Bypass, None);
            let site = Arc::clone(&self.site.counters(self.cache.inner().counters()));
            return Load::begin(self.cache, site).run_blocking(load);
        }
        let tags = boxed(tags);
        let mut waiting = MemoWaiting::new(&self);
        let leader = match pipeline::join_blocking(self.cache, &tags, &mut waiting) {
            Joined::Served(value) => {
                trace::outcome(&span, trace::Outcome::Coalesced, None);
                return value;
            }
            Joined::Lead(leader) => Some(leader),
            Joined::Alone => None,
        };
        let (cache, site, key) = (self.cache, self.site, self.key);
        let (result, stored) =
            load_and_store_blocking::<R, S>(cache, site, key, &tags, &policy, load, &span);
        trace::outcome(&span, trace::Outcome::Miss, None);
        self.settle(result, stored, leader, &span)
    }
}

/// Runs `load` and stores what its shape allows, in memory; returns the caller's value and,
/// when the call succeeded, the value waiters receive.
fn load_and_store_blocking<R, S>(
    cache: &Cache,
    site: &Site,
    key: &str,
    tags: &[Box<str>],
    policy: &Policy<<S as Shape<R>>::Success>,
    load: impl FnOnce() -> R,
    span: &Span,
) -> (R, Option<Value>)
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    let started = Instant::now();
    let loading = Load::begin(cache, Arc::clone(&site.counters(cache.inner().counters())));
    let result = loading.run_blocking(load);
    trace::load_time(span, started.elapsed());
    let Some((value, lifetime)) = to_store::<R, S>(cache, site, key, policy, &loading, &result)
    else {
        return (result, None);
    };
    let (shared, entry) = entry_of::<S::Value, S::Keep>(cache, key, tags, value, lifetime);
    if let Some((entry, _)) = entry {
        let kind = entry_kind::<S::Value, S::Keep>();
        cache.store_blocking(kind, key, entry, loading.since());
    }
    (result, Some(shared))
}

/// `<fn>_refresh` of a sync fn: runs `load` now and replaces the entry under `key` with what
/// it returns (see the async `refresh`).
pub fn refresh_blocking<R, S, F>(
    cache: &Cache,
    site: &Site,
    _shape: S,
    key: &str,
    tags: Vec<String>,
    policy: Policy<<S as Shape<R>>::Success>,
    load: F,
) -> R
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
    F: FnOnce() -> R,
{
    let span = trace::memo_load(cache, site.name, key);
    let _entered = span.enter();
    supersede(cache, key);
    let tags = boxed(tags);
    let (result, _) =
        load_and_store_blocking::<R, S>(cache, site, key, &tags, &policy, load, &span);
    trace::outcome(&span, trace::Outcome::Miss, None);
    result
}

/// `<fn>_invalidate` of a sync fn: [`Cache::invalidate`] of `key`, without awaiting (see
/// `Cache::invalidate_names_blocking`).
pub fn invalidate_blocking(cache: &Cache, key: &str) {
    cache.invalidate_names_blocking(vec![key.to_owned()]);
}

/// A sync `#[invalidates]` fn: invalidates each of `names` when the writer's result means
/// success.
pub fn invalidate_after_blocking<R, S: Shape<R>>(
    cache: &Cache,
    _shape: S,
    result: &R,
    names: Vec<String>,
) {
    if S::succeeded(result) {
        cache.invalidate_names_blocking(names);
    }
}
