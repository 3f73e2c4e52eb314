//! A call site's settings: [`Site`] (a `#[cached(...)]` function's arguments: lifetimes,
//! negative caching, jitter, lock), [`Policy`] (what it decides from a loaded value:
//! `ttl_from`, `cache_if`) and [`LoadOptions`], the same arguments for the imperative API, with
//! [`HardTimeout`], the one a loader gets only where its error can carry it.

use std::time::Duration;

use crate::engine::clock;
use crate::engine::counters::Counters;
use crate::engine::entry::Lifetime;
use crate::engine::pipeline::Timeouts;
use crate::engine::random;
use crate::engine::sites::{SiteRef, SiteSlot};

/// The configuration of one `#[cached]` function, built by the macro as a `static` (or of a
/// [`LoadOptions`] value).
#[derive(Clone, Debug)]
pub struct Site {
    /// Name for events (default: module path and fn name).
    pub name: &'static str,
    /// Fresh period.
    pub ttl: Duration,
    /// Stale-while-revalidate window.
    pub stale: Duration,
    /// Stale-if-error window.
    pub stale_if_error: Duration,
    /// Lifetime of a negative (`None`) entry; `None` means negative results are not cached.
    pub none_ttl: Option<Duration>,
    /// TTL jitter fraction; `None` takes the cache's default.
    pub jitter: Option<f64>,
    /// Distributed lock duration (used by shared stores; single-flight covers one process).
    pub lock: Option<Duration>,
    /// Where this site's counters are found again after its first call
    /// ([`SiteSlot::new()`]).
    pub counters: SiteSlot,
    /// How long a caller waits for a load before a stale value or a timeout answers it.
    pub timeouts: Timeouts,
}

impl Site {
    /// This site's counters in the cache counting with `cache`.
    #[inline]
    pub(crate) fn counters<'a>(&'a self, cache: &Counters) -> SiteRef<'a> {
        self.counters.counters(cache.id(), cache.sites(), self.name)
    }

    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            ttl: self.ttl,
            stale: self.stale,
            stale_if_error: self.stale_if_error,
            jitter: self.jitter,
        }
    }

    pub(super) fn negative_lifetime(&self) -> Option<Lifetime> {
        self.none_ttl.map(|ttl| Lifetime {
            ttl,
            stale: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            jitter: self.jitter,
        })
    }
}

/// What a `#[cached]` function decides from the value it loaded: `ttl_from` (a fresh period
/// from the value; `None` keeps the site's `ttl`) and `cache_if` (whether to store it at all).
/// Negative entries (`None` with `none_ttl`) keep the site's rules.
pub struct Policy<T> {
    /// The fresh period of this value, if it decides one.
    pub ttl_from: Option<TtlFrom<T>>,
    /// Whether this value is stored.
    pub cache_if: Option<CacheIf<T>>,
}

/// `ttl_from`: a value's fresh period, or `None` for the site's `ttl`.
pub type TtlFrom<T> = fn(&T) -> Option<Duration>;

/// `cache_if`: whether a value is stored.
pub type CacheIf<T> = fn(&T) -> bool;

impl<T> Policy<T> {
    /// The lifetime of a value under these policies; `None` when it is not stored. A TTL from
    /// the value is an upper bound: jitter only shortens it (a token valid for 60 s is never
    /// served at 61 s), and the site's `stale` windows follow it.
    pub(super) fn lifetime(
        &self,
        site: &Site,
        value: Option<&T>,
        default_jitter: f64,
    ) -> Option<Lifetime> {
        let mut lifetime = site.lifetime();
        let Some(value) = value else {
            return Some(lifetime);
        };
        if self.cache_if.is_some_and(|keep| !keep(value)) {
            return None;
        }
        if let Some(ttl) = self.ttl_from.and_then(|ttl_from| ttl_from(value)) {
            let jitter = site.jitter.unwrap_or(default_jitter).clamp(0.0, 1.0);
            let shortened = ttl
                .min(clock::HORIZON)
                .mul_f64(1.0 - jitter * random::f64());
            if shortened.is_zero() {
                return None;
            }
            lifetime.ttl = shortened;
            lifetime.jitter = Some(0.0);
        }
        Some(lifetime)
    }
}

