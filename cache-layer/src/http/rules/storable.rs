//! Whether a response may be stored by a shared cache (RFC 9111 §3, §3.5),
//! with a named reason when it may not (surfaced in `Cache-Status`).

use http::header::{AUTHORIZATION, EXPIRES, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};

use super::cache_control::{RequestDirectives, ResponseDirectives};
use super::freshness::is_heuristically_cacheable;
use super::vary::has_vary_star;

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStorable {
    /// Request method is not GET.
    Method,
    /// Status is 1xx (interim), 206 (ranges are cut from a stored 200 instead) or 304.
    Status,
    /// `no-store` on the request or the response.
    NoStore,
    /// Response `private` (qualified or not).
    Private,
    /// `Vary: *` can never match a later request.
    VaryStar,
    /// A `Vary` member that is not a field name: no request can be matched against it.
    VaryInvalid,
    /// Response sets cookies (policy: never share them).
    SetCookie,
    /// Authenticated request without an explicit shared-cache opt-in.
    Authorization,
    /// No explicit or heuristic freshness and no default TTL.
    NoFreshness,
    /// Request with cookies, and a response that neither varies on `Cookie` nor is
    /// explicitly shared (`public`, `s-maxage`).
    Cookie,
    /// The body is larger than the layer's cap.
    TooLarge,
    /// A server-sent event stream (`text/event-stream`): it does not end, and must never make
    /// other clients wait for it.
    EventStream,
}

impl NotStorable {
    /// Short token for a `Cache-Status` `detail` parameter.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::VaryStar => "vary-star",
            Self::VaryInvalid => "vary-invalid",
            Self::SetCookie => "set-cookie",
            Self::Authorization => "authorization",
            Self::NoFreshness => "no-freshness",
            Self::Cookie => "cookie",
            Self::TooLarge => "too-large",
            Self::EventStream => "event-stream",
        }
    }

    /// Whether the response itself (not this particular request) is the reason, so that other
    /// requests for the URL would most likely get an unstorable response too.
    pub(crate) fn is_response_driven(&self) -> bool {
        matches!(
            self,
            Self::Status
                | Self::NoStore
                | Self::Private
                | Self::VaryStar
                | Self::VaryInvalid
                | Self::SetCookie
                | Self::NoFreshness
                | Self::TooLarge
                | Self::EventStream
        )
    }
}

