//! The shared tier and what may be kept in memory in front of it. Every invalidation is
//! published on the prefix's `invalidate` channel; each instance's subscriber drops its memory
//! copies (or, for a soft purge, marks them stale). The end of a load under the distributed
//! lock is published there too, and wakes this instance's callers waiting for it.
//!
//! Memory stands in front of Redis at all times, so a Redis outage does not send every call to
//! the source. What it stores is kept for the entry's whole lifetime only while this instance
//! cannot have missed an invalidation: it is subscribed, its subscription answered a heartbeat
//! recently, its breaker is closed and has not opened since memory was last emptied, and none
//! of its own invalidations waits for a replay. Otherwise every window of an entry stored
//! (fresh, stale, stale-if-error, grace) closes within the outage bound
//! (`CacheBuilder::outage_ttl`) of its store, decided by the one gate into memory
//! (`Inner::admit`); a bound of zero stores nothing in memory meanwhile.
//!
//! So that nothing stored before is served during an outage, memory is emptied each time
//! this instance stops hearing invalidations (the subscription ends or goes silent, the
//! breaker opens, the subscriber task ends with its runtime), after the state that sends
//! stores under the bound is set. It is emptied again when invalidations can be heard again
//! (every (re)subscription, and when Redis answers again after the breaker opened): an
//! invalidation missed meanwhile is served at most the bound after the outage began, or
//! until detection plus recovery. Loads that began before an emptying are not kept in memory
//! (`InvalidationLog::record_everything`), whichever state they end in. Invalidations waiting
//! for a replay empty nothing: this instance applied them in memory already, and hears the
//! others' while subscribed (a subscription that ends empties memory itself); a read of Redis
//! replays them first, so it cannot copy back what they removed.
//!
//! A background task probes Redis while the breaker is open or invalidations wait, so both
//! end without waiting for a caller.
//!
//! Memoised values use memory as L1 only in the tiered set-up; HTTP responses and gRPC calls
//! (which `CacheLayer` keeps in memory, responses in Redis too) use it with every shared
//! set-up, so these tasks always run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSub, PubSubSink};
use tokio::sync::watch;

use super::redis::{bounded, RedisStore, Subscriber};
use crate::cache::Inner;

mod delivery;

/// How often the subscriber checks that its connection still answers (a PING on it).
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);

/// How often the background task probes Redis while the breaker is open or invalidations
/// wait for a replay.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The shared tier of a cache, and how long memory in front of it keeps what it stores.
pub(crate) struct SharedTier {
    pub(crate) store: RedisStore,
    tiered: bool,
    subscribed: AtomicBool,
    tasks_started: AtomicBool,
    /// How long memory keeps what it stores while this instance cannot hear invalidations.
    outage_ttl: Duration,
    /// This instance's callers waiting for another instance's load (see [`LoadWaiters`]).
    load_waiters: LoadWaiters,
}

impl SharedTier {
    /// The shared tier of the cache `inner` will point to: memory is emptied when its breaker
    /// opens (see the module docs).
    pub(crate) fn new(
        mut store: RedisStore,
        tiered: bool,
        outage_ttl: Duration,
        inner: Weak<Inner>,
    ) -> Self {
        store.when_breaker_opens(Box::new(move || {
            if let Some(inner) = inner.upgrade() {
                outage_began(&inner);
            }
        }));
        SharedTier {
            store,
            tiered,
            subscribed: AtomicBool::new(false),
            tasks_started: AtomicBool::new(false),
            outage_ttl,
            load_waiters: LoadWaiters::default(),
        }
    }

    /// Until dropped, tells when a load of `key` under another instance's distributed lock
    /// ends (see [`LoadEnd::heard_within`]).
    pub(crate) fn watch_load(&self, key: &str) -> LoadEnd<'_> {
        self.load_waiters.watch(key)
    }

    /// Whether memoised values use memory as L1 (the tiered set-up).
    #[inline]
    pub(crate) fn tiered(&self) -> bool {
        self.tiered
    }

    /// How long an entry stored in memory now may stay there: `None` (its own lifetime) while
    /// this instance hears every invalidation, else the outage bound.
    #[inline]
    pub(crate) fn memory_bound(&self) -> Option<Duration> {
        (!self.hears_invalidations()).then_some(self.outage_ttl)
    }

    /// Whether this instance can hear the other instances' invalidations now, and has not
    /// missed any since memory was last emptied.
    #[inline]
    pub(crate) fn hears_invalidations(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && !self.store.suspect()
    }

    /// Starts the invalidation subscriber and the recovery task once, on the current Tokio
    /// runtime.
    pub(crate) fn ensure_subscriber(&self, inner: Weak<Inner>) {
        if self.tasks_started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.tasks_started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(subscribe(SubscriberEnd(inner.clone())));
        runtime.spawn(recover(inner));
    }
}

