//! The in-process store: moka, weighed in bytes, plus the tag index that lets
//! `invalidate(tag)` find every entry carrying a tag without scanning the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;

use crate::entry::Entry;
use crate::stats::{Counter, Counters};

/// tag → (key → id of the entry that registered it).
type TagIndex = Mutex<HashMap<Box<str>, HashMap<Box<str>, u64>>>;

/// Bytes of bookkeeping per entry on top of key, tags and value: moka's node and deques, the
/// `Arc<Entry>`, the hash-map slots. Deliberately generous so the budget is not overrun by
/// many small entries.
pub(crate) const ENTRY_OVERHEAD: usize = 192;

pub(crate) struct MemoryStore {
    entries: moka::sync::Cache<Box<str>, Arc<Entry>, foldhash::fast::RandomState>,
    tags: Arc<TagIndex>,
}

impl MemoryStore {
    /// A store holding at most `budget` bytes (as estimated by each entry's weight).
    ///
    /// Eviction is LRU rather than moka's default TinyLFU: TinyLFU may refuse to admit a key it
    /// has not seen often, and a memoised value that was just loaded at the source's expense
    /// should be served on the next call.
    ///
    /// Entries carry their own deadlines, checked on every read; moka's per-entry expiry is not
    /// used because it costs a timer-wheel update on every hit. An entry past its last window is
    /// removed when it is next read, and otherwise ages out of the LRU order within the budget.
    pub(crate) fn new(budget: u64, counters: Arc<Counters>) -> Self {
        let tags: Arc<TagIndex> = Arc::default();
        let index = Arc::clone(&tags);
        let entries = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(weigh_entry)
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |key: Arc<Box<str>>, entry: Arc<Entry>, cause| {
                if cause == RemovalCause::Size {
                    counters.add(Counter::Eviction);
                }
                unregister_tags(&index, &key, &entry);
            })
            // Keys are rendered from trusted templates, and foldhash is several times faster than
            // SipHash on short keys while still seeded per process.
            .build_with_hasher(foldhash::fast::RandomState::default());
        MemoryStore { entries, tags }
    }

    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    pub(crate) fn insert(&self, key: &str, entry: Arc<Entry>) {
        if !entry.tags.is_empty() {
            let mut index = self.tags.lock().unwrap_or_else(PoisonError::into_inner);
            for tag in entry.tags.iter() {
                index
                    .entry(tag.clone())
                    .or_default()
                    .insert(key.into(), entry.id);
            }
        }
        self.entries.insert(key.into(), entry);
    }

    /// Drops the entry stored under `name` and every entry tagged `name`.
    pub(crate) fn invalidate(&self, name: &str) {
        self.entries.invalidate(name);
        let tagged = self
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        for key in tagged.into_iter().flat_map(HashMap::into_keys) {
            self.entries.invalidate(&key);
        }
    }

    /// Drops every entry.
    pub(crate) fn invalidate_all(&self) {
        self.entries.invalidate_all();
        self.tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Drops only the entry stored under `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.entries.invalidate(key);
    }

    /// Runs moka's pending maintenance (evictions, expirations, listener calls) now.
    pub(crate) fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }
}

/// moka's weigher: the key's bytes plus the entry's estimate.
#[allow(clippy::borrowed_box)] // moka hands the weigher `&K`, and `K` is `Box<str>`.
fn weigh_entry(key: &Box<str>, entry: &Arc<Entry>) -> u32 {
    u32::try_from(key.len())
        .unwrap_or(u32::MAX)
        .saturating_add(entry.weight)
}

/// Removes a departed entry from the tag index, unless its key was already re-registered by a
/// newer entry.
fn unregister_tags(index: &TagIndex, key: &str, entry: &Entry) {
    if entry.tags.is_empty() {
        return;
    }
    let mut index = index.lock().unwrap_or_else(PoisonError::into_inner);
    for tag in entry.tags.iter() {
        if let Some(keys) = index.get_mut(tag) {
            if keys.get(key) == Some(&entry.id) {
                keys.remove(key);
            }
            if keys.is_empty() {
                index.remove(tag);
            }
        }
    }
}
