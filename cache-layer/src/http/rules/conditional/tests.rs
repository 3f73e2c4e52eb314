use super::*;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderName, HeaderValue};
use Precondition::{Failed, NotModified, Proceed};

const LM: u64 = 1_000_000_000;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(t(secs))
}

fn req(pairs: &[(HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(n.clone(), HeaderValue::from_str(v).expect("valid"));
    }
    h
}

fn strong_v1() -> EntityTag {
    EntityTag {
        weak: false,
        tag: "v1".into(),
    }
}

fn eval(method: Method, pairs: &[(HeaderName, &str)], etag: Option<&EntityTag>) -> Precondition {
    let rep = Representation {
        etag,
        last_modified: Some(t(LM)),
    };
    evaluate(&method, &req(pairs), StatusCode::OK, Some(rep))
}

#[test]
fn no_preconditions() {
    assert_eq!(eval(Method::GET, &[], Some(&strong_v1())), Proceed);
}

#[test]
fn if_match() {
    let e = strong_v1();
    let weak = EntityTag {
        weak: true,
        tag: "v1".into(),
    };
    let cases: &[(&str, Option<&EntityTag>, Precondition)] = &[
        ("\"v1\"", Some(&e), Proceed),
        ("\"x\", \"v1\"", Some(&e), Proceed),
        ("\"v2\"", Some(&e), Failed),
        ("W/\"v1\"", Some(&e), Failed),  // strong comparison
        ("\"v1\"", Some(&weak), Failed), // weak current never strongly matches
        ("*", Some(&e), Proceed),
        ("*", None, Proceed), // representation exists even without an ETag
        ("\"v1\"", None, Failed),
        ("garbage", Some(&e), Failed), // present but nothing valid
    ];
    for (v, etag, want) in cases {
        assert_eq!(
            eval(Method::PUT, &[(IF_MATCH, v)], *etag),
            *want,
            "If-Match: {v}"
        );
        assert_eq!(
            eval(Method::GET, &[(IF_MATCH, v)], *etag),
            *want,
            "If-Match: {v}"
        );
    }
}

#[test]
fn if_match_star_without_representation() {
    let h = req(&[(IF_MATCH, "*")]);
    assert_eq!(evaluate(&Method::PUT, &h, StatusCode::OK, None), Failed);
    let h = req(&[(IF_NONE_MATCH, "*")]);
    assert_eq!(evaluate(&Method::PUT, &h, StatusCode::OK, None), Proceed);
}

#[test]
fn if_unmodified_since() {
    let e = strong_v1();
    let cases: &[(String, Precondition)] = &[
        (date(LM), Proceed),
        (date(LM + 1), Proceed),
        (date(LM - 1), Failed),
        ("not a date".into(), Proceed),
    ];
    for (v, want) in cases {
        assert_eq!(
            eval(Method::PUT, &[(IF_UNMODIFIED_SINCE, v)], Some(&e)),
            *want,
            "{v}"
        );
    }
    // If-Match present: If-Unmodified-Since ignored.
    let old = date(LM - 1);
    assert_eq!(
        eval(
            Method::PUT,
            &[(IF_MATCH, "\"v1\""), (IF_UNMODIFIED_SINCE, &old)],
            Some(&e)
        ),
        Proceed
    );
    // Unknown Last-Modified: ignored.
    let h = req(&[(IF_UNMODIFIED_SINCE, &old)]);
    let rep = Representation {
        etag: None,
        last_modified: None,
    };
    assert_eq!(
        evaluate(&Method::PUT, &h, StatusCode::OK, Some(rep)),
        Proceed
    );
    // Two lines: not a valid single date, ignored.
    let h = req(&[(IF_UNMODIFIED_SINCE, &old), (IF_UNMODIFIED_SINCE, &old)]);
    let rep = Representation {
        etag: None,
        last_modified: Some(t(LM)),
    };
    assert_eq!(
        evaluate(&Method::PUT, &h, StatusCode::OK, Some(rep)),
        Proceed
    );
}

#[test]
fn if_none_match() {
    let e = strong_v1();
    let cases: &[(&str, Precondition)] = &[
        ("\"v1\"", NotModified),
        ("W/\"v1\"", NotModified), // weak comparison
        ("\"a\", W/\"v1\"", NotModified),
        ("\"v2\"", Proceed),
        ("*", NotModified),
        ("junk", Proceed),
    ];
    for (v, want) in cases {
        assert_eq!(
            eval(Method::GET, &[(IF_NONE_MATCH, v)], Some(&e)),
            *want,
            "GET {v}"
        );
        assert_eq!(
            eval(Method::HEAD, &[(IF_NONE_MATCH, v)], Some(&e)),
            *want,
            "HEAD {v}"
        );
        // Non-GET/HEAD: a false condition is 412, never 304.
        let other = if *want == NotModified {
            Failed
        } else {
            Proceed
        };
        assert_eq!(
            eval(Method::PUT, &[(IF_NONE_MATCH, v)], Some(&e)),
            other,
            "PUT {v}"
        );
        assert_eq!(
            eval(Method::POST, &[(IF_NONE_MATCH, v)], Some(&e)),
            other,
            "POST {v}"
        );
    }
    // No current ETag: tags never match.
    assert_eq!(
        eval(Method::GET, &[(IF_NONE_MATCH, "\"v1\"")], None),
        Proceed
    );
    assert_eq!(
        eval(Method::GET, &[(IF_NONE_MATCH, "*")], None),
        NotModified
    );
}

#[test]
fn if_modified_since() {
    let e = strong_v1();
    let cases: &[(String, Precondition)] = &[
        (date(LM), NotModified),
        (date(LM + 10), NotModified),
        (date(LM - 1), Proceed),
        ("0".into(), Proceed),
        ("garbage".into(), Proceed),
    ];
    for (v, want) in cases {
        assert_eq!(
            eval(Method::GET, &[(IF_MODIFIED_SINCE, v)], Some(&e)),
            *want,
            "{v}"
        );
        assert_eq!(
            eval(Method::HEAD, &[(IF_MODIFIED_SINCE, v)], Some(&e)),
            *want,
            "{v}"
        );
        // Only GET/HEAD evaluate If-Modified-Since.
        assert_eq!(
            eval(Method::POST, &[(IF_MODIFIED_SINCE, v)], Some(&e)),
            Proceed,
            "{v}"
        );
    }
    // Sub-second Last-Modified is truncated before comparing.
    let h = req(&[(IF_MODIFIED_SINCE, &date(LM))]);
    let rep = Representation {
        etag: None,
        last_modified: Some(t(LM) + Duration::from_millis(700)),
    };
    assert_eq!(
        evaluate(&Method::GET, &h, StatusCode::OK, Some(rep)),
        NotModified
    );
    // Multiple lines: ignored.
    let h = req(&[
        (IF_MODIFIED_SINCE, &date(LM)),
        (IF_MODIFIED_SINCE, &date(LM)),
    ]);
    let rep = Representation {
        etag: None,
        last_modified: Some(t(LM)),
    };
    assert_eq!(
        evaluate(&Method::GET, &h, StatusCode::OK, Some(rep)),
        Proceed
    );
}

#[test]
fn ordering() {
    let e = strong_v1();
    let now = date(LM + 100);
    let old = date(LM - 100);
    // If-Match failure beats a matching If-None-Match (412, not 304).
    let p = eval(
        Method::GET,
        &[(IF_MATCH, "\"other\""), (IF_NONE_MATCH, "\"v1\"")],
        Some(&e),
    );
    assert_eq!(p, Failed);
    // If-Match passes, then If-None-Match matches: 304.
    let p = eval(
        Method::GET,
        &[(IF_MATCH, "\"v1\""), (IF_NONE_MATCH, "\"v1\"")],
        Some(&e),
    );
    assert_eq!(p, NotModified);
    // If-Modified-Since ignored when If-None-Match present (and not matching).
    let p = eval(
        Method::GET,
        &[(IF_NONE_MATCH, "\"v2\""), (IF_MODIFIED_SINCE, &now)],
        Some(&e),
    );
    assert_eq!(p, Proceed);
    // If-None-Match matches even though If-Modified-Since says "modified".
    let p = eval(
        Method::GET,
        &[(IF_NONE_MATCH, "\"v1\""), (IF_MODIFIED_SINCE, &old)],
        Some(&e),
    );
    assert_eq!(p, NotModified);
    // If-Unmodified-Since failure beats If-None-Match.
    let p = eval(
        Method::GET,
        &[(IF_UNMODIFIED_SINCE, &old), (IF_NONE_MATCH, "\"v1\"")],
        Some(&e),
    );
    assert_eq!(p, Failed);
    // PUT with failing If-None-Match: 412.
    assert_eq!(eval(Method::PUT, &[(IF_NONE_MATCH, "*")], Some(&e)), Failed);
}

#[test]
fn non_success_status_ignores_preconditions() {
    let h = req(&[(IF_MATCH, "\"nope\"")]);
    let rep = Some(Representation {
        etag: Some(&strong_v1()),
        last_modified: None,
    });
    assert_eq!(
        evaluate(&Method::GET, &h, StatusCode::NOT_FOUND, rep),
        Proceed
    );
    assert_eq!(
        evaluate(&Method::GET, &h, StatusCode::MOVED_PERMANENTLY, rep),
        Proceed
    );
    assert_eq!(
        evaluate(&Method::GET, &h, StatusCode::PRECONDITION_FAILED, rep),
        Failed
    );
    assert_eq!(
        evaluate(&Method::GET, &h, StatusCode::NO_CONTENT, rep),
        Failed
    );
}

#[test]
fn not_modified_header_set() {
    let stored = req(&[
        (CONTENT_LOCATION, "/a"),
        (DATE, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (ETAG, "\"v1\""),
        (VARY, "accept"),
        (VARY, "accept-encoding"),
        (CACHE_CONTROL, "max-age=60"),
        (EXPIRES, "0"),
        (CONTENT_TYPE, "text/plain"),
        (CONTENT_LENGTH, "5"),
        (LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (SET_COOKIE, "a=b"),
    ]);
    let out = not_modified_headers(&stored);
    assert_eq!(out.len(), 7);
    for name in &NOT_MODIFIED_FIELDS {
        let a: Vec<_> = stored.get_all(name).iter().collect();
        let b: Vec<_> = out.get_all(name).iter().collect();
        assert_eq!(a, b, "{name}");
    }
    assert!(!out.contains_key(CONTENT_TYPE) && !out.contains_key(CONTENT_LENGTH));
    assert!(!out.contains_key(LAST_MODIFIED) && !out.contains_key(SET_COOKIE));
    assert!(not_modified_headers(&HeaderMap::new()).is_empty());
}
