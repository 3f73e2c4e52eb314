//! What the layer keeps in the cache: a stored response with the times its age is computed
//! from, the per-URL record of `Vary` variants, and the short-lived "uncacheable" marker. Also
//! decides what a stored response may be used for, given its age and the request.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    AGE, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::compact::compact;
use super::rules::cache_control::{RequestDirectives, ResponseDirectives};
use super::rules::conditional::not_modified_headers;
use super::rules::etag::EntityTag;
use super::rules::freshness::{current_age, freshness_lifetime, header_date};
use super::rules::gate::Admitted;
use super::rules::key::secondary_key;
use super::status::ServedHeaders;
use crate::clock;
use crate::entry::Age;
use crate::pipeline::Stored;

/// Where `at`, a reading of the system clock a moment ago, lies on the cache's monotonic clock.
fn monotonic(at: SystemTime) -> clock::Instant {
    let now = clock::now();
    let ago = SystemTime::now()
        .duration_since(at)
        .unwrap_or(Duration::ZERO);
    now.checked_sub(ago).unwrap_or(now)
}

/// A complete response as stored: no trailers, body in one piece.
pub(crate) struct CachedResponse {
    pub(crate) status: StatusCode,
    /// Headers as served, `Cache-Tag` removed, `Date` present.
    pub(crate) headers: HeaderMap,
    /// `headers` plus an `Age` placeholder and the `Cache-Status` slot: what a hit clones, so that
    /// setting both replaces values instead of growing the map.
    pub(crate) served: ServedHeaders,
    /// The same for a 304: the fields RFC 9110 §15.4.5 requires, and the two slots.
    pub(crate) not_modified: ServedHeaders,
    pub(crate) body: Bytes,
    /// When the response head arrived (RFC 9111 §4.2.3 `response_time`), on the cache's
    /// monotonic clock: a hit measures the resident time with the reading it has already taken
    /// for the entry's deadlines, and a wall-clock step does not change an age.
    received: clock::Instant,
    /// `corrected_initial_age` (RFC 9111 §4.2.3), computed once: a hit only adds the
    /// resident time instead of parsing `Date` and `Age` again.
    initial_age: Duration,
    /// Freshness lifetime (explicit, heuristic or the layer's default TTL).
    pub(crate) lifetime: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    /// `no-cache`: every use must be revalidated.
    pub(crate) no_cache: bool,
    /// `must-revalidate` / `proxy-revalidate` / `s-maxage`: never served stale.
    pub(crate) must_revalidate: bool,
    pub(crate) etag: Option<EntityTag>,
    pub(crate) last_modified: Option<SystemTime>,
    /// What `If-Modified-Since` on a hit is compared with: `Last-Modified`, else `Date`
    /// (RFC 9111 §4.3.2).
    pub(crate) modified_for_hits: Option<SystemTime>,
    /// The varied header names and the secondary key this response was stored for.
    pub(crate) vary: Box<[HeaderName]>,
    pub(crate) secondary: String,
    pub(crate) tags: Vec<String>,
}

/// Under a URL's primary key when its responses `Vary`: which headers, and which variants are
/// stored (at most `max_variants`: the least recently used goes first, so that requests with
/// new header values cannot push out a variant in use).
pub(crate) struct Variants {
    pub(crate) names: Box<[HeaderName]>,
    variants: Vec<Variant>,
    /// The latest use of any variant: each `Variant::used` is one of its values.
    uses: AtomicU64,
}

/// One stored variant of a URL: its key, and when it was last stored or served.
struct Variant {
    key: String,
    used: AtomicU64,
}

impl Variants {
    /// No variant stored yet for `names`.
    pub(crate) fn new(names: Box<[HeaderName]>) -> Self {
        Variants {
            names,
            variants: Vec::new(),
            uses: AtomicU64::new(0),
        }
    }

    /// A use of the variant under `key`: it becomes the most recently used. A variant used
    /// again and again, with no other between, writes nothing.
    pub(crate) fn touch(&self, key: &str) {
        let Some(variant) = self.variants.iter().find(|v| v.key == key) else {
            return;
        };
        if variant.used.load(Ordering::Relaxed) != self.uses.load(Ordering::Relaxed) {
            let now = self.uses.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            variant.used.store(now, Ordering::Relaxed);
        }
    }