impl<T> Default for Policy<T> {
    fn default() -> Self {
        Policy {
            ttl_from: None,
            cache_if: None,
        }
    }
}

/// How entries written by [`Cache::insert`](crate::Cache::insert),
/// [`Cache::get_or_load`](crate::Cache::get_or_load) and
/// [`Cache::get_or_load_many`](crate::Cache::get_or_load_many) live: the `#[cached]`
/// arguments, with the same meaning. Build them once (a `static`, a field) and pass them by
/// reference; each call only reads them.
///
/// ```
/// use std::time::Duration;
/// use cache_layer::LoadOptions;
///
/// let options = LoadOptions::new(Duration::from_secs(300))
///     .stale(Duration::from_secs(60))
///     .stale_if_error(Duration::from_secs(3600))
///     .none_ttl(Duration::from_secs(10))
///     .jitter(0.2)
///     .tag("users")
///     .name("users");
/// assert_eq!(options.ttl(), Duration::from_secs(300));
/// ```
///
/// Out-of-range values do not fail: durations beyond 100 years count as 100 years (the
/// engine's horizon), a zero `ttl` stores entries that are never fresh (each call loads), and
/// a jitter outside `[0, 1)` (or NaN) is clamped into it (NaN counts as `0`).
#[derive(Clone, Debug)]
#[must_use]
pub struct LoadOptions {
    pub(crate) site: Site,
    pub(crate) tags: Vec<String>,
}

/// A hard timeout for [`Cache::get_or_load_within`](crate::Cache::get_or_load_within) and
/// [`get_or_load_optional_within`](crate::Cache::get_or_load_optional_within): a load that
/// takes longer than [`after`](Self::after) answers its caller, and the callers waiting on it,
/// with the stale value it has, else with `Err(E::from(`[`TimeoutError`](crate::TimeoutError)`))`
/// (`#[cached(hard_timeout = ...)]`). It is an argument of those methods, not a
/// [`LoadOptions`] setting, because only a loader whose error converts from `TimeoutError` can
/// be given one: a hard timeout cannot be asked for where it could not be returned.
///
/// ```
/// use std::time::Duration;
/// use cache_layer::HardTimeout;
///
/// let within = HardTimeout::after(Duration::from_secs(2)).finish_on_hard_timeout(false);
/// assert_eq!(within.duration(), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct HardTimeout {
    pub(crate) after: Duration,
    pub(crate) finish: bool,
}

impl HardTimeout {
    /// A load slower than `after` gives up; it still finishes and stores in the background.
    pub fn after(after: Duration) -> Self {
        HardTimeout {
            after,
            finish: true,
        }
    }

    /// Whether a load past the hard timeout goes on and stores its value (default `true`: the
    /// source is doing the work anyway, and the next caller gets a hit instead of asking the
    /// slow source again), or is cancelled (`false`: for a load that holds something scarce,
    /// such as a pooled connection, better given back at once). As
    /// `#[cached(finish_on_hard_timeout = false)]`.
    pub fn finish_on_hard_timeout(mut self, finish: bool) -> Self {
        self.finish = finish;
        self
    }

    /// How long a load may take.
    pub fn duration(&self) -> Duration {
        self.after
    }

    /// `site` with this hard timeout.
    pub(crate) fn on(self, site: &Site) -> Site {
        let mut site = site.clone();
        site.timeouts.hard = Some(self.after);
        site.timeouts.finish_on_hard = self.finish;
        site
    }
}

/// The largest jitter fraction: just under 1, so a jittered TTL stays above zero.
const MAX_JITTER: f64 = 0.99;