/// Decides whether a shared cache may store this response.
///
/// `cc` must be the parsed response `Cache-Control`; `has_default_ttl` says a
/// configured default lifetime applies when the response has none.
pub(crate) fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    cc: &ResponseDirectives,
    has_default_ttl: bool,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    // 304 is excluded too: it is not a complete response to store and replay.
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    if cc.no_store || RequestDirectives::parse(request).no_store {
        return Err(NotStorable::NoStore);
    }
    if cc.private {
        return Err(NotStorable::Private);
    }
    if has_vary_star(response) {
        return Err(NotStorable::VaryStar);
    }
    if response.contains_key(SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    // RFC 9111 §3.5: only these directives permit sharing authenticated responses.
    if request.contains_key(AUTHORIZATION)
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    // A targeted field (RFC 9213 §2.2) replaces `Expires` too.
    let expires = !cc.targeted && response.contains_key(EXPIRES);
    let explicit = cc.max_age.is_some() || cc.s_maxage.is_some() || expires;
    let heuristic = is_heuristically_cacheable(status) && response.contains_key(LAST_MODIFIED);
    // `no-cache` (revalidate on every use) alone is enough for a heuristically cacheable status
    // (RFC 9111 §3 lets those be stored without freshness information); not for a 302, say.
    let revalidated = cc.no_cache && is_heuristically_cacheable(status);
    if explicit || cc.public || heuristic || revalidated || has_default_ttl {
        Ok(())
    } else {
        Err(NotStorable::NoFreshness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CACHE_CONTROL, VARY};
    use http::{HeaderName, HeaderValue};

    fn map(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n.clone(), HeaderValue::from_str(v).expect("valid"));
        }
        h
    }

    fn check(
        method: Method,
        req: &[(HeaderName, &str)],
        status: u16,
        resp: &[(HeaderName, &str)],
        default_ttl: bool,
    ) -> Result<(), NotStorable> {
        let resp = map(resp);
        let cc = ResponseDirectives::parse(&resp);
        let status = StatusCode::from_u16(status).expect("valid status");
        storable(&method, &map(req), status, &resp, &cc, default_ttl)
    }

    /// Header list used in test tables.
    type Fields<'a> = &'a [(HeaderName, &'a str)];

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn storable_ok_cases() {
        let ok: &[(Fields<'_>, Fields<'_>, u16, bool)] = &[
            (&[], &[(CACHE_CONTROL, "max-age=60")], 200, false),
            (&[], &[(CACHE_CONTROL, "s-maxage=60")], 200, false),
            (&[], &[(EXPIRES, "0")], 200, false),
            (&[], &[(CACHE_CONTROL, "public")], 302, false),
            (&[], &[(LAST_MODIFIED, LM)], 200, false),
            (&[], &[(LAST_MODIFIED, LM)], 404, false),
            (&[], &[(CACHE_CONTROL, "no-cache")], 200, false),
            (&[], &[], 200, true),
            (&[], &[(CACHE_CONTROL, "max-age=60")], 500, false),
            (
                &[],
                &[
                    (CACHE_CONTROL, "max-age=60"),
                    (VARY, "accept, accept-encoding"),
                ],
                200,
                false,
            ),
            (
                &[(AUTHORIZATION, "Bearer x")],
                &[(CACHE_CONTROL, "public")],
                200,
                false,
            ),
            (
                &[(AUTHORIZATION, "Bearer x")],
                &[(CACHE_CONTROL, "s-maxage=5")],
                200,
                false,
            ),
            (
                &[(AUTHORIZATION, "Bearer x")],
                &[(CACHE_CONTROL, "must-revalidate, max-age=5")],
                200,
                false,
            ),
        ];
        for (req, resp, status, ttl) in ok {
            assert_eq!(
                check(Method::GET, req, *status, resp, *ttl),
                Ok(()),
                "{req:?} {resp:?} {status}"
            );
        }
    }

    #[test]
    fn every_reason() {
        use NotStorable as N;
        let cc60: &[(HeaderName, &str)] = &[(CACHE_CONTROL, "max-age=60")];
        assert_eq!(check(Method::HEAD, &[], 200, cc60, true), Err(N::Method));
        assert_eq!(check(Method::POST, &[], 200, cc60, true), Err(N::Method));
        for s in [100, 103, 206, 304] {
            assert_eq!(
                check(Method::GET, &[], s, cc60, true),
                Err(N::Status),
                "{s}"
            );
        }
        assert_eq!(
            check(
                Method::GET,
                &[],
                200,
                &[(CACHE_CONTROL, "max-age=60, NO-STORE")],
                true
            ),
            Err(N::NoStore)
        );
        assert_eq!(
            check(Method::GET, &[(CACHE_CONTROL, "no-store")], 200, cc60, true),
            Err(N::NoStore)
        );
        assert_eq!(
            check(
                Method::GET,
                &[],
                200,
                &[(CACHE_CONTROL, "public, private")],
                true
            ),
            Err(N::Private)
        );
        assert_eq!(
            check(
                Method::GET,
                &[],
                200,
                &[(CACHE_CONTROL, "private=\"set-cookie\", max-age=9")],
                true
            ),
            Err(N::Private)
        );
        for vary in ["*", "accept, *", " * "] {
            assert_eq!(
                check(
                    Method::GET,
                    &[],
                    200,
                    &[cc60[0].clone(), (VARY, vary)],
                    true
                ),
                Err(N::VaryStar),
                "{vary}"
            );
        }
        assert_eq!(
            check(
                Method::GET,
                &[],
                200,
                &[cc60[0].clone(), (VARY, "accept"), (VARY, "*")],
                true
            ),
            Err(N::VaryStar)
        );
        assert_eq!(
            check(
                Method::GET,
                &[],
                200,
                &[cc60[0].clone(), (SET_COOKIE, "a=b")],
                true
            ),
            Err(N::SetCookie)
        );
        assert_eq!(
            check(Method::GET, &[(AUTHORIZATION, "Basic x")], 200, cc60, true),
            Err(N::Authorization)
        );
        assert_eq!(
            check(Method::GET, &[], 200, &[], false),
            Err(N::NoFreshness)
        );
        assert_eq!(
            check(Method::GET, &[], 302, &[(LAST_MODIFIED, LM)], false),
            Err(N::NoFreshness)
        );
        assert_eq!(
            check(
                Method::GET,
                &[],
                200,
                &[(CACHE_CONTROL, "must-revalidate")],
                false
            ),
            Err(N::NoFreshness)
        );
        assert_eq!(
            check(Method::GET, &[], 302, &[(CACHE_CONTROL, "no-cache")], false),
            Err(N::NoFreshness),
            "RFC 9111 §3: no-cache alone does not make a 302 storable"
        );
    }

    #[test]
    fn reason_strings() {
        use NotStorable::*;
        let all = [
            Method,
            Status,
            NoStore,
            Private,
            VaryStar,
            VaryInvalid,
            SetCookie,
            Authorization,
            NoFreshness,
            Cookie,
            TooLarge,
            EventStream,
        ];
        let mut seen = std::collections::HashSet::new();
        for r in all {
            let s = r.as_str();
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s}"
            );
            assert!(seen.insert(s), "duplicate {s}");
        }
    }
}
