//! Differential test: our storability and freshness rules against the `http-cache-semantics`
//! crate (a port of the widely used JavaScript library) on random responses.
//!
//! Both sides are asked the two questions that decide what a shared cache serves: may this
//! response be stored, and for how long may it be served without revalidation? Every
//! disagreement must fall into one of the classes of [`Divergence`], each justified by an RFC
//! section and listed in docs/caching-and-performance.md ("Where we differ from
//! http-cache-semantics"). A disagreement outside them fails the test with the case that
//! produced it. One privacy rule admits no exception: whatever that crate refuses to store for
//! a reason of privacy (`no-store`, `private`, `Authorization`), we refuse too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED, PRAGMA, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_cache_semantics::{CacheOptions, CachePolicy};

use super::cache_control::ResponseDirectives;
use super::freshness::{current_age, freshness_lifetime};
use super::storable::storable;

/// The documented reasons for which we and `http-cache-semantics` may disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Divergence {
    /// A final status that crate does not "understand" (e.g. 500, 201), stored by us when the
    /// response gives explicit freshness: RFC 9111 §3 allows any final status then.
    StatusNotUnderstood,
    /// Heuristic freshness: ours is capped at one day (RFC 9111 §4.2.2 leaves the bound to the
    /// cache), theirs is not.
    HeuristicCap,
    /// `proxy-revalidate`: that crate makes the lifetime zero for a shared cache; RFC 9111
    /// §5.2.2.8 only forbids serving the response once it is stale, as we do.
    ProxyRevalidate,
    /// `immutable`: that crate assumes a one-day minimum lifetime; RFC 8246 §2 does not extend
    /// freshness, so we do not.
    Immutable,
    /// `Set-Cookie` with `public`: that crate shares it; we never store a response that sets a
    /// cookie (RFC 9111 §7.3 leaves it to the cache; sharing one user's cookie is a leak).
    SetCookie,
    /// `Pragma: no-cache` on a response: that crate treats it as `no-cache`; RFC 9111 §5.4
    /// defines `Pragma` for requests only.
    ResponsePragma,
}

/// One generated exchange.
struct Case {
    request: Request<()>,
    response: Response<()>,
    now: SystemTime,
}

const DIRECTIVES: &[&str] = &[
    "max-age=60",
    "max-age=0",
    "max-age=abc",
    "max-age=\"30\"",
    "s-maxage=120",
    "s-maxage=0",
    "no-store",
    "no-cache",
    "private",
    "private=\"set-cookie\"",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "immutable",
    "stale-while-revalidate=30",
];

const STATUSES: &[u16] = &[
    200, 200, 200, 201, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 418, 500, 501,
    503,
];

fn http_date(at: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("an HTTP date is a valid value")
}

/// A random request and response; directive names never repeat within one response.
fn case(rng: &mut fastrand::Rng) -> Case {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut request = Request::get("http://example.com/x")
        .body(())
        .expect("valid");
    if rng.u8(..10) == 0 {
        request
            .headers_mut()
            .insert(AUTHORIZATION, "Bearer t".parse().expect("valid"));
    }
    if rng.u8(..20) == 0 {
        request
            .headers_mut()
            .insert(CACHE_CONTROL, "no-store".parse().expect("valid"));
    }
    let status = STATUSES[rng.usize(..STATUSES.len())];
    let mut response = Response::builder().status(status).body(()).expect("valid");
    let headers = response.headers_mut();
    headers.insert(DATE, http_date(now));
    let mut chosen: Vec<&str> = Vec::new();
    for _ in 0..rng.usize(..4) {
        let d = DIRECTIVES[rng.usize(..DIRECTIVES.len())];
        let name = d.split('=').next().unwrap_or(d);
        if !chosen.iter().any(|c| c.split('=').next() == Some(name)) {
            chosen.push(d);
        }
    }
    if !chosen.is_empty() {
        let value = chosen.join(", ");
        headers.insert(CACHE_CONTROL, value.parse().expect("valid"));
    }
    add_optional_fields(rng, headers, now);
    Case {
        request,
        response,
        now,
    }
}

