//! [`Counters`]: what a cache counts, whole (striped atomics behind [`Stats`]) and per site
//! (`sites`), and their export to the `metrics` recorder (`export`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::export::{Exported, Gauges, LazyHistogram};
use super::sites::{SiteCounters, Sites};
use super::stats::{stripe_index, Counter, SiteCounter, Stats, STRIPES};

/// The live counters behind [`Stats`]: counting on the hit path is an atomic add, never a
/// call into `metrics` (see `export`). Counts are striped over cache lines by thread, so that
/// concurrent hits do not contend on one counter.
pub(crate) struct Counters {
    name: String,
    /// Tells this cache apart from every other built in the process (site slots keep it).
    id: u64,
    stripes: Box<[Stripe; STRIPES]>,
    sites: Sites,
    exported: Exported,
    redis_seconds: LazyHistogram,
}

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; Counter::COUNT]);

impl Counters {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Counters {
            name: name.to_owned(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stripes: Box::default(),
            sites: Sites::new(),
            exported: Exported::default(),
            redis_seconds: LazyHistogram::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// This cache's identity among the caches of the process.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The counters of each site.
    #[inline]
    pub(crate) fn sites(&self) -> &Sites {
        &self.sites
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter) {
        self.stripes[stripe_index()].0[counter as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one Redis round trip (an attempt, answered or not) in `cache_redis_seconds`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn record_redis(&self, took: Duration) {
        self.redis_seconds.record(
            took.as_secs_f64(),
            || metrics::histogram!("cache_redis_seconds", "cache" => self.name.clone()),
        );
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: Counter| {
            self.stripes
                .iter()
                .map(|s| s.0[c as usize].load(Ordering::Relaxed))
                .sum()
        };
        Stats {
            hits: get(Counter::Hit),
            shared_hits: get(Counter::SharedHit),
            misses: get(Counter::Miss),
            stale: get(Counter::Stale),
            stale_if_error: get(Counter::StaleIfError),
            coalesced: get(Counter::Coalesced),
            loads: get(Counter::Load),
            load_errors: get(Counter::LoadError),
            inserts: get(Counter::Insert),
            invalidations: get(Counter::Invalidation),
            soft_invalidations: get(Counter::SoftInvalidation),
            evictions: get(Counter::Eviction),
            store_errors: get(Counter::StoreError),
            decode_errors: get(Counter::DecodeError),
            shared_writes_refused: get(Counter::SharedWriteRefused),
            tag_sets_full: get(Counter::TagSetFull),
            clears: get(Counter::Clear),
            hook_panics: get(Counter::HookPanic),
            soft_timeouts: get(Counter::SoftTimeout),
            hard_timeouts: get(Counter::HardTimeout),
        }
    }
}

impl Counters {
    /// Counts `counter` for `site` and for the whole cache.
    #[inline]
    pub(crate) fn count(&self, site: &SiteCounters, counter: SiteCounter) {
        // One stripe for both: this thread's, looked up once.
        let stripe = stripe_index();
        let whole = counter.cache_counter() as usize;
        self.stripes[stripe].0[whole].fetch_add(1, Ordering::Relaxed);
        site.add_in(stripe, counter);
    }

    /// Counts `counter` for the site named `site` (found by name) and for the whole cache.
    #[inline]
    pub(crate) fn count_named(&self, site: &str, counter: SiteCounter) {
        self.add(counter.cache_counter());
        self.sites.add(site, counter);
    }
}

impl Counters {
    /// Writes every counter (as its total) and `gauges` to the current recorder.
    pub(crate) fn export(&self, gauges: Gauges) {
        let sites = self.sites.all();
        let counts = sites.iter().map(|site| {
            (
                site.name(),
                SiteCounter::ALL.map(|counter| site.get(counter)),
            )
        });
        self.exported
            .write(&self.name, &self.snapshot(), gauges, counts);
    }
}
