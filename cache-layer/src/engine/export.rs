//! The `metrics` export. Counting never touches the `metrics` facade: counters are atomics
//! ([`Counters`], per site [`SiteCounters`](super::sites::SiteCounters)), written to the
//! recorder as absolute values by [`Counters::export`] (every second, and on
//! `Cache::export_metrics`). Histograms are recorded where they happen, through handles kept
//! per recorder ([`LazyHistogram`]). Either way, handles are taken again whenever the current
//! recorder is another one than they were taken from: a recorder installed after the cache was
//! built receives everything from then on (and every counter's total so far).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use metrics::{Counter, Gauge, Histogram, Recorder};

use super::stats::{Counter as CacheCounter, SiteCounter, Stats};

/// Which recorder is current (on this thread): its address and size. The no-op recorder
/// `metrics` falls back to has size zero, so it is told apart from any recorder holding state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecorderId(usize, usize);

impl RecorderId {
    pub(crate) fn current() -> Self {
        metrics::with_recorder(|recorder: &dyn Recorder| {
            let address = (recorder as *const dyn Recorder).cast::<()>() as usize;
            RecorderId(address, std::mem::size_of_val(recorder))
        })
    }
}

/// A histogram whose handle is taken on first use, and again when the recorder changes.
#[derive(Default)]
pub(crate) struct LazyHistogram(Mutex<Option<(RecorderId, Histogram)>>);

impl LazyHistogram {
    /// Records `value`; `register` takes the handle (with its labels) when needed.
    pub(crate) fn record(&self, value: f64, register: impl FnOnce() -> Histogram) {
        let id = RecorderId::current();
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((known, histogram)) if *known == id => histogram.record(value),
            _ => {
                let histogram = register();
                histogram.record(value);
                *slot = Some((id, histogram));
            }
        }
    }
}

/// The gauges a cache exports besides its counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Gauges {
    /// Entries in memory.
    pub(crate) entries: u64,
    /// Bytes in memory (the entries' weights).
    pub(crate) bytes: u64,
    /// The memory budget in bytes.
    pub(crate) budget: u64,
    /// Whether the shared tier's circuit breaker is open (`false` without a shared tier).
    pub(crate) breaker_open: bool,
    /// Whether a shared tier is configured.
    pub(crate) shared: bool,
}

/// The handles of one recorder: the cache's counters and gauges, and each site's counters.
pub(crate) struct Handles {
    id: RecorderId,
    counters: Vec<Counter>,
    gauges: [Gauge; 5],
    sites: HashMap<String, [Counter; SiteCounter::COUNT], foldhash::fast::RandomState>,
}

impl Handles {
    fn new(id: RecorderId, cache: &str) -> Self {
        let label = || cache.to_owned();
        Handles {
            id,
            counters: CacheCounter::EXPORTED
                .iter()
                .map(|c| metrics::counter!(c.metric_name(), "cache" => label()))
                .collect(),
            gauges: [
                metrics::gauge!("cache_memory_entries", "cache" => label()),
                metrics::gauge!("cache_memory_bytes", "cache" => label()),
                metrics::gauge!("cache_memory_budget_bytes", "cache" => label()),
                metrics::gauge!("cache_breaker_open", "cache" => label()),
                metrics::gauge!("cache_shared_tier", "cache" => label()),
            ],
            sites: HashMap::default(),
        }
    }

    fn site(&mut self, cache: &str, name: &str) -> &[Counter; SiteCounter::COUNT] {
        self.sites.entry(name.to_owned()).or_insert_with(|| {
            SiteCounter::ALL.map(|c| {
                metrics::counter!(
                    c.metric_name(),
                    "cache" => cache.to_owned(),
                    "site" => name.to_owned()
                )
            })
        })
    }
}

/// Where a cache's handles are kept between exports.
#[derive(Default)]
pub(crate) struct Exported(Mutex<Option<Handles>>);

impl Exported {
    /// Writes `stats`, `gauges` and each site's counts to the current recorder, as the cache
    /// `name`'s.
    pub(crate) fn write<'a>(
        &self,
        name: &str,
        stats: &Stats,
        gauges: Gauges,
        sites: impl Iterator<Item = (&'a str, [u64; SiteCounter::COUNT])>,
    ) {
        let id = RecorderId::current();
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_none_or(|handles| handles.id != id) {
            *slot = Some(Handles::new(id, name));
        }
        let Some(handles) = slot.as_mut() else {
            return;
        };
        for (counter, handle) in CacheCounter::EXPORTED.iter().zip(&handles.counters) {
            handle.absolute(counter.of(stats));
        }
        let [entries, bytes, budget, breaker, shared] = &handles.gauges;
        entries.set(gauges.entries as f64);
        bytes.set(gauges.bytes as f64);
        budget.set(gauges.budget as f64);
        breaker.set(f64::from(u8::from(gauges.breaker_open)));
        shared.set(f64::from(u8::from(gauges.shared)));
        for (site, counts) in sites {
            for (count, handle) in counts.iter().zip(handles.site(name, site)) {
                handle.absolute(*count);
            }
        }
    }
}
