//! A per-thread front for the memory store: each thread keeps the last entries it read, and
//! answers a repeated read of the same key without touching moka's shared structures (its
//! concurrent table and its read log: most of a hit's cost, and the only writes to shared memory
//! a hit makes).
//!
//! A kept copy is served only while the store still holds it: every way an entry leaves the
//! store marks it (`Entry::mark_removed`: invalidation, replacement, eviction, removal), and
//! `invalidate_all` moves the store's epoch on; a copy taken before either is dropped on its next
//! read. One front read in [`RECORD_EVERY`] still goes through moka, so that its LRU order sees
//! which keys are hot. Only entries up to [`MAX_WEIGHT`] bytes under keys up to [`MAX_KEY`] bytes
//! are kept, in [`SLOTS`] slots per thread: that bounds what a thread can keep alive after the
//! store dropped it, and what its slots' key buffers grow to.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::engine::entry::Entry;

/// Slots per thread (direct-mapped by key hash).
pub(crate) const SLOTS: usize = 64;
/// The largest entry (by its budget weight) kept in front.
pub(crate) const MAX_WEIGHT: u32 = 16 * 1024;
/// The longest key kept in front (a slot's key buffer keeps the capacity of the longest key
/// it held).
pub(crate) const MAX_KEY: usize = 1024;
/// One front hit in this many is also read through moka, for its LRU order.
pub(crate) const RECORD_EVERY: u32 = 16;

/// The store's side: who it is and which copies are still valid.
#[derive(Debug)]
pub(crate) struct FrontId {
    id: u64,
    epoch: AtomicU64,
}

impl FrontId {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        FrontId {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
        }
    }

    /// The epoch to read under: copies kept under an older one are not served.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Invalidates every copy of this store's entries on every thread.
    pub(crate) fn advance(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Slot {
    store: u64,
    epoch: u64,
    key: String,
    entry: Option<Arc<Entry>>,
}

struct Front {
    slots: Vec<Slot>,
    reads: u32,
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front {
        slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        reads: 0,
    });
}

#[inline]
fn slot_index(store: &FrontId, hash: u64) -> usize {
    // `SLOTS` is a power of two; the store id spreads two caches' equal keys apart.
    ((hash ^ store.id.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 7) as usize % SLOTS
}

/// This thread's copy of `key` (hashing to `hash`), if it is still the store's entry; and
/// whether this read should also go through moka. A stale copy is dropped.
#[inline]
pub(crate) fn get(store: &FrontId, epoch: u64, hash: u64, key: &str) -> Option<(Arc<Entry>, bool)> {
    let mut departed = None;
    let found = FRONT
        .try_with(|front| {
            let mut front = front.try_borrow_mut().ok()?;
            let front = &mut *front;
            let slot = &mut front.slots[slot_index(store, hash)];
            if slot.store != store.id || slot.key != key {
                return None;
            }
            let entry = slot.entry.as_ref()?;
            if slot.epoch != epoch || entry.is_removed() {
                departed = slot.entry.take();
                return None;
            }
            let entry = Arc::clone(entry);
            front.reads = front.reads.wrapping_add(1);
            Some((entry, front.reads % RECORD_EVERY == 0))
        })
        .ok()
        .flatten();
    // Dropped outside the borrow: the last reference runs the value's destructor.
    drop(departed);
    found
}

/// Keeps `entry`, just read from the store under `epoch`, as this thread's copy of `key`.
#[inline]
pub(crate) fn keep(store: &FrontId, epoch: u64, hash: u64, key: &str, entry: &Arc<Entry>) {
    if entry.weight > MAX_WEIGHT || key.len() > MAX_KEY {
        return;
    }
    let replaced = FRONT
        .try_with(|front| {
            let mut front = front.try_borrow_mut().ok()?;
            let slot = &mut front.slots[slot_index(store, hash)];
            slot.store = store.id;
            slot.epoch = epoch;
            slot.key.clear();
            slot.key.push_str(key);
            slot.entry.replace(Arc::clone(entry))
        })
        .ok()
        .flatten();
    drop(replaced);
}
