//! The one load pipeline under every front-end (`#[cached]` memo, the HTTP layer, gRPC):
//! look up → join or lead a flight → serve stale while one refresh runs → stale-if-error →
//! store unless invalidated since the load began.
//!
//! A front-end keeps what is its own: how it finds a stored value for a request, serves it,
//! and turns a loaded value into an entry. The steps' rules live here once, so a change to one
//! reaches memo, HTTP and gRPC at the same time:
//!
//! - [`join`]: single-flight. A waiter serves what its leader hands it (the loaded value, or the
//!   stale value the leader fell back to). After a leader that left without a value this
//!   caller can use (cancelled, panicked, failed, a value of another type or for another
//!   variant) the waiter takes a fresh value stored meanwhile, else joins again (and perhaps
//!   leads). After the cache's `max_wait` it loads alone, without leading.
//! - [`refresh`]: stale-while-revalidate. The caller serves the stale value; one task per key
//!   (the entry's refresh claim, and the key's flight in this process) loads in the
//!   background, as the flight's leader.
//! - [`stale_if_error`]: a failed load serves the stale value, and its leader hands that value
//!   to the waiters instead of sending each of them to the failing source.
//! - [`Load`]: one counted, timed call to the source; the invalidation-log position it began at
//!   is what the write path (`cache::write`) checks before keeping its result.
//! - [`Stored`] and [`found`]: what a stored value is to the pipeline: an entry holding it is
//!   weighed by what it holds ([`entry`]), and is fresh, stale (with the claim to refresh it), a
//!   stale-if-error fallback, expired, or of another type.
//! - [`within`] (from `timeout.rs`): a load raced against its soft and hard timeouts, on a
//!   task of its own so that it finishes and stores after its caller was answered.
//! - Around the shared tier: [`read_shared_since`] before a load, [`adopt_shared`] for what
//!   it holds, and [`lock`] (from `lock.rs`), single-flight across instances.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tower::ServiceExt;
use tower_service::Service;

use super::clock;
use super::entry::{Age, Deadlines, Entry, RefreshClaim, Value};
use super::flight::{Join, Waited, Waiter};
use super::sites::SiteCounters;
use super::stats::Counter;
use super::stats::SiteCounter;
use super::timed_out::TimeoutError;
use super::trace;
use crate::cache::{Cache, EntryKind};
use crate::store::{SharedSince, ENTRY_OVERHEAD};
use tracing::{Instrument, Span};

pub(crate) use super::flight::Leader;
pub(crate) use super::lock::{lock, Locked};
pub(crate) use super::timeout::{within, Timeouts, Within};

/// A value a front-end stores whole (a response, a gRPC call, the records beside them);
/// memoised values are weighed by their encoded size instead (`memo/load.rs`, `weigh`).
pub(crate) trait Stored: Any + Send + Sync {
    /// Bytes the value holds besides its entry's bookkeeping and key, for the memory budget.
    fn weight(&self) -> usize;
}

/// An entry holding `value`, weighed as the store's cost per entry, `key` and what the value
/// holds.
pub(crate) fn entry<T: Stored>(
    key: &str,
    value: Arc<T>,
    deadlines: Deadlines,
    tags: Box<[Box<str>]>,
) -> Entry {
    let weight = u32::try_from(ENTRY_OVERHEAD + key.len() + value.weight()).unwrap_or(u32::MAX);
    Entry::new(value, deadlines, tags, weight)
}

/// What a stored entry is, at a given instant, to a caller that wants a `T`.
pub(crate) enum Found<'e, T> {
    /// Served.
    Fresh(&'e T),
    /// Served while one background refresh runs: the claim to run it goes to the first caller
    /// that sees the entry stale.
    Stale(&'e T, Option<RefreshClaim>),
    /// Served only if a load fails (stale-if-error): the caller keeps the entry for that.
    Fallback,
    /// Past its last window: a miss.
    Expired,
    /// A value of another type under the key (two functions sharing a key template): a miss,
    /// overwritten by the next store.
    OtherType,
}

/// What `entry` is at `now` to a caller that wants a `T`; see [`Found`].
#[inline]
pub(crate) fn found<T: Any>(entry: &Arc<Entry>, now: clock::Instant) -> Found<'_, T> {
    let Some(value) = entry.value.downcast_ref::<T>() else {
        return Found::OtherType;
    };
    match entry.age(now) {
        Age::Fresh => Found::Fresh(value),
        Age::Stale => Found::Stale(value, entry.claim_refresh()),
        Age::Fallback => Found::Fallback,
        Age::Expired => Found::Expired,
    }
}