    /// This record with `key` stored as its most recently used variant, and the keys of the
    /// least recently used beyond `max` (at least one is kept: `key`), to be dropped.
    pub(crate) fn with_variant(&self, key: String, max: usize) -> (Variants, Vec<String>) {
        let now = self.uses.load(Ordering::Relaxed).wrapping_add(1);
        let mut variants: Vec<Variant> = self
            .variants
            .iter()
            .filter(|v| v.key != key)
            .map(|v| Variant {
                key: v.key.clone(),
                used: AtomicU64::new(v.used.load(Ordering::Relaxed)),
            })
            .collect();
        let mut dropped = Vec::new();
        while variants.len() >= max.max(1) {
            let least = (0..variants.len())
                .min_by_key(|&i| variants[i].used.load(Ordering::Relaxed))
                .unwrap_or(0);
            dropped.push(variants.swap_remove(least).key);
        }
        variants.push(Variant {
            key,
            used: AtomicU64::new(now),
        });
        let record = Variants {
            names: self.names.clone(),
            variants,
            uses: AtomicU64::new(now),
        };
        (record, dropped)
    }
}

impl Stored for Variants {
    /// Bytes held, for the memory budget (see [`CachedResponse::weight`]).
    fn weight(&self) -> usize {
        ARC + std::mem::size_of::<Self>()
            + self.names.len() * std::mem::size_of::<HeaderName>()
            + self.variants.capacity() * std::mem::size_of::<Variant>()
            + self
                .variants
                .iter()
                .map(|v| v.key.capacity() + ALLOCATION)
                .sum::<usize>()
            + 2 * ALLOCATION
    }
}

/// Under a URL's primary key for a few seconds after a response that may not be stored, so that
/// requests for it go straight to the inner service instead of queueing behind each other.
pub(crate) struct Uncacheable;

impl Stored for Uncacheable {
    fn weight(&self) -> usize {
        ARC
    }
}

/// The freshness lifetime of a response received at `received`: explicit or heuristic
/// (RFC 9111 §4.2.1), else the layer's default TTL, else zero (stale at once).
pub(crate) fn lifetime_of(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &ResponseDirectives,
    default_ttl: Option<Duration>,
    received: SystemTime,
) -> Duration {
    freshness_lifetime(status, headers, cc, received)
        .or(default_ttl)
        .unwrap_or(Duration::ZERO)
}

/// What a stored response can be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Usability {
    /// Fresh enough for this request.
    Fresh,
    /// Stale, but the request accepts it (`max-stale`).
    StaleAccepted,
    /// Stale within `stale-while-revalidate`: serve, refresh in the background.
    StaleWhileRevalidate,
    /// Must be revalidated (or replaced) before use; `stale_if_error` says whether it may
    /// still be served if the inner service fails.
    Revalidate { stale_if_error: bool },
}

