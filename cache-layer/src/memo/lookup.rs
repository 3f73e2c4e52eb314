//! The look-up: answering a call from memory, then from the shared tier, with a hit, a stale
//! value (and, for the first caller to see it stale, the right to refresh it) or a miss.

use std::marker::PhantomData;
use std::sync::Arc;

use tracing::Span;

use super::keep::{entry_kind, Storable};
use super::load::Miss;
use super::options::Site;
use super::refresh::Refresh;
use super::returns::Shape;
use super::shared::read_shared;
use crate::cache::Cache;
use crate::engine::clock;
use crate::engine::entry::Entry;
use crate::engine::pipeline::{self, Found};
use crate::engine::stats::Counter;
use crate::engine::trace::{self, Tier};

/// The answer of [`lookup`].
pub enum Lookup<'a, R, S> {
    /// A fresh value.
    Hit(R),
    /// A stale value, and, for the first caller to see it stale, the right to refresh it.
    Stale(R, Option<Refresh<S>>),
    /// Nothing usable: load.
    Miss(Miss<'a, S>),
}

/// Looks `key` up for a function of shape `S` returning `R`: [`lookup_now`], then the
/// shared tier when memory could not answer.
pub async fn lookup<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    shape: S,
    key: &'a str,
) -> Lookup<'a, R, S>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    match lookup_now(cache, site, shape, key) {
        Ok(found) => found,
        Err(pending) => pending.finish().await,
    }
}

/// The part of [`lookup`] that needs no waiting: the memory tier's answer (or, without a
/// shared tier, the miss), without building a future; `Err` when the shared tier must be read
/// ([`Pending::finish`]). A hit is answered here, so it pays for no future's state.
#[inline]
pub fn lookup_now<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    _shape: S,
    key: &'a str,
) -> Result<Lookup<'a, R, S>, Pending<'a, R, S>>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    lookup_now_at(cache, site, key, None)
}

/// [`lookup_now`], with memory's entries judged at `now` when given (a batch reads the clock
/// once for all its keys).
#[inline]
pub(crate) fn lookup_now_at<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    now: Option<clock::Instant>,
) -> Result<Lookup<'a, R, S>, Pending<'a, R, S>>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    let span = trace::memo_lookup(cache, site.name, key);
    let fallback = match lookup_memory::<R, S>(cache, site, key, now) {
        Ok(found) => {
            traced(cache, &span, &found, Tier::Memory);
            return Ok(found);
        }
        Err(fallback) => fallback,
    };
    if !<S::Value as Storable<S::Keep>>::SHARED || cache.inner().shared_tier().is_none() {
        let found = lookup_shared(cache, site, key, None, fallback);
        traced(cache, &span, &found, Tier::Memory);
        return Ok(found);
    }
    Err(Pending {
        cache,
        site,
        key,
        span,
        fallback,
        result: PhantomData,
    })
}

/// A look-up that memory did not answer, on a cache with a shared tier: see [`lookup_now`].
pub struct Pending<'a, R, S> {
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    span: Span,
    fallback: Option<Arc<Entry>>,
    result: PhantomData<fn() -> (R, S)>,
}

impl<'a, R, S> Pending<'a, R, S>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    /// Reads the shared tier and answers the look-up.
    pub async fn finish(self) -> Lookup<'a, R, S> {
        // Boxed for the same reason as the miss path: a Redis read's state is large.
        let shared = Box::pin(read_shared::<S::Value, S::Keep>(self.cache, self.key)).await;
        self.answer(shared)
    }

    /// Answers the look-up with the shared tier's entry, read by the caller (a batch reads
    /// all its keys' at once).
    pub(crate) fn answer(self, shared: Option<Arc<Entry>>) -> Lookup<'a, R, S> {
        let found = lookup_shared(self.cache, self.site, self.key, shared, self.fallback);
        traced(self.cache, &self.span, &found, Tier::Redis);
        found
    }
}

