use super::*;
use http::HeaderValue;

fn map(name: HeaderName, lines: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(
            name.clone(),
            HeaderValue::from_bytes(l).expect("valid test header"),
        );
    }
    h
}

fn resp(lines: &[&str]) -> ResponseDirectives {
    let lines: Vec<&[u8]> = lines.iter().map(|s| s.as_bytes()).collect();
    ResponseDirectives::parse(&map(CACHE_CONTROL, &lines))
}

fn req(lines: &[&str]) -> RequestDirectives {
    let lines: Vec<&[u8]> = lines.iter().map(|s| s.as_bytes()).collect();
    RequestDirectives::parse(&map(CACHE_CONTROL, &lines))
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[test]
fn delta_seconds_table() {
    let cases: &[(&str, Option<u64>)] = &[
        ("0", Some(0)),
        ("60", Some(60)),
        ("007", Some(7)),
        ("2147483647", Some(2_147_483_647)),
        ("2147483648", Some(DELTA_SECONDS_MAX)),
        ("2147483649", Some(DELTA_SECONDS_MAX)),
        ("99999999999999999999999999999999", Some(DELTA_SECONDS_MAX)),
        ("", None),
        ("-1", None),
        ("+1", None),
        ("1.5", None),
        ("abc", None),
        (" 1", None),
        ("1 ", None),
        ("１", None),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_delta_seconds(input),
            want.map(Duration::from_secs),
            "{input:?}"
        );
    }
}

#[test]
fn response_basic_and_case_insensitive() {
    let d = resp(&["Max-Age=60, PUBLIC, s-MaxAge=120, Must-Revalidate, Immutable"]);
    assert_eq!(d.max_age, secs(60));
    assert_eq!(d.s_maxage, secs(120));
    assert!(d.public && d.must_revalidate);
    assert!(!d.private && !d.no_store && !d.no_cache && !d.proxy_revalidate);
}

#[test]
fn response_flags() {
    let d = resp(&["no-store, no-cache, private, proxy-revalidate"]);
    assert!(d.no_store && d.no_cache && d.private && d.proxy_revalidate);
    assert_eq!(d, resp(&["NO-STORE,NO-CACHE,PRIVATE,PROXY-REVALIDATE"]));
}

#[test]
fn multiple_lines_merge() {
    let d = resp(&[
        "max-age=10",
        "public",
        "stale-while-revalidate=30, stale-if-error=60",
    ]);
    assert_eq!(d.max_age, secs(10));
    assert!(d.public);
    assert_eq!(d.stale_while_revalidate, secs(30));
    assert_eq!(d.stale_if_error, secs(60));
}

#[test]
fn whitespace_and_empty_members() {
    let d = resp(&["  ,, max-age = 5 ,\t public ,, "]);
    assert_eq!(d.max_age, secs(5));
    assert!(d.public);
    assert_eq!(resp(&[""]), ResponseDirectives::default());
    assert_eq!(resp(&[",,,  ,"]), ResponseDirectives::default());
}

