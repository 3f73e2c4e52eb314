//! The RFC 9211 `Cache-Status` member this layer adds to each response.

use std::cell::RefCell;

use http::header::{Entry, AGE};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::interned::intern_common_values;

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why the request went to the inner service (RFC 9211 §2.2 `fwd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forward {
    /// Nothing stored for the URL.
    UriMiss,
    /// The URL has stored variants, none for this request's varied headers.
    VaryMiss,
    /// Nothing usable stored (expired, or the URL is remembered as uncacheable).
    Miss,
    /// A stored response had to be revalidated.
    Stale,
    /// The request asked for a fresh or validated response.
    Request,
    /// The method is not served from the cache.
    Method,
    /// The key function declined the request.
    Bypass,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Miss => "miss",
            Forward::Stale => "stale",
            Forward::Request => "request",
            Forward::Method => "method",
            Forward::Bypass => "bypass",
        }
    }
}

/// Builds and appends this layer's `Cache-Status` member, after any the inner service sent
/// (caches closer to the origin come first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheStatus {
    hit: bool,
    forward: Option<Forward>,
    forward_status: Option<u16>,
    stored: bool,
    ttl: Option<i64>,
    detail: Option<&'static str>,
}

impl CacheStatus {
    pub(crate) fn hit() -> Self {
        CacheStatus {
            hit: true,
            ..Self::default()
        }
    }

    pub(crate) fn forward(forward: Forward) -> Self {
        CacheStatus {
            forward: Some(forward),
            ..Self::default()
        }
    }

    pub(crate) fn forward_status(mut self, status: u16) -> Self {
        self.forward_status = Some(status);
        self
    }

    pub(crate) fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    /// Remaining freshness in seconds (negative when stale).
    pub(crate) fn ttl(mut self, seconds: i64) -> Self {
        self.ttl = Some(seconds);
        self
    }

    pub(crate) fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        if let Some(value) = self.render() {
            headers.append(CACHE_STATUS.clone(), value);
        }
    }

    /// Writes this member over the last `Cache-Status` value, the slot of [`ServedHeaders`].
    fn replace_last_in(&self, headers: &mut HeaderMap) {
        let Some(value) = self.render() else {
            return;
        };
        if let Entry::Occupied(mut entry) = headers.entry(&CACHE_STATUS) {
            if let Some(last) = entry.iter_mut().last() {
                *last = value;
                return;
            }
        }
        headers.append(CACHE_STATUS.clone(), value);
    }

    /// The rendered member. Consecutive responses on a thread mostly carry the same one (a hit
    /// with the same whole-second TTL), so the last rendering is kept and shared.
    fn render(&self) -> Option<HeaderValue> {
        thread_local! {
            static LAST: RefCell<Option<(CacheStatus, HeaderValue)>> = const { RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| match last {
            Some((status, value)) if status == self => Some(value.clone()),
            _ => {
                let value = self.render_new()?;
                *last = Some((*self, value.clone()));
                Some(value)
            }
        })
    }

    fn render_new(&self) -> Option<HeaderValue> {
        let mut member = String::with_capacity(64);
        member.push_str("cache-layer");
        if self.hit {
            member.push_str("; hit");
        }
        if let Some(forward) = self.forward {
            member.push_str("; fwd=");
            member.push_str(forward.as_str());
        }
        if let Some(status) = self.forward_status {
            member.push_str("; fwd-status=");
            member.push_str(itoa::Buffer::new().format(status));
        }
        if self.stored {
            member.push_str("; stored");
        }
        if let Some(ttl) = self.ttl {
            member.push_str("; ttl=");
            member.push_str(itoa::Buffer::new().format(ttl));
        }
        if let Some(detail) = self.detail {
            member.push_str("; detail=");
            member.push_str(detail);
        }
        // Hands the buffer over instead of copying it.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(member)).ok()
    }
}

/// Stored headers as a hit serves them: cloned for each hit, with slots the hit overwrites: an
/// `Age` (when the response carries one) and this cache's `Cache-Status` member.
///
/// The slots lead the map, so that a hit reaches them by position instead of two hashed
/// lookups. Values that repeat across responses are interned (see `interned`): copying them
/// costs no reference count. Only when the inner service sent a `Cache-Status` of its own is the
/// member a last value after theirs (caches closer to the origin come first).
pub(crate) struct ServedHeaders {
    map: HeaderMap,
    /// The first value is the `Age` slot.
    age: bool,
    /// The `Cache-Status` slot is the only value of its name, right after the `Age` slot.
    alone: bool,
}

impl ServedHeaders {
    /// `headers` as served: with an `Age` slot when `age` (any `Age` in `headers` is dropped:
    /// a hit states its own), and the `Cache-Status` slot.
    pub(crate) fn new(headers: &HeaderMap, age: bool) -> Self {
        let alone = !headers.contains_key(&CACHE_STATUS);
        let mut map = HeaderMap::with_capacity(headers.len() + 2);
        let placeholder = || HeaderValue::from_static("cache-layer");
        if age {
            map.insert(AGE, HeaderValue::from_static("0"));
        }
        if alone {
            map.insert(CACHE_STATUS.clone(), placeholder());
        }
        for (name, value) in headers {
            if name != AGE {
                map.append(name.clone(), value.clone());
            }
        }
        if !alone {
            map.append(CACHE_STATUS.clone(), placeholder());
        }
        intern_common_values(&mut map);
        ServedHeaders { map, age, alone }
    }

    /// The headers, slots included.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))] // gRPC calls weigh and replay these
    pub(crate) fn map(&self) -> &HeaderMap {
        &self.map
    }

    /// A copy with `status` in the `Cache-Status` slot (and no `Age` set).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn with_status(&self, status: &CacheStatus) -> HeaderMap {
        self.fill(status, None)
    }

    /// A copy with `status` in the `Cache-Status` slot and `age` in the `Age` slot.
    pub(crate) fn with_status_and_age(&self, status: &CacheStatus, age: HeaderValue) -> HeaderMap {
        self.fill(status, Some(age))
    }

    fn fill(&self, status: &CacheStatus, age: Option<HeaderValue>) -> HeaderMap {
        let mut headers = self.map.clone();
        let mut leading = headers.values_mut();
        if self.age {
            if let (Some(slot), Some(age)) = (leading.next(), age) {
                *slot = age;
            }
        }
        if self.alone {
            if let (Some(slot), Some(value)) = (leading.next(), status.render()) {
                *slot = value;
            }
        } else {
            status.replace_last_in(&mut headers);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_render_in_rfc_9211_form() {
        let mut headers = HeaderMap::new();
        CacheStatus::hit().ttl(42).append_to(&mut headers);
        CacheStatus::forward(Forward::UriMiss)
            .forward_status(200)
            .stored()
            .append_to(&mut headers);
        CacheStatus::forward(Forward::Miss)
            .detail("set-cookie")
            .append_to(&mut headers);
        let all: Vec<_> = headers.get_all(&CACHE_STATUS).iter().collect();
        assert_eq!(all[0], "cache-layer; hit; ttl=42");
        assert_eq!(all[1], "cache-layer; fwd=uri-miss; fwd-status=200; stored");
        assert_eq!(all[2], "cache-layer; fwd=miss; detail=set-cookie");
    }

    #[test]
    fn a_hit_fills_the_slot_after_members_of_caches_closer_to_the_origin() {
        let mut own_only = HeaderMap::new();
        own_only.insert(http::header::ETAG, HeaderValue::from_static("\"a\""));
        let served = ServedHeaders::new(&own_only, false);
        let hit = served.with_status(&CacheStatus::hit().ttl(5));
        let all: Vec<_> = hit.get_all(&CACHE_STATUS).iter().collect();
        assert_eq!(all, ["cache-layer; hit; ttl=5"]);
        assert_eq!(hit["etag"], "\"a\"");

        let mut from_origin = HeaderMap::new();
        from_origin.append(
            CACHE_STATUS.clone(),
            HeaderValue::from_static("origin; fwd=miss"),
        );
        let served = ServedHeaders::new(&from_origin, false);
        for ttl in [5, 4] {
            let hit = served.with_status(&CacheStatus::hit().ttl(ttl));
            let all: Vec<_> = hit
                .get_all(&CACHE_STATUS)
                .iter()
                .map(|v| v.to_str().expect("ASCII").to_owned())
                .collect();
            assert_eq!(
                all,
                [
                    "origin; fwd=miss".to_owned(),
                    format!("cache-layer; hit; ttl={ttl}")
                ]
            );
        }
        // The stored copy keeps its slot for the next hit.
        assert_eq!(served.map().get_all(&CACHE_STATUS).iter().count(), 2);
    }

    #[test]
    fn a_hit_fills_the_age_slot_and_keeps_every_stored_field() {
        let mut stored = HeaderMap::new();
        stored.insert(http::header::AGE, HeaderValue::from_static("30"));
        stored.append("vary", HeaderValue::from_static("accept"));
        stored.append("vary", HeaderValue::from_static("accept-language"));
        stored.insert(http::header::ETAG, HeaderValue::from_static("\"a\""));
        let served = ServedHeaders::new(&stored, true);
        for (age, ttl) in [("7", 3), ("8", 2)] {
            let hit = served
                .with_status_and_age(&CacheStatus::hit().ttl(ttl), HeaderValue::from_static(age));
            // The upstream Age is replaced by the hit's own, never repeated.
            let ages: Vec<_> = hit.get_all(http::header::AGE).iter().collect();
            assert_eq!(ages, [age]);
            assert_eq!(
                hit[&CACHE_STATUS],
                format!("cache-layer; hit; ttl={ttl}").as_str()
            );
            let varies: Vec<_> = hit.get_all("vary").iter().collect();
            assert_eq!(varies, ["accept", "accept-language"]);
            assert_eq!(hit["etag"], "\"a\"");
            assert_eq!(hit.len(), 5);
        }
        // The stored copy keeps its placeholders.
        assert_eq!(served.map()[http::header::AGE], "0");
        assert_eq!(served.map()[&CACHE_STATUS], "cache-layer");
    }
}
