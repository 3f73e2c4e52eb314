//! The load lock across instances: cross-instance single-flight over the shared tier, for
//! memo's `lock = "..."` and HTTP's `shared_lock`. The holder loads and stores, then releases
//! the lock (published, so waiters in other instances read the value at once); a waiter reads
//! what the holder stored, or loads itself when the holder failed or Redis stops answering.

use std::future::Future;
use std::time::Duration;

use super::clock;
use super::random;
use super::stats::Counter;
use crate::cache::{detach, Cache};

/// The outcome of [`lock`].
pub(crate) enum Locked<T> {
    /// This caller holds the lock: it loads, then releases it.
    Held(HeldLock),
    /// No lock (no shared tier, Redis unavailable, or the holder left without a value): load
    /// anyway.
    Unlocked,
    /// Another instance loaded the value meanwhile.
    LoadedElsewhere(T),
}

/// Cross-instance single-flight: takes the distributed load lock of `key` for `ttl`. When
/// another instance holds it, waits until the holder releases it (it publishes that, see
/// `SharedTier::watch_load`; the lock is also checked now and then, in case the message is
/// lost) or Redis stops answering, then reads the value once with `read` (`None` when there is
/// none for this caller: then load at once, the holder failed); or waits at most `ttl` (a
/// crashed holder's lock expires by then).
pub(crate) async fn lock<T, F, Fut>(cache: &Cache, key: &str, ttl: Duration, read: F) -> Locked<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let Some(shared) = cache.shared_tier() else {
        return Locked::Unlocked;
    };
    let token = format!("{:016x}", random::u64());
    match shared.store.try_lock(key, &token, ttl).await {
        Some(true) => Locked::Held(HeldLock {
            cache: cache.clone(),
            key: key.to_owned(),
            token: Some(token),
        }),
        Some(false) => match wait_for_other_instance(cache, key, ttl, read).await {
            Some(value) => Locked::LoadedElsewhere(value),
            None => Locked::Unlocked,
        },
        // Redis unavailable: load without the lock (fail open).
        None => Locked::Unlocked,
    }
}

/// How often a caller waiting for another instance's load checks the lock itself (an
/// `EXISTS`, not a read of the value) while it hears the holder's message when the load ends,
/// and while it may not (not subscribed, or Redis suspect).
const LOCK_CHECK_HEARING: Duration = Duration::from_millis(250);
const LOCK_CHECK_DEAF: Duration = Duration::from_millis(20);

async fn wait_for_other_instance<T, F, Fut>(
    cache: &Cache,
    key: &str,
    lock: Duration,
    mut read: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let shared = cache.shared_tier()?;
    // Watched before the lock is checked: a release after the check is heard.
    let mut ended = shared.watch_load(key);
    let deadline = clock::after(clock::now(), lock);
    // A holder stores its value before it unlocks. A Redis that does not answer cannot tell:
    // load (fail open; single-flight still holds).
    while shared.store.lock_held(key).await == Some(true) {
        let left = deadline.saturating_duration_since(clock::now());
        if left.is_zero() {
            return None;
        }
        let check = match shared.hears_invalidations() {
            true => LOCK_CHECK_HEARING,
            false => LOCK_CHECK_DEAF,
        };
        if ended.heard_within(check.min(left)).await {
            break;
        }
    }
    let value = read().await?;
    cache.inner().counters().add(Counter::Coalesced);
    Some(value)
}

/// A distributed load lock this caller holds. [`HeldLock::release`] lets it go once the value
/// is stored; dropped unreleased (the caller was cancelled or panicked), it is let go in the
/// background, so that other instances need not wait for it to expire.
pub(crate) struct HeldLock {
    cache: Cache,
    key: String,
    token: Option<String>,
}

impl HeldLock {
    /// Releases the lock: off the caller's path, sent after the value's write (see `detach`),
    /// so that a waiter that sees the lock gone finds the value.
    pub(crate) async fn release(mut self) {
        if let Some(task) = self.unlock() {
            detach(task).await;
        }
    }

    fn unlock(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let token = self.token.take()?;
        let (cache, key) = (self.cache.clone(), std::mem::take(&mut self.key));
        Some(async move {
            if let Some(shared) = cache.shared_tier() {
                shared.store.unlock(&key, &token).await;
            }
        })
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let (Some(task), Ok(runtime)) = (self.unlock(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(task);
        }
    }
}