impl CachedResponse {
    /// Builds the stored form of a response.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        status: StatusCode,
        headers: Admitted,
        body: Bytes,
        times: (SystemTime, SystemTime),
        lifetime: Duration,
        cc: &ResponseDirectives,
        defaults: (Duration, Duration),
        vary: (Box<[HeaderName]>, String),
        tags: Vec<String>,
    ) -> Self {
        let targeted = headers.targeted().clone();
        let (headers, body) = compact(headers.into_inner(), &body);
        // Targeted fields stay stored (a 304 may update them) but are hidden from clients.
        let shown = if targeted.hides_any(&headers) {
            let mut shown = headers.clone();
            targeted.hide(&mut shown);
            Cow::Owned(shown)
        } else {
            Cow::Borrowed(&headers)
        };
        CachedResponse {
            status,
            served: ServedHeaders::new(&shown, true),
            not_modified: ServedHeaders::new(&not_modified_headers(&shown), true),
            initial_age: current_age(&headers, times.0, times.1, times.1),
            etag: EntityTag::from_etag_header(&headers),
            last_modified: header_date(&headers, &LAST_MODIFIED),
            modified_for_hits: header_date(&headers, &LAST_MODIFIED)
                .or_else(|| header_date(&headers, &DATE)),
            headers,
            body,
            received: monotonic(times.1),
            lifetime,
            stale_while_revalidate: cc.stale_while_revalidate.unwrap_or(defaults.0),
            stale_if_error: cc.stale_if_error.unwrap_or(defaults.1),
            no_cache: cc.no_cache,
            must_revalidate: cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some(),
            vary: vary.0,
            secondary: vary.1,
            tags,
        }
    }

    /// Current age (RFC 9111 §4.2.3) at `now` on the cache's clock.
    pub(crate) fn age(&self, now: clock::Instant) -> Duration {
        let resident = now.saturating_duration_since(self.received);
        self.initial_age.saturating_add(resident)
    }

    /// What another instance needs to compute the same age: when the response arrived, on the
    /// wall clock, and its corrected initial age.
    pub(crate) fn age_basis(&self) -> (SystemTime, Duration) {
        let resident = clock::now().saturating_duration_since(self.received);
        let arrived = SystemTime::now()
            .checked_sub(resident)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        (arrived, self.initial_age)
    }

    /// This response with the corrected initial age another instance computed for it.
    pub(crate) fn with_initial_age(mut self, initial_age: Duration) -> Self {
        self.initial_age = initial_age;
        self
    }

    /// Whether the response has validators to revalidate with.
    pub(crate) fn has_validators(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// Whether this variant was stored for a request with the same varied headers.
    pub(crate) fn matches(&self, request: &HeaderMap) -> bool {
        self.vary.is_empty() || secondary_key(&self.vary, request) == self.secondary
    }

    /// What this response may be used for at `age` (from [`age`](Self::age)) for a request with
    /// `request` directives.
    pub(crate) fn usability(&self, age: Duration, request: &RequestDirectives) -> Usability {
        // Stale once age reaches the lifetime (RFC 9111 §4.2: fresh while lifetime > age).
        let stale_for = age.checked_sub(self.lifetime);
        let may_serve_stale = !self.must_revalidate && !self.no_cache;
        let stale_if_error = |staleness: Duration| {
            may_serve_stale
                && staleness
                    < self
                        .stale_while_revalidate
                        .saturating_add(self.stale_if_error)
        };
        let Some(staleness) = stale_for else {
            // Fresh, unless the request or the response asks for more.
            let too_old = request.max_age.is_some_and(|max| age > max);
            let too_close = request
                .min_fresh
                .is_some_and(|min| self.lifetime.saturating_sub(age) < min);
            if self.no_cache || request.no_cache || too_old || too_close {
                return Usability::Revalidate {
                    stale_if_error: may_serve_stale,
                };
            }
            return Usability::Fresh;
        };
        if request.no_cache || request.max_age.is_some_and(|max| age > max) {
            return Usability::Revalidate {
                stale_if_error: stale_if_error(staleness),
            };
        }
        if may_serve_stale {
            match request.max_stale {
                Some(None) => return Usability::StaleAccepted,
                Some(Some(bound)) if staleness <= bound => return Usability::StaleAccepted,
                _ => {}
            }
            if staleness < self.stale_while_revalidate {
                return Usability::StaleWhileRevalidate;
            }
        }
        Usability::Revalidate {
            stale_if_error: stale_if_error(staleness),
        }
    }

    /// [`usability`](Self::usability), with the response's entry at `entry` (its age on the
    /// cache's clock): the response is fresh only when both its RFC 9111 freshness and its
    /// entry say so. An entry made stale (a soft purge, or a shared copy's fresh-until time
    /// reached) serves a response that HTTP alone would call fresh as stale while a background
    /// revalidation runs, for as long as the entry is in its stale window; a response that may
    /// never be served stale (`must-revalidate`, `s-maxage`, `no-cache`) is revalidated first.
    pub(crate) fn usability_in(
        &self,
        entry: Age,
        age: Duration,
        request: &RequestDirectives,
    ) -> Usability {
        let usability = self.usability(age, request);
        if entry == Age::Fresh || usability != Usability::Fresh {
            return usability;
        }
        let may_serve_stale = !self.must_revalidate && !self.no_cache;
        if may_serve_stale && entry == Age::Stale {
            return Usability::StaleWhileRevalidate;
        }
        Usability::Revalidate {
            stale_if_error: may_serve_stale && entry != Age::Expired,
        }
    }

    /// How long the entry is worth keeping after `now`: fresh time left, the stale windows,
    /// and, with validators, a grace period in which it can still be revalidated.
    pub(crate) fn retention(&self, now: clock::Instant) -> (Duration, Duration, Duration) {
        /// How long a stale response with validators is kept for a cheap 304 revalidation.
        const REVALIDATION_GRACE: Duration = Duration::from_secs(300);
        let fresh = self.lifetime.saturating_sub(self.age(now));
        let swr = self.stale_while_revalidate;
        let after = if self.has_validators() {
            self.stale_if_error.max(REVALIDATION_GRACE)
        } else {
            self.stale_if_error
        };
        (fresh, swr, after)
    }

    /// Whether a `304 Not Modified` with `not_modified` headers selects this response for
    /// update (RFC 9111 §4.3.4): its entity tag (else its `Last-Modified`) must be this
    /// response's; with neither, the one stored response that was validated is selected.
    pub(crate) fn selected_by(&self, not_modified: &HeaderMap) -> bool {
        if not_modified.contains_key(ETAG) {
            let Some(tag) = EntityTag::from_etag_header(not_modified) else {
                return false;
            };
            // A strong validator selects by strong comparison, a weak one by weak comparison.
            return self
                .etag
                .as_ref()
                .is_some_and(|stored| stored.tag == tag.tag && (tag.weak || !stored.weak));
        }
        match header_date(not_modified, &LAST_MODIFIED) {
            Some(modified) => self.last_modified == Some(modified),
            None => !not_modified.contains_key(LAST_MODIFIED),
        }
    }

    /// The stored headers updated by a `304 Not Modified` (RFC 9111 §3.2, §4.3.4): its fields
    /// replace the stored ones, except those describing the stored body. What may be kept of
    /// them is for the storage gate to decide.
    pub(crate) fn updated_headers(
        &self,
        not_modified: &HeaderMap,
        received: SystemTime,
    ) -> HeaderMap {
        let mut headers = self.headers.clone();
        // The old Age and Date describe the old exchange.
        headers.remove(AGE);
        let mut replaced: Vec<&HeaderName> = Vec::new();
        for (name, value) in not_modified {
            if [CONTENT_LENGTH, CONTENT_ENCODING, CONTENT_RANGE].contains(name) {
                continue;
            }
            if !replaced.contains(&name) {
                headers.remove(name);
                replaced.push(name);
            }
            headers.append(name.clone(), value.clone());
        }
        if !not_modified.contains_key(DATE) {
            if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(received)) {
                headers.insert(DATE, date);
            }
        }
        headers
    }

    /// This response with the `headers` a 304 updated and the gate admitted, received at
    /// `times`, tagged with `tags`.
    pub(crate) fn refreshed(
        &self,
        headers: Admitted,
        times: (SystemTime, SystemTime),
        (default_ttl, defaults): (Option<Duration>, (Duration, Duration)),
        tags: Vec<String>,
    ) -> CachedResponse {
        let cc = headers.directives();
        let lifetime = lifetime_of(self.status, headers.get(), &cc, default_ttl, times.1);
        CachedResponse::new(
            self.status,
            headers,
            self.body.clone(),
            times,
            lifetime,
            &cc,
            defaults,
            (self.vary.clone(), self.secondary.clone()),
            tags,
        )
    }
}

