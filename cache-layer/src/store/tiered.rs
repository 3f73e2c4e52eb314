//! The shared tier and what may be kept in memory in front of it. Every invalidation is
//! published on the prefix's `invalidate` channel; each instance's subscriber drops its memory
//! copies.
//!
//! Memory is used in front of Redis only while this instance cannot have missed an
//! invalidation: it is subscribed, its subscription answered a heartbeat recently, its breaker
//! is closed and has not opened since memory was last emptied, and none of its own
//! invalidations waits for a replay. Memory is emptied on every (re)subscription, when the
//! subscription ends or goes silent, and when Redis answers again after the breaker opened.
//! A background task probes Redis while the breaker is open or invalidations wait, so both
//! end without waiting for a caller.
//!
//! Memoised values use memory as L1 only in the tiered set-up; HTTP responses and gRPC calls
//! (which `CacheLayer` keeps in memory, responses in Redis too) use it with every shared
//! set-up, so these tasks always run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;

use super::redis::{RedisStore, EVERYTHING};
use crate::cache::Inner;

/// How often the subscriber checks that its connection still answers (a PING on it).
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);

/// How often the background task probes Redis while the breaker is open or invalidations
/// wait for a replay.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The shared tier of a cache, and whether L1 may be used in front of it.
pub(crate) struct Remote {
    pub(crate) store: RedisStore,
    tiered: bool,
    subscribed: AtomicBool,
    tasks_started: AtomicBool,
}

impl Remote {
    pub(crate) fn new(store: RedisStore, tiered: bool) -> Self {
        Remote {
            store,
            tiered,
            subscribed: AtomicBool::new(false),
            tasks_started: AtomicBool::new(false),
        }
    }

    /// Whether memoised values may use memory as L1 now.
    #[inline]
    pub(crate) fn l1_usable(&self) -> bool {
        self.tiered && self.hears_invalidations()
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
        runtime.spawn(subscribe(inner.clone()));
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
        let Some(remote) = inner.remote() else { return };
        let store = &remote.store;
        if store.needs_probe() && !store.probe().await {
            continue;
        }
        let opened = store.openings();
        if store.needs_probe() || !store.suspect() {
            continue;
        }
        inner.invalidate_everything_local();
        store.recovered_up_to(opened);
        tracing::info!(
            cache = inner.counters().name(),
            "Redis answers again: memory emptied, in use again"
        );
    }
}

/// Where the subscriber connects, and how long it waits.
struct Target {
    client: redis::Client,
    channel: String,
    connect_timeout: Duration,
    ping_timeout: Duration,
}

impl Target {
    fn of(weak: &Weak<Inner>, attempt: usize) -> Option<Target> {
        let inner = weak.upgrade()?;
        let store = &inner.remote()?.store;
        Some(Target {
            client: store.subscribe_client(attempt).clone(),
            channel: store.channel(),
            connect_timeout: store.connect_timeout(),
            ping_timeout: store.connect_timeout() + store.op_timeout(),
        })
    }

    async fn connect(&self) -> Option<PubSub> {
        let subscribed = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        tokio::time::timeout(self.connect_timeout, subscribed)
            .await
            .ok()?
            .ok()
    }
}

/// Keeps a subscription to the invalidation channel, reconnecting with a short back-off.
async fn subscribe(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 0.. {
        let Some(target) = Target::of(&weak, attempt) else {
            return;
        };
        if let Some(pubsub) = target.connect().await {
            backoff = Duration::from_millis(50);
            if !listen(&weak, pubsub, &target).await {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Serves one subscription until it ends or stops answering the heartbeat; `false` when the
/// cache is gone.
async fn listen(weak: &Weak<Inner>, pubsub: PubSub, target: &Target) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    // Whatever memory holds may have missed invalidations while we were not listening.
    inner.invalidate_everything_local();
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
                deliver(&inner, message.get_payload_bytes());
            }
            Ok(None) => break,
            Err(_heartbeat) => {
                if weak.strong_count() == 0 {
                    return false;
                }
                let pong = tokio::time::timeout(target.ping_timeout, sink.ping::<redis::Value>());
                if !matches!(pong.await, Ok(Ok(_))) {
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
    inner.invalidate_everything_local();
    tracing::warn!(
        cache = inner.counters().name(),
        "lost the invalidation subscription: memory bypassed until resubscribed"
    );
    true
}

fn set_subscribed(inner: &Inner, subscribed: bool) {
    if let Some(remote) = inner.remote() {
        remote.subscribed.store(subscribed, Ordering::Release);
    }
}

/// Applies one published invalidation.
fn deliver(inner: &Inner, payload: &[u8]) {
    if payload == EVERYTHING {
        inner.invalidate_everything_local();
    } else if let Ok(name) = std::str::from_utf8(payload) {
        inner.invalidate_local(name);
    }
}
