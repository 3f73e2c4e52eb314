//! The invalidation log: closes the race between a load that started before a write and an
//! invalidation that ran while it was in flight. Without it, the load would store the value it
//! read before the write, and the cache would serve it for a whole TTL.
//!
//! Soft purges are logged too, apart: a load that began before one is still stored, but as
//! already stale (see [`InvalidationLog::soft_since`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many recent invalidations are remembered by name. A load that began before the oldest
/// remembered one is not stored at all (it cannot prove it was not invalidated).
const REMEMBERED: usize = 4096;
/// The most bytes of names remembered: names come from outside too (the URLs of unsafe
/// requests), so the log is bounded in bytes as well as in count.
const REMEMBERED_BYTES: usize = 1 << 20;

pub(crate) struct InvalidationLog {
    seq: AtomicU64,
    recent: Mutex<Recent>,
}

/// The remembered invalidations, oldest first, and the bytes of their names.
#[derive(Default)]
struct Recent {
    names: VecDeque<(u64, Named)>,
    bytes: usize,
}

/// What one remembered invalidation named.
enum Named {
    /// Everything (the memory tier was emptied).
    Everything,
    /// A key or tag, invalidated.
    Gone(Box<str>),
    /// A key or tag, soft-purged (made stale).
    Stale(Box<str>),
}

impl Named {
    fn len(&self) -> usize {
        match self {
            Named::Everything => 0,
            Named::Gone(name) | Named::Stale(name) => name.len(),
        }
    }
}

impl InvalidationLog {
    pub(crate) fn new() -> Self {
        InvalidationLog {
            seq: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// The sequence number a load records when it starts.
    pub(crate) fn current(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Records an invalidation of `name`. Must run *before* the entries are removed, so that a
    /// concurrent insert either is removed or sees this record.
    pub(crate) fn record(&self, name: &str) {
        self.push(Named::Gone(name.into()));
    }

    /// Records a soft purge of `name`. Must run before the entries are marked stale, so that a
    /// concurrent insert either is marked or sees this record.
    pub(crate) fn record_soft(&self, name: &str) {
        self.push(Named::Stale(name.into()));
    }

    /// Records that everything was invalidated (the memory tier is being emptied): no load or
    /// read that began before is kept. Must run before the entries are removed.
    pub(crate) fn record_everything(&self) {
        self.push(Named::Everything);
    }

    fn push(&self, name: Named) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        recent.bytes += name.len();
        recent.names.push_back((seq, name));
        while recent.names.len() > REMEMBERED || recent.bytes > REMEMBERED_BYTES {
            let Some((_, oldest)) = recent.names.pop_front() else {
                break;
            };
            recent.bytes -= oldest.len();
        }
    }

    /// Whether `key` or any of `tags` was invalidated after `since`, by name or by emptying
    /// the memory tier. Must run *after* the entry was inserted.
    pub(crate) fn touched_since(&self, since: u64, key: &str, tags: &[Box<str>]) -> bool {
        self.touched(since, key, tags, Counting::EVERYTHING)
    }

    /// Whether `key` or any of `tags` was invalidated by name after `since` (what makes a
    /// loaded value outdated everywhere, not only in memory).
    pub(crate) fn named_since(&self, since: u64, key: &str, tags: &[Box<str>]) -> bool {
        self.touched(since, key, tags, Counting::NAMED)
    }

    /// Whether `key` or any of `tags` was soft-purged after `since`: a value loaded since then
    /// may be older than the purge, so it is stored as already stale. Must run *after* the
    /// entry was inserted. (Invalidations are [`touched_since`](Self::touched_since)'s.)
    pub(crate) fn soft_since(&self, since: u64, key: &str, tags: &[Box<str>]) -> bool {
        self.touched(since, key, tags, Counting::SOFT)
    }

    fn touched(&self, since: u64, key: &str, tags: &[Box<str>], counting: Counting) -> bool {
        if self.seq.load(Ordering::SeqCst) == since {
            return false;
        }
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = &recent.names;
        match recent.front() {
            Some((oldest, _)) if *oldest > since + 1 => return true,
            None => return true,
            Some(_) => {}
        }
        let names = |name: &str| name == key || tags.iter().any(|t| &**t == name);
        recent
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > since)
            .any(|(_, named)| match named {
                Named::Everything => counting.everything,
                Named::Gone(name) => counting.gone && names(name),
                Named::Stale(name) => counting.soft && names(name),
            })
    }
}

/// Which remembered invalidations a check counts (forgotten history always counts).
#[derive(Clone, Copy)]
struct Counting {
    /// Emptying the memory tier.
    everything: bool,
    /// Names invalidated.
    gone: bool,
    /// Names soft-purged.
    soft: bool,
}

impl Counting {
    const EVERYTHING: Counting = Counting {
        everything: true,
        gone: true,
        soft: false,
    };
    const NAMED: Counting = Counting {
        everything: false,
        gone: true,
        soft: false,
    };
    const SOFT: Counting = Counting {
        everything: false,
        gone: false,
        soft: true,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_names_after_the_start_count() {
        let log = InvalidationLog::new();
        log.record("user:1");
        let start = log.current();
        assert!(!log.touched_since(start, "user:1", &[]));
        log.record("user:2");
        assert!(!log.touched_since(start, "user:1", &["users".into()]));
        assert!(log.touched_since(start, "user:2", &[]));
        log.record("users");
        assert!(log.touched_since(start, "user:1", &["users".into()]));
    }

    #[test]
    fn everything_touches_every_key() {
        let log = InvalidationLog::new();
        let start = log.current();
        log.record_everything();
        assert!(log.touched_since(start, "user:1", &[]));
        assert!(!log.named_since(start, "user:1", &[]));
        assert!(!log.touched_since(log.current(), "user:1", &[]));
    }

    #[test]
    fn soft_purges_count_only_for_the_soft_check() {
        let log = InvalidationLog::new();
        let start = log.current();
        log.record_soft("users");
        assert!(!log.touched_since(start, "user:1", &["users".into()]));
        assert!(!log.named_since(start, "user:1", &["users".into()]));
        assert!(log.soft_since(start, "user:1", &["users".into()]));
        log.record_everything();
        assert!(log.touched_since(start, "user:2", &["staff".into()]));
        assert!(!log.soft_since(start, "user:2", &["staff".into()]));
        log.record("user:2");
        assert!(!log.soft_since(start, "user:2", &[]));
        assert!(log.named_since(start, "user:2", &[]));
    }

    #[test]
    fn forgotten_history_is_treated_as_touched() {
        let log = InvalidationLog::new();
        let start = log.current();
        for i in 0..REMEMBERED + 2 {
            log.record(&format!("other:{i}"));
        }
        assert!(log.touched_since(start, "user:1", &[]));
    }

    #[test]
    fn long_names_are_bounded_in_bytes() {
        let log = InvalidationLog::new();
        let start = log.current();
        let long = "x".repeat(100_000);
        for _ in 0..100 {
            log.record(&long);
        }
        let recent = log.recent.lock().unwrap();
        assert!(recent.bytes <= REMEMBERED_BYTES);
        assert_eq!(
            recent.bytes,
            recent.names.iter().map(|(_, n)| n.len()).sum::<usize>()
        );
        assert_eq!(recent.names.len(), REMEMBERED_BYTES / long.len());
        drop(recent);
        // What was forgotten still counts as touched.
        assert!(log.touched_since(start, "user:1", &[]));
    }
}