/// What the allocator spends on each allocation besides the bytes asked for (glibc malloc: an
/// 8-byte header, chunks rounded to 16 bytes).
pub(crate) const ALLOCATION: usize = 16;
/// An `Arc`'s counts and its allocation.
pub(crate) const ARC: usize = 16 + ALLOCATION;
/// The shared part of a `Bytes` buffer that is cloned (its counts and its allocation), and the
/// buffer's own allocation.
const SHARED_BUFFER: usize = 24 + 2 * ALLOCATION;

/// Bytes a `HeaderMap` holds beyond its values' bytes: its table of positions and its slots,
/// by capacity, and extra slots for fields with several values.
fn header_map_bytes(map: &HeaderMap) -> usize {
    /// A slot: hash, name, value, links (`http`'s `Bucket<HeaderValue>`).
    const SLOT: usize = 2 * std::mem::size_of::<HeaderValue>() + 24;
    /// A further value of a field (`http`'s `ExtraValue<HeaderValue>`).
    const EXTRA: usize = std::mem::size_of::<HeaderValue>() + 32;
    let capacity = map.capacity();
    let positions = (capacity + capacity / 3).next_power_of_two() * 4;
    let extra = map.len() - map.keys_len();
    capacity * SLOT + positions + extra * EXTRA * 2 + 3 * ALLOCATION
}

