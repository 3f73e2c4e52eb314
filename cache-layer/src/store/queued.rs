//! Invalidations that could not reach Redis (breaker open, error, timeout): kept, bounded, and
//! replayed before Redis is trusted again. When more names are pending than the queue holds,
//! it stops remembering names and marks *everything* suspect instead: the replay then tells
//! every instance to empty its memory tier. Clears are never forgotten so: past
//! [`MAX_PENDING`] prefixes, they become one clear of everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many distinct parts wait for Redis before everything is treated as suspect.
pub(crate) const MAX_PENDING: usize = 1024;

/// What the queue did with a part it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Kept.
    Kept,
    /// The queue was full: everything is suspect (the caller empties its memory tier).
    Overflowed,
}

/// One thing to send again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Part {
    /// An invalidation by name: its entry, its tag's members, and the broadcast.
    Name(Box<str>),
    /// A Redis value key to delete (a member taken from a tag's set, or one evicted from it,
    /// whose delete failed).
    Key(Box<str>),
    /// A clear of the keys starting with this prefix (empty: every key): recorded, their
    /// entries deleted, and the broadcast.
    Prefix(Box<str>),
}

/// What a replay has to send.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    /// Each part with the push it was snapshotted at (see [`QueuedInvalidations::replayed`]).
    pub(crate) parts: Vec<(Part, u64)>,
    /// Tell every instance to empty its memory tier (with the push it was snapshotted at).
    pub(crate) everything: Option<u64>,
}

#[derive(Default)]
struct Queue {
    /// Each part with the number of its latest push.
    parts: HashMap<Part, u64>,
    pushes: u64,
    /// Everything is suspect, since the push numbered so (the latest one while it was).
    everything: Option<u64>,
}

/// The queue of invalidations waiting for Redis.
#[derive(Default)]
pub(crate) struct QueuedInvalidations {
    queue: Mutex<Queue>,
    /// Mirrors "the queue is not empty", read on every Redis operation without the lock.
    any: AtomicBool,
}

impl QueuedInvalidations {
    /// Whether anything waits to be replayed.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Keeps the invalidation of `name` for the next replay.
    pub(crate) fn push(&self, name: &str) -> Queued {
        self.push_part(Part::Name(name.into()))
    }

    /// Keeps the delete of the Redis key `key` for the next replay.
    pub(crate) fn push_key(&self, key: &str) -> Queued {
        self.push_part(Part::Key(key.into()))
    }

    /// Keeps the clear of the keys starting with `prefix` for the next replay. Past
    /// [`MAX_PENDING`] prefixes, the queued clears become one clear of everything.
    pub(crate) fn push_prefix(&self, prefix: &str) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        self.any.store(true, Ordering::Release);
        queue.pushes += 1;
        let push = queue.pushes;
        let part = Part::Prefix(prefix.into());
        let prefixes = queue.parts.keys().filter(|p| is_prefix(p)).count();
        if !queue.parts.contains_key(&part) && prefixes >= MAX_PENDING {
            queue.parts.retain(|part, _| !is_prefix(part));
            queue.parts.insert(Part::Prefix("".into()), push);
        } else {
            queue.parts.insert(part, push);
        }
    }

    fn push_part(&self, part: Part) -> Queued {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        self.any.store(true, Ordering::Release);
        // Numbered again when already queued: a replay that snapshotted it before this push
        // does not cover this one.
        queue.pushes += 1;
        let push = queue.pushes;
        let names = queue.parts.keys().filter(|p| !is_prefix(p)).count();
        if queue.everything.is_some() || (!queue.parts.contains_key(&part) && names >= MAX_PENDING)
        {
            queue.parts.retain(|part, _| is_prefix(part));
            queue.everything = Some(push);
            return Queued::Overflowed;
        }
        queue.parts.insert(part, push);
        Queued::Kept
    }

    /// What to replay now; the queue keeps it until [`QueuedInvalidations::replayed`] confirms each part.
    pub(crate) fn snapshot(&self) -> Replay {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        Replay {
            parts: queue
                .parts
                .iter()
                .map(|(part, push)| (part.clone(), *push))
                .collect(),
            everything: queue.everything,
        }
    }

    /// `part`, as snapshotted at push `push`, reached Redis: forgotten unless pushed again
    /// since.
    pub(crate) fn replayed(&self, part: &Part, push: u64) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.parts.get(part) == Some(&push) {
            queue.parts.remove(part);
        }
        self.any.store(
            queue.everything.is_some() || !queue.parts.is_empty(),
            Ordering::Release,
        );
    }

    /// The "everything" message, as snapshotted at push `push`, reached Redis: forgotten
    /// unless something was pushed (and overflowed) again since.
    pub(crate) fn replayed_everything(&self, push: u64) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.everything == Some(push) {
            queue.everything = None;
        }
        self.any.store(
            queue.everything.is_some() || !queue.parts.is_empty(),
            Ordering::Release,
        );
    }
}

