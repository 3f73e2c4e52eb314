//! [`BodyBudget`]: the bytes of response bodies being copied for the cache, before they are
//! stored (and weighed by the memory store), and the bytes read ahead of a client that it has
//! not taken yet. Each layer holds at most a quarter of its cache's memory budget this way
//! (the layer's documentation calls it the in-flight share; a copy refused for want of it is
//! logged `in-flight-full`), so concurrent misses on large bodies and clients that never read
//! cannot hold memory outside the budget without bound: once the share is spent, bodies stop
//! being read ahead of their clients (each is then read at its client's pace, as one passing
//! through is), and a body that would pass the share streams on to its client unstored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The bytes held by bodies being copied, and how many may be.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
}

/// Bytes held for one body; given back when dropped (stored, abandoned, or the task ended).
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    /// A share of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(BodyBudget {
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

    /// Whether the share is used up, so bodies stop reading ahead. Never while nothing is
    /// held: a share of zero bytes still records bodies without data.
    pub(crate) fn spent(&self) -> bool {
        let used = self.used.load(Ordering::Acquire);
        used != 0 && used >= self.limit
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

    /// The budget this hold is taken from.
    pub(crate) fn budget(&self) -> &Arc<BodyBudget> {
        &self.budget
    }

    /// Holds `bytes` more even past the share: they are in memory already, so they count.
    fn force(&mut self, bytes: usize) {
        let used = &self.budget.used;
        let before = used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                Some(n.saturating_add(bytes))
            })
            .unwrap_or_else(|n| n);
        self.bytes += before.saturating_add(bytes) - before;
    }

    /// Gives back `bytes` of the hold (at most what it holds).
    fn release(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.budget.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The bytes of a body read ahead and sent to its client, which the client has not taken yet.
/// While the body is recorded they are in the recording too (the same buffers), held there;
/// once the recording has ended they are held here, until the client takes them or goes.
#[derive(Debug, Default)]
pub(crate) struct Queued(Mutex<QueuedBytes>);

#[derive(Debug, Default)]
struct QueuedBytes {
    bytes: usize,
    /// Set once the recording has ended: `bytes`, held in its share.
    held: Option<Held>,
}

impl Queued {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueuedBytes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `bytes` more were sent to the client.
    pub(crate) fn sent(&self, bytes: usize) {
        let mut queued = self.lock();
        queued.bytes = queued.bytes.saturating_add(bytes);
        if let Some(held) = &mut queued.held {
            held.force(bytes);
        }
    }

    /// The client took `bytes`. Bytes sent without [`sent`](Self::sent) (the frame that ended a
    /// recording) come after every counted one, so they release nothing.
    pub(crate) fn taken(&self, bytes: usize) {
        let mut queued = self.lock();
        let bytes = bytes.min(queued.bytes);
        queued.bytes -= bytes;
        if let Some(held) = &mut queued.held {
            held.release(bytes);
        }
    }

    /// The recording ended: from now on what is queued is held in `share`, until taken.
    pub(crate) fn hold_in(&self, share: &Arc<BodyBudget>) {
        let mut queued = self.lock();
        if queued.held.is_none() {
            let mut held = share.start();
            held.force(queued.bytes);
            queued.held = Some(held);
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
        let budget = BodyBudget::new(100);
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

    #[test]
    fn queued_bytes_are_held_from_the_recordings_end_until_taken() {
        let share = BodyBudget::new(100);
        let queued = Queued::default();
        queued.sent(30);
        assert!(
            !share.spent(),
            "held by the recording while it lasts, not here"
        );
        queued.hold_in(&share);
        assert!(share.hold(71).is_none(), "30 queued");
        queued.sent(200);
        assert!(share.spent(), "sent past the share: in memory, so counted");
        queued.taken(225);
        assert!(share.hold(95).is_some() && share.hold(96).is_none());
        queued.taken(usize::MAX);
        assert!(
            share.hold(100).is_some(),
            "never gives back more than it held"
        );
        assert!(
            !BodyBudget::new(0).spent(),
            "an empty share lets one frame through"
        );
        queued.sent(usize::MAX);
        drop(queued);
        assert_eq!(share.used.load(Ordering::Relaxed), 0);
    }
}
