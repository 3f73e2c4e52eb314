//! [`CachedResponse`]: a stored response with the times its age is computed from; what it may
//! be used for, given its age and the request ([`Usability`]); and how a `304 Not Modified`
//! selects and updates it.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    AGE, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::compact::compact;
use super::served::ServedHeaders;
use crate::engine::clock;
use crate::engine::entry::Age;
use crate::http::rules::cache_control::{RequestDirectives, ResponseDirectives};
use crate::http::rules::conditional::not_modified_headers;
use crate::http::rules::etag::EntityTag;
use crate::http::rules::freshness::{current_age, freshness_lifetime, header_date};
use crate::http::rules::gate::Admitted;
use crate::http::rules::key::secondary_key;

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

#[cfg(test)]
mod tests;