/// A front-end's side of [`join`]: what it does with what a flight yields.
pub(crate) trait Waiting {
    /// What the front-end answers its caller with.
    type Served;

    /// The key of the flight to join (it may change between rounds: an HTTP variant).
    fn key(&self) -> &str;

    /// Serves the value a leader handed (`fallback`: the stale value its failed load fell back
    /// to), or `None` when that value is not for this caller (another type, another variant).
    fn accept(&mut self, value: Value, fallback: bool) -> Option<Self::Served>;

    /// A fresh value stored since this caller looked, by a load that finished meanwhile.
    fn fresh(&mut self) -> Option<Self::Served>;

    /// The answer when the leader's load passed its hard timeout with no stale value to serve
    /// (`error`): the front-end's timeout answer (memo: the `TimeoutError`, where the return
    /// type carries one; HTTP: `504` or a stale response). `None`: this caller loads alone.
    fn timed_out(&mut self, error: TimeoutError) -> Option<Self::Served> {
        let _ = error;
        None
    }

    /// Looks again after a leader left without a usable value: `false` when this caller should
    /// load alone instead of joining again (the key turned out not to be cacheable).
    fn rejoin(&mut self) -> bool {
        true
    }
}

/// How [`join`] ended.
pub(crate) enum Joined<T> {
    /// Answered from a flight or from what one stored.
    Served(T),
    /// This caller loads, and hands its value to the waiters through the [`Leader`].
    Lead(Leader),
    /// This caller loads without leading (it waited `max_wait`, or the key is not cacheable).
    Alone,
}

/// Joins the flight for `front`'s key, or leads it; see the [module docs](self).
pub(crate) async fn join<W: Waiting>(
    cache: &Cache,
    tags: &[Box<str>],
    front: &mut W,
) -> Joined<W::Served> {
    loop {
        let waiter = match lead_or_wait(cache, tags, front) {
            Ok(joined) => return joined,
            Err(waiter) => waiter,
        };
        let waited = waiter.wait(cache.inner().max_wait()).await;
        if let Some(joined) = after_waiting(cache, front, waited) {
            return joined;
        }
    }
}

/// [`join`] for a caller that cannot await (a sync `#[cached]` fn): it blocks its thread
/// while it waits. Needs no runtime.
pub(crate) fn join_blocking<W: Waiting>(
    cache: &Cache,
    tags: &[Box<str>],
    front: &mut W,
) -> Joined<W::Served> {
    loop {
        let waiter = match lead_or_wait(cache, tags, front) {
            Ok(joined) => return joined,
            Err(waiter) => waiter,
        };
        let waited = waiter.wait_blocking(cache.inner().max_wait());
        if let Some(joined) = after_waiting(cache, front, waited) {
            return joined;
        }
    }
}

/// One round of [`join`]: leads the flight (or serves what a load that finished meanwhile
/// stored), or `Err` with the waiter for the flight in progress.
fn lead_or_wait<W: Waiting>(
    cache: &Cache,
    tags: &[Box<str>],
    front: &mut W,
) -> Result<Joined<W::Served>, Waiter> {
    let inner = cache.inner();
    match inner.flights().join(front.key(), tags) {
        // A load that finished between the caller's look-up and now stored what it needs.
        Join::Lead(leader) => Ok(match front.fresh() {
            Some(served) => Joined::Served(served),
            None => Joined::Lead(leader),
        }),
        Join::Wait(waiter) => {
            inner.counters().add(Counter::Coalesced);
            Err(waiter)
        }
    }
}

/// What a round of [`join`] ends in once its wait did; `None`: join again.
fn after_waiting<W: Waiting>(
    cache: &Cache,
    front: &mut W,
    waited: Waited,
) -> Option<Joined<W::Served>> {
    let inner = cache.inner();
    let handed = match waited {
        Waited::Done(value) => front.accept(value, false),
        Waited::Fallback(value) => front.accept(value, true),
        Waited::HardTimeout(error) => {
            // A flight that timed out answers every joiner so until its load ends: joining
            // it again would answer so again.
            return Some(match front.timed_out(error) {
                Some(served) => Joined::Served(served),
                None => Joined::Alone,
            });
        }
        Waited::Retry => None,
        Waited::TimedOut => {
            tracing::warn!(
                cache = inner.counters().name(),
                key = front.key(),
                "waited too long for a concurrent load; loading independently"
            );
            return Some(Joined::Alone);
        }
    };
    if let Some(served) = handed.or_else(|| front.fresh()) {
        return Some(Joined::Served(served));
    }
    (!front.rejoin()).then_some(Joined::Alone)
}