/// Records a look-up's answer (from `tier` unless a miss) on its span.
#[inline]
fn traced<R, S>(cache: &Cache, span: &Span, found: &Lookup<'_, R, S>, tier: Tier) {
    let (outcome, tier) = match found {
        Lookup::Hit(_) => (trace::Outcome::Hit, Some(tier)),
        Lookup::Stale(..) => (trace::Outcome::Stale, Some(tier)),
        Lookup::Miss(_) if cache.inner().disabled() => (trace::Outcome::Bypass, None),
        Lookup::Miss(_) => (trace::Outcome::Miss, None),
    };
    trace::outcome(span, outcome, tier);
}

/// The memory tier's answer for `key`, judged at `now` (default: when an entry is found);
/// without one, `Err` with the entry to serve if loading fails (stale-if-error), if memory
/// holds one. With caching off, a miss.
#[inline]
fn lookup_memory<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    now: Option<clock::Instant>,
) -> Result<Lookup<'a, R, S>, Option<Arc<Entry>>>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    let inner = cache.inner();
    if inner.disabled() {
        return Ok(miss(cache, site, key, None));
    }
    if let Some(memory) = inner.memory_for(entry_kind::<S::Value, S::Keep>()) {
        if let Some(entry) = memory.get(key) {
            let now = now.unwrap_or_else(clock::now);
            match answer::<R, S>(cache, site, key, entry, now) {
                Answer::Lookup(lookup) => return Ok(lookup),
                Answer::Fallback(entry) => return Err(Some(entry)),
                Answer::Miss { expired: true } => memory.remove(key),
                Answer::Miss { expired: false } => {}
            }
        }
    }
    Err(None)
}

/// The rest of a look-up once the shared tier's entry for `key` (if any) has been read:
/// its answer, or a miss that keeps the best `fallback`.
fn lookup_shared<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    shared: Option<Arc<Entry>>,
    mut fallback: Option<Arc<Entry>>,
) -> Lookup<'a, R, S>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    let inner = cache.inner();
    if let Some(entry) = shared {
        match answer::<R, S>(cache, site, key, entry, clock::now()) {
            Answer::Lookup(lookup) => {
                if matches!(lookup, Lookup::Hit(_)) {
                    inner.counters().add(Counter::SharedHit);
                }
                return lookup;
            }
            Answer::Fallback(entry) => fallback = Some(entry),
            Answer::Miss { .. } => {}
        }
    }
    inner.counters().add(Counter::Miss);
    tracing::debug!(
        cache = inner.counters().name(),
        site = site.name,
        key,
        "cache miss"
    );
    miss(cache, site, key, fallback)
}

/// What a stored entry gives [`lookup`].
enum Answer<'a, R, S> {
    /// The caller's answer: a hit, or stale with perhaps the right to refresh.
    Lookup(Lookup<'a, R, S>),
    /// An entry in its stale-if-error window, kept in case the load fails.
    Fallback(Arc<Entry>),
    /// Nothing usable (expired, or a value of another type: both are overwritten).
    Miss { expired: bool },
}

/// What a stored entry answers at `now` (see [`pipeline::found`]).
fn answer<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &str,
    entry: Arc<Entry>,
    now: clock::Instant,
) -> Answer<'a, R, S>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    let counters = cache.inner().counters();
    match pipeline::found::<S::Value>(&entry, now) {
        Found::Fresh(value) => {
            counters.add(Counter::Hit);
            Answer::Lookup(Lookup::Hit(S::rebuild(value.clone())))
        }
        Found::Stale(value, claim) => {
            counters.add(Counter::Stale);
            let refresh = claim.map(|claim| Refresh::new(cache, site, key, claim));
            Answer::Lookup(Lookup::Stale(S::rebuild(value.clone()), refresh))
        }
        Found::Fallback => Answer::Fallback(Arc::clone(&entry)),
        Found::Expired => Answer::Miss { expired: true },
        Found::OtherType => Answer::Miss { expired: false },
    }
}

/// A miss on `key`, keeping `fallback` to serve if the load fails.
fn miss<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    fallback: Option<Arc<Entry>>,
) -> Lookup<'a, R, S> {
    Lookup::Miss(Miss::new(cache, site, key, fallback, None))
}
