//! The in-process store: moka, weighed in bytes, plus the tag index that lets
//! `invalidate(tag)` find every entry carrying a tag without scanning the cache.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;

use super::thread_copies::{self, FrontId};
use crate::engine::clock;
use crate::engine::entry::Entry;
use crate::engine::hooks::{self, Eviction, EvictionCause, EvictionHook};
use crate::engine::stats::{Counter, Counters};

/// tag → (key → id of the entry that registered it).
type TagIndex = Mutex<HashMap<Box<str>, HashMap<Box<str>, u64>>>;

/// Bytes of bookkeeping per entry on top of its key's text, tags and value: moka's nodes
/// (value entry, entry info, table bucket, LRU deque node, the key's `Arc` and a share of the
/// table), the `Arc<Entry>`, and the allocator's header on each of these allocations.
/// Measured with a counting allocator (tests/memory_budget.rs), not guessed.
pub(crate) const ENTRY_OVERHEAD: usize = 448;
/// Bytes the tag index spends per (tag, key) pair besides their text: a slot in the tag's map,
/// the key's copy and, shared by the keys under a tag, the tag's own slot and map.
const TAG_INDEX_PAIR: usize = 128;

pub(crate) struct MemoryStore {
    entries: moka::sync::Cache<Box<str>, Arc<Entry>, foldhash::fast::RandomState>,
    tags: Arc<TagIndex>,
    /// Each thread's copies of the entries it read last (see `front`).
    front: FrontId,
    hasher: foldhash::fast::RandomState,
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
    ///
    /// `on_eviction`, when set, is told of every entry that leaves, with the cause.
    pub(crate) fn new(
        budget: u64,
        counters: Arc<Counters>,
        on_eviction: Option<EvictionHook>,
    ) -> Self {
        let tags: Arc<TagIndex> = Arc::default();
        let index = Arc::clone(&tags);
        let entries = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(weigh_entry)
            .eviction_policy(EvictionPolicy::lru())
            // Called at once for replacements and explicit removals, and when moka's
            // maintenance evicts: each marks the entry so no thread serves its copy again.
            .eviction_listener(move |key: Arc<Box<str>>, entry: Arc<Entry>, cause| {
                entry.mark_removed();
                if cause == RemovalCause::Size {
                    counters.add(Counter::Eviction);
                }
                unregister_tags(&index, &key, &entry);
                if let Some(hook) = &on_eviction {
                    let event = Eviction {
                        key: &key,
                        cause: cause_of(cause, &entry),
                    };
                    hooks::guarded(&counters, "on_eviction", || hook(&event));
                }
            })
            // Keys are rendered from trusted templates, and foldhash is several times faster than
            // SipHash on short keys while still seeded per process.
            .build_with_hasher(foldhash::fast::RandomState::default());
        MemoryStore {
            entries,
            tags,
            front: FrontId::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The entry under `key`: this thread's copy while the store still holds it, else moka's.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let epoch = self.front.epoch();
        let hash = self.hasher.hash_one(key);
        if let Some((entry, record)) = thread_copies::get(&self.front, epoch, hash, key) {
            if record {
                // Lets moka's LRU order see that the key is still read.
                drop(self.entries.get(key));
            }
            return Some(entry);
        }
        let entry = self.entries.get(key)?;
        thread_copies::keep(&self.front, epoch, hash, key, &entry);
        Some(entry)
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
        self.remove(name);
        let tagged = self
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        for key in tagged.into_iter().flat_map(HashMap::into_keys) {
            self.remove(&key);
        }
    }

    /// How many entries `names` tag, counted until more than `enough`.
    pub(crate) fn tagged<S: AsRef<str>>(&self, names: &[S], enough: usize) -> usize {
        let index = self.tags.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tagged = 0usize;
        for name in names {
            if tagged > enough {
                break;
            }
            tagged += index.get(name.as_ref()).map_or(0, HashMap::len);
        }
        tagged
    }

    /// Makes the entry stored under `name` and every entry tagged `name` stale (a soft purge:
    /// see [`Entry::mark_stale`]); they stay in the store.
    pub(crate) fn mark_stale(&self, name: &str) {
        if let Some(entry) = self.entries.get(name) {
            entry.mark_stale();
        }
        let tagged: Vec<(Box<str>, u64)> = self
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|keys| keys.iter().map(|(key, id)| (key.clone(), *id)).collect())
            .unwrap_or_default();
        for (key, id) in tagged {
            // Only the entry that registered the tag: a newer one under the key may not carry it.
            match self.entries.get(&key) {
                Some(entry) if entry.id == id => entry.mark_stale(),
                _ => {}
            }
        }
    }