/// What a background refresh runs with: it leads the flight of `key`, inside `span`.
pub(crate) struct Refreshing {
    pub(crate) cache: Cache,
    pub(crate) key: String,
    pub(crate) tags: Box<[Box<str>]>,
    pub(crate) leader: Leader,
    pub(crate) span: Span,
}

/// Stale-while-revalidate: runs `task` on the Tokio runtime as the leader of `key`'s flight,
/// holding `claim` until it ends; the caller serves the stale value without waiting. Nothing
/// runs when a load of `key` is already in flight in this process (also when entries come
/// from a shared store, where each read yields its own copy of the entry and its claim), or
/// outside a runtime (a later miss refreshes the entry then). The refresh is traced in `span`
/// (`cache.refresh`): the outcome `task` returns and its time, or `coalesced` when nothing ran.
pub(crate) fn refresh<T, F>(
    cache: &Cache,
    key: String,
    tags: Box<[Box<str>]>,
    claim: RefreshClaim,
    span: Span,
    task: T,
) where
    T: FnOnce(Refreshing) -> F + Send + 'static,
    F: Future<Output = trace::Outcome> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let cache = cache.clone();
    runtime.spawn(async move {
        let joined = cache.inner().flights().join(&key, &tags);
        let Join::Lead(leader) = joined else {
            trace::outcome(&span, trace::Outcome::Coalesced, None);
            return;
        };
        let started = Instant::now();
        let refreshing = Refreshing {
            cache,
            key,
            tags,
            leader,
            span: span.clone(),
        };
        let outcome = task(refreshing).instrument(span.clone()).await;
        trace::load_time(&span, started.elapsed());
        trace::outcome(&span, outcome, None);
        drop(claim);
    });
}

/// Stale-if-error: the load of `key` failed and `stale` stands in. Counted and logged; the
/// leader (if this caller leads) hands `stale` to its waiters as a fallback.
pub(crate) fn stale_if_error(cache: &Cache, key: &str, stale: Value, leader: Option<Leader>) {
    let inner = cache.inner();
    inner.counters().add(Counter::StaleIfError);
    tracing::warn!(
        cache = inner.counters().name(),
        key,
        "load failed; serving the stale value (stale-if-error)"
    );
    if let Some(leader) = leader {
        leader.fall_back(stale);
    }
}

/// One load from the source (a loader, an inner service): counted and timed, and remembering
/// where the invalidation log stood when it began: its result is stored only if neither its
/// key nor a tag was invalidated since ([`Load::since`]).
pub(crate) struct Load<'a> {
    cache: &'a Cache,
    site: Arc<SiteCounters>,
    since: u64,
}

impl<'a> Load<'a> {
    /// Begins a load for `site` (counted).
    pub(crate) fn begin(cache: &'a Cache, site: Arc<SiteCounters>) -> Self {
        let inner = cache.inner();
        inner.counters().count(&site, SiteCounter::Load);
        Load {
            cache,
            site,
            since: inner.log().current(),
        }
    }

    /// The invalidation-log position the load began at, for [`Cache::store`].
    pub(crate) fn since(&self) -> u64 {
        self.since
    }

    /// Calls `source` on this thread, timed as the load's latency (a sync `#[cached]` fn).
    pub(crate) fn run_blocking<T>(&self, source: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let output = source();
        let cache = self.cache.inner().counters().name();
        self.site.record_load(cache, started.elapsed());
        output
    }

    /// Awaits `source`, timed as the load's latency.
    pub(crate) async fn run<F: Future>(&self, source: F) -> F::Output {
        let started = Instant::now();
        let output = source.await;
        let cache = self.cache.inner().counters().name();
        self.site.record_load(cache, started.elapsed());
        output
    }

