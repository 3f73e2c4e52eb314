//! The shared tier and what may be kept in memory in front of it. Every invalidation is
//! published on the prefix's `invalidate` channel; each instance's subscriber drops its memory
//! copies. An instance that is not subscribed (not yet, or connection lost) cannot hear
//! invalidations, so it neither reads nor writes memory until it has resubscribed, and it
//! empties memory on every (re)subscription.
//!
//! Memoised values use memory as L1 only in the tiered set-up; HTTP responses (which
//! `CacheLayer` keeps in memory) use it with every shared set-up, so the subscriber always
//! runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;

use super::redis::RedisStore;
use crate::cache::Inner;

/// The shared tier of a cache, and whether L1 may be used in front of it.
pub(crate) struct Remote {
    pub(crate) store: RedisStore,
    tiered: bool,
    subscribed: AtomicBool,
    subscriber_started: AtomicBool,
}

impl Remote {
    pub(crate) fn new(store: RedisStore, tiered: bool) -> Self {
        Remote {
            store,
            tiered,
            subscribed: AtomicBool::new(false),
            subscriber_started: AtomicBool::new(false),
        }
    }

    /// Whether memoised values may use memory as L1 now.
    #[inline]
    pub(crate) fn l1_usable(&self) -> bool {
        self.tiered && self.hears_invalidations()
    }

    /// Whether this instance can hear the other instances' invalidations now.
    #[inline]
    pub(crate) fn hears_invalidations(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && !self.store.is_down()
    }

    /// Starts the invalidation subscriber once, on the current Tokio runtime.
    pub(crate) fn ensure_subscriber(&self, inner: Weak<Inner>) {
        if self.subscriber_started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.subscriber_started.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(subscribe(inner));
    }
}

/// Keeps a subscription to the invalidation channel, reconnecting with a short back-off.
async fn subscribe(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 0.. {
        let Some((client, channel, connect_timeout)) = weak.upgrade().and_then(|inner| {
            let remote = inner.remote.as_ref()?;
            Some((
                remote.store.subscribe_client(attempt).clone(),
                remote.store.channel(),
                remote.store.connect_timeout(),
            ))
        }) else {
            return;
        };
        if let Ok(Ok(mut pubsub)) =
            tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await
        {
            if pubsub.subscribe(&channel).await.is_ok() {
                backoff = Duration::from_millis(50);
                let Some(inner) = weak.upgrade() else { return };
                // Whatever L1 holds may have missed invalidations while we were not listening.
                inner.memory.invalidate_all();
                if let Some(remote) = &inner.remote {
                    remote.subscribed.store(true, Ordering::Release);
                }
                tracing::debug!(cache = inner.counters.name(), "subscribed to invalidations");
                drop(inner);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    if let Ok(name) = std::str::from_utf8(message.get_payload_bytes()) {
                        inner.invalidate_local(name);
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                if let Some(remote) = &inner.remote {
                    remote.subscribed.store(false, Ordering::Release);
                }
                inner.memory.invalidate_all();
                tracing::warn!(
                    cache = inner.counters.name(),
                    "lost the invalidation subscription: L1 bypassed until resubscribed"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
