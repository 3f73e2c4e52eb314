//! The bytes of response bodies being copied for the cache, before they are stored (and
//! weighed by the memory store). Each layer holds at most a quarter of its cache's memory
//! budget this way, so concurrent misses on large bodies cannot hold memory outside the budget
//! without bound: a body that would pass that share streams on to its client unstored
//! (`Cache-Status` detail `in-flight-full`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The bytes held by bodies being copied, and how many may be.
#[derive(Debug)]
pub(crate) struct InFlight {
    used: AtomicUsize,
    limit: usize,
}

/// Bytes held for one body; given back when dropped (stored, abandoned, or the task ended).
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<InFlight>,
    bytes: usize,
}

impl InFlight {
    /// A share of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(InFlight {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Holds nothing yet: a body of unknown length grows its hold as it arrives.
    pub(crate) fn start(self: &Arc<Self>) -> Held {
        Held {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Holds `bytes` at once (a body of known length); `None` when the share is spent.
    pub(crate) fn hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let mut held = self.start();
        held.grow(bytes).then_some(held)
    }

    /// The share, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

impl Held {
    /// Holds `bytes` more; `false` (holding nothing more) when that would pass the share.
    pub(crate) fn grow(&mut self, bytes: usize) -> bool {
        let budget = &self.budget;
        let mut used = budget.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(bytes).filter(|n| *n <= budget.limit) else {
                return false;
            };
            match budget
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.bytes += bytes;
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_the_share_and_gives_back_on_drop() {
        let budget = InFlight::new(100);
        let mut a = budget.start();
        assert!(a.grow(60));
        let b = budget.hold(50);
        assert!(b.is_none(), "60 + 50 passes 100");
        let b = budget.hold(40).expect("60 + 40 fits");
        assert!(!a.grow(1), "the share is spent");
        drop(b);
        assert!(a.grow(40));
        drop(a);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert!(budget.hold(100).is_some());
        assert!(budget.hold(usize::MAX).is_none(), "saturates, never wraps");
    }
}
