//! Random numbers for TTL jitter, load-lock tokens and instance ids: unpredictable enough to
//! spread expiries and tell callers apart, never a secret. Each thread hashes a counter with
//! std's [`RandomState`] (SipHash, keyed from the OS once per thread): no dependency.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    static STATE: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
}

/// A uniformly distributed `u64`.
pub(crate) fn u64() -> u64 {
    STATE.with(|(keys, counter)| {
        let n = counter.get();
        counter.set(n.wrapping_add(1));
        keys.hash_one(n)
    })
}

/// A uniformly distributed `f64` in `[0, 1)`.
pub(crate) fn f64() -> f64 {
    // The top 53 bits: every value a multiple of 2^-53.
    (u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn numbers_differ_and_fractions_stay_in_range() {
        let drawn: HashSet<u64> = (0..1000).map(|_| super::u64()).collect();
        assert_eq!(drawn.len(), 1000);
        let fractions: Vec<f64> = (0..1000).map(|_| super::f64()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(fractions.iter().any(|&f| f < 0.5) && fractions.iter().any(|&f| f >= 0.5));
    }
}
