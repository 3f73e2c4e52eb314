//! Invalidations that could not reach Redis (breaker open, error, timeout): kept, bounded, and
//! replayed before Redis is trusted again. When more names are pending than the queue holds,
//! it stops remembering names and marks *everything* suspect instead: the replay then tells
//! every instance to empty its memory tier.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many distinct names wait for Redis before everything is treated as suspect.
pub(crate) const MAX_PENDING: usize = 1024;

/// What the queue did with a name it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Kept by name.
    Kept,
    /// The queue was full: everything is suspect (the caller empties its memory tier).
    Overflowed,
}

/// What a replay has to send.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    pub(crate) names: Vec<Box<str>>,
    /// Tell every instance to empty its memory tier.
    pub(crate) everything: bool,
}

#[derive(Default)]
struct Queue {
    names: HashSet<Box<str>>,
    everything: bool,
}

/// The queue of invalidations waiting for Redis.
#[derive(Default)]
pub(crate) struct Pending {
    queue: Mutex<Queue>,
    /// Mirrors "the queue is not empty", read on every Redis operation without the lock.
    any: AtomicBool,
}

impl Pending {
    /// Whether anything waits to be replayed.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Keeps `name` for the next replay.
    pub(crate) fn push(&self, name: &str) -> Queued {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        self.any.store(true, Ordering::Release);
        if queue.everything || queue.names.contains(name) {
            return if queue.everything {
                Queued::Overflowed
            } else {
                Queued::Kept
            };
        }
        if queue.names.len() >= MAX_PENDING {
            queue.names.clear();
            queue.everything = true;
            return Queued::Overflowed;
        }
        queue.names.insert(name.into());
        Queued::Kept
    }

    /// What to replay now; the queue keeps it until [`Pending::replayed`] confirms each part.
    pub(crate) fn snapshot(&self) -> Replay {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        Replay {
            names: queue.names.iter().cloned().collect(),
            everything: queue.everything,
        }
    }

    /// `name` reached Redis.
    pub(crate) fn replayed(&self, name: &str) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.names.remove(name);
        self.any.store(
            queue.everything || !queue.names.is_empty(),
            Ordering::Release,
        );
    }

    /// The "everything" message reached Redis.
    pub(crate) fn replayed_everything(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.everything = false;
        self.any.store(!queue.names.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_wait_until_replayed_and_duplicates_are_kept_once() {
        let pending = Pending::default();
        assert!(!pending.any());
        assert_eq!(pending.push("user:1"), Queued::Kept);
        assert_eq!(pending.push("user:1"), Queued::Kept);
        assert_eq!(pending.push("users"), Queued::Kept);
        let mut replay = pending.snapshot();
        replay.names.sort();
        assert_eq!(replay.names, vec![Box::from("user:1"), Box::from("users")]);
        assert!(!replay.everything);
        pending.replayed("user:1");
        assert!(pending.any(), "users still waits");
        pending.replayed("users");
        assert!(!pending.any());
    }

    #[test]
    fn overflow_makes_everything_suspect_until_that_is_replayed() {
        let pending = Pending::default();
        for i in 0..MAX_PENDING {
            assert_eq!(pending.push(&format!("k:{i}")), Queued::Kept);
        }
        assert_eq!(pending.push("one too many"), Queued::Overflowed);
        assert_eq!(pending.push("k:1"), Queued::Overflowed);
        assert_eq!(
            pending.snapshot(),
            Replay {
                names: Vec::new(),
                everything: true
            }
        );
        pending.replayed_everything();
        assert!(!pending.any());
    }
}