fn is_prefix(part: &Part) -> bool {
    matches!(part, Part::Prefix(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_wait_until_replayed_and_duplicates_are_kept_once() {
        let pending = QueuedInvalidations::default();
        assert!(!pending.any());
        assert_eq!(pending.push("user:1"), Queued::Kept);
        assert_eq!(pending.push("user:1"), Queued::Kept);
        assert_eq!(pending.push("users"), Queued::Kept);
        let mut replay = pending.snapshot();
        replay.parts.sort();
        let parts: Vec<&Part> = replay.parts.iter().map(|(part, _)| part).collect();
        assert_eq!(
            parts,
            [&Part::Name("user:1".into()), &Part::Name("users".into())]
        );
        assert_eq!(replay.everything, None);
        for (part, push) in &replay.parts {
            pending.replayed(part, *push);
            if *part == Part::Name("user:1".into()) {
                assert!(pending.any(), "users still waits");
            }
        }
        assert!(!pending.any());
    }

    #[test]
    fn a_name_pushed_again_during_its_replay_is_kept_for_the_next() {
        let pending = QueuedInvalidations::default();
        pending.push("user:1");
        pending.push_key("v:user:2");
        let replay = pending.snapshot();
        // Invalidated again while the replay sends the first one.
        assert_eq!(pending.push("user:1"), Queued::Kept);
        for (part, push) in &replay.parts {
            pending.replayed(part, *push);
        }
        assert!(pending.any(), "the second invalidation still waits");
        let again = pending.snapshot();
        assert_eq!(again.parts.len(), 1);
        assert_eq!(again.parts[0].0, Part::Name("user:1".into()));
        pending.replayed(&again.parts[0].0, again.parts[0].1);
        assert!(!pending.any());
    }

    #[test]
    fn clears_are_never_forgotten_only_widened() {
        let pending = QueuedInvalidations::default();
        pending.push_prefix("user:");
        for i in 0..=MAX_PENDING {
            pending.push(&format!("k:{i}"));
        }
        let replay = pending.snapshot();
        assert_eq!(
            replay.parts.len(),
            1,
            "the names overflowed, the clear stays"
        );
        assert_eq!(replay.parts[0].0, Part::Prefix("user:".into()));
        for i in 0..MAX_PENDING {
            pending.push_prefix(&format!("p{i}:"));
        }
        let replay = pending.snapshot();
        assert_eq!(replay.parts.len(), 1);
        assert_eq!(
            replay.parts[0].0,
            Part::Prefix("".into()),
            "one clear of everything"
        );
    }

    #[test]
    fn overflow_makes_everything_suspect_until_that_is_replayed() {
        let pending = QueuedInvalidations::default();
        for i in 0..MAX_PENDING {
            assert_eq!(pending.push(&format!("k:{i}")), Queued::Kept);
        }
        assert_eq!(pending.push("one too many"), Queued::Overflowed);
        assert_eq!(pending.push("k:1"), Queued::Overflowed);
        let replay = pending.snapshot();
        assert!(replay.parts.is_empty());
        let push = replay.everything.expect("everything is suspect");
        // Lost again while the replay sends the first message.
        assert_eq!(pending.push("k:2"), Queued::Overflowed);
        pending.replayed_everything(push);
        assert!(pending.any(), "the second loss still waits");
        let again = pending.snapshot().everything.expect("still suspect");
        pending.replayed_everything(again);
        assert!(!pending.any());
    }
}
