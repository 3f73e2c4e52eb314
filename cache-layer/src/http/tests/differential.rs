//! Storability and freshness lifetime compared with the `http-cache-semantics` crate (a port of
//! the widely used JavaScript library) on pseudo-random responses, as a shared cache.
//!
//! Every disagreement must fall into one of the classes listed in [`Known`], each a deliberate
//! choice justified by an RFC section and documented in docs/caching-and-performance.md
//! ("Where this cache differs from http-cache-semantics"); any other disagreement fails the test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};

use crate::http::rules::cache_control::ResponseDirectives;
use crate::http::rules::gate::{admit, Exchange};
use crate::http::stored::lifetime_of;

/// Why the two implementations may disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// We never store a response that sets a cookie, nor one to a request with a cookie unless
    /// it is explicitly shared or varies on `Cookie` (RFC 9111 §3 lets a cache decline to store;
    /// the other crate stores them with zero freshness).
    Cookies,
    /// `Vary: *` or an invalid `Vary` member: never matches a request (RFC 9111 §4.1), so we do
    /// not store it; the other crate stores it with zero freshness.
    Vary,
    /// Neither explicit freshness nor `Last-Modified` (nor a default TTL): stale at once (RFC
    /// 9111 §4.2.2 gives no heuristic basis); we do not store it, the other crate does for the
    /// statuses cacheable by default.
    NoFreshness,
    /// Status codes: we store any final status but 206 and 304 when explicitly fresh (RFC 9111
    /// §3: a cache may store any status it understands); the other crate a fixed list, and 206
    /// only heuristically.
    Status,
    /// Delta-seconds beyond 2^31 clamp to 2^31 (RFC 9111 §1.2.2); the other crate reads them as
    /// zero.
    HugeDelta,
    /// `proxy-revalidate`: the other crate gives it zero freshness; it only forbids serving
    /// stale (RFC 9111 §5.2.2.8), as `must-revalidate` does.
    ProxyRevalidate,
    /// Heuristic freshness: capped at one day here, and only for heuristically cacheable
    /// statuses (RFC 9111 §4.2.2 leaves the heuristic to the cache).
    Heuristic,
    /// RFC 850 and asctime dates are valid HTTP-dates (RFC 9110 §5.6.7); the other crate only
    /// reads IMF-fixdate.
    ObsoleteDate,
    /// A directive repeated with different arguments: the other crate adds `must-revalidate`,
    /// which also lets it store responses to `Authorization` requests; here only the directives
    /// RFC 9111 §3.5 names do, and the conflicting value is invalid (stale, §4.2.1).
    Conflicting,
    /// `immutable` does not change freshness (RFC 8246 §2); the other crate gives it at least a
    /// day.
    Immutable,
}

const STATUSES: &[u16] = &[200, 203, 204, 206, 301, 302, 307, 404, 410, 500, 503];
const DIRECTIVES: &[&str] = &[
    "max-age=60",
    "max-age=0",
    "max-age=x",
    "max-age=99999999999",
    "s-maxage=30",
    "s-maxage=99999999999",
    "public",
    "private",
    "no-store",
    "no-cache",
    "must-revalidate",
    "proxy-revalidate",
    "immutable",
];
const EXPIRES: &[&str] = &[
    "Fri, 31 Dec 2100 23:59:59 GMT",
    "Sunday, 31-Dec-00 23:59:59 GMT",
    "0",
    "Thu, 01 Jan 2004 00:00:00 GMT",
];
const LAST_MODIFIED: &[&str] = &["Thu, 01 Jan 2004 00:00:00 GMT", "Sun Nov  6 08:49:37 1994"];
const VARY: &[&str] = &["accept", "*", "a b", "cookie"];

/// A deterministic xorshift stream.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }
}

fn value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).expect("valid")
}

