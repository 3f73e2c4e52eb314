//! Ages, what a stored response may be used for, and what a 304 selects.

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
    let deadlines = crate::engine::entry::Deadlines::from_windows(now, fresh, swr, after);
    assert!(deadlines.expires_at >= deadlines.fresh_until);
    assert!(r.age(clock::after(now, Duration::MAX)) >= r.age(now));
}