/// While the breaker is open or invalidations wait, probes Redis (which replays them); once
/// Redis answers after the breaker opened, empties memory, which may have missed
/// invalidations meanwhile.
async fn recover(weak: Weak<Inner>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(remote) = inner.shared_tier() else {
            return;
        };
        let store = &remote.store;
        if store.needs_probe() && !store.probe().await {
            continue;
        }
        let opened = store.openings();
        if store.needs_probe() || !store.suspect() {
            continue;
        }
        outage_ended(&inner);
        store.recovered_up_to(opened);
        tracing::info!(
            cache = inner.counters().name(),
            "Redis answers again: memory emptied, entries kept for their whole lifetime again"
        );
    }
}

/// Where the subscriber connects, and how long it waits.
struct Target {
    subscriber: Subscriber,
    channel: String,
    connect_timeout: Duration,
    ping_timeout: Duration,
}

impl Target {
    fn of(weak: &Weak<Inner>, attempt: usize) -> Option<Target> {
        let inner = weak.upgrade()?;
        let store = &inner.shared_tier()?.store;
        Some(Target {
            subscriber: store.subscriber(attempt),
            channel: store.channel(),
            connect_timeout: store.connect_timeout(),
            ping_timeout: store.connect_timeout() + store.op_timeout(),
        })
    }

    /// A subscription, and the client it was made with.
    async fn connect(&self) -> Option<(PubSub, redis::Client)> {
        let subscribed = async {
            let client = self.subscriber.client().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>((pubsub, client))
        };
        tokio::time::timeout(self.connect_timeout, subscribed)
            .await
            .ok()?
            .ok()
    }
}

/// Keeps a subscription to the invalidation channel, reconnecting with a short back-off.
/// `task` is made before the task is spawned, so that it ends the task's state even when the
/// task is dropped before it first runs.
async fn subscribe(task: SubscriberEnd) {
    let weak = &task.0;
    let mut backoff = Duration::from_millis(50);
    for attempt in 0.. {
        let Some(target) = Target::of(weak, attempt) else {
            return;
        };
        if let Some((pubsub, client)) = target.connect().await {
            backoff = Duration::from_millis(50);
            if !listen(weak, pubsub, &client, &target).await {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Serves one subscription (made with `client`) until it ends, stops answering the heartbeat
/// or, on Sentinel, no longer reaches the master; `false` when the cache is gone.
async fn listen(
    weak: &Weak<Inner>,
    pubsub: PubSub,
    client: &redis::Client,
    target: &Target,
) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    // Whatever memory holds may have missed invalidations while we were not listening.
    outage_ended(&inner);
    set_subscribed(&inner, true);
    tracing::debug!(
        cache = inner.counters().name(),
        "subscribed to invalidations"
    );
    drop(inner);
    let (mut sink, mut messages) = pubsub.split();
    let mut next_ping = tokio::time::Instant::now() + HEARTBEAT;
    loop {
        match tokio::time::timeout_at(next_ping, messages.next()).await {
            Ok(Some(message)) => {
                let Some(inner) = weak.upgrade() else {
                    return false;
                };
                delivery::deliver_off_executor(inner, message.get_payload_bytes()).await;
            }
            Ok(None) => break,
            Err(_heartbeat) => {
                if weak.strong_count() == 0 {
                    return false;
                }
                if !heartbeat(&mut sink, client, target).await {
                    break;
                }
                next_ping = tokio::time::Instant::now() + HEARTBEAT;
            }
        }
    }
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    set_subscribed(&inner, false);
    outage_began(&inner);
    tracing::warn!(
        cache = inner.counters().name(),
        outage_ttl = ?inner.shared_tier().map(|remote| remote.outage_ttl),
        "lost the invalidation subscription: memory keeps entries at most the outage bound \
         (outage_ttl) until resubscribed"
    );
    true
}

/// Whether the subscription (made with `client`) still answers a PING and, on Sentinel,
/// still reaches the master the Sentinels name.
async fn heartbeat(sink: &mut PubSubSink, client: &redis::Client, target: &Target) -> bool {
    let pong = tokio::time::timeout(target.ping_timeout, sink.ping::<redis::Value>());
    if !matches!(pong.await, Ok(Ok(_))) {
        return false;
    }
    let follows = target.subscriber.follows(client);
    // No answer from a Sentinel in time is no news, not a failover.
    tokio::time::timeout(target.ping_timeout, follows)
        .await
        .unwrap_or(true)
}

/// This instance stopped hearing invalidations, and the state that says so (not subscribed,
/// breaker open) is set: memory is emptied, so that it holds only what is stored under the
/// outage bound from now on. Every time, not once per outage: a breaker's hook runs after its
/// opening is counted, so recovery may have ended that outage already, and whatever this
/// call finds, memory may hold what was stored for its whole lifetime.
fn outage_began(inner: &Inner) {
    let Some(remote) = inner.shared_tier() else {
        return;
    };
    inner.invalidate_everything_local();
    tracing::info!(
        cache = inner.counters().name(),
        outage_ttl = ?remote.outage_ttl,
        "cannot hear invalidations: memory emptied, entries now kept at most the outage bound"
    );
}

/// This instance is about to hear every invalidation again: memory, which may have missed
/// some, is emptied (and will be again when the next outage begins).
fn outage_ended(inner: &Inner) {
    inner.invalidate_everything_local();
}

/// Held by the subscriber task: when the task ends while its cache lives on (its runtime shut
/// down and dropped it, perhaps before it first ran, or it panicked), nothing hears
/// invalidations any more. Memory then is
/// emptied and stores under the outage bound, and the next use of the shared tier starts the
/// tasks again (on the runtime it runs on).
struct SubscriberEnd(Weak<Inner>);

impl Drop for SubscriberEnd {
    fn drop(&mut self) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        set_subscribed(&inner, false);
        outage_began(&inner);
        if let Some(remote) = inner.shared_tier() {
            remote.tasks_started.store(false, Ordering::Release);
        }
    }
}

fn set_subscribed(inner: &Inner, subscribed: bool) {
    if let Some(remote) = inner.shared_tier() {
        remote.subscribed.store(subscribed, Ordering::Release);
    }
}

/// This instance's callers waiting for a load under another instance's distributed lock, by
/// the key's bounded name: the holder publishes [`LOAD_ENDED`] and the name when it releases
/// the lock, and the subscriber wakes the key's waiters, so that they read the value once
/// rather than polling for it.
#[derive(Default)]
struct LoadWaiters(Mutex<HashMap<Box<str>, watch::Sender<()>>>);

impl LoadWaiters {
    fn watch(&self, key: &str) -> LoadEnd<'_> {
        let name: Box<str> = bounded(key).into();
        let mut waiting = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ended = waiting
            .entry(name.clone())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        LoadEnd {
            waiters: self,
            name,
            ended: Some(ended),
        }
    }

    /// Wakes the waiters of `name` (a bounded name, from the channel).
    fn ended(&self, name: &str) {
        let waiting = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ended) = waiting.get(name) {
            ended.send_replace(());
        }
    }
}

