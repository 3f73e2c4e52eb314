//! The circuit breaker in front of a shared store: after a few consecutive failures, calls
//! skip the store for a cool-down instead of each paying the timeout; then one probe call is
//! let through, and a success closes the breaker again. No operator action is needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) struct Breaker {
    state: Mutex<State>,
    /// Mirrors `open_until.is_some()`, read on every memory hit without the lock.
    open: AtomicBool,
    threshold: u32,
    cooldown: Duration,
}

struct State {
    failures: u32,
    /// While set and in the future, the breaker is open.
    open_until: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
            }),
            open: AtomicBool::new(false),
            threshold,
            cooldown,
        }
    }

    /// Whether a call may go to the store now. When the cool-down has passed, the first
    /// caller is let through as the probe and the breaker stays open for the others.
    pub(crate) fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.open_until {
            None => true,
            Some(until) if Instant::now() >= until => {
                state.open_until = Some(Instant::now() + self.cooldown);
                true
            }
            Some(_) => false,
        }
    }

    pub(crate) fn success(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failures = 0;
        state.open_until = None;
        self.open.store(false, Ordering::Release);
    }

    /// Records a failure; returns whether this one opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            let was_closed = state.open_until.is_none();
            state.open_until = Some(Instant::now() + self.cooldown);
            self.open.store(true, Ordering::Release);
            return was_closed;
        }
        false
    }

    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_after_cooldown_and_closes_on_success() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        assert!(breaker.allow());
        assert!(!breaker.failure());
        assert!(!breaker.failure());
        assert!(breaker.failure(), "third failure opens");
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allow(), "one probe after the cool-down");
        assert!(!breaker.allow(), "only one");
        breaker.success();
        assert!(breaker.allow());
        assert!(!breaker.is_open());
    }
}
