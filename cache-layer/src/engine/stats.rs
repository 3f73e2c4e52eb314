//! Counters every cache keeps: read by [`Cache::stats`](crate::Cache::stats) and exported
//! through the `metrics` facade (`export`), labelled by cache name; those of each site are in
//! `sites`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A snapshot of a cache's counters since it was built.
///
/// Every counter is also exported through the [`metrics`] facade as
/// `cache_<counter>_total{cache="<name>"}`; hits, misses, stale, loads and load errors per
/// site, with a `site` label as well (see [`Cache::site_stats`](crate::Cache::site_stats)).
/// The crate docs' chapter on metrics lists every series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups answered with a fresh value.
    pub hits: u64,
    /// Of the `hits`, those answered by the shared store (Redis) rather than memory.
    pub shared_hits: u64,
    /// Lookups that found nothing usable and had to load (or wait for a load).
    pub misses: u64,
    /// Lookups answered with a stale value while a background refresh runs.
    pub stale: u64,
    /// Lookups answered with a stale value because the loader failed (stale-if-error).
    pub stale_if_error: u64,
    /// Misses that waited for another caller's load instead of loading themselves.
    pub coalesced: u64,
    /// Loader runs (foreground and background).
    pub loads: u64,
    /// Loader runs that returned an error (or panicked, or were cancelled).
    pub load_errors: u64,
    /// Entries written to the cache.
    pub inserts: u64,
    /// Calls to [`Cache::invalidate`](crate::Cache::invalidate).
    pub invalidations: u64,
    /// Calls to [`Cache::soft_invalidate`](crate::Cache::soft_invalidate) (soft purges: the
    /// entries are kept, stale).
    pub soft_invalidations: u64,
    /// Entries evicted to stay inside the memory budget.
    pub evictions: u64,
    /// Shared-store (Redis) operations that failed or timed out; each fell back to the source.
    pub store_errors: u64,
    /// Shared-store values that could not be decoded (garbage, another type or format; for
    /// HTTP responses, also one this instance's storage gate refuses or stored under another
    /// key); each was treated as a miss and overwritten.
    pub decode_errors: u64,
    /// Loads' shared-store (Redis) writes not made, or on Redis Cluster deleted again right
    /// after, because an instance invalidated the key or a tag after the load began (or Redis
    /// could no longer tell): the value loaded before the invalidation is not kept.
    pub shared_writes_refused: u64,
    /// Shared-store (Redis) writes not made because one of the entry's tag sets in Redis
    /// already names the most entries a tag may (10,000; see "Redis layout" in the crate
    /// docs): the value stays in this instance's memory only (where that tier holds it), and
    /// no entry in Redis is deleted to make room.
    pub tag_sets_full: u64,
    /// Loads past their soft timeout: the caller (and the load's waiters) served a stale
    /// value while the load went on.
    pub soft_timeouts: u64,
    /// Loads past their hard timeout: the caller (and the load's waiters) got a
    /// [`TimeoutError`](crate::TimeoutError), a stale-if-error value, or an HTTP 504.
    pub hard_timeouts: u64,
    /// Calls to [`Cache::clear`](crate::Cache::clear) and
    /// [`Cache::clear_prefix`](crate::Cache::clear_prefix).
    pub clears: u64,
    /// Hooks (see [`CacheBuilder::on_eviction`](crate::CacheBuilder::on_eviction) and the
    /// others) that panicked: each panic was caught and logged, and the request went on.
    pub hook_panics: u64,
}

pub(crate) const STRIPES: usize = 8;

/// This thread's stripe, assigned round-robin on first use.
pub(crate) fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Hit,
    Miss,
    Stale,
    StaleIfError,
    Coalesced,
    Load,
    LoadError,
    Insert,
    Invalidation,
    SoftInvalidation,
    Eviction,
    StoreError,
    DecodeError,
    SharedHit,
    SharedWriteRefused,
    TagSetFull,
    Clear,
    HookPanic,
    SoftTimeout,
    HardTimeout,
}

impl Counter {
    pub(crate) const COUNT: usize = 20;

    /// The counters exported without a `site` label: the others are exported per site.
    pub(crate) const EXPORTED: [Counter; 15] = [
        Counter::StaleIfError,
        Counter::Coalesced,
        Counter::Insert,
        Counter::Invalidation,
        Counter::SoftInvalidation,
        Counter::Eviction,
        Counter::StoreError,
        Counter::DecodeError,
        Counter::SharedHit,
        Counter::SharedWriteRefused,
        Counter::TagSetFull,
        Counter::Clear,
        Counter::HookPanic,
        Counter::SoftTimeout,
        Counter::HardTimeout,
    ];