/// A random request and response head.
fn exchange(s: &mut Stream, now: SystemTime) -> (HeaderMap, StatusCode, HeaderMap) {
    let mut request = HeaderMap::new();
    if s.one_in(5) {
        request.insert(AUTHORIZATION, value("Bearer t"));
    }
    if s.one_in(6) {
        request.insert(COOKIE, value("sid=1"));
    }
    let mut response = HeaderMap::new();
    let directives: Vec<&str> = (0..s.next() % 4).map(|_| s.pick(DIRECTIVES)).collect();
    if !directives.is_empty() {
        response.insert(CACHE_CONTROL, value(&directives.join(", ")));
    }
    response.insert(http::header::DATE, value(&httpdate::fmt_http_date(now)));
    if s.one_in(3) {
        response.insert(http::header::EXPIRES, value(s.pick(EXPIRES)));
    }
    if s.one_in(3) {
        let lm = s.pick(LAST_MODIFIED);
        response.insert(http::header::LAST_MODIFIED, value(lm));
    }
    if s.one_in(6) {
        response.insert(http::header::VARY, value(s.pick(VARY)));
    }
    if s.one_in(8) {
        response.insert(SET_COOKIE, value("a=b"));
    }
    let status = STATUSES[(s.next() % STATUSES.len() as u64) as usize];
    (
        request,
        StatusCode::from_u16(status).expect("valid"),
        response,
    )
}

fn has(headers: &HeaderMap, name: &HeaderName, text: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains(text)))
}

/// The known class explaining a storability disagreement, if any.
fn storability_class(
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    ours: bool,
) -> Option<Known> {
    if conflicting(response) {
        return Some(Known::Conflicting);
    }
    let vary = response.get(http::header::VARY).map(|v| v.as_bytes());
    if !ours && (response.contains_key(SET_COOKIE) || request.contains_key(COOKIE)) {
        return Some(Known::Cookies);
    }
    if !ours && matches!(vary, Some(b"*" | b"a b")) {
        return Some(Known::Vary);
    }
    if ours
        && ![
            200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
        ]
        .contains(&status.as_u16())
        || !ours && status == StatusCode::PARTIAL_CONTENT
    {
        return Some(Known::Status);
    }
    let cc = ResponseDirectives::parse(response);
    let explicit = cc.max_age.is_some()
        || cc.s_maxage.is_some()
        || response.contains_key(http::header::EXPIRES)
        || cc.public;
    if !ours && !explicit && !response.contains_key(http::header::LAST_MODIFIED) {
        return Some(Known::NoFreshness);
    }
    None
}

/// Whether a `Cache-Control` directive appears twice with different arguments.
fn conflicting(response: &HeaderMap) -> bool {
    let mut seen: Vec<(&str, Option<&str>)> = Vec::new();
    for line in response.get_all(CACHE_CONTROL) {
        for part in line.to_str().unwrap_or_default().split(',') {
            let mut kv = part.trim().splitn(2, '=');
            let name = kv.next().unwrap_or_default();
            let arg = kv.next();
            if seen.iter().any(|(n, a)| *n == name && *a != arg) {
                return true;
            }
            seen.push((name, arg));
        }
    }
    false
}

/// The known class explaining a freshness disagreement, if any.
fn lifetime_class(status: StatusCode, response: &HeaderMap) -> Option<Known> {
    let cc = ResponseDirectives::parse(response);
    if conflicting(response) {
        return Some(Known::Conflicting);
    }
    if has(response, &CACHE_CONTROL, "immutable") {
        return Some(Known::Immutable);
    }
    if has(response, &CACHE_CONTROL, "proxy-revalidate") {
        return Some(Known::ProxyRevalidate);
    }
    if has(response, &CACHE_CONTROL, "99999999999") {
        return Some(Known::HugeDelta);
    }
    if cc.s_maxage.is_none() && cc.max_age.is_none() {
        if has(response, &http::header::EXPIRES, "-")
            || has(response, &http::header::LAST_MODIFIED, "1994")
        {
            return Some(Known::ObsoleteDate);
        }
        if !response.contains_key(http::header::EXPIRES) {
            return Some(Known::Heuristic);
        }
    }
    let _ = status;
    None
}