/// A caller's watch on one key's load under another instance's lock; see
/// [`SharedTier::watch_load`].
pub(crate) struct LoadEnd<'a> {
    waiters: &'a LoadWaiters,
    name: Box<str>,
    ended: Option<watch::Receiver<()>>,
}

impl LoadEnd<'_> {
    /// Whether the end of the load was heard since the watch began (or since the last time
    /// this returned `true`), waiting at most `timeout`. Only heard while this instance is
    /// subscribed: a caller also checks the lock itself now and then.
    pub(crate) async fn heard_within(&mut self, timeout: Duration) -> bool {
        let Some(ended) = &mut self.ended else {
            return false;
        };
        matches!(
            tokio::time::timeout(timeout, ended.changed()).await,
            Ok(Ok(()))
        )
    }
}

impl Drop for LoadEnd<'_> {
    fn drop(&mut self) {
        drop(self.ended.take());
        let mut waiting = self
            .waiters
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if waiting
            .get(&self.name)
            .is_some_and(|ended| ended.receiver_count() == 0)
        {
            waiting.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::engine::clock;
    use crate::engine::entry::{Deadlines, Entry};
    use crate::{Cache, Key, LoadOptions};

    /// A tiered cache whose Redis never answers (nothing listens on port 1): it never hears
    /// invalidations.
    fn cut_off(outage_ttl: Duration) -> Cache {
        Cache::builder()
            .tiered("redis://127.0.0.1:1/")
            .redis_timeouts(Duration::from_millis(20), Duration::from_millis(20))
            .outage_ttl(outage_ttl)
            .build()
            .unwrap()
    }

    async fn load(cache: &Cache) -> u32 {
        let options = LoadOptions::new(Duration::from_secs(3600))
            .stale(Duration::from_secs(3600))
            .stale_if_error(Duration::from_secs(3600));
        let key = Key::new("k");
        cache
            .get_or_load(&key, &options, || async { Ok::<_, std::io::Error>(7) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_cut_off_instance_keeps_values_at_most_the_outage_bound() {
        let cache = cut_off(Duration::from_millis(50));
        load(&cache).await;
        load(&cache).await;
        assert_eq!(cache.stats().loads, 1, "kept in memory");
        tokio::time::sleep(Duration::from_millis(80)).await;
        load(&cache).await;
        assert_eq!(
            cache.stats().loads,
            2,
            "its hour-long windows were cut to the bound"
        );
    }

    #[tokio::test]
    async fn a_zero_bound_keeps_nothing_and_the_longest_saturates() {
        let zero = cut_off(Duration::ZERO);
        load(&zero).await;
        load(&zero).await;
        assert_eq!(zero.stats().loads, 2);
        let longest = cut_off(Duration::MAX);
        load(&longest).await;
        load(&longest).await;
        assert_eq!(longest.stats().loads, 1);
    }

    /// Every transition into the degraded state empties memory, whatever happened before: a
    /// breaker's hook runs after its opening is counted, so recovery may end that outage
    /// first; the late hook must not leave the next outage (here, the subscription ending)
    /// with what was stored meanwhile, for its whole lifetime, still in memory.
    #[test]
    fn every_outage_that_begins_empties_memory() {
        let cache = Cache::builder()
            .tiered("redis://127.0.0.1:1/")
            .build()
            .unwrap();
        let inner = cache.inner();
        // Subscribed, as `listen` leaves it (no runtime here, so no task runs).
        super::outage_ended(inner);
        super::set_subscribed(inner, true);
        // The hook of a breaker opening that recovery has dealt with already.
        super::outage_began(inner);
        let hour = Duration::from_secs(3600);
        let deadlines = Deadlines::from_windows(clock::now(), hour, hour, hour);
        let entry = Entry::new(Arc::new(1u8), deadlines, Box::new([]), 1);
        assert!(cache.store_in_memory("k", entry, inner.log().current()));
        assert!(inner.memory().get("k").is_some(), "stored for its lifetime");
        super::set_subscribed(inner, false);
        super::outage_began(inner);
        assert!(
            inner.memory().get("k").is_none(),
            "what was stored while healthy is not served during the outage"
        );
    }

    /// A subscriber task dropped before it first ran (its runtime ended first: a
    /// current-thread runtime whose `block_on` returned at once) is started again by the next
    /// use of the shared tier.
    #[test]
    fn a_subscriber_dropped_before_it_ran_is_started_again() {
        let cache = cut_off(Duration::from_secs(1));
        let remote = cache.inner().shared_tier().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { cache.listen_for_invalidations() });
        assert!(remote.tasks_started.load(Ordering::Acquire));
        drop(runtime);
        assert!(
            !remote.tasks_started.load(Ordering::Acquire),
            "no task runs: the next use starts them"
        );
    }

    /// The holder's message that a load ended (see `LOAD_ENDED`) wakes that key's waiters
    /// only; a watch dropped leaves nothing behind.
    #[tokio::test(start_paused = true)]
    async fn a_load_ended_message_wakes_the_waiters_of_its_key() {
        let cache = cut_off(Duration::from_secs(1));
        let remote = cache.inner().shared_tier().unwrap();
        let mut slow = remote.watch_load("slow");
        let mut other = remote.watch_load("other");
        let hour = Duration::from_secs(3600);
        super::delivery::deliver(cache.inner(), b"\xfcslow");
        assert!(slow.heard_within(hour).await);
        assert!(
            !other.heard_within(hour).await,
            "another key's waiter sleeps on"
        );
        assert!(!slow.heard_within(hour).await, "heard once");
        let long = "x".repeat(300);
        let mut hashed = remote.watch_load(&long);
        let mut message = crate::store::redis::LOAD_ENDED.to_vec();
        message.extend_from_slice(super::bounded(&long).as_bytes());
        super::delivery::deliver(cache.inner(), &message);
        assert!(
            hashed.heard_within(hour).await,
            "named as the unlock names it"
        );
        drop((slow, other, hashed));
        let waiting = remote.load_waiters.0.lock().unwrap();
        assert!(waiting.is_empty());
    }

    #[tokio::test]
    async fn memoised_values_on_redis_alone_still_have_no_memory_tier() {
        let cache = Cache::builder()
            .redis("redis://127.0.0.1:1/")
            .redis_timeouts(Duration::from_millis(20), Duration::from_millis(20))
            .build()
            .unwrap();
        load(&cache).await;
        load(&cache).await;
        assert_eq!(cache.stats().loads, 2);
        assert_eq!(cache.entry_count(), 0);
    }
}
