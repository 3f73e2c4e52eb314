//! Counters per site: a `#[cached]` function (its `Site`'s name), an HTTP route (axum's
//! `MatchedPath`, or the layer's fallback) or a gRPC method. A cache counts at most
//! [`MAX_SITES`] of them by name; any further site counts under [`OTHER`], so neither the
//! memory held nor the label values exported grow with what clients send.
//!
//! A `#[cached]` site reaches its counters through the [`SiteSlot`] in its `static`: after the
//! first call, a hit is one comparison and one relaxed atomic add, no look-up by name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use super::export::LazyHistogram;
use super::stats::{stripe_index, SiteCounter, SiteStats, STRIPES};

/// The most sites a cache counts by name; the rest count under [`OTHER`].
pub(crate) const MAX_SITES: usize = 1000;

/// The site every site past [`MAX_SITES`] counts under.
pub(crate) const OTHER: &str = "other";

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; SiteCounter::COUNT]);

/// One site's counters (striped by thread, as the cache's are) and its load-latency histogram.
pub(crate) struct SiteCounters {
    name: Box<str>,
    stripes: Box<[Stripe; STRIPES]>,
    load_seconds: LazyHistogram,
}

impl SiteCounters {
    fn new(name: &str) -> Self {
        SiteCounters {
            name: name.into(),
            stripes: Box::default(),
            load_seconds: LazyHistogram::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Counts `counter` here only (see [`Counters::count`] for here and in the cache).
    #[inline]
    pub(crate) fn add(&self, counter: SiteCounter) {
        self.add_in(stripe_index(), counter);
    }

    /// [`SiteCounters::add`] in the stripe `stripe` (this thread's).
    #[inline]
    pub(crate) fn add_in(&self, stripe: usize, counter: SiteCounter) {
        self.stripes[stripe].0[counter as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, counter: SiteCounter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add)
    }

    /// A snapshot of these counters.
    pub(crate) fn snapshot(&self) -> SiteStats {
        SiteStats {
            name: self.name.to_string(),
            hits: self.get(SiteCounter::Hit),
            misses: self.get(SiteCounter::Miss),
            stale: self.get(SiteCounter::Stale),
            loads: self.get(SiteCounter::Load),
            load_errors: self.get(SiteCounter::LoadError),
        }
    }

    /// Records a load's latency in `cache_load_seconds{cache, site}`.
    pub(crate) fn record_load(&self, cache: &str, took: Duration) {
        self.load_seconds.record(took.as_secs_f64(), || {
            metrics::histogram!(
                "cache_load_seconds",
                "cache" => cache.to_owned(),
                "site" => self.name.to_string()
            )
        });
    }
}

/// A cache's sites by name, at most [`MAX_SITES`] of them, then [`OTHER`].
pub(crate) struct Sites {
    by_name: RwLock<HashMap<Box<str>, Arc<SiteCounters>, foldhash::fast::RandomState>>,
    other: OnceLock<Arc<SiteCounters>>,
    /// Serialises adding a site, so that the bound is exact.
    adding: Mutex<()>,
}

impl Sites {
    pub(crate) fn new() -> Self {
        Sites {
            by_name: RwLock::default(),
            other: OnceLock::new(),
            adding: Mutex::new(()),
        }
    }

    /// The counters of the site `name`: its own while fewer than [`MAX_SITES`] are counted,
    /// else those of [`OTHER`].
    pub(crate) fn get(&self, name: &str) -> Arc<SiteCounters> {
        if let Some(found) = self.read().get(name) {
            return Arc::clone(found);
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = self.read().get(name) {
            return Arc::clone(found);
        }
        if self.read().len() >= MAX_SITES || name == OTHER {
            return Arc::clone(
                self.other
                    .get_or_init(|| Arc::new(SiteCounters::new(OTHER))),
            );
        }
        let site = Arc::new(SiteCounters::new(name));
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.into(), Arc::clone(&site));
        site
    }

    /// Counts `counter` for the site `name` (found by name, added if new).
    #[inline]
    pub(crate) fn add(&self, name: &str, counter: SiteCounter) {
        if let Some(found) = self.read().get(name) {
            return found.add(counter);
        }
        self.get(name).add(counter);
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<
        '_,
        HashMap<Box<str>, Arc<SiteCounters>, foldhash::fast::RandomState>,
    > {
        self.by_name.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every site counted, [`OTHER`] last when any site counts under it.
    pub(crate) fn all(&self) -> Vec<Arc<SiteCounters>> {
        let mut sites: Vec<_> = self.read().values().cloned().collect();
        sites.sort_by(|a, b| a.name.cmp(&b.name));
        sites.extend(self.other.get().cloned());
        sites
    }
}

/// Where a `#[cached]` site's `static` keeps the counters it counts into: the first call
/// fills it for that call's cache (identified by its `id`), and later calls on the same cache
/// reach them without a look-up by name. A site called on another cache too finds that
/// cache's counters by name.
#[derive(Debug, Default)]
pub struct SiteSlot(OnceLock<(u64, Arc<SiteCounters>)>);

impl SiteSlot {
    /// An empty slot, for a `static`.
    pub const fn new() -> Self {
        SiteSlot(OnceLock::new())
    }

    /// The counters of `name` in the cache `id` whose sites are `sites`.
    #[inline]
    pub(crate) fn counters(&self, id: u64, sites: &Sites, name: &str) -> SiteRef<'_> {
        match self.0.get() {
            Some((slot_id, counters)) if *slot_id == id => SiteRef::Slot(counters),
            _ => self.fill(id, sites, name),
        }
    }

    /// The first call's path (and another cache's): the counters found by name, kept in the
    /// slot if it is empty.
    #[cold]
    #[inline(never)]
    fn fill(&self, id: u64, sites: &Sites, name: &str) -> SiteRef<'_> {
        let counters = sites.get(name);
        let _ = self.0.set((id, Arc::clone(&counters)));
        SiteRef::Owned(counters)
    }
}

impl Clone for SiteSlot {
    /// An empty slot: a copied site finds its counters again on its first call.
    fn clone(&self) -> Self {
        SiteSlot::new()
    }
}

impl std::fmt::Debug for SiteCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCounters")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A site's counters, borrowed from its slot or found by name.
pub(crate) enum SiteRef<'a> {
    Slot(&'a Arc<SiteCounters>),
    Owned(Arc<SiteCounters>),
}

impl std::ops::Deref for SiteRef<'_> {
    type Target = Arc<SiteCounters>;

    #[inline]
    fn deref(&self) -> &Arc<SiteCounters> {
        match self {
            SiteRef::Slot(counters) => counters,
            SiteRef::Owned(counters) => counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_past_the_bound_count_as_other() {
        let sites = Sites::new();
        for i in 0..MAX_SITES + 50 {
            sites.get(&format!("/route/{i}")).add(SiteCounter::Hit);
        }
        let all = sites.all();
        assert_eq!(all.len(), MAX_SITES + 1);
        let other = all.last().unwrap();
        assert_eq!(other.name(), OTHER);
        assert_eq!(other.get(SiteCounter::Hit), 50);
    }

    #[test]
    fn a_slot_serves_its_first_cache_and_finds_others_by_name() {
        let (one, two) = (Sites::new(), Sites::new());
        let slot = SiteSlot::new();
        slot.counters(1, &one, "f").add(SiteCounter::Hit);
        slot.counters(1, &one, "f").add(SiteCounter::Hit);
        slot.counters(2, &two, "f").add(SiteCounter::Miss);
        assert_eq!(one.get("f").get(SiteCounter::Hit), 2);
        assert_eq!(two.get("f").get(SiteCounter::Miss), 1);
        assert_eq!(one.get("f").get(SiteCounter::Miss), 0);
    }
}