/// The other crate's policy for this exchange, as a shared cache.
fn their_policy(
    request_headers: &HeaderMap,
    status: StatusCode,
    response_headers: &HeaderMap,
    now: SystemTime,
) -> CachePolicy {
    let mut request = Request::get("http://example.com/x")
        .body(())
        .expect("valid");
    *request.headers_mut() = request_headers.clone();
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = response_headers.clone();
    CachePolicy::new_options(&request, &response, now, CacheOptions::default())
}

/// Whether our storage gate admits this exchange.
fn we_admit(request_headers: &HeaderMap, status: StatusCode, response_headers: &HeaderMap) -> bool {
    let cc = ResponseDirectives::parse(response_headers);
    let exchange = Exchange::Http {
        method: &Method::GET,
        request: request_headers,
        status,
        has_default_ttl: false,
        // The peer knows no targeted fields.
        targeted: &crate::http::rules::targeted::TargetedFields::none(),
        keep_tags: false,
    };
    admit(exchange, response_headers.clone(), &cc).is_ok()
}

#[test]
fn storability_and_freshness_agree_with_http_cache_semantics_or_a_documented_rfc_choice() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut stream = Stream(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for _ in 0..20_000 {
        let (request_headers, status, response_headers) = exchange(&mut stream, now);
        let theirs = their_policy(&request_headers, status, &response_headers, now);
        let ours = we_admit(&request_headers, status, &response_headers);
        if ours != theirs.is_storable() {
            let class = storability_class(&request_headers, status, &response_headers, ours);
            assert!(
                class.is_some(),
                "storable: ours {ours}, theirs {}: {status} {request_headers:?} {response_headers:?}",
                theirs.is_storable()
            );
            continue;
        }
        if !ours {
            continue;
        }
        let cc = ResponseDirectives::parse(&response_headers);
        let lifetime = lifetime_of(status, &response_headers, &cc, None, now);
        let ours = if cc.no_cache {
            Duration::ZERO
        } else {
            lifetime
        };
        let theirs = theirs.time_to_live(now);
        let close = ours.as_secs().abs_diff(theirs.as_secs()) <= 1 + ours.as_secs() / 1_000_000;
        if !close {
            let class = lifetime_class(status, &response_headers);
            assert!(
                class.is_some(),
                "lifetime: ours {ours:?}, theirs {theirs:?}: {status} {response_headers:?}"
            );
        }
        compared += 1;
    }
    assert!(
        compared > 1_000,
        "only {compared} storable responses compared"
    );
}

/// One rule admits no exception: what the other crate refuses to store for privacy
/// (`no-store`, `private`, an `Authorization` request the response does not explicitly share),
/// we refuse too.
#[test]
fn what_http_cache_semantics_refuses_for_privacy_we_refuse_too() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut stream = Stream(0x0bad_5eed_1234_5678);
    let mut checked = 0;
    for _ in 0..20_000 {
        let (request_headers, status, response_headers) = exchange(&mut stream, now);
        let says = |d| has(&response_headers, &CACHE_CONTROL, d);
        let shares = ["public", "s-maxage", "must-revalidate"]
            .into_iter()
            .any(says);
        let privacy = says("no-store")
            || says("private")
            || request_headers.contains_key(AUTHORIZATION) && !shares;
        let theirs = their_policy(&request_headers, status, &response_headers, now);
        if privacy && !theirs.is_storable() {
            checked += 1;
            assert!(
                !we_admit(&request_headers, status, &response_headers),
                "stored: {status} {request_headers:?} {response_headers:?}"
            );
        }
    }
    assert!(checked > 1_000, "only {checked} private exchanges checked");
}
