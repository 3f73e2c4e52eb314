//! Freshness lifetime and age calculation for a shared cache (RFC 9111 §4.2),
//! plus HTTP-date field parsing shared by other modules.

use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, HeaderName, StatusCode};

use super::cache_control::{parse_delta_seconds, ResponseDirectives};
use super::field::trim_ows;

/// Upper bound for heuristic freshness (a common, conservative choice).
const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime) from raw bytes.
pub(crate) fn parse_http_date(value: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(trim_ows(value)).ok()?;
    httpdate::parse_http_date(s).ok()
}

/// Parses a date header that must appear exactly once; otherwise `None`.
pub(crate) fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    // Multiple lines make the value a list, which is not a valid HTTP-date.
    if lines.next().is_some() {
        return None;
    }
    parse_http_date(first.as_bytes())
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub(crate) fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// `later - earlier`, or zero when `later` is not after `earlier`.
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// Freshness lifetime for a shared cache (RFC 9111 §4.2.1).
///
/// Precedence: `s-maxage`, `max-age`, `Expires - Date`, then heuristic
/// (10% of `Date - Last-Modified`, capped at one day) when the status is heuristically
/// cacheable or the response is `public`.
/// `received` stands in for a missing or invalid `Date`.
/// `None` means the response carries no freshness information.
pub(crate) fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &ResponseDirectives,
    received: SystemTime,
) -> Option<Duration> {
    if let Some(d) = cc.s_maxage.or(cc.max_age) {
        return Some(d);
    }
    let date = header_date(headers, &DATE).unwrap_or(received);
    // A targeted field (RFC 9213 §2.2) replaces `Expires` as well as `Cache-Control`.
    if !cc.targeted && headers.contains_key(EXPIRES) {
        // Invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
        return Some(match header_date(headers, &EXPIRES) {
            Some(expires) => since(expires, date),
            None => Duration::ZERO,
        });
    }
    // RFC 9111 §5.2.2.9: a `public` response without explicit freshness is heuristically
    // cacheable whatever its status.
    if is_heuristically_cacheable(status) || cc.public {
        let last_modified = header_date(headers, &LAST_MODIFIED)?;
        return Some((since(date, last_modified) / 10).min(HEURISTIC_CAP));
    }
    None
}

/// Whole seconds of freshness a response with `lifetime` has left at `age` (negative once
/// stale), as `Cache-Status` reports it in `ttl`. Saturates.
pub(crate) fn remaining_ttl(lifetime: Duration, age: Duration) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    secs(lifetime).saturating_sub(secs(age))
}

/// The `Age` field's value (RFC 9111 §5.1): a list (several lines, or commas in one) counts
/// as its first member; an invalid value is ignored (zero); a huge one saturates at 2^31 s.
fn age_value(headers: &HeaderMap) -> Duration {
    let Some(first_line) = headers.get(AGE) else {
        return Duration::ZERO;
    };
    let first = first_line
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .unwrap_or_default();
    std::str::from_utf8(trim_ows(first))
        .ok()
        .and_then(parse_delta_seconds)
        .unwrap_or(Duration::ZERO)
}