fn add_optional_fields(rng: &mut fastrand::Rng, headers: &mut HeaderMap, now: SystemTime) {
    let ago = |secs: u64| http_date(now - Duration::from_secs(secs));
    let pick = |rng: &mut fastrand::Rng, n| rng.u8(..n) == 0;
    if pick(rng, 3) {
        let value = match rng.u8(..3) {
            0 => http_date(now + Duration::from_secs(300)),
            1 => ago(300),
            _ => HeaderValue::from_static("0"),
        };
        headers.insert(EXPIRES, value);
    }
    if pick(rng, 3) {
        let secs = [100, 86_400 * 3, 86_400 * 400][rng.usize(..3)];
        headers.insert(LAST_MODIFIED, ago(secs));
    }
    let optional: [(HeaderName, &'static str, u8); 4] = [
        (SET_COOKIE, "sid=1", 8),
        (VARY, "*", 12),
        (AGE, "10", 6),
        (PRAGMA, "no-cache", 12),
    ];
    for (name, value, odds) in optional {
        if pick(rng, odds) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// Ours: `None` when not stored, else the time it may be served without revalidation.
fn ours(case: &Case) -> Option<Duration> {
    let (req, res) = (case.request.headers(), case.response.headers());
    let cc = ResponseDirectives::parse(res);
    let status = case.response.status();
    storable(&Method::GET, req, status, res, &cc, false).ok()?;
    if cc.no_cache {
        return Some(Duration::ZERO);
    }
    let lifetime = freshness_lifetime(status, res, &cc, true, case.now).unwrap_or_default();
    let age = current_age(res, case.now, case.now, case.now);
    Some(lifetime.saturating_sub(age))
}

/// Theirs, as a shared cache.
fn theirs(case: &Case) -> Option<Duration> {
    let options = CacheOptions {
        shared: true,
        ..CacheOptions::default()
    };
    let policy = CachePolicy::new_options(&case.request, &case.response, case.now, options);
    policy.is_storable().then(|| policy.time_to_live(case.now))
}

/// Which documented classes explain a disagreement on this case. Each class is checked
/// narrowly (the field is present *and* the outcomes differ in that class's direction), so an
/// unrelated bug cannot hide behind one.
fn explain(case: &Case, ours: Option<Duration>, theirs: Option<Duration>) -> Vec<Divergence> {
    let res = case.response.headers();
    let cc = res
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (o, t) = (served_fresh(ours), served_fresh(theirs));
    let explicit = cc.contains("max-age") || res.contains_key(EXPIRES);
    let status = case.response.status().as_u16();
    let understood = [
        200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
    ];
    let day = Duration::from_secs(86_400);
    let mut classes = Vec::new();
    let mut class_if = |cond: bool, class| {
        if cond {
            classes.push(class);
        }
    };
    class_if(
        !understood.contains(&status) && theirs.is_none() && ours.is_some(),
        Divergence::StatusNotUnderstood,
    );
    class_if(
        !explicit && res.contains_key(LAST_MODIFIED) && o <= day && t > day,
        Divergence::HeuristicCap,
    );
    class_if(
        cc.contains("proxy-revalidate") && t.is_zero() && o > t,
        Divergence::ProxyRevalidate,
    );
    class_if(
        cc.contains("immutable") && !cc.contains("max-age") && o < t && t <= day,
        Divergence::Immutable,
    );
    class_if(
        res.contains_key(SET_COOKIE) && ours.is_none(),
        Divergence::SetCookie,
    );
    class_if(
        res.contains_key(PRAGMA) && !res.contains_key(CACHE_CONTROL) && t.is_zero() && o > t,
        Divergence::ResponsePragma,
    );
    classes
}

/// What a user relies on: the time a response is served without asking the origin.
/// Storing something that is never served fresh (zero lifetime, `Vary: *`) is no difference.
fn served_fresh(outcome: Option<Duration>) -> Duration {
    outcome.unwrap_or_default()
}

fn describe(case: &Case) -> String {
    format!(
        "request {:?}\nresponse {} {:?}",
        case.request.headers(),
        case.response.status(),
        case.response.headers()
    )
}

#[test]
fn storability_and_freshness_agree_with_http_cache_semantics_or_a_documented_rule() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_cafe);
    let mut seen = Vec::new();
    let mut agreed = 0;
    for _ in 0..20_000 {
        let case = case(&mut rng);
        let (ours, theirs) = (ours(&case), theirs(&case));
        if served_fresh(ours) == served_fresh(theirs) {
            agreed += 1;
            continue;
        }
        let classes = explain(&case, ours, theirs);
        assert!(
            !classes.is_empty(),
            "undocumented disagreement: ours {ours:?}, theirs {theirs:?}\n{}",
            describe(&case)
        );
        seen.extend(classes);
    }
    assert!(agreed > 15_000, "most cases agree ({agreed} of 20000)");
    // Each documented class is exercised, so none of them is dead text.
    for class in [
        Divergence::StatusNotUnderstood,
        Divergence::HeuristicCap,
        Divergence::ProxyRevalidate,
        Divergence::Immutable,
        Divergence::SetCookie,
        Divergence::ResponsePragma,
    ] {
        assert!(seen.contains(&class), "{class:?} never observed");
    }
}

#[test]
fn what_that_crate_refuses_for_privacy_we_refuse_too() {
    let mut rng = fastrand::Rng::with_seed(0x0bad_5eed);
    for _ in 0..20_000 {
        let case = case(&mut rng);
        let (req, res) = (case.request.headers(), case.response.headers());
        let cc = res
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let req_cc = req
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let privacy = cc.contains("no-store")
            || cc.contains("private")
            || req_cc.contains("no-store")
            || (req.contains_key(AUTHORIZATION)
                && !["public", "s-maxage", "must-revalidate"]
                    .iter()
                    .any(|d| cc.contains(d)));
        if privacy && theirs(&case).is_none() {
            assert_eq!(ours(&case), None, "stored:\n{}", describe(&case));
        }
    }
}
