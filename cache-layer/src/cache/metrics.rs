//! What a cache tells operators: [`Cache::site_stats`], [`Cache::export_metrics`], and the
//! thread that exports every live cache's metrics each second, so that a recorder installed at
//! any time (before or after the cache was built) receives them.

use std::sync::{Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use super::{Cache, Inner};
use crate::engine::export::Gauges;
use crate::engine::stats::SiteStats;

/// How often the export thread writes every live cache's counters and gauges.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

impl Cache {
    /// A snapshot of the counters of each site this cache has served: each `#[cached]`
    /// function, HTTP route and gRPC method, sorted by name, with `other` last when more than
    /// a thousand sites were seen (the rest count there). See [`SiteStats`].
    ///
    /// ```
    /// use cache_layer::{cached, Cache};
    ///
    /// #[cached(ttl = "1m", name = "square")]
    /// async fn square(x: u64) -> u64 { x * x }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// square(3).await;
    /// square(3).await;
    /// let site = Cache::global().site_stats().into_iter().find(|s| s.name == "square").unwrap();
    /// assert_eq!((site.hits, site.misses, site.loads), (1, 1, 1));
    /// assert_eq!(site.hit_ratio(), Some(0.5));
    /// # });
    /// ```
    pub fn site_stats(&self) -> Vec<SiteStats> {
        let counters = self.inner.counters();
        counters
            .sites()
            .all()
            .iter()
            .map(|site| site.snapshot())
            .collect()
    }

    /// Writes this cache's metrics to the current `metrics` recorder now: every counter as its
    /// total so far, and the gauges (entries and bytes in memory, the budget, the breaker).
    ///
    /// A thread does this for every live cache each second, so a recorder installed at any
    /// time receives the cache's metrics; call it yourself before rendering them (a
    /// Prometheus scrape handler, say) to show the latest figures. Hits and misses themselves
    /// never call into `metrics`: they add to atomic counters that this reads.
    pub fn export_metrics(&self) {
        self.inner.counters().export(self.gauges());
    }

    /// The gauges [`Cache::export_metrics`] writes.
    pub(crate) fn gauges(&self) -> Gauges {
        let memory = self.inner.memory();
        // Evictions and expiries pending in moka are applied first, so the figures are current.
        memory.run_pending_tasks();
        let shared = self.shared_tier();
        Gauges {
            entries: memory.entry_count(),
            bytes: memory.weighted_size(),
            budget: memory.budget(),
            breaker_open: shared.is_some_and(|tier| tier.store.breaker_open()),
            shared: shared.is_some(),
        }
    }
}

/// The caches the export thread writes: every cache built, until it is dropped.
static LIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// Adds `cache` to those the export thread writes each second, starting the thread once.
pub(super) fn export_periodically(cache: &Cache) {
    static STARTED: OnceLock<()> = OnceLock::new();
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(std::sync::Arc::downgrade(&cache.inner));
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("cache-layer-metrics".into())
            .spawn(|| loop {
                std::thread::sleep(EXPORT_EVERY);
                export_live();
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread for the metrics export: call Cache::export_metrics");
        }
    });
}

/// Exports every live cache once, forgetting those dropped.
fn export_live() {
    let live: Vec<Cache> = {
        let mut caches = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|cache| cache.strong_count() > 0);
        caches
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| Cache { inner })
            .collect()
    };
    for cache in live {
        // A panicking recorder must not end the thread (nor poison anything of the cache's).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.export_metrics()));
    }
}