/// Current age of a stored response (RFC 9111 §4.2.3).
///
/// `request_time`/`response_time` are local clock readings around the
/// upstream exchange; `now` is the current local time. Saturates instead of
/// overflowing.
pub(crate) fn current_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let date_value = header_date(headers, &DATE).unwrap_or(response_time);
    let age_value = age_value(headers);
    let apparent_age = since(response_time, date_value);
    let response_delay = since(response_time, request_time);
    let corrected_age_value = age_value.saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = since(now, response_time);
    corrected_initial_age.saturating_add(resident_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CACHE_CONTROL;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn fmt(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n.clone(), HeaderValue::from_str(v).expect("valid"));
        }
        h
    }

    fn lifetime(pairs: &[(HeaderName, &str)], status: u16) -> Option<Duration> {
        let h = headers(pairs);
        let cc = ResponseDirectives::parse(&h);
        let status = StatusCode::from_u16(status).expect("valid status");
        freshness_lifetime(status, &h, &cc, t(1_000_000))
    }

    const D: u64 = 1_000_000_000;

    #[test]
    fn date_formats() {
        let want = Some(t(784_111_777));
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(parse_http_date(b" Sun, 06 Nov 1994 08:49:37 GMT\t"), want);
        for bad in [
            &b"0"[..],
            b"",
            b"-1",
            b"\xff\xfe",
            b"Sun, 06 Nov 1994 08:49:37",
            b"tomorrow",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn header_date_requires_single_line() {
        let h = headers(&[(DATE, &fmt(D)), (DATE, &fmt(D))]);
        assert_eq!(header_date(&h, &DATE), None);
        assert_eq!(header_date(&headers(&[(DATE, &fmt(D))]), &DATE), Some(t(D)));
        assert_eq!(header_date(&HeaderMap::new(), &DATE), None);
    }

    #[test]
    fn precedence() {
        let date = fmt(D);
        let exp = fmt(D + 500);
        let lm = fmt(D - 1000);
        let all = [
            (CACHE_CONTROL, "max-age=100, s-maxage=200"),
            (DATE, date.as_str()),
            (EXPIRES, exp.as_str()),
            (LAST_MODIFIED, lm.as_str()),
        ];
        assert_eq!(lifetime(&all, 200), Some(Duration::from_secs(200)));
        assert_eq!(lifetime(&all[0..0], 200), None);
        let no_s = [
            (CACHE_CONTROL, "max-age=100"),
            all[1].clone(),
            all[2].clone(),
            all[3].clone(),
        ];
        assert_eq!(lifetime(&no_s, 200), Some(Duration::from_secs(100)));
        assert_eq!(lifetime(&all[1..], 200), Some(Duration::from_secs(500)));
        assert_eq!(
            lifetime(&[all[1].clone(), all[3].clone()], 200),
            Some(Duration::from_secs(100))
        );
        // Invalid max-age means stale, and beats Expires.
        let bad = [(CACHE_CONTROL, "max-age=x"), all[1].clone(), all[2].clone()];
        assert_eq!(lifetime(&bad, 200), Some(Duration::ZERO));
    }

    #[test]
    fn expires_cases() {
        let date = fmt(D);
        assert_eq!(
            lifetime(&[(EXPIRES, "0"), (DATE, &date)], 200),
            Some(Duration::ZERO)
        );
        assert_eq!(lifetime(&[(EXPIRES, "garbage")], 200), Some(Duration::ZERO));
        assert_eq!(
            lifetime(&[(EXPIRES, &fmt(D - 10)), (DATE, &date)], 200),
            Some(Duration::ZERO)
        );
        let two = [(EXPIRES, fmt(D + 10)), (EXPIRES, fmt(D + 20))];
        let two: Vec<_> = two.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
        assert_eq!(lifetime(&two, 200), Some(Duration::ZERO));
        // Missing Date: measured from `received` (1_000_000).
        assert_eq!(
            lifetime(&[(EXPIRES, &fmt(1_000_060))], 200),
            Some(Duration::from_secs(60))
        );
        // Invalid Date: also falls back to `received`.
        assert_eq!(
            lifetime(&[(EXPIRES, &fmt(1_000_060)), (DATE, "nope")], 200),
            Some(Duration::from_secs(60))
        );
        // Expires is explicit: used even when the status is not heuristically cacheable.
        assert_eq!(
            lifetime(&[(EXPIRES, &fmt(1_000_060))], 302),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn remaining_ttl_counts_whole_seconds_and_saturates() {
        let s = Duration::from_secs;
        assert_eq!(remaining_ttl(s(60), Duration::from_millis(10_900)), 50);
        assert_eq!(remaining_ttl(s(10), s(60)), -50);
        assert_eq!(remaining_ttl(Duration::ZERO, Duration::MAX), -i64::MAX);
        assert_eq!(remaining_ttl(Duration::MAX, Duration::ZERO), i64::MAX);
    }

    #[test]
    fn heuristic() {
        let date = fmt(D);
        let lm = fmt(D - 1000);
        let base = [(DATE, date.as_str()), (LAST_MODIFIED, lm.as_str())];
        for code in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert_eq!(
                lifetime(&base, code),
                Some(Duration::from_secs(100)),
                "{code}"
            );
        }
        for code in [201, 202, 302, 303, 307, 400, 403, 500, 502, 503] {
            assert_eq!(lifetime(&base, code), None, "{code}");
            // `public` makes any status heuristically cacheable (RFC 9111 §5.2.2.9).
            let public = [
                (DATE, date.as_str()),
                (LAST_MODIFIED, lm.as_str()),
                (CACHE_CONTROL, "public"),
            ];
            assert_eq!(
                lifetime(&public, code),
                Some(Duration::from_secs(100)),
                "public {code}"
            );
        }
        // Cap at one day.
        let old = fmt(D - 100 * 86_400);
        assert_eq!(
            lifetime(&[(DATE, &date), (LAST_MODIFIED, &old)], 200),
            Some(HEURISTIC_CAP)
        );
        // Last-Modified in the future relative to Date.
        let future = fmt(D + 10);
        assert_eq!(
            lifetime(&[(DATE, &date), (LAST_MODIFIED, &future)], 200),
            Some(Duration::ZERO)
        );
        // No / invalid Last-Modified: no information.
        assert_eq!(lifetime(&[(DATE, &date)], 200), None);
        assert_eq!(lifetime(&[(DATE, &date), (LAST_MODIFIED, "x")], 200), None);
        // No Date: uses `received`.
        assert_eq!(
            lifetime(&[(LAST_MODIFIED, &fmt(1_000_000 - 50))], 200),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn age_arithmetic() {
        let date = fmt(D);
        // apparent=2, delay=1, corrected_age_value=10+1, initial=11, resident=98.
        let h = headers(&[(DATE, &date), (AGE, "10")]);
        assert_eq!(
            current_age(&h, t(D + 1), t(D + 2), t(D + 100)),
            Duration::from_secs(109)
        );
        // apparent_age dominates when Date is old and Age small.
        let h = headers(&[(DATE, &date), (AGE, "3")]);
        assert_eq!(
            current_age(&h, t(D + 49), t(D + 50), t(D + 60)),
            Duration::from_secs(60)
        );
        // No Date, no Age: corrected_age_value = response_delay (4) + resident (6).
        let h = HeaderMap::new();
        assert_eq!(
            current_age(&h, t(D), t(D + 4), t(D + 10)),
            Duration::from_secs(10)
        );
        // Date in the future (clock skew): apparent_age clamps to zero.
        let h = headers(&[(DATE, &fmt(D + 1000))]);
        assert_eq!(
            current_age(&h, t(D), t(D), t(D + 5)),
            Duration::from_secs(5)
        );
        // now before response_time and request after response: all clamp to zero.
        let h = headers(&[(DATE, &date)]);
        assert_eq!(current_age(&h, t(D + 9), t(D), t(D - 5)), Duration::ZERO);
    }

    #[test]
    fn age_header_variants() {
        let at = |v: &[&str]| {
            let mut h = HeaderMap::new();
            for x in v {
                h.append(AGE, HeaderValue::from_str(x).expect("valid"));
            }
            current_age(&h, t(D), t(D), t(D))
        };
        assert_eq!(at(&["42"]), Duration::from_secs(42));
        assert_eq!(at(&[" 42 "]), Duration::from_secs(42));
        assert_eq!(at(&["abc"]), Duration::ZERO);
        assert_eq!(at(&["-5"]), Duration::ZERO);
        // A list counts as its first member; an invalid first member voids the field.
        assert_eq!(at(&["5", "abc", "7"]), Duration::from_secs(5));
        assert_eq!(at(&["5, 9"]), Duration::from_secs(5));
        assert_eq!(at(&[" 8 ,x"]), Duration::from_secs(8));
        assert_eq!(at(&["abc", "7"]), Duration::ZERO);
        assert_eq!(at(&[",7"]), Duration::ZERO);
        assert_eq!(at(&["1.5"]), Duration::ZERO);
        assert_eq!(
            at(&["99999999999999999999"]),
            Duration::from_secs(2_147_483_648)
        );
    }

    #[test]
    fn age_saturates() {
        let h = headers(&[(AGE, "99999999999999999999")]);
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let age = current_age(&h, UNIX_EPOCH, UNIX_EPOCH, far);
        assert!(age >= Duration::from_secs(u64::MAX / 4));
    }
}