#[test]
fn quoted_strings() {
    // Comma and escaped quote inside a quoted argument must not split directives.
    let d = resp(&[r#"private="set-cookie, x-foo", max-age=30"#]);
    assert!(d.private);
    assert_eq!(d.max_age, secs(30));
    let d = resp(&[r#"no-cache="a\"b, max-age=1", public"#]);
    assert!(d.no_cache && d.public);
    assert_eq!(d.max_age, None);
    // Quoted delta-seconds is accepted (RFC 9111 §5.2).
    assert_eq!(resp(&[r#"max-age="42""#]).max_age, secs(42));
    assert_eq!(resp(&[r#"max-age="4\2""#]).max_age, secs(42));
}

#[test]
fn malformed_quoted_arguments() {
    assert_eq!(resp(&[r#"max-age="10"#]).max_age, Some(Duration::ZERO));
    assert_eq!(resp(&[r#"max-age="10"x"#]).max_age, Some(Duration::ZERO));
    assert_eq!(resp(&[r#"max-age="10\"#]).max_age, Some(Duration::ZERO));
    // Unterminated quote swallows the rest of the line, conservatively.
    let d = resp(&[r#"private="foo, public"#]);
    assert!(d.private && !d.public);
}

#[test]
fn invalid_max_age_is_stale() {
    for v in [
        "max-age=abc",
        "max-age=-1",
        "max-age=",
        "max-age",
        "max-age=1 2",
        "max-age=1.0",
    ] {
        assert_eq!(resp(&[v]).max_age, Some(Duration::ZERO), "{v}");
    }
    for v in ["s-maxage=abc", "s-maxage=", "s-maxage=-5"] {
        assert_eq!(resp(&[v]).s_maxage, Some(Duration::ZERO), "{v}");
    }
}

#[test]
fn duplicate_max_age() {
    assert_eq!(resp(&["max-age=10, max-age=10"]).max_age, secs(10));
    assert_eq!(resp(&["max-age=10", "max-age=10"]).max_age, secs(10));
    assert_eq!(
        resp(&["max-age=10, max-age=20"]).max_age,
        Some(Duration::ZERO)
    );
    assert_eq!(
        resp(&["max-age=10", "MAX-AGE=20"]).max_age,
        Some(Duration::ZERO)
    );
    assert_eq!(
        resp(&["max-age=x, max-age=10"]).max_age,
        Some(Duration::ZERO)
    );
    assert_eq!(
        resp(&["max-age=10, max-age=x"]).max_age,
        Some(Duration::ZERO)
    );
    assert_eq!(
        resp(&["s-maxage=1, s-maxage=2"]).s_maxage,
        Some(Duration::ZERO)
    );
}

#[test]
fn overflow_clamps() {
    let d = resp(&["max-age=99999999999999999999, s-maxage=4294967296"]);
    assert_eq!(d.max_age, secs(DELTA_SECONDS_MAX));
    assert_eq!(d.s_maxage, secs(DELTA_SECONDS_MAX));
}

#[test]
fn invalid_stale_extensions_are_ignored() {
    let d = resp(&["stale-while-revalidate=x, stale-if-error"]);
    assert_eq!(d.stale_while_revalidate, None);
    assert_eq!(d.stale_if_error, None);
}

#[test]
fn unknown_directives_ignored() {
    let d = resp(&[r#"foo, bar=baz, qux="a,b", max-age=3, community="UCI""#]);
    assert_eq!(d.max_age, secs(3));
    assert_eq!(
        d,
        ResponseDirectives {
            max_age: secs(3),
            ..Default::default()
        }
    );
}

#[test]
fn non_utf8_does_not_panic() {
    let h = map(
        CACHE_CONTROL,
        &[b"max-age=\xff\xfe, \xff=\"\xfe\\", b"\xff"],
    );
    assert_eq!(ResponseDirectives::parse(&h).max_age, Some(Duration::ZERO));
    let _ = RequestDirectives::parse(&h);
}

#[test]
fn request_directives() {
    let r = req(&["Max-Age=5, Min-Fresh=7, No-Cache, NO-STORE, only-if-cached"]);
    assert_eq!(r.max_age, secs(5));
    assert_eq!(r.min_fresh, secs(7));
    assert!(r.no_cache && r.no_store && r.only_if_cached);
    assert_eq!(r.max_stale, None);
}

#[test]
fn request_invalid_ignored_and_duplicates() {
    assert_eq!(req(&["max-age=abc"]).max_age, None);
    assert_eq!(req(&["max-age=-1"]).max_age, None);
    assert_eq!(
        req(&["max-age=10, max-age=5", "max-age=x"]).max_age,
        secs(5)
    );
    assert_eq!(req(&["min-fresh=10, min-fresh=20"]).min_fresh, secs(20));
    assert_eq!(req(&["min-fresh="]).min_fresh, None);
}

#[test]
fn request_max_stale() {
    assert_eq!(req(&["max-stale"]).max_stale, Some(None));
    assert_eq!(req(&["max-stale=30"]).max_stale, Some(secs(30)));
    assert_eq!(req(&[r#"max-stale="30""#]).max_stale, Some(secs(30)));
    assert_eq!(req(&["max-stale=bad"]).max_stale, None);
    assert_eq!(req(&["max-stale, max-stale=30"]).max_stale, Some(secs(30)));
    assert_eq!(
        req(&["max-stale=30", "max-stale"]).max_stale,
        Some(secs(30))
    );
    assert_eq!(
        req(&["max-stale=30, max-stale=10"]).max_stale,
        Some(secs(10))
    );
}

#[test]
fn pragma_no_cache() {
    let h = map(PRAGMA, &[b"No-Cache"]);
    assert!(RequestDirectives::parse(&h).no_cache);
    let h = map(PRAGMA, &[b"foo, no-cache"]);
    assert!(RequestDirectives::parse(&h).no_cache);
    let h = map(PRAGMA, &[b"foo"]);
    assert!(!RequestDirectives::parse(&h).no_cache);
    // Cache-Control present: Pragma ignored.
    let mut h = map(PRAGMA, &[b"no-cache"]);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
    let r = RequestDirectives::parse(&h);
    assert!(!r.no_cache);
    assert_eq!(r.max_age, secs(5));
    // Pragma on a response is not consulted.
    assert!(!ResponseDirectives::parse(&map(PRAGMA, &[b"no-cache"])).no_cache);
}
