//! Get-or-load for memoised functions: what `#[cached]` expands to.
//!
//! The expansion is two steps so that the cache-hit path does no work for the miss path:
//! [`lookup`] answers from the store (fresh, or stale with a claim to refresh it in the
//! background); only on a miss does the caller render the tags and hand its loader to
//! [`Miss::load`], which runs it under single-flight.

mod options;
mod returns;

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::clock;

pub use self::options::LoadOptions;
pub use self::returns::{
    Cacheable, OptionShape, Outcome, PlainShape, Probe, ResultOptionShape, ResultShape, Shape,
    ViaOption, ViaPlain, ViaResult, ViaResultOption,
};
use crate::cache::{Cache, EntryKind, SharedWrite};
use crate::entry::{Age, Entry, Lifetime, RefreshClaim, Value};
pub(crate) use crate::pipeline::read_shared_since;
use crate::pipeline::{self, Found, Joined, Leader, Load, Locked, Refreshing, Waiting};
use crate::stats::Counter;
use crate::store::codec::{self, WallDeadlines};
use crate::store::{SharedSince, ENTRY_OVERHEAD};
use crate::trace::{self, Tier};
use tracing::{Instrument, Span};

/// The configuration of one `#[cached]` function, built by the macro as a `static` (or of a
/// [`LoadOptions`](crate::LoadOptions) value).
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Name for events (default: module path and fn name).
    pub name: &'static str,
    /// Fresh period.
    pub ttl: Duration,
    /// Stale-while-revalidate window.
    pub stale: Duration,
    /// Stale-if-error window.
    pub stale_if_error: Duration,
    /// Lifetime of a negative (`None`) entry; `None` means negative results are not cached.
    pub none_ttl: Option<Duration>,
    /// TTL jitter fraction; `None` takes the cache's default.
    pub jitter: Option<f64>,
    /// Distributed lock duration (used by shared stores; single-flight covers one process).
    pub lock: Option<Duration>,
}

impl Site {
    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            ttl: self.ttl,
            stale: self.stale,
            stale_if_error: self.stale_if_error,
            jitter: self.jitter,
        }
    }

    fn negative_lifetime(&self) -> Option<Lifetime> {
        self.none_ttl.map(|ttl| Lifetime {
            ttl,
            stale: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            jitter: self.jitter,
        })
    }
}

/// What a `#[cached]` function decides from the value it loaded: `ttl_from` (a fresh period
/// from the value; `None` keeps the site's `ttl`) and `cache_if` (whether to store it at all).
/// Negative entries (`None` with `none_ttl`) keep the site's rules.
pub struct Policy<T> {
    /// The fresh period of this value, if it decides one.
    pub ttl_from: Option<TtlFrom<T>>,
    /// Whether this value is stored.
    pub cache_if: Option<CacheIf<T>>,
}

/// `ttl_from`: a value's fresh period, or `None` for the site's `ttl`.
pub type TtlFrom<T> = fn(&T) -> Option<Duration>;

/// `cache_if`: whether a value is stored.
pub type CacheIf<T> = fn(&T) -> bool;

impl<T> Policy<T> {
    /// The lifetime of a value under these policies; `None` when it is not stored. A TTL from
    /// the value is an upper bound: jitter only shortens it (a token valid for 60 s is never
    /// served at 61 s), and the site's `stale` windows follow it.
    fn lifetime(&self, site: &Site, value: Option<&T>, default_jitter: f64) -> Option<Lifetime> {
        let mut lifetime = site.lifetime();
        let Some(value) = value else {
            return Some(lifetime);
        };
        if self.cache_if.is_some_and(|keep| !keep(value)) {
            return None;
        }
        if let Some(ttl) = self.ttl_from.and_then(|ttl_from| ttl_from(value)) {
            let jitter = site.jitter.unwrap_or(default_jitter).clamp(0.0, 1.0);
            let shortened = ttl
                .min(clock::HORIZON)
                .mul_f64(1.0 - jitter * fastrand::f64());
            if shortened.is_zero() {
                return None;
            }
            lifetime.ttl = shortened;
            lifetime.jitter = Some(0.0);
        }
        Some(lifetime)
    }
}

