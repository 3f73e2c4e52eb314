//! The invalidation log: closes the race between a load that started before a write and an
//! invalidation that ran while it was in flight. Without it, the load would store the value it
//! read before the write, and the cache would serve it for a whole TTL.
//!
//! Every invalidation takes the next number of one sequence; a load remembers the number
//! current when it began ([`InvalidationLog::current`]), and before its result is kept asks
//! whether its key or a tag was invalidated after it. Names are remembered by a hash only, in
//! a fixed table of [`BUCKETS`] buckets of at most [`SLOTS`] names each: the last number each
//! name was invalidated at. A full bucket forgets its oldest name and raises its floor to that
//! name's number: every name of the bucket then counts as invalidated at the floor. So:
//!
//! - memory is bounded whatever the names are (they come from outside too: the URLs of unsafe
//!   requests): about 3.3 MiB at most, allocated at the first invalidation by name;
//! - an invalidation of a load's key or tag during the load is never missed;
//! - invalidations of other names cost a load only when one of its names' buckets took more
//!   than [`SLOTS`] of them during the load (an overflow), or a name's 31 bits of hash match
//!   (1 in 2^31 per name in the bucket): with 100,000 names invalidated during a load, a
//!   bucket holds 24 on average and overflows for about one load in 10^11. A flood slows no
//!   load's caching until it gets near 150,000 names during that load. The hash is keyed per
//!   cache, so a sender of names cannot aim them at one bucket.
//!
//! Soft purges are remembered apart (their own entries, their own floor): a load that began
//! before one is still stored, but as already stale (see [`InvalidationLog::soft_since`]).
//! Emptying the memory tier ("everything") is one number of its own.
//!
//! Clears (`Cache::clear`, `Cache::clear_prefix`) are remembered by their key prefix, the last
//! [`MAX_PREFIXES`] of them; an older one is forgotten into the clear floor, at which every key
//! counts as cleared (as after a clear of everything). A load checks the list only when a
//! prefix was cleared since it began.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// How many buckets names are spread over (a power of two).
const BUCKETS: usize = 4096;
/// How many names a bucket remembers: past that, the oldest is forgotten into its floor.
const SLOTS: usize = 64;
/// How many prefix clears are remembered: past that, the oldest is forgotten into the floor.
const MAX_PREFIXES: usize = 64;

pub(crate) struct InvalidationLog {
    /// The number of the last invalidation.
    seq: AtomicU64,
    /// The number of the last emptying of the memory tier.
    everything: AtomicU64,
    /// Every key counts as cleared at this number: a clear of everything, or the newest
    /// prefix clear forgotten.
    cleared: AtomicU64,
    /// The number of the last prefix clear, so that a load that began after it skips the list.
    last_prefix: AtomicU64,
    /// The last [`MAX_PREFIXES`] prefix clears, oldest first.
    prefixes: Mutex<Vec<(Box<str>, u64)>>,
    /// The buckets, allocated at the first invalidation by name.
    buckets: OnceLock<Box<[Mutex<Bucket>]>>,
    /// Keyed per cache: which bucket a name falls in cannot be predicted from outside.
    hasher: RandomState,
}

/// What an invalidation of a name does to what a load of it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Invalidated: not stored.
    Gone = 0,
    /// Soft-purged: stored stale.
    Stale = 1,
}

/// The names remembered in one bucket, each as a mark (31 bits of its hash and its [`Kind`])
/// and the number it was last invalidated at; and per kind the floor: the newest number
/// forgotten, at which every name of the bucket counts as invalidated.
#[derive(Default)]
struct Bucket {
    floor: [u64; 2],
    marks: Vec<u32>,
    at: Vec<u64>,
}

impl Bucket {
    fn record(&mut self, mark: u32, at: u64) {
        if let Some(i) = self.marks.iter().position(|m| *m == mark) {
            self.at[i] = self.at[i].max(at);
        } else if self.marks.len() < SLOTS {
            self.marks.push(mark);
            self.at.push(at);
        } else {
            let oldest = (0..SLOTS).min_by_key(|i| self.at[*i]).unwrap_or(0);
            let floor = &mut self.floor[kind_of(self.marks[oldest]) as usize];
            *floor = (*floor).max(self.at[oldest]);
            self.marks[oldest] = mark;
            self.at[oldest] = at;
        }
    }

    /// Whether the name marked `mark` (of `kind`) may have been invalidated after `since`.
    fn since(&self, since: u64, mark: u32, kind: Kind) -> bool {
        self.floor[kind as usize] > since
            || self
                .marks
                .iter()
                .zip(&self.at)
                .any(|(m, at)| *m == mark && *at > since)
    }
}

