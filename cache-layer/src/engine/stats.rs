//! Counters every cache keeps: read by [`Cache::stats`](crate::Cache::stats) and exported
//! through the `metrics` facade, labelled by cache name.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A snapshot of a cache's counters since it was built.
///
/// Every counter is also exported through the [`metrics`] facade as
/// `cache_<counter>_total{cache="<name>"}` (and the load latency as the histogram
/// `cache_load_seconds`), to whatever recorder the application installed *before* the cache
/// was built.
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
    /// Loads past their hard timeout: the caller got a timeout (a
    /// [`TimeoutError`](crate::TimeoutError), HTTP's `504`) or a stale value.
    pub hard_timeouts: u64,
    /// Calls to [`Cache::clear`](crate::Cache::clear) and
    /// [`Cache::clear_prefix`](crate::Cache::clear_prefix).
    pub clears: u64,
    /// Hooks (see [`CacheBuilder::on_eviction`](crate::CacheBuilder::on_eviction) and the
    /// others) that panicked: each panic was caught and logged, and the request went on.
    pub hook_panics: u64,
}

/// The live counters behind [`Stats`], with their `metrics` handles registered once so that
/// counting on the hit path is an atomic add, not a registry lookup. Counts are striped over
/// cache lines by thread, so that concurrent hits do not contend on one counter.
pub(crate) struct Counters {
    name: String,
    stripes: Box<[Stripe; STRIPES]>,
    handles: [metrics::Counter; Counter::COUNT],
    load_seconds: metrics::Histogram,
}

const STRIPES: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; Counter::COUNT]);

/// This thread's stripe, assigned round-robin on first use.
fn stripe_index() -> usize {
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
    SoftTimeout,
    HardTimeout,
    Clear,
    HookPanic,
}

impl Counter {
    const COUNT: usize = 20;
    const ALL: [Counter; Counter::COUNT] = [
        Counter::Hit,
        Counter::Miss,
        Counter::Stale,
        Counter::StaleIfError,
        Counter::Coalesced,
        Counter::Load,
        Counter::LoadError,
        Counter::Insert,
        Counter::Invalidation,
        Counter::SoftInvalidation,
        Counter::Eviction,
        Counter::StoreError,
        Counter::DecodeError,
        Counter::SharedHit,
        Counter::SharedWriteRefused,
        Counter::TagSetFull,
        Counter::SoftTimeout,
        Counter::HardTimeout,
        Counter::Clear,
        Counter::HookPanic,
    ];

    fn metric_name(self) -> &'static str {
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
            Counter::SoftTimeout => "cache_soft_timeouts_total",
            Counter::HardTimeout => "cache_hard_timeouts_total",
            Counter::Clear => "cache_clears_total",
            Counter::HookPanic => "cache_hook_panics_total",
        }
    }
}

impl Counters {
    pub(crate) fn new(name: &str) -> Self {
        let label = name.to_owned();
        Counters {
            name: label.clone(),
            stripes: Box::default(),
            handles: Counter::ALL
                .map(|c| metrics::counter!(c.metric_name(), "cache" => label.clone())),
            load_seconds: metrics::histogram!("cache_load_seconds", "cache" => label),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter) {
        self.stripes[stripe_index()].0[counter as usize].fetch_add(1, Ordering::Relaxed);
        self.handles[counter as usize].increment(1);
    }

    pub(crate) fn record_load(&self, took: Duration) {
        self.load_seconds.record(took.as_secs_f64());
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
            soft_timeouts: get(Counter::SoftTimeout),
            hard_timeouts: get(Counter::HardTimeout),
            clears: get(Counter::Clear),
            hook_panics: get(Counter::HookPanic),
        }
    }
}