    /// Drops every entry.
    pub(crate) fn invalidate_all(&self) {
        // moka drops the entries lazily (and only then tells the listener): the epoch retires
        // every thread's copies now.
        self.front.advance();
        self.entries.invalidate_all();
        self.tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Drops every entry whose key starts with `prefix` (every entry, when it is empty): one
    /// pass over the store, so `O(entries)`.
    pub(crate) fn remove_prefix(&self, prefix: &str) {
        if prefix.is_empty() {
            return self.invalidate_all();
        }
        let keys: Vec<Arc<Box<str>>> = self
            .entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with(prefix))
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    /// Drops only the entry stored under `key`.
    pub(crate) fn remove(&self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            // The listener marks it too; this makes it so before `remove` returns.
            entry.mark_removed();
        }
    }

    /// Runs moka's pending maintenance (evictions, expirations, listener calls) now.
    pub(crate) fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// The budget in bytes.
    pub(crate) fn budget(&self) -> u64 {
        self.entries.policy().max_capacity().unwrap_or(u64::MAX)
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }
}

/// Why `entry` left, as the eviction hook is told: moka's explicit removals are expiries when
/// the entry was past its last window (a read removes such an entry), else invalidations.
fn cause_of(cause: RemovalCause, entry: &Entry) -> EvictionCause {
    match cause {
        RemovalCause::Size => EvictionCause::Size,
        RemovalCause::Replaced => EvictionCause::Replaced,
        RemovalCause::Expired => EvictionCause::Expired,
        RemovalCause::Explicit if entry.deadlines.expires_at <= clock::now() => {
            EvictionCause::Expired
        }
        RemovalCause::Explicit => EvictionCause::Invalidated,
    }
}

