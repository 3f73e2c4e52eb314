//! [`ServedHeaders`]: a stored response's headers as hits serve them, with slots for `Age`
//! and this cache's `Cache-Status` member.

use http::header::AGE;
use http::{HeaderMap, HeaderValue};

use super::interned::intern_common_values;
use crate::http::status::{CacheStatus, CACHE_STATUS};

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
