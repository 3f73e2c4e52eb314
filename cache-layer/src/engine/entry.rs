//! What one cached value is: the value itself plus its lifetime (fresh → stale → stale-if-error
//! → gone) and the tags it answers to.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::{self, Instant};
use super::random;

/// A stored value, type-erased. A memory hit clones the concrete value back out; it is never
/// serialised.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// How long an entry lives, per call site (a `#[cached]` fn) or per response.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Lifetime {
    /// Fresh period before jitter.
    pub(crate) ttl: Duration,
    /// Stale-while-revalidate window after the fresh period.
    pub(crate) stale: Duration,
    /// Stale-if-error window after the stale window.
    pub(crate) stale_if_error: Duration,
    /// Jitter as a fraction of `ttl` (`0.1` = ±10%); `None` takes the cache's default.
    pub(crate) jitter: Option<f64>,
}

impl Lifetime {
    /// The deadlines of an entry created `now`, with `jitter` (a fraction) applied to the
    /// fresh period only so that the stale windows keep their configured length.
    pub(crate) fn deadlines(&self, now: Instant, default_jitter: f64) -> Deadlines {
        let jitter = self.jitter.unwrap_or(default_jitter);
        Deadlines::from_windows(
            now,
            jittered(self.ttl, jitter),
            self.stale,
            self.stale_if_error,
        )
    }
}

/// `ttl` scaled by a uniform factor in `[1 - jitter, 1 + jitter]`.
pub(crate) fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 || ttl.is_zero() {
        return ttl;
    }
    let factor = 1.0 + jitter * (random::f64() * 2.0 - 1.0);
    // `mul_f64` panics when the product does not fit: clamp first, the clock clamps anyway.
    ttl.min(clock::HORIZON).mul_f64(factor.clamp(0.0, 2.0))
}

/// When an entry stops being fresh, stops being servable as stale, and disappears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadlines {
    pub(crate) fresh_until: Instant,
    pub(crate) stale_until: Instant,
    pub(crate) expires_at: Instant,
}

impl Deadlines {
    /// Deadlines `fresh`, then `stale`, then `after` from `now`, each clamped to the clock's
    /// horizon: whatever the windows (a far-future `Expires`, a corrupt Redis entry), this
    /// never panics.
    pub(crate) fn from_windows(
        now: Instant,
        fresh: Duration,
        stale: Duration,
        after: Duration,
    ) -> Self {
        let fresh_until = clock::after(now, fresh);
        let stale_until = clock::after(fresh_until, stale);
        Deadlines {
            fresh_until,
            stale_until,
            expires_at: clock::after(stale_until, after),
        }
    }

    /// These deadlines, none later than `until`: every window closes by then (their order is
    /// kept).
    pub(crate) fn at_most(self, until: Instant) -> Self {
        Deadlines {
            fresh_until: self.fresh_until.min(until),
            stale_until: self.stale_until.min(until),
            expires_at: self.expires_at.min(until),
        }
    }

    /// The same deadline for all three: fresh until `until`, then gone.
    pub(crate) fn until(until: Instant) -> Self {
        Deadlines {
            fresh_until: until,
            stale_until: until,
            expires_at: until,
        }
    }
}

/// Where an entry is in its life at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Age {
    Fresh,
    /// Inside the stale-while-revalidate window: serve, refresh in the background.
    Stale,
    /// Inside the stale-if-error window: serve only if loading fails.
    Fallback,
    Expired,
}

/// One cached value with its lifetime and tags.
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) deadlines: Deadlines,
    /// The names that invalidate this entry besides its own key.
    pub(crate) tags: Box<[Box<str>]>,
    /// Estimated bytes held, for the memory budget.
    pub(crate) weight: u32,
    /// When this instance made the entry (stored it, or copied it from Redis): its age.
    pub(crate) made_at: Instant,
    /// Unique per inserted entry, so the tag index can tell a replaced entry from its successor.
    pub(crate) id: u64,
    /// Set while a background refresh of this entry runs: one refresh per key.
    refreshing: AtomicBool,
    /// Set once the entry has left the memory store (invalidated, replaced, evicted): copies
    /// that threads keep in front of the store check it before serving.
    removed: AtomicBool,
    /// Set by a soft purge: no longer fresh, whatever `deadlines.fresh_until` says.
    purged: AtomicBool,
}

impl Entry {
    pub(crate) fn new(
        value: Value,
        deadlines: Deadlines,
        tags: Box<[Box<str>]>,
        weight: u32,
    ) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Entry {
            value,
            deadlines,
            tags,
            weight,
            made_at: super::clock::now(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            refreshing: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            purged: AtomicBool::new(false),
        }
    }

    /// Marks the entry as gone from the memory store.
    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Whether the entry has left the memory store.
    #[inline]
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Makes the entry stale from now on (a soft purge): it is served as stale while one
    /// refresh runs, until its stale window closes. Its windows stay as they were, so the fresh
    /// time it had left becomes stale time: an entry soft-purged while fresh is always served
    /// stale at least once, even with a zero stale window.
    pub(crate) fn mark_stale(&self) {
        self.purged.store(true, Ordering::Release);
    }

    /// Whether a soft purge made the entry stale.
    pub(crate) fn is_soft_purged(&self) -> bool {
        self.purged.load(Ordering::Acquire)
    }