/// moka's weigher: the key's bytes, the entry's own estimate, and what the tag index holds for
/// it, so that the index lives inside the budget and leaves with the entry.
#[allow(clippy::borrowed_box)] // moka hands the weigher `&K`, and `K` is `Box<str>`.
fn weigh_entry(key: &Box<str>, entry: &Arc<Entry>) -> u32 {
    let index: usize = entry
        .tags
        .iter()
        .map(|tag| TAG_INDEX_PAIR + tag.len() + key.len())
        .sum();
    u32::try_from(key.len().saturating_add(index))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use super::*;
    use crate::engine::entry::Deadlines;

    fn store() -> MemoryStore {
        MemoryStore::new(1 << 20, Arc::new(Counters::new("front-test")), None)
    }

    fn entry(value: u32, tags: &[&str], weight: u32) -> Arc<Entry> {
        let now = clock::now();
        let later = now + Duration::from_secs(60);
        let deadlines = Deadlines {
            fresh_until: later,
            stale_until: later,
            expires_at: later,
        };
        let tags = tags.iter().map(|t| Box::<str>::from(*t)).collect();
        Arc::new(Entry::new(Arc::new(value), deadlines, tags, weight))
    }

    fn read(store: &MemoryStore, key: &str) -> Option<u32> {
        store
            .get(key)
            .map(|e| *e.value.downcast_ref::<u32>().expect("a u32"))
    }

    /// Reads `key` twice on this thread (the second from its front copy), then runs `change`
    /// on another thread, then reads again here.
    fn after_change_elsewhere(
        store: &Arc<MemoryStore>,
        key: &str,
        change: impl FnOnce(&MemoryStore) + Send + 'static,
    ) -> Option<u32> {
        assert_eq!(read(store, key), Some(1));
        assert_eq!(read(store, key), Some(1));
        let other = Arc::clone(store);
        std::thread::spawn(move || change(&other))
            .join()
            .expect("no panic");
        read(store, key)
    }

    #[test]
    fn a_copy_in_front_is_not_served_after_its_key_is_invalidated_elsewhere() {
        let store = Arc::new(store());
        store.insert("user:1", entry(1, &[], 8));
        assert_eq!(
            after_change_elsewhere(&store, "user:1", |s| s.invalidate("user:1")),
            None
        );
    }

    #[test]
    fn a_copy_in_front_is_not_served_after_its_tag_is_invalidated_elsewhere() {
        let store = Arc::new(store());
        store.insert("user:1", entry(1, &["users"], 8));
        assert_eq!(
            after_change_elsewhere(&store, "user:1", |s| s.invalidate("users")),
            None
        );
    }

    #[test]
    fn a_copy_in_front_is_not_served_after_invalidate_all_elsewhere() {
        let store = Arc::new(store());
        store.insert("user:1", entry(1, &[], 8));
        assert_eq!(
            after_change_elsewhere(&store, "user:1", MemoryStore::invalidate_all),
            None
        );
    }

    #[test]
    fn a_soft_purge_marks_the_key_and_its_tag_stale_and_keeps_them() {
        let store = Arc::new(store());
        store.insert("user:1", entry(1, &["users"], 8));
        store.insert("user:2", entry(2, &["users"], 8));
        store.insert("org:1", entry(3, &[], 8));
        let now = clock::now();
        let age = |key: &str| store.get(key).map(|e| e.age(now));
        // Read twice first: the copies this thread keeps in front see the mark too.
        assert_eq!(age("user:1"), Some(crate::engine::entry::Age::Fresh));
        assert_eq!(age("user:1"), Some(crate::engine::entry::Age::Fresh));
        let other = Arc::clone(&store);
        std::thread::spawn(move || other.mark_stale("users"))
            .join()
            .unwrap();
        assert_eq!(age("user:1"), Some(crate::engine::entry::Age::Stale));
        assert_eq!(age("user:2"), Some(crate::engine::entry::Age::Stale));
        assert_eq!(age("org:1"), Some(crate::engine::entry::Age::Fresh));
        store.mark_stale("org:1");
        assert_eq!(age("org:1"), Some(crate::engine::entry::Age::Stale));
        assert_eq!(read(&store, "user:1"), Some(1));
    }

    #[test]
    fn a_replaced_entry_is_read_as_its_replacement() {
        let store = Arc::new(store());
        store.insert("user:1", entry(1, &[], 8));
        assert_eq!(
            after_change_elsewhere(&store, "user:1", |s| s.insert("user:1", entry(2, &[], 8))),
            Some(2)
        );
    }

    #[test]
    fn two_stores_do_not_share_copies_of_equal_keys() {
        let (a, b) = (store(), store());
        a.insert("k", entry(1, &[], 8));
        b.insert("k", entry(2, &[], 8));
        for _ in 0..3 {
            assert_eq!(read(&a, "k"), Some(1));
            assert_eq!(read(&b, "k"), Some(2));
        }
        a.remove("k");
        assert_eq!(read(&a, "k"), None);
        assert_eq!(read(&b, "k"), Some(2));
    }

    #[test]
    fn large_entries_are_not_kept_alive_in_front_after_removal() {
        let store = store();
        let big = entry(1, &[], thread_copies::MAX_WEIGHT + 1);
        let weak: Weak<Entry> = Arc::downgrade(&big);
        store.insert("big", big);
        assert_eq!(read(&store, "big"), Some(1));
        store.remove("big");
        // moka's table frees removed slots through crossbeam's epoch collector, shared by
        // every cache in the process: the slot (and so the entry) can outlive the removal
        // until this thread's deferred frees are collected, which removals of other keys
        // bring about. No copy in front keeps it past that.
        for i in 0..10_000 {
            store.run_pending_tasks();
            if weak.upgrade().is_none() {
                break;
            }
            let filler = format!("filler:{i}");
            store.insert(&filler, entry(1, &[], 8));
            store.remove(&filler);
        }
        assert!(
            weak.upgrade().is_none(),
            "nothing holds a removed large entry"
        );
    }

    fn pairs_in_tag_index(store: &MemoryStore) -> usize {
        store.tags.lock().unwrap().values().map(HashMap::len).sum()
    }

    #[test]
    fn evicted_entries_leave_the_tag_index() {
        let store = MemoryStore::new(64 * 1024, Arc::new(Counters::new("tags-test")), None);
        for i in 0..20_000 {
            let own = format!("item:{i}");
            store.insert(&format!("k{i}"), entry(1, &[own.as_str(), "items"], 100));
            if i % 1000 == 999 {
                store.run_pending_tasks();
                let held = usize::try_from(store.entry_count()).unwrap();
                assert!(held < 200, "{held} entries in a 64 KiB budget");
                assert_eq!(
                    pairs_in_tag_index(&store),
                    2 * held,
                    "two tags per entry held, none for evicted ones"
                );
            }
        }
        store.invalidate("items");
        store.run_pending_tasks();
        assert_eq!(store.entry_count(), 0);
        assert_eq!(pairs_in_tag_index(&store), 0);
        assert!(store.tags.lock().unwrap().is_empty());
    }

    #[test]
    fn the_tag_index_is_weighed_with_the_entry() {
        let store = store();
        store.insert("a", entry(1, &[], 100));
        store.insert("b", entry(1, &["users", "org:1"], 100));
        store.run_pending_tasks();
        let untagged = 1 + 100;
        let tagged = 1 + 100 + (TAG_INDEX_PAIR + 5 + 1) + (TAG_INDEX_PAIR + 5 + 1);
        assert_eq!(store.weighted_size(), (untagged + tagged) as u64);
    }

    #[test]
    fn long_keys_are_not_kept_in_front() {
        let store = store();
        let long = "k".repeat(thread_copies::MAX_KEY + 1);
        let epoch = store.front.epoch();
        let hash = store.hasher.hash_one(long.as_str());
        let kept = entry(1, &[], 8);
        thread_copies::keep(&store.front, epoch, hash, &long, &kept);
        assert!(thread_copies::get(&store.front, epoch, hash, &long).is_none());
        thread_copies::keep(&store.front, epoch, hash, "short", &kept);
        let hash = store.hasher.hash_one("short");
        thread_copies::keep(&store.front, epoch, hash, "short", &kept);
        assert!(thread_copies::get(&store.front, epoch, hash, "short").is_some());
    }
}
