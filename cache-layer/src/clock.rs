//! The monotonic clock entry lifetimes are measured with. `quanta` reads the CPU's counter
//! where it can, several times cheaper than `std::time::Instant::now()`: the clock is read on
//! every cache hit.

pub(crate) use quanta::Instant;

/// Now, on the cache's clock.
#[inline]
pub(crate) fn now() -> Instant {
    Instant::now()
}