    /// Calls `service` once it is ready; returns its answer and when the call was made (RFC
    /// 9111 `request_time`). Waiting for the service's capacity is neither load time nor part
    /// of the response's age.
    pub(crate) async fn call<S, R>(
        &self,
        service: S,
        request: R,
    ) -> (Result<S::Response, S::Error>, SystemTime)
    where
        S: Service<R>,
    {
        let mut ready = match service.ready_oneshot().await {
            Ok(ready) => ready,
            Err(error) => return (Err(error), SystemTime::now()),
        };
        let request_time = SystemTime::now();
        (self.run(ready.call(request)).await, request_time)
    }

    /// Counts the load of `key` as failed (with `status`, a failed response's), and tells the
    /// load error hook, if set.
    pub(crate) fn failed(&self, key: &str, status: Option<u16>) {
        let inner = self.cache.inner();
        inner.counters().count(&self.site, SiteCounter::LoadError);
        inner.hooks().load_failed(inner.counters(), key, status);
    }
}

/// Where the shared tier's invalidation history stands, for a load about to begin (one round
/// trip to Redis, on a miss only): the load's Redis write is not made if any instance
/// invalidates its key or a tag from here on.
pub(crate) async fn read_shared_since(cache: &Cache) -> SharedSince {
    match cache.shared_tier() {
        Some(shared) => shared.store.shared_since().await,
        None => SharedSince::Unchecked,
    }
}

/// Takes `entry` (of `kind`), read from the shared tier under `key` after the invalidation
/// log stood at `since`: copies it into memory through the write path (`Cache::write`: the
/// gate, which may cut its windows to the outage bound), unless `key` or a tag was
/// invalidated while it was being read (a read racing an invalidation must not leave a stale
/// copy in memory), and marks it stale when a soft purge was heard meanwhile (the bytes may
/// predate its Redis write). Memo values and HTTP responses alike; returns the entry to serve.
pub(crate) fn adopt_shared(
    cache: &Cache,
    kind: EntryKind,
    key: &str,
    entry: Entry,
    since: u64,
) -> Arc<Entry> {
    cache.write(kind, key, entry, since).settled()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A front-end that serves what it is handed, as a `u32`.
    struct Numbers(&'static str);

    impl Waiting for Numbers {
        type Served = (u32, bool);
        fn key(&self) -> &str {
            self.0
        }
        fn accept(&mut self, value: Value, fallback: bool) -> Option<(u32, bool)> {
            value.downcast_ref::<u32>().map(|n| (*n, fallback))
        }
        fn fresh(&mut self) -> Option<(u32, bool)> {
            None
        }
    }

    fn cache(max_wait: Duration) -> Cache {
        Cache::builder().max_wait(max_wait).build().unwrap()
    }

    #[tokio::test]
    async fn a_waiter_past_max_wait_loads_alone() {
        let cache = cache(Duration::from_millis(20));
        let Joined::Lead(_leader) = join(&cache, &[], &mut Numbers("k")).await else {
            panic!("the first caller leads")
        };
        assert!(matches!(
            join(&cache, &[], &mut Numbers("k")).await,
            Joined::Alone
        ));
        assert_eq!(cache.stats().coalesced, 1);
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_fallback_marked_as_such() {
        let cache = cache(Duration::from_secs(30));
        let Joined::Lead(leader) = join(&cache, &[], &mut Numbers("k")).await else {
            panic!("the first caller leads")
        };
        let waiting = {
            let cache = cache.clone();
            tokio::spawn(async move {
                match join(&cache, &[], &mut Numbers("k")).await {
                    Joined::Served(served) => Some(served),
                    _ => None,
                }
            })
        };
        while cache.stats().coalesced == 0 {
            tokio::task::yield_now().await;
        }
        stale_if_error(&cache, "k", Arc::new(7u32), Some(leader));
        assert_eq!(waiting.await.unwrap(), Some((7, true)));
        assert_eq!(cache.stats().stale_if_error, 1);
    }

    #[tokio::test]
    async fn a_value_of_another_type_sends_the_waiter_to_lead() {
        let cache = cache(Duration::from_secs(30));
        let Joined::Lead(leader) = join(&cache, &[], &mut Numbers("k")).await else {
            panic!("the first caller leads")
        };
        let waiting = {
            let cache = cache.clone();
            tokio::spawn(async move {
                matches!(join(&cache, &[], &mut Numbers("k")).await, Joined::Lead(_))
            })
        };
        while cache.stats().coalesced == 0 {
            tokio::task::yield_now().await;
        }
        leader.complete(Arc::new("not a number"));
        assert!(waiting.await.unwrap(), "the waiter leads the next load");
    }
}