    pub(crate) fn age(&self, now: Instant) -> Age {
        let d = &self.deadlines;
        if now < d.fresh_until && !self.purged.load(Ordering::Acquire) {
            Age::Fresh
        } else if now < d.stale_until {
            Age::Stale
        } else if now < d.expires_at {
            Age::Fallback
        } else {
            Age::Expired
        }
    }

    /// Claims the right to refresh this entry; `None` when a refresh is already running.
    pub(crate) fn claim_refresh(self: &Arc<Self>) -> Option<RefreshClaim> {
        self.refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| RefreshClaim {
                entry: Arc::clone(self),
            })
    }
}

/// Held by the one task refreshing an entry; releases the claim when dropped (also on panic or
/// cancellation), so a failed refresh can be retried by a later caller.
pub(crate) struct RefreshClaim {
    entry: Arc<Entry>,
}

impl RefreshClaim {
    /// The entry this claim refreshes.
    pub(crate) fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }
}

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        self.entry.refreshing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let ttl = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..2_000).map(|_| jittered(ttl, 0.1)).collect();
        assert!(samples
            .iter()
            .all(|d| *d >= Duration::from_secs(90) && *d <= Duration::from_secs(110)));
        let min = samples.iter().min().unwrap();
        let max = samples.iter().max().unwrap();
        assert!(
            *max - *min > Duration::from_secs(15),
            "jitter spreads expiries"
        );
        assert_eq!(jittered(ttl, 0.0), ttl);
    }

    #[test]
    fn huge_windows_saturate_instead_of_panicking() {
        let now = clock::now();
        let d = Deadlines::from_windows(now, Duration::MAX, Duration::MAX, Duration::MAX);
        assert!(d.fresh_until > now);
        assert!(d.fresh_until <= d.stale_until && d.stale_until <= d.expires_at);
        let lifetime = Lifetime {
            ttl: Duration::MAX,
            stale: Duration::MAX,
            stale_if_error: Duration::MAX,
            jitter: Some(0.5),
        };
        assert!(lifetime.deadlines(now, 0.1).fresh_until > now);
        assert!(jittered(Duration::MAX, 0.1) <= clock::HORIZON.mul_f64(1.1));
    }

    #[test]
    fn at_most_closes_every_window_by_its_bound() {
        let now = clock::now();
        let long = Duration::from_secs(600);
        let d = Deadlines::from_windows(now, long, long, long);
        let bound = clock::after(now, Duration::from_secs(1));
        let cut = d.at_most(bound);
        assert_eq!(
            (cut.fresh_until, cut.stale_until, cut.expires_at),
            (bound, bound, bound)
        );
        let short = Deadlines::from_windows(
            now,
            Duration::ZERO,
            Duration::from_millis(10),
            Duration::ZERO,
        );
        assert_eq!(short.at_most(bound), short, "earlier deadlines stay");
        let entry = Entry::new(Arc::new(1u8), cut, Box::new([]), 1);
        assert_eq!(
            entry.age(clock::after(bound, Duration::from_millis(1))),
            Age::Expired
        );
    }

    #[test]
    fn age_walks_through_the_windows() {
        let now = clock::now();
        let lifetime = Lifetime {
            ttl: Duration::from_secs(10),
            stale: Duration::from_secs(5),
            stale_if_error: Duration::from_secs(20),
            jitter: Some(0.0),
        };
        let entry = Entry::new(Arc::new(1u8), lifetime.deadlines(now, 0.1), Box::new([]), 1);
        assert_eq!(entry.age(now), Age::Fresh);
        assert_eq!(entry.age(now + Duration::from_secs(12)), Age::Stale);
        assert_eq!(entry.age(now + Duration::from_secs(30)), Age::Fallback);
        assert_eq!(entry.age(now + Duration::from_secs(36)), Age::Expired);
    }

    #[test]
    fn a_soft_purge_turns_the_fresh_time_left_into_stale_time() {
        let now = clock::now();
        let lifetime = Lifetime {
            ttl: Duration::from_secs(10),
            stale: Duration::ZERO,
            stale_if_error: Duration::from_secs(20),
            jitter: Some(0.0),
        };
        let entry = Entry::new(Arc::new(1u8), lifetime.deadlines(now, 0.1), Box::new([]), 1);
        entry.mark_stale();
        assert_eq!(entry.age(now), Age::Stale);
        assert_eq!(entry.age(now + Duration::from_secs(9)), Age::Stale);
        assert_eq!(entry.age(now + Duration::from_secs(11)), Age::Fallback);
        assert_eq!(entry.age(now + Duration::from_secs(31)), Age::Expired);
    }

    #[test]
    fn one_refresh_claim_at_a_time() {
        let entry = Arc::new(Entry::new(
            Arc::new(1u8),
            Lifetime {
                ttl: Duration::from_secs(1),
                stale: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                jitter: None,
            }
            .deadlines(clock::now(), 0.0),
            Box::new([]),
            1,
        ));
        let claim = entry.claim_refresh().expect("first claim");
        assert!(entry.claim_refresh().is_none());
        drop(claim);
        assert!(entry.claim_refresh().is_some());
    }
}