    /// Its value in `stats`.
    pub(crate) fn of(self, stats: &Stats) -> u64 {
        match self {
            Counter::Hit => stats.hits,
            Counter::Miss => stats.misses,
            Counter::Stale => stats.stale,
            Counter::StaleIfError => stats.stale_if_error,
            Counter::Coalesced => stats.coalesced,
            Counter::Load => stats.loads,
            Counter::LoadError => stats.load_errors,
            Counter::Insert => stats.inserts,
            Counter::Invalidation => stats.invalidations,
            Counter::SoftInvalidation => stats.soft_invalidations,
            Counter::Eviction => stats.evictions,
            Counter::StoreError => stats.store_errors,
            Counter::DecodeError => stats.decode_errors,
            Counter::SharedHit => stats.shared_hits,
            Counter::SharedWriteRefused => stats.shared_writes_refused,
            Counter::TagSetFull => stats.tag_sets_full,
            Counter::Clear => stats.clears,
            Counter::HookPanic => stats.hook_panics,
            Counter::SoftTimeout => stats.soft_timeouts,
            Counter::HardTimeout => stats.hard_timeouts,
        }
    }

    pub(crate) fn metric_name(self) -> &'static str {
        match self {
            Counter::Hit => "cache_hits_total",
            Counter::Miss => "cache_misses_total",
            Counter::Stale => "cache_stale_total",
            Counter::StaleIfError => "cache_stale_if_error_total",
            Counter::Coalesced => "cache_coalesced_total",
            Counter::Load => "cache_loads_total",
            Counter::LoadError => "cache_load_errors_total",
            Counter::Insert => "cache_inserts_total",
            Counter::Invalidation => "cache_invalidations_total",
            Counter::SoftInvalidation => "cache_soft_invalidations_total",
            Counter::Eviction => "cache_evictions_total",
            Counter::StoreError => "cache_store_errors_total",
            Counter::DecodeError => "cache_decode_errors_total",
            Counter::SharedHit => "cache_shared_hits_total",
            Counter::SharedWriteRefused => "cache_shared_writes_refused_total",
            Counter::TagSetFull => "cache_tag_sets_full_total",
            Counter::Clear => "cache_clears_total",
            Counter::HookPanic => "cache_hook_panics_total",
            Counter::SoftTimeout => "cache_soft_timeouts_total",
            Counter::HardTimeout => "cache_hard_timeouts_total",
        }
    }
}

/// A snapshot of one site's counters: a `#[cached]` function (by its name: module path and
/// function name, or its `name = "..."`), an HTTP route (axum's route pattern, with the `axum`
/// feature; else `unrouted`), a gRPC method (`/package.Service/Method`), or `other`, where a
/// cache counts every site past its first thousand. See [`Cache::site_stats`](crate::Cache::site_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SiteStats {
    /// The site's name, its `site` label in the metrics.
    pub name: String,
    /// Lookups answered with a fresh value.
    pub hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Lookups answered with a stale value while a background refresh runs.
    pub stale: u64,
    /// Loader runs (or calls of the inner service).
    pub loads: u64,
    /// Loads that failed.
    pub load_errors: u64,
}

impl SiteStats {
    /// Hits (fresh or stale) over lookups, from 0 to 1; `None` before the first lookup.
    pub fn hit_ratio(&self) -> Option<f64> {
        let served = self.hits.saturating_add(self.stale);
        let lookups = served.saturating_add(self.misses);
        (lookups > 0).then(|| served as f64 / lookups as f64)
    }
}

/// What a site counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SiteCounter {
    Hit,
    Miss,
    Stale,
    Load,
    LoadError,
}

impl SiteCounter {
    pub(crate) const COUNT: usize = 5;
    pub(crate) const ALL: [SiteCounter; SiteCounter::COUNT] = [
        SiteCounter::Hit,
        SiteCounter::Miss,
        SiteCounter::Stale,
        SiteCounter::Load,
        SiteCounter::LoadError,
    ];

    /// The cache-wide counter it adds to as well.
    pub(crate) fn cache_counter(self) -> Counter {
        match self {
            SiteCounter::Hit => Counter::Hit,
            SiteCounter::Miss => Counter::Miss,
            SiteCounter::Stale => Counter::Stale,
            SiteCounter::Load => Counter::Load,
            SiteCounter::LoadError => Counter::LoadError,
        }
    }

    /// Its Prometheus name (labels `cache` and `site`).
    pub(crate) fn metric_name(self) -> &'static str {
        match self {
            SiteCounter::Hit => "cache_hits_total",
            SiteCounter::Miss => "cache_misses_total",
            SiteCounter::Stale => "cache_stale_total",
            SiteCounter::Load => "cache_loads_total",
            SiteCounter::LoadError => "cache_load_errors_total",
        }
    }
}
