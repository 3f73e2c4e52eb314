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
    Instant::now()
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
