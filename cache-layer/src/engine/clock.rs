//! The monotonic clock entry lifetimes are measured with. `quanta` reads the CPU's counter
//! where it can, several times cheaper than `std::time::Instant::now()`: the clock is read on
//! every cache hit.

use std::time::Duration;

pub(crate) use quanta::Instant;

/// The farthest any deadline reaches: 100 years. Lifetimes come from headers, Redis entries and
/// attributes; clamping them here means no value from outside can overflow the clock (quanta
/// panics on overflow) and "for ever" still means longer than any process lives.
pub(crate) const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Now, on the cache's clock.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "test-clock")]
    if tokio_time::following() {
        return tokio_time::now();
    }
    Instant::now()
}

/// Makes every cache in this process measure entry lifetimes on Tokio's clock from now on,
/// so that `tokio::time::pause()` and `tokio::time::advance(d)` (Tokio's `test-util` feature)
/// move entries from fresh to stale to expired without waiting. Without a paused clock,
/// Tokio's clock is the real one: nothing changes but the cost of reading it. Process-wide
/// and for good: call it at the start of a test. Needs the `test-clock` feature (for
/// `[dev-dependencies]`); without the call, that feature costs one relaxed atomic load per
/// clock reading.
///
/// ```
/// use std::time::Duration;
/// use cache_layer::{Cache, Key, LoadOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// cache_layer::testing::follow_tokio_time();
/// tokio::time::pause();
/// let cache = Cache::builder().jitter(0.0).build().unwrap();
/// let key = Key::new("k");
/// cache.insert(&key, 1u32, &LoadOptions::new(Duration::from_secs(60))).await;
/// tokio::time::advance(Duration::from_secs(59)).await;
/// assert_eq!(cache.get::<u32>(&key).await, Some(1));
/// tokio::time::advance(Duration::from_secs(2)).await;
/// assert_eq!(cache.get::<u32>(&key).await, None); // expired
/// # }
/// ```
#[cfg(feature = "test-clock")]
pub fn follow_tokio_time() {
    tokio_time::follow();
}

/// The cache's clock as an offset on Tokio's: `quanta` instants cannot be made from Tokio's,
/// so both are read once and later Tokio readings are carried over as distances.
#[cfg(feature = "test-clock")]
mod tokio_time {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    use super::Instant;

    static FOLLOWING: AtomicBool = AtomicBool::new(false);
    static ORIGIN: OnceLock<(Instant, tokio::time::Instant)> = OnceLock::new();

    pub(super) fn follow() {
        ORIGIN.get_or_init(|| (Instant::now(), tokio::time::Instant::now()));
        FOLLOWING.store(true, Ordering::Release);
    }

    #[inline]
    pub(super) fn following() -> bool {
        FOLLOWING.load(Ordering::Relaxed)
    }

    pub(super) fn now() -> Instant {
        let Some(&(quanta, tokio)) = ORIGIN.get() else {
            return Instant::now();
        };
        // Each test runtime has its own (paused) clock: it may read before the origin.
        let now = tokio::time::Instant::now();
        if now >= tokio {
            super::after(quanta, now - tokio)
        } else {
            quanta.checked_sub(tokio - now).unwrap_or(quanta)
        }
    }
}

/// `at + span`, with `span` clamped to [`HORIZON`]; never panics. Should the clock itself be so
/// far along that even the horizon overflows, the result is `at` (already past: nothing is kept).
#[inline]
pub(crate) fn after(at: Instant, span: Duration) -> Instant {
    at.checked_add(span.min(HORIZON)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_saturates_at_the_horizon() {
        let now = now();
        assert_eq!(after(now, Duration::MAX), after(now, HORIZON));
        assert!(after(now, Duration::MAX) > after(now, HORIZON - Duration::from_secs(1)));
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
