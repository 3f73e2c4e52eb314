//! A miss's load: single-flight with concurrent callers, the site's distributed lock, the
//! loader, the store of what it returned, and stale-if-error when it fails.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use tracing::{Instrument, Span};

use super::keep::{entry_kind, Storable};
use super::options::{Policy, Site};
use super::returns::{Outcome, Shape};
use super::shared::read_fresh_shared;
use crate::cache::{Cache, SharedWrite};
use crate::engine::clock;
use crate::engine::entry::{Age, Entry, Lifetime, Value};
use crate::engine::pipeline::{
    self, read_shared_since, Joined, Leader, Load, Locked, Waiting, Within,
};
use crate::engine::timed_out::TimeoutError;
use crate::engine::trace;
use crate::store::codec::{self, fingerprint, WallDeadlines};
use crate::store::{SharedSince, ENTRY_OVERHEAD};

/// A miss on a key: [`Miss::load`] runs the loader once per key across concurrent callers.
pub struct Miss<'a, S> {
    pub(super) cache: &'a Cache,
    pub(super) site: &'a Site,
    pub(super) key: &'a str,
    /// An entry in its stale-if-error window, served if the load fails.
    fallback: Option<Arc<Entry>>,
    /// Where Redis's invalidation history stood, when read for a whole batch; otherwise it
    /// is read when the load begins.
    shared_since: Option<SharedSince>,
    shape: PhantomData<S>,
}

impl<'a, S> Miss<'a, S> {
    /// A miss on `key`, serving `fallback` if the load fails, its Redis write checked against
    /// `shared_since` (`None`: read when the load begins).
    pub(super) fn new(
        cache: &'a Cache,
        site: &'a Site,
        key: &'a str,
        fallback: Option<Arc<Entry>>,
        shared_since: Option<SharedSince>,
    ) -> Self {
        Miss {
            cache,
            site,
            key,
            fallback,
            shared_since,
            shape: PhantomData,
        }
    }

    /// This miss's load checks its Redis write against `shared_since`, read once for a batch
    /// of misses (so that their loads still reach the batch's loader together).
    pub(crate) fn with_shared_since(mut self, shared_since: SharedSince) -> Self {
        self.shared_since = Some(shared_since);
        self
    }