impl<T> Default for Policy<T> {
    fn default() -> Self {
        Policy {
            ttl_from: None,
            cache_if: None,
        }
    }
}

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
    S::Value: Cacheable,
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
    S::Value: Cacheable,
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
    S::Value: Cacheable,
{
    let span = trace::memo_lookup(cache, site.name, key);
    let fallback = match lookup_local::<R, S>(cache, site, key, now) {
        Ok(found) => {
            traced(cache, &span, &found, Tier::Memory);
            return Ok(found);
        }
        Err(fallback) => fallback,
    };
    if cache.inner().remote().is_none() {
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
    S::Value: Cacheable,
{
    /// Reads the shared tier and answers the look-up.
    pub async fn finish(self) -> Lookup<'a, R, S> {
        // Boxed for the same reason as the miss path: a Redis read's state is large.
        let shared = Box::pin(remote_entry::<S::Value>(self.cache, self.key)).await;
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
fn traced<R, S>(cache: &Cache, span: &tracing::Span, found: &Lookup<'_, R, S>, tier: Tier) {
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
pub(crate) fn lookup_local<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    now: Option<clock::Instant>,
) -> Result<Lookup<'a, R, S>, Option<Arc<Entry>>>
where
    S: Shape<R>,
    S::Value: Cacheable,
{
    let inner = cache.inner();
    if inner.disabled() {
        return Ok(Miss::lookup(cache, site, key, None));
    }
    if let Some(memory) = inner.local() {
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
pub(crate) fn lookup_shared<'a, R, S>(
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    shared: Option<Arc<Entry>>,
    mut fallback: Option<Arc<Entry>>,
) -> Lookup<'a, R, S>
where
    S: Shape<R>,
    S::Value: Cacheable,
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
    Miss::lookup(cache, site, key, fallback)
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
    S::Value: Cacheable,
{
    let counters = cache.inner().counters();
    match pipeline::found::<S::Value>(&entry, now) {
        Found::Fresh(value) => {
            counters.add(Counter::Hit);
            Answer::Lookup(Lookup::Hit(S::rebuild(value.clone())))
        }
        Found::Stale(value, claim) => {
            counters.add(Counter::Stale);
            let refresh = claim.map(|claim| Refresh {
                claimed: Box::new(Claimed {
                    shared_since: None,
                    cache: cache.clone(),
                    site: *site,
                    key: key.to_owned(),
                    claim,
                }),
                shape: PhantomData,
            });
            Answer::Lookup(Lookup::Stale(S::rebuild(value.clone()), refresh))
        }
        Found::Fallback => Answer::Fallback(Arc::clone(&entry)),
        Found::Expired => Answer::Miss { expired: true },
        Found::OtherType => Answer::Miss { expired: false },
    }
}

/// The entry the shared tier holds for `key`, decoded, and copied into L1 (tiered set-up;
/// through the gate, `Inner::admit`) when neither `key` nor its tags were invalidated while it was being read (a read racing an
/// invalidation must not leave a stale copy in memory). Bytes that do not decode as `V` are a
/// miss (counted and logged); the next store overwrites them.
async fn remote_entry<V: Cacheable>(cache: &Cache, key: &str) -> Option<Arc<Entry>> {
    let remote = cache.remote()?;
    cache.listen_for_invalidations();
    let since = cache.inner().log().current();
    let bytes = remote.store.get(key).await?;
    shared_entry::<V>(cache, key, &bytes, since)
}

/// [`remote_entry`]'s decoding and L1 copy of `bytes`, read from the shared tier for `key`
/// after the invalidation log stood at `since`.
pub(crate) fn shared_entry<V: Cacheable>(
    cache: &Cache,
    key: &str,
    bytes: &[u8],
    since: u64,
) -> Option<Arc<Entry>> {
    let inner = cache.inner();
    let decoded = match codec::decode::<V>(bytes) {
        Ok(decoded) => decoded,
        Err(error) => {
            inner.counters().add(Counter::DecodeError);
            tracing::warn!(
                cache = inner.counters().name(),
                key,
                ?error,
                "undecodable value in the shared store: treated as a miss"
            );
            return None;
        }
    };
    let weight = u32::try_from(ENTRY_OVERHEAD + key.len() + bytes.len()).unwrap_or(u32::MAX);
    let entry = Entry::new(
        Arc::new(decoded.value),
        decoded.deadlines.to_local(clock::now()),
        decoded.tags.into(),
        weight,
    );
    Some(pipeline::adopt_shared(
        cache,
        EntryKind::Memoised,
        key,
        entry,
        since,
    ))
}

/// A miss on a key: [`Miss::load`] runs the loader once per key across concurrent callers.
pub struct Miss<'a, S> {
    cache: &'a Cache,
    site: &'a Site,
    key: &'a str,
    /// An entry in its stale-if-error window, served if the load fails.
    fallback: Option<Arc<Entry>>,
    /// Where Redis's invalidation history stood, when read for a whole batch; otherwise it
    /// is read when the load begins.
    shared_since: Option<SharedSince>,
    shape: PhantomData<S>,
}

impl<'a, S> Miss<'a, S> {
    fn lookup<R>(
        cache: &'a Cache,
        site: &'a Site,
        key: &'a str,
        fallback: Option<Arc<Entry>>,
    ) -> Lookup<'a, R, S> {
        Lookup::Miss(Miss {
            cache,
            site,
            key,
            fallback,
            shared_since: None,
            shape: PhantomData,
        })
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
        S::Value: Cacheable,
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

    async fn load_unboxed<R, F>(
        self,
        tags: Vec<String>,
        policy: Policy<<S as Shape<R>>::Success>,
        load: F,
        span: &Span,
    ) -> R
    where
        S: Shape<R>,
        S::Value: Cacheable,
        F: Future<Output = R>,
    {
        if self.cache.inner().disabled() {
            // Caching off (`CacheBuilder::disabled`): every call runs its loader.
            trace::outcome(span, trace::Outcome::Bypass, None);
            return Load::begin(self.cache).run(load).await;
        }
        let tags: Box<[Box<str>]> = tags.into_iter().map(String::into_boxed_str).collect();
        let mut waiting = MemoWaiting {
            miss: &self,
            result: PhantomData,
        };
        let leader = match pipeline::join(self.cache, &tags, &mut waiting).await {
            Joined::Served(value) => {
                trace::outcome(span, trace::Outcome::Coalesced, None);
                return value;
            }
            Joined::Lead(leader) => Some(leader),
            Joined::Alone => None,
        };
        self.run(load, &tags, &policy, leader, span).await
    }

    /// A fresh value stored by a leader that finished between our look-up and our wait.
    fn fresh<R>(&self) -> Option<R>
    where
        S: Shape<R>,
        S::Value: Cacheable,
    {
        let entry = self.cache.inner().memory().get(self.key)?;
        let value = entry.value.downcast_ref::<S::Value>()?;
        (entry.age(clock::now()) == Age::Fresh).then(|| S::rebuild(value.clone()))
    }

    /// The stale-if-error entry, while its window is still open, and its value.
    fn fallback<R>(&self) -> Option<(Value, R)>
    where
        S: Shape<R>,
        S::Value: Cacheable,
    {
        let entry = self.fallback.as_ref()?;
        let value = entry.value.downcast_ref::<S::Value>()?;
        (entry.age(clock::now()) != Age::Expired)
            .then(|| (entry.value.clone(), S::rebuild(value.clone())))
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
        S::Value: Cacheable,
        F: Future<Output = R>,
    {
        let held_lock = match self.lock::<R>().await {
            Locked::Held(lock) => Some(lock),
            Locked::Unlocked => None,
            Locked::LoadedElsewhere(entry) => {
                if let Some(leader) = leader {
                    leader.complete(entry.value.clone());
                }
                let value = entry.value.downcast_ref::<S::Value>().cloned();
                return S::rebuild(value.expect("checked by remote_entry's decoding"));
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
        S::Value: Cacheable,
    {
        let Some(ttl) = self.site.lock else {
            return Locked::Unlocked;
        };
        let (cache, key) = (self.cache, self.key);
        pipeline::lock(cache, key, ttl, || {
            fresh_remote_entry::<S::Value>(cache, key)
        })
        .await
    }
}

/// Memo's side of the pipeline's single-flight: a value handed by a leader is served when it
/// has this function's type.
struct MemoWaiting<'m, 'a, S, R> {
    miss: &'m Miss<'a, S>,
    result: PhantomData<fn() -> R>,
}

impl<S, R> Waiting for MemoWaiting<'_, '_, S, R>
where
    S: Shape<R>,
    S::Value: Cacheable,
{
    type Served = R;

    fn key(&self) -> &str {
        self.miss.key
    }

    fn accept(&mut self, value: Value, _fallback: bool) -> Option<R> {
        let value = value.downcast_ref::<S::Value>()?;
        Some(S::rebuild(value.clone()))
    }

    fn fresh(&mut self) -> Option<R> {
        self.miss.fresh::<R>()
    }
}

/// The entry another instance stored in the shared tier for `key`, while fresh.
async fn fresh_remote_entry<V: Cacheable>(cache: &Cache, key: &str) -> Option<Arc<Entry>> {
    let entry = remote_entry::<V>(cache, key).await?;
    (entry.age(clock::now()) == Age::Fresh).then_some(entry)
}

/// The right to refresh one stale entry in the background; see [`Refresh::spawn`].
pub struct Refresh<S> {
    /// Boxed: a look-up's answer (every hit's too) stays small; only a stale one pays for it.
    claimed: Box<Claimed>,
    shape: PhantomData<S>,
}

/// What a [`Refresh`] holds.
struct Claimed {
    cache: Cache,
    site: Site,
    key: String,
    claim: RefreshClaim,
    /// Where Redis's invalidation history stood before the value was loaded, when it was
    /// loaded before the refresh was spawned (a batch); otherwise read when the load begins.
    shared_since: Option<SharedSince>,
}

impl<S> Refresh<S> {
    /// The refreshed value's Redis write is checked against `shared_since`, read before the
    /// value was loaded.
    pub(crate) fn with_shared_since(mut self, shared_since: SharedSince) -> Self {
        self.claimed.shared_since = Some(shared_since);
        self
    }

    /// The refresh as a load in the caller's task, for a `#[cached]` fn without `stale` (whose
    /// body cannot run after the caller returns: its arguments may be borrowed), which sees a
    /// stale entry only after a soft purge. The claim stays with `self` while the load runs,
    /// so concurrent callers are served the stale value meanwhile; if the load fails, the
    /// stale value is served (stale-if-error).
    pub fn in_place(&self) -> Miss<'_, S> {
        let claimed = &*self.claimed;
        Miss {
            cache: &claimed.cache,
            site: &claimed.site,
            key: &claimed.key,
            fallback: Some(Arc::clone(claimed.claim.entry())),
            shared_since: claimed.shared_since,
            shape: PhantomData,
        }
    }

    /// Runs `load` on the Tokio runtime and stores its value, tagged with `tags`; the caller
    /// returns the stale value without waiting. Outside a Tokio runtime nothing is spawned and
    /// the entry is refreshed by a later miss.
    pub fn spawn<R, F>(self, tags: Vec<String>, policy: Policy<<S as Shape<R>>::Success>, load: F)
    where
        S: Shape<R>,
        S::Success: 'static,
        S::Value: Cacheable,
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let Claimed {
            cache,
            site,
            key,
            claim,
            shared_since,
        } = *self.claimed;
        let tags: Box<[Box<str>]> = tags.into_iter().map(String::into_boxed_str).collect();
        let span = trace::memo_refresh(&cache, site.name, &key);
        pipeline::refresh(&cache, key, tags, claim, span, move |refresh| async move {
            let Refreshing {
                cache,
                key,
                tags,
                leader,
                ..
            } = refresh;
            let at = shared_since;
            let (_, stored) =
                load_and_store::<R, S, F>(&cache, &site, &key, &tags, &policy, at, load).await;
            match stored {
                Some(value) => {
                    leader.complete(value);
                    trace::Outcome::Refreshed
                }
                None => trace::Outcome::Failed,
            }
        });
    }
}

/// Runs `load`, records it, and stores what its shape allows. Returns the caller's value and,
/// when the call succeeded, the shared value waiters receive.
async fn load_and_store<R, S, F>(
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
    S::Value: Cacheable,
    F: Future<Output = R>,
{
    let inner = cache.inner();
    // Before the source is read: the write is not made if any instance invalidates the key or
    // a tag from here on.
    let shared_since = match shared_since {
        Some(shared_since) => shared_since,
        None => read_shared_since(cache).await,
    };
    let loading = Load::begin(cache);
    let result = loading.run(load).await;
    let (value, lifetime) = match S::classify(&result) {
        Outcome::Value(value) => (
            value,
            policy.lifetime(site, S::success(value), inner.jitter()),
        ),
        Outcome::Negative(value) => (value, site.negative_lifetime()),
        Outcome::Failure => {
            loading.failed();
            tracing::debug!(
                cache = inner.counters().name(),
                site = site.name,
                key,
                "loader failed"
            );
            return (result, None);
        }
    };
    let shared = store_value(
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

/// Stores `value` under `key` for `lifetime` (`None`: not stored) through [`Cache::store`],
/// unless `key` or a tag was invalidated after `since`; returns the value as waiters get it.
pub(crate) async fn store_value<V: Cacheable>(
    cache: &Cache,
    key: &str,
    tags: &[Box<str>],
    value: &V,
    lifetime: Option<Lifetime>,
    since: u64,
    write: SharedWrite,
) -> Value {
    let shared: Value = Arc::new(value.clone());
    if let Some(lifetime) = lifetime {
        let now = clock::now();
        let deadlines = lifetime.deadlines(now, cache.inner().jitter());
        let encoded = cache
            .remote()
            .and_then(|_| codec::encode(value, WallDeadlines::from_local(&deadlines, now), tags));
        let weight = weigh(key, tags, value);
        let entry = Entry::new(Arc::clone(&shared), deadlines, tags.into(), weight);
        cache.store(key, entry, since, encoded, write).await;
    }
    shared
}

/// Estimated bytes an entry holds: bookkeeping, key, tags, the value inline, and its heap
/// data (measured as its MessagePack length, written to a counter, not a buffer).
fn weigh<V: serde::Serialize>(key: &str, tags: &[Box<str>], value: &V) -> u32 {
    struct Counted(usize);
    impl io::Write for Counted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut heap = Counted(0);
    let _ = rmp_serde::encode::write(&mut heap, value);
    let bytes = ENTRY_OVERHEAD
        + key.len()
        // Each tag: its text, its slot and its allocation.
        + tags.iter().map(|t| t.len() + 32).sum::<usize>()
        // The value's `Arc`: its counts and its allocation.
        + 32
        + std::mem::size_of::<V>()
        + heap.0;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