fn kind_of(mark: u32) -> Kind {
    if mark & 1 == 0 {
        Kind::Gone
    } else {
        Kind::Stale
    }
}

impl InvalidationLog {
    pub(crate) fn new() -> Self {
        InvalidationLog {
            seq: AtomicU64::new(0),
            everything: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            last_prefix: AtomicU64::new(0),
            prefixes: Mutex::default(),
            buckets: OnceLock::new(),
            hasher: RandomState::new(),
        }
    }

    /// The sequence number a load records when it starts.
    pub(crate) fn current(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Records an invalidation of `name`. Must run *before* the entries are removed, so that a
    /// concurrent insert either is removed or sees this record.
    pub(crate) fn record(&self, name: &str) {
        self.push(name, Kind::Gone);
    }

    /// Records a soft purge of `name`. Must run before the entries are marked stale, so that a
    /// concurrent insert either is marked or sees this record.
    pub(crate) fn record_soft(&self, name: &str) {
        self.push(name, Kind::Stale);
    }

    /// Records that everything was invalidated (the memory tier is being emptied): no load or
    /// read that began before is kept. Must run before the entries are removed.
    pub(crate) fn record_everything(&self) {
        let at = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.everything.fetch_max(at, Ordering::SeqCst);
    }

    /// Records a clear of every key starting with `prefix` (every key, when it is empty): no
    /// load or read of such a key that began before is kept, in memory or in the shared tier.
    /// Must run before the entries are removed.
    pub(crate) fn record_clear(&self, prefix: &str) {
        let at = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if prefix.is_empty() {
            self.cleared.fetch_max(at, Ordering::SeqCst);
            return;
        }
        let mut prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
        if prefixes.len() >= MAX_PREFIXES {
            let (_, forgotten) = prefixes.remove(0);
            self.cleared.fetch_max(forgotten, Ordering::SeqCst);
        }
        prefixes.push((prefix.into(), at));
        self.last_prefix.fetch_max(at, Ordering::SeqCst);
    }

    /// Whether a clear made after `since` covers `key`.
    fn cleared_since(&self, since: u64, key: &str) -> bool {
        if self.cleared.load(Ordering::SeqCst) > since {
            return true;
        }
        if self.last_prefix.load(Ordering::SeqCst) <= since {
            return false;
        }
        let prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
        prefixes
            .iter()
            .any(|(prefix, at)| *at > since && key.starts_with(&**prefix))
    }

    fn push(&self, name: &str, kind: Kind) {
        let at = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let buckets = self.buckets.get_or_init(|| {
            std::iter::repeat_with(Mutex::default)
                .take(BUCKETS)
                .collect()
        });
        let (bucket, mark) = self.place(name, kind);
        lock(&buckets[bucket]).record(mark, at);
    }

    /// The bucket `name` falls in, and its mark there as a name of `kind`.
    fn place(&self, name: &str, kind: Kind) -> (usize, u32) {
        let hash = self.hasher.hash_one(name);
        // The mark takes the high bits, the bucket the low ones.
        let mark = ((hash >> 32) as u32 & !1) | kind as u32;
        (hash as usize & (BUCKETS - 1), mark)
    }

    /// Whether `key` or any of `tags` was invalidated after `since`, by name, by a clear, or by
    /// emptying the memory tier. Must run *after* the entry was inserted.
    pub(crate) fn touched_since(&self, since: u64, key: &str, tags: &[Box<str>]) -> bool {
        self.touched(since, key, tags, true, Kind::Gone)
    }

    /// Whether `key` or any of `tags` was invalidated by name, or `key` cleared, after `since`
    /// (what makes a loaded value outdated everywhere, not only in memory).
    pub(crate) fn named_since(&self, since: u64, key: &str, tags: &[Box<str>]) -> bool {
        self.touched(since, key, tags, false, Kind::Gone)
    }

    /// Whether `key` or any of `tags` was soft-purged after `since`: a value loaded since then
    /// may be older than the purge, so it is stored as already stale. Must run *after* the
    /// entry was inserted. (Invalidations are [`touched_since`](Self::touched_since)'s.)
    pub(crate) fn soft_since(&self, since: u64, key: &str, tags: &[Box<str>]) -> bool {
        self.touched(since, key, tags, false, Kind::Stale)
    }

    /// Whether an invalidation of `kind` named `key` or a tag after `since` (or, with
    /// `everything`, emptied the memory tier), as far as the buckets remember.
    fn touched(
        &self,
        since: u64,
        key: &str,
        tags: &[Box<str>],
        everything: bool,
        kind: Kind,
    ) -> bool {
        if self.seq.load(Ordering::SeqCst) == since {
            return false;
        }
        if everything && self.everything.load(Ordering::SeqCst) > since {
            return true;
        }
        if kind == Kind::Gone && self.cleared_since(since, key) {
            return true;
        }
        let Some(buckets) = self.buckets.get() else {
            return false;
        };
        std::iter::once(key)
            .chain(tags.iter().map(|tag| &**tag))
            .any(|name| {
                let (bucket, mark) = self.place(name, kind);
                lock(&buckets[bucket]).since(since, mark, kind)
            })
    }
}

fn lock(bucket: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    bucket.lock().unwrap_or_else(PoisonError::into_inner)
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
    fn clears_touch_the_keys_they_cover_everywhere() {
        let log = InvalidationLog::new();
        let start = log.current();
        log.record_clear("user:");
        assert!(log.touched_since(start, "user:1", &[]));
        assert!(
            log.named_since(start, "user:1", &[]),
            "not written to Redis either"
        );
        assert!(
            !log.touched_since(start, "org:1", &["user:1".into()]),
            "keys only"
        );
        assert!(!log.soft_since(start, "user:1", &[]));
        assert!(!log.touched_since(log.current(), "user:1", &[]));
        let before_all = log.current();
        log.record_clear("");
        assert!(log.named_since(before_all, "org:1", &[]));
        assert!(!log.named_since(log.current(), "org:1", &[]));
    }

    #[test]
    fn forgotten_prefix_clears_count_for_every_key() {
        let log = InvalidationLog::new();
        let start = log.current();
        for i in 0..MAX_PREFIXES {
            log.record_clear(&format!("p{i}:"));
        }
        assert!(!log.touched_since(start, "other", &[]));
        log.record_clear("last:");
        assert!(log.touched_since(start, "other", &[]), "p0: was forgotten");
        assert!(!log.touched_since(start + 1, "other", &[]));
        assert!(log.touched_since(start + 1, "p1:x", &[]));
    }

    /// Names that fall in `name`'s bucket, in the order tried.
    fn neighbours(log: &InvalidationLog, name: &str, n: usize) -> Vec<String> {
        let (bucket, _) = log.place(name, Kind::Gone);
        (0..)
            .map(|i| format!("other:{i}"))
            .filter(|other| log.place(other, Kind::Gone).0 == bucket)
            .take(n)
            .collect()
    }

    #[test]
    fn a_flood_of_other_names_leaves_a_load_alone() {
        let log = InvalidationLog::new();
        let start = log.current();
        let tags: [Box<str>; 1] = ["users".into()];
        // 100,000 names in all: 24 a bucket on average.
        for i in 0..50_000 {
            log.record(&format!("other:{i}"));
            log.record_soft(&format!("other:{i}"));
        }
        assert!(!log.touched_since(start, "user:1", &tags));
        assert!(!log.soft_since(start, "user:1", &tags));
        log.record_soft("users");
        assert!(!log.touched_since(start, "user:1", &tags));
        assert!(log.soft_since(start, "user:1", &tags));
        log.record("users");
        assert!(log.touched_since(start, "user:1", &tags));
    }

    #[test]
    fn what_a_full_bucket_forgot_counts_as_touched() {
        let log = InvalidationLog::new();
        let start = log.current();
        let others = neighbours(&log, "user:1", SLOTS + 1);
        for (i, other) in others.iter().enumerate() {
            log.record(other);
            assert_eq!(log.touched_since(start, "user:1", &[]), i == SLOTS);
        }
        // The oldest was forgotten: a load that began after it is checked by name again.
        assert!(!log.touched_since(start + 1, "user:1", &[]));
        assert!(
            !log.soft_since(start, "user:1", &[]),
            "soft purges are apart"
        );
        let elsewhere = (0..)
            .map(|i| format!("user:{i}"))
            .find(|name| log.place(name, Kind::Gone).0 != log.place("user:1", Kind::Gone).0)
            .unwrap();
        assert!(!log.touched_since(start, &elsewhere, &[]));
        // Recorded again, a remembered name takes no second slot.
        log.record(&others[SLOTS]);
        assert!(!log.touched_since(start + 1, "user:1", &[]));
    }

    #[test]
    fn memory_is_bounded_whatever_the_names() {
        let log = InvalidationLog::new();
        let long = "x".repeat(200);
        for i in 0..2 * BUCKETS * SLOTS {
            let name = format!("{long}{i}");
            if i % 2 == 0 {
                log.record(&name);
            } else {
                log.record_soft(&name);
            }
        }
        let buckets = log.buckets.get().expect("allocated");
        assert_eq!(buckets.len(), BUCKETS);
        for bucket in buckets.iter() {
            let bucket = bucket.lock().unwrap();
            assert!(bucket.marks.capacity() <= SLOTS && bucket.at.capacity() <= SLOTS);
            assert_eq!(bucket.marks.len(), bucket.at.len());
        }
    }
}