impl Stored for CachedResponse {
    /// Bytes held, for the memory budget (calibrated with a counting allocator in
    /// tests/memory_budget.rs): the three header maps by their capacity, the one buffer of the
    /// body and the values (see `compact`), and the small parts, each allocation with the
    /// allocator's own [`ALLOCATION`] bytes.
    fn weight(&self) -> usize {
        let values: usize = self.headers.values().map(HeaderValue::len).sum();
        let tags: usize = self.tags.iter().map(|t| t.capacity() + ALLOCATION).sum();
        let strings = self.secondary.capacity()
            + self
                .etag
                .as_ref()
                .map_or(0, |tag| tag.tag.capacity() + ALLOCATION)
            + self.vary.len() * std::mem::size_of::<HeaderName>()
            + self.tags.capacity() * std::mem::size_of::<String>()
            + tags;
        std::mem::size_of::<Self>()
            + ARC
            + header_map_bytes(&self.headers)
            + header_map_bytes(self.served.map())
            + header_map_bytes(self.not_modified.map())
            + SHARED_BUFFER
            + self.body.len()
            + values
            + strings
            + 3 * ALLOCATION
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::rules::gate::{admit, Admitted, Exchange};
    use crate::http::rules::targeted::TargetedFields;
    use http::header::CACHE_CONTROL;

    /// `headers` through the storage gate, as a 200 to a plain GET.
    fn admitted(headers: HeaderMap, parsed: &ResponseDirectives) -> Admitted {
        let exchange = Exchange::Http {
            method: &http::Method::GET,
            request: &HeaderMap::new(),
            status: StatusCode::OK,
            has_default_ttl: false,
            targeted: &TargetedFields::default(),
            keep_tags: false,
        };
        admit(exchange, headers, parsed).unwrap()
    }

    fn stored(cc: &str, lifetime: u64, swr: u64, sie: u64) -> CachedResponse {
        stored_at(SystemTime::now(), cc, lifetime, swr, sie)
    }

    fn stored_at(at: SystemTime, cc: &str, lifetime: u64, swr: u64, sie: u64) -> CachedResponse {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
        let parsed = ResponseDirectives::parse(&headers);
        CachedResponse::new(
            StatusCode::OK,
            admitted(headers, &parsed),
            Bytes::new(),
            (at, at),
            Duration::from_secs(lifetime),
            &parsed,
            (Duration::from_secs(swr), Duration::from_secs(sie)),
            (Box::new([]), String::new()),
            Vec::new(),
        )
    }

    fn request(cc: &str) -> RequestDirectives {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
        RequestDirectives::parse(&headers)
    }

    #[test]
    fn age_counts_resident_time_from_when_the_response_arrived() {
        let r = stored("max-age=10", 10, 0, 0);
        assert_eq!(r.age(r.received), Duration::ZERO);
        assert_eq!(
            r.age(r.received + Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        // Stored a while after its head arrived (a slow body): the age starts from the head.
        let arrived = SystemTime::now() - Duration::from_secs(5);
        let r = stored_at(arrived, "max-age=10", 10, 0, 0);
        let age = r.age(clock::now());
        assert!(
            age >= Duration::from_secs(5) && age < Duration::from_secs(6),
            "{age:?}"
        );
    }

    #[test]
    fn an_entry_made_stale_overrides_http_freshness_only() {
        let r = stored("max-age=10", 10, 0, 0);
        let (none, young) = (RequestDirectives::default(), Duration::from_secs(1));
        assert_eq!(r.usability_in(Age::Fresh, young, &none), Usability::Fresh);
        assert_eq!(
            r.usability_in(Age::Stale, young, &none),
            Usability::StaleWhileRevalidate,
            "a soft-purged response without stale-while-revalidate is still served stale"
        );
        assert_eq!(
            r.usability_in(Age::Fallback, young, &none),
            Usability::Revalidate {
                stale_if_error: true
            }
        );
        // What HTTP already calls stale or asks to revalidate is unchanged.
        let old = Duration::from_secs(11);
        assert_eq!(
            r.usability_in(Age::Stale, old, &none),
            r.usability(old, &none)
        );
        let no_cache = request("no-cache");
        assert_eq!(
            r.usability_in(Age::Stale, young, &no_cache),
            r.usability(young, &no_cache)
        );
        for strict in ["max-age=10, must-revalidate", "s-maxage=10", "no-cache"] {
            let strict = stored(strict, 10, 30, 30);
            assert_eq!(
                strict.usability_in(Age::Stale, young, &none),
                Usability::Revalidate {
                    stale_if_error: false
                },
                "never served stale"
            );
        }
    }

    #[test]
    fn windows_and_request_directives() {
        let r = stored("max-age=10", 10, 5, 20);
        let later = |s| Duration::from_secs(s);
        let none = RequestDirectives::default();
        assert_eq!(r.usability(later(1), &none), Usability::Fresh);
        assert_eq!(
            r.usability(later(12), &none),
            Usability::StaleWhileRevalidate
        );
        assert_eq!(
            r.usability(later(20), &none),
            Usability::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            r.usability(later(40), &none),
            Usability::Revalidate {
                stale_if_error: false
            }
        );
        assert_eq!(
            r.usability(later(5), &request("max-age=2")),
            Usability::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            r.usability(later(8), &request("min-fresh=5")),
            Usability::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            r.usability(later(30), &request("max-stale")),
            Usability::StaleAccepted
        );
        assert_eq!(
            r.usability(later(1), &request("no-cache")),
            Usability::Revalidate {
                stale_if_error: true
            }
        );
        let strict = stored("max-age=10, must-revalidate", 10, 5, 20);
        assert_eq!(
            strict.usability(later(12), &request("max-stale")),
            Usability::Revalidate {
                stale_if_error: false
            }
        );
    }

    #[test]
    fn a_304_selects_only_the_representation_its_validator_names() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
        let parsed = ResponseDirectives::parse(&headers);
        let now = SystemTime::now();
        let r = CachedResponse::new(
            StatusCode::OK,
            admitted(headers, &parsed),
            Bytes::new(),
            (now, now),
            Duration::from_secs(1),
            &parsed,
            (Duration::ZERO, Duration::ZERO),
            (Box::new([]), String::new()),
            Vec::new(),
        );
        let with = |name: HeaderName, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        assert!(r.selected_by(&with(ETAG, "\"v1\"")));
        assert!(r.selected_by(&with(ETAG, "W/\"v1\"")));
        assert!(!r.selected_by(&with(ETAG, "\"v2\"")));
        assert!(!r.selected_by(&with(ETAG, "garbage")));
        assert!(
            r.selected_by(&HeaderMap::new()),
            "no validator: the one revalidated"
        );
        let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(
            !r.selected_by(&with(LAST_MODIFIED, lm)),
            "this one has no Last-Modified"
        );
    }

    #[test]
    fn huge_ages_lifetimes_and_windows_saturate() {
        let mut headers = HeaderMap::new();
        let huge = "max-age=99999999999999999999, stale-while-revalidate=99999999999999999999, \
                    stale-if-error=18446744073709551616";
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(huge));
        headers.insert(AGE, HeaderValue::from_static("99999999999999999999999"));
        headers.insert(
            http::header::EXPIRES,
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        headers.insert(
            DATE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        let parsed = ResponseDirectives::parse(&headers);
        let past = SystemTime::UNIX_EPOCH;
        let lifetime = lifetime_of(StatusCode::OK, &headers, &parsed, None, past);
        assert_eq!(
            lifetime,
            Duration::from_secs(2_147_483_648),
            "max-age, clamped"
        );
        let r = CachedResponse::new(
            StatusCode::OK,
            admitted(headers, &parsed),
            Bytes::new(),
            (past, SystemTime::now()),
            Duration::MAX,
            &parsed,
            (Duration::MAX, Duration::MAX),
            (Box::new([]), String::new()),
            Vec::new(),
        );
        let now = clock::now();
        for age in [r.age(now), Duration::MAX, Duration::ZERO] {
            let _ = r.usability(age, &RequestDirectives::default());
            let _ = r.usability(age, &request("max-stale, min-fresh=99999999999999999"));
            let _ = crate::http::rules::freshness::remaining_ttl(r.lifetime, age);
        }
        let (fresh, swr, after) = r.retention(now);
        let deadlines = crate::entry::Deadlines::from_windows(now, fresh, swr, after);
        assert!(deadlines.expires_at >= deadlines.fresh_until);
        assert!(r.age(clock::after(now, Duration::MAX)) >= r.age(now));
    }
}