    /// Loads the value with `load` (or waits for a concurrent caller's load of the same key),
    /// stores it tagged with `tags`, and returns it.
    ///
    /// # Concurrent calls on the same key
    /// One caller runs its loader; the others wait for its value (a bounded time, then they
    /// load themselves). If the leader is cancelled, panics or fails, a waiter takes over with
    /// its own loader. A failed load is never cached.
    pub async fn load<R, F>(
        self,
        tags: Vec<String>,
        policy: Policy<<S as Shape<R>>::Success>,
        load: F,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
        F: Future<Output = R>,
    {
        // Boxed: the miss path's state (the loader, waiting, the shared tier) would otherwise
        // make every call's future, hits included, as large as all of it.
        let span = trace::memo_load(self.cache, self.site.name, self.key);
        Box::pin(
            self.load_unboxed(tags, policy, load, &span)
                .instrument(span.clone()),
        )
        .await
    }

    /// [`load`](Self::load) within the site's timeouts (`soft_timeout`, `hard_timeout`): the
    /// load runs on a task of its own, so it must be `Send + 'static`. `timed_out` makes the
    /// return value past the hard timeout (without it, no hard timeout is raced).
    pub async fn load_within<R, F>(
        self,
        tags: Vec<String>,
        policy: Policy<<S as Shape<R>>::Success>,
        load: F,
        timed_out: Option<fn(TimeoutError) -> R>,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
        S::Success: 'static,
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        if !self.site.timeouts.is_set() {
            return self.load(tags, policy, load).await;
        }
        let span = trace::memo_load(self.cache, self.site.name, self.key);
        let timed = async {
            if self.cache.inner().disabled() {
                return self.bypass_within(load, &span, timed_out).await;
            }
            let tags = boxed(tags);
            let leader = match self.lead(&tags, &span, timed_out).await {
                Ok(leader) => leader,
                Err(served) => return served,
            };
            self.run_within(load, tags, policy, leader, &span, timed_out)
                .await
        };
        Box::pin(timed.instrument(span.clone())).await
    }

    async fn load_unboxed<R, F>(
        self,
        tags: Vec<String>,
        policy: Policy<<S as Shape<R>>::Success>,
        load: F,
        span: &Span,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
        F: Future<Output = R>,
    {
        if self.cache.inner().disabled() {
            return bypass(self.cache, self.site, load, span).await;
        }
        let tags = boxed(tags);
        match self.lead(&tags, span, None).await {
            Ok(leader) => self.run(load, &tags, &policy, leader, span).await,
            Err(served) => served,
        }
    }

    /// Joins the key's flight: `Err` with what a leader handed, else the [`Leader`] to load
    /// as (`None`: load alone).
    async fn lead<R>(
        &self,
        tags: &[Box<str>],
        span: &Span,
        timed_out: Option<fn(TimeoutError) -> R>,
    ) -> Result<Option<Leader>, R>
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
    {
        let mut waiting = MemoWaiting {
            miss: self,
            timed_out,
        };
        match pipeline::join(self.cache, tags, &mut waiting).await {
            Joined::Served(value) => {
                trace::outcome(span, trace::Outcome::Coalesced, None);
                Err(value)
            }
            Joined::Lead(leader) => Ok(Some(leader)),
            Joined::Alone => Ok(None),
        }
    }

    /// [`run`](Self::run) on a task of its own, raced against the site's timeouts
    /// ([`pipeline::within`]): past one, the caller serves the stale-if-error value, or the
    /// hard timeout's `timed_out` answer.
    async fn run_within<R, F>(
        &self,
        load: F,
        tags: Box<[Box<str>]>,
        policy: Policy<<S as Shape<R>>::Success>,
        leader: Option<Leader>,
        span: &Span,
        timed_out: Option<fn(TimeoutError) -> R>,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
        S::Success: 'static,
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let mut timeouts = self.site.timeouts;
        if timed_out.is_none() {
            timeouts.hard = None;
        }
        let (stale, mut served) = self.fallback::<R>().unzip();
        let herald = leader.as_ref().map(Leader::herald);
        let (cache, site, key) = (self.cache.clone(), self.site.clone(), self.key.to_owned());
        let (fallback, since, load_span) = (self.fallback.clone(), self.shared_since, span.clone());
        let work = async move {
            let miss = Miss::<S>::new(&cache, &site, &key, fallback, since);
            miss.run(load, &tags, &policy, leader, &load_span).await
        };
        let counters = self.cache.inner().counters();
        let ended = pipeline::within(counters, timeouts, stale, herald, work, |_| async {});
        match ended.await {
            Within::Done(value) => value,
            Within::Stale => {
                trace::outcome(span, trace::Outcome::Timeout, None);
                served
                    .take()
                    .expect("a stale value is served only when there is one")
            }
            Within::TimedOut(error) => {
                trace::outcome(span, trace::Outcome::Timeout, None);
                let timed_out = timed_out.expect("a hard timeout is raced only with `timed_out`");
                timed_out(error)
            }
        }
    }

    /// With caching off, the load runs as [`bypass`] does, still within the hard timeout (there
    /// is no stale value to serve): a caller that asked for one gets it either way.
    async fn bypass_within<R, F>(
        &self,
        load: F,
        span: &Span,
        timed_out: Option<fn(TimeoutError) -> R>,
    ) -> R
    where
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let (Some(timed_out), Some(_)) = (timed_out, self.site.timeouts.hard) else {
            return bypass(self.cache, self.site, load, span).await;
        };
        let (cache, site, load_span) = (self.cache.clone(), self.site.clone(), span.clone());
        let work = async move { bypass(&cache, &site, load, &load_span).await };
        let counters = self.cache.inner().counters();
        let timeouts = self.site.timeouts;
        match pipeline::within(counters, timeouts, None, None, work, |_| async {}).await {
            Within::Done(value) => value,
            Within::TimedOut(error) => {
                trace::outcome(span, trace::Outcome::Timeout, None);
                timed_out(error)
            }
            Within::Stale => unreachable!("a soft timeout is raced only with a stale value"),
        }
    }

    /// A fresh value stored by a leader that finished between our look-up and our wait.
    fn fresh<R>(&self) -> Option<R>
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
    {
        let entry = self.cache.inner().memory().get(self.key)?;
        if entry.age(clock::now()) != Age::Fresh {
            return None;
        }
        rebuild::<R, S>(&entry.value)
    }

    /// The stale-if-error entry, while its window is still open, and its value.
    fn fallback<R>(&self) -> Option<(Value, R)>
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
    {
        let entry = self.fallback.as_ref()?;
        if entry.age(clock::now()) == Age::Expired {
            return None;
        }
        Some((entry.value.clone(), rebuild::<R, S>(&entry.value)?))
    }

    async fn run<R, F>(
        &self,
        load: F,
        tags: &[Box<str>],
        policy: &Policy<<S as Shape<R>>::Success>,
        leader: Option<Leader>,
        span: &Span,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
        F: Future<Output = R>,
    {
        let held_lock = match self.lock::<R>().await {
            Locked::Held(lock) => Some(lock),
            Locked::Unlocked => None,
            Locked::LoadedElsewhere(entry) => {
                if let Some(leader) = leader {
                    leader.complete(entry.value.clone());
                }
                let value = rebuild::<R, S>(&entry.value);
                return value.expect("decoded as `S::Value` by read_fresh_shared");
            }
        };
        let started = std::time::Instant::now();
        let at = self.shared_since;
        let (result, stored) =
            load_and_store::<R, S, F>(self.cache, self.site, self.key, tags, policy, at, load)
                .await;
        trace::load_time(span, started.elapsed());
        trace::outcome(span, trace::Outcome::Miss, None);
        if let Some(lock) = held_lock {
            lock.release().await;
        }
        self.settle(result, stored, leader, span)
    }

    /// The end of a miss's load: a stored value goes to the waiters; a failed load serves the
    /// stale-if-error value, if any, to the caller and the waiters.
    pub(super) fn settle<R>(
        &self,
        result: R,
        stored: Option<Value>,
        leader: Option<Leader>,
        span: &Span,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
    {
        if let Some(value) = stored {
            if let Some(leader) = leader {
                leader.complete(value);
            }
            return result;
        }
        match self.fallback::<R>() {
            Some((stale, value)) => {
                trace::outcome(span, trace::Outcome::StaleIfError, None);
                pipeline::stale_if_error(self.cache, self.key, stale, leader);
                value
            }
            // Dropping the leader without a value hands the load to a waiter.
            None => result,
        }
    }

    /// Takes the site's distributed lock, when it has one and a shared tier is configured; when
    /// another instance holds it, waits for that instance's value.
    async fn lock<R>(&self) -> Locked<Arc<Entry>>
    where
        S: Shape<R>,
        S::Value: Storable<S::Keep>,
    {
        // A `local` site's values are never in the shared tier to wait for (the macro refuses
        // `lock` with `local`).
        let Some(ttl) = self
            .site
            .lock
            .filter(|_| <S::Value as Storable<S::Keep>>::SHARED)
        else {
            return Locked::Unlocked;
        };
        let (cache, key) = (self.cache, self.key);
        pipeline::lock(cache, key, ttl, || {
            read_fresh_shared::<S::Value, S::Keep>(cache, key)
        })
        .await
    }
}

/// Memo's side of the pipeline's single-flight: a value handed by a leader is served when it
/// has this function's type.
pub(super) struct MemoWaiting<'m, 'a, S, R> {
    miss: &'m Miss<'a, S>,
    /// The return value past a hard timeout, where the return type carries one.
    timed_out: Option<fn(TimeoutError) -> R>,
}

impl<'m, 'a, S, R> MemoWaiting<'m, 'a, S, R> {
    pub(super) fn new(miss: &'m Miss<'a, S>) -> Self {
        MemoWaiting {
            miss,
            timed_out: None,
        }
    }
}

impl<S, R> Waiting for MemoWaiting<'_, '_, S, R>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    type Served = R;

    fn key(&self) -> &str {
        self.miss.key
    }

    fn accept(&mut self, value: Value, _fallback: bool) -> Option<R> {
        rebuild::<R, S>(&value)
    }

    fn fresh(&mut self) -> Option<R> {
        self.miss.fresh::<R>()
    }

    fn timed_out(&mut self, error: TimeoutError) -> Option<R> {
        match self.miss.fallback::<R>() {
            Some((_, stale)) => Some(stale),
            None => self.timed_out.map(|timed_out| timed_out(error)),
        }
    }
}

/// Runs `load`, records it, and stores what its shape allows. Returns the caller's value and,
/// when the call succeeded, the shared value waiters receive.
pub(super) async fn load_and_store<R, S, F>(
    cache: &Cache,
    site: &Site,
    key: &str,
    tags: &[Box<str>],
    policy: &Policy<<S as Shape<R>>::Success>,
    shared_since: Option<SharedSince>,
    load: F,
) -> (R, Option<Value>)
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
    F: Future<Output = R>,
{
    // Before the source is read: the write is not made if any instance invalidates the key or
    // a tag from here on.
    let shared_since = match shared_since {
        Some(shared_since) => shared_since,
        None => read_shared_since(cache).await,
    };
    let loading = Load::begin(cache, Arc::clone(&site.counters(cache.inner().counters())));
    let result = loading.run(load).await;
    let Some((value, lifetime)) = to_store::<R, S>(cache, site, key, policy, &loading, &result)
    else {
        return (result, None);
    };
    let shared = store_value::<S::Value, S::Keep>(
        cache,
        key,
        tags,
        value,
        lifetime,
        loading.since(),
        SharedWrite::Detached(shared_since),
    )
    .await;
    (result, Some(shared))
}

/// What a load's `result` stores: the value and its lifetime (`None`: not stored, by
/// `cache_if`), or `None` when the load failed (counted, logged, told to the hook).
pub(super) fn to_store<'r, R, S>(
    cache: &Cache,
    site: &Site,
    key: &str,
    policy: &Policy<<S as Shape<R>>::Success>,
    loading: &Load<'_>,
    result: &'r R,
) -> Option<(&'r S::Value, Option<Lifetime>)>
where
    S: Shape<R>,
{
    let inner = cache.inner();
    match S::classify(result) {
        Outcome::Value(value) => Some((
            value,
            policy.lifetime(site, S::success(value), inner.jitter()),
        )),
        Outcome::Negative(value) => Some((value, site.negative_lifetime())),
        Outcome::Failure => {
            loading.failed(key, None);
            tracing::debug!(
                cache = inner.counters().name(),
                site = site.name,
                key,
                "loader failed"
            );
            None
        }
    }
}

/// Stores `value` under `key` for `lifetime` (`None`: not stored) through [`Cache::store`], in
/// memory and, when `K` shares it, in the shared tier, unless `key` or a tag was invalidated
/// after `since`; returns the value as waiters get it.
pub(crate) async fn store_value<V: Storable<K>, K>(
    cache: &Cache,
    key: &str,
    tags: &[Box<str>],
    value: &V,
    lifetime: Option<Lifetime>,
    since: u64,
    write: SharedWrite,
) -> Value {
    let (shared, entry) = entry_of::<V, K>(cache, key, tags, value, lifetime);
    if let Some((entry, encoded)) = entry {
        let kind = entry_kind::<V, K>();
        cache.store(kind, key, entry, since, encoded, write).await;
    }
    shared
}

/// An entry to store, and its bytes for the shared tier (if they go there).
pub(super) type Encoded = (Entry, Option<Vec<u8>>);

/// The value as waiters get it, and, with a `lifetime`, the entry that stores it under `key`
/// with its bytes for the shared tier (when `K` shares it and there is one).
pub(super) fn entry_of<V: Storable<K>, K>(
    cache: &Cache,
    key: &str,
    tags: &[Box<str>],
    value: &V,
    lifetime: Option<Lifetime>,
) -> (Value, Option<Encoded>) {
    let shared: Value = Arc::new(value.clone());
    let Some(lifetime) = lifetime else {
        return (shared, None);
    };
    let now = clock::now();
    let deadlines = lifetime.deadlines(now, cache.inner().jitter());
    let encoded = cache.shared_tier().and_then(|_| {
        let at = WallDeadlines::from_local(&deadlines, now);
        codec::encode_payload(fingerprint::<V>(), &value.to_payload()?, at, tags)
    });
    let weight = weigh::<V>(key, tags, value.heap_bytes());
    let entry = Entry::new(Arc::clone(&shared), deadlines, tags.into(), weight);
    (shared, Some((entry, encoded)))
}

/// Estimated bytes an entry holds: bookkeeping, key, tags, the value inline, and its heap
/// data (`heap`, see [`Storable::heap_bytes`]).
fn weigh<V>(key: &str, tags: &[Box<str>], heap: usize) -> u32 {
    let bytes = (ENTRY_OVERHEAD
        + key.len()
        // Each tag: its text, its slot and its allocation.
        + tags.iter().map(|t| t.len() + 32).sum::<usize>()
        // The value's `Arc`: its counts and its allocation.
        + 32
        + std::mem::size_of::<V>())
    .saturating_add(heap);
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A stored value as the function returns it; `None` when it holds another type.
pub(super) fn rebuild<R, S>(value: &Value) -> Option<R>
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
{
    let value = value.downcast_ref::<S::Value>()?;
    Some(S::rebuild(value.clone()))
}

/// With caching off (`CacheBuilder::disabled`), every call runs its loader (counted for
/// `site`).
async fn bypass<F: Future>(cache: &Cache, site: &Site, load: F, span: &Span) -> F::Output {
    trace::outcome(span, trace::Outcome::Bypass, None);
    let counters = Arc::clone(&site.counters(cache.inner().counters()));
    Load::begin(cache, counters).run(load).await
}

/// Tags as entries hold them.
pub(super) fn boxed(tags: Vec<String>) -> Box<[Box<str>]> {
    tags.into_iter().map(String::into_boxed_str).collect()
}