impl LoadOptions {
    /// Entries fresh for `ttl`, with the cache's default jitter, no stale windows, no
    /// negative caching, no tags but their own key, no distributed lock.
    pub fn new(ttl: Duration) -> Self {
        LoadOptions {
            site: Site {
                name: "cache_layer::Cache",
                ttl,
                stale: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                none_ttl: None,
                jitter: None,
                lock: None,
                counters: SiteSlot::new(),
                timeouts: Timeouts::NONE,
            },
            tags: Vec::new(),
        }
    }

    /// The fresh period.
    pub fn ttl(&self) -> Duration {
        self.site.ttl
    }

    /// Stale-while-revalidate: after `ttl`, serve the old value this long while one
    /// background load refreshes it (`#[cached(stale = ...)]`).
    pub fn stale(mut self, window: Duration) -> Self {
        self.site.stale = window;
        self
    }

    /// Stale-if-error: after the stale window, serve the old value this long when the loader
    /// fails (`#[cached(stale_if_error = ...)]`).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.site.stale_if_error = window;
        self
    }

    /// Negative caching: keep `Ok(None)` of
    /// [`get_or_load_optional`](crate::Cache::get_or_load_optional) this long
    /// (`#[cached(none_ttl = ...)]`); without it, `None` is never stored.
    pub fn none_ttl(mut self, ttl: Duration) -> Self {
        self.site.none_ttl = Some(ttl);
        self
    }

    /// TTL jitter as a fraction (`0.2`: each TTL scaled by a random factor in 0.8..=1.2);
    /// `0.0` turns it off. Default: the cache's ([`CacheBuilder::jitter`](crate::CacheBuilder::jitter)).
    pub fn jitter(mut self, fraction: f64) -> Self {
        let fraction = if fraction.is_nan() { 0.0 } else { fraction };
        self.site.jitter = Some(fraction.clamp(0.0, MAX_JITTER));
        self
    }

    /// With Redis, a distributed load lock held at most `hold` (`#[cached(lock = ...)]`).
    pub fn lock(mut self, hold: Duration) -> Self {
        self.site.lock = Some(hold);
        self
    }

    /// Soft timeout: a miss whose load takes longer than `after` is answered with the stale
    /// value it has (an entry in its [`stale_if_error`](Self::stale_if_error) window, or a
    /// soft-purged one), and so are the callers waiting on the same load; the load goes on in
    /// the background and stores its value (`#[cached(soft_timeout = ...)]`). Without a stale
    /// value the caller keeps waiting. It needs nothing of the loader's error type, so every
    /// load with these options takes it: [`get_or_load`](crate::Cache::get_or_load),
    /// [`get_or_load_optional`](crate::Cache::get_or_load_optional) and their `_within`
    /// siblings, but not [`get_or_load_many`](crate::Cache::get_or_load_many) (see there why).
    /// A hard timeout, which returns an error, is an argument of
    /// [`get_or_load_within`](crate::Cache::get_or_load_within) instead. See the
    /// [timeouts section](crate::docs::lifetimes#timeouts).
    pub fn soft_timeout(mut self, after: Duration) -> Self {
        self.site.timeouts.soft = Some(after);
        self
    }

    /// Tags every entry written with these options with `tag` too: invalidating `tag` drops
    /// them (`#[cached(invalidate_on = [...])]`). Entries always answer to their own key.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// [`tag`](Self::tag) for each of `tags`.
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// The label of these loads in events and traces (default `"cache_layer::Cache"`); not
    /// part of any key.
    pub fn name(mut self, name: &'static str) -> Self {
        self.site.name = name;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_out_of_range_is_clamped() {
        let j = |f| {
            LoadOptions::new(Duration::from_secs(1))
                .jitter(f)
                .site
                .jitter
        };
        assert_eq!(j(f64::NAN), Some(0.0));
        assert_eq!(j(-1.0), Some(0.0));
        assert_eq!(j(5.0), Some(MAX_JITTER));
        assert_eq!(j(0.25), Some(0.25));
    }
}
