use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::HeaderValue;

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn cdn(value: &str) -> ResponseDirectives {
    TargetedFields::default().directives(&headers(&[
        ("cache-control", "public, max-age=5"),
        ("cdn-cache-control", value),
    ]))
}

#[test]
fn a_valid_targeted_field_replaces_cache_control_entirely() {
    let d = cdn("max-age=600");
    assert!(d.targeted);
    assert_eq!(d.max_age, Some(Duration::from_secs(600)));
    assert!(!d.public, "nothing is taken from Cache-Control");
    let d = cdn("private");
    assert!(d.private && d.max_age.is_none());
    let d = cdn("no-store, max-age=60");
    assert!(d.no_store);
    let d = cdn(r#"no-cache="set-cookie", s-maxage=10;x=1, stale-if-error=30"#);
    assert!(d.no_cache);
    assert_eq!(d.s_maxage, Some(Duration::from_secs(10)));
    assert_eq!(d.stale_if_error, Some(Duration::from_secs(30)));
    // A repeated key keeps its last value; `?0` is absent.
    assert_eq!(
        cdn("max-age=1, max-age=9").max_age,
        Some(Duration::from_secs(9))
    );
    assert!(!cdn("no-store=?0, max-age=9").no_store);
    // Values of the wrong type: valid fields whose directive is stale at once, as in
    // Cache-Control.
    assert_eq!(cdn("max-age=-1").max_age, Some(Duration::ZERO));
    assert_eq!(cdn("max-age=1.5").max_age, Some(Duration::ZERO));
    assert_eq!(cdn("max-age=\"60\"").max_age, Some(Duration::from_secs(60)));
}

#[test]
fn an_empty_or_malformed_targeted_field_is_ignored() {
    for bad in [
        "",
        "   ",
        "Max-Age=60",
        "max-age=60,",
        "max-age=60 private",
        "max-age=1234567890123456",
        "private=\"unterminated",
        "a=\"\\x\"",
        "max-age==5",
        ",max-age=5",
        "max-age=5;",
        "x=(a b",
        "x=:abc",
        "x=?2",
    ] {
        let d = cdn(bad);
        assert!(!d.targeted, "{bad:?}");
        assert!(
            d.public && d.max_age == Some(Duration::from_secs(5)),
            "{bad:?}"
        );
    }
    assert!(cdn("x=(a \"b\");p=1, y=:aGk=:, z=?1, max-age=3").targeted);
}

#[test]
fn a_field_of_many_distinct_members_parses_whole() {
    // The shape that made the parser quadratic: every member's name new. Repeats and a
    // `?0` among them keep their meaning.
    let n = 20_000;
    let mut value: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    value.insert(0, "max-age=1, no-store".to_owned());
    value.push("max-age=600, no-store=?0, k7=x".to_owned());
    let value = value.join(", ");
    let h = headers(&[("cdn-cache-control", &value)]);
    let members = dictionary(&h, &CDN_CACHE_CONTROL).unwrap();
    assert_eq!(members.len(), n + 1, "k0..k{n} and max-age, no-store gone");
    assert_eq!(members[0].name, "k0");
    assert_eq!(members[n - 1].name, "max-age");
    assert_eq!(members[n].name, "k7");
    assert_eq!(members[n].arg.as_deref(), Some("x"));
    let d = cdn(&value);
    assert!(d.targeted && !d.no_store);
    assert_eq!(d.max_age, Some(Duration::from_secs(600)));
}

#[test]
fn the_first_configured_field_wins_and_lines_join() {
    let fields = TargetedFields::default().with_first(HeaderName::from_static("app-cc"));
    let h = headers(&[
        ("cdn-cache-control", "max-age=1"),
        ("app-cc", "max-age=2"),
        ("app-cc", "public"),
    ]);
    let d = fields.directives(&h);
    assert_eq!(d.max_age, Some(Duration::from_secs(2)));
    assert!(d.public);
    // An invalid first field falls back to the next one.
    let h = headers(&[("cdn-cache-control", "max-age=1"), ("app-cc", "MAX-AGE")]);
    assert_eq!(fields.directives(&h).max_age, Some(Duration::from_secs(1)));
    // None at all: Cache-Control.
    let h = headers(&[(CACHE_CONTROL.as_str(), "max-age=3")]);
    let d = fields.directives(&h);
    assert!(!d.targeted);
    assert_eq!(d.max_age, Some(Duration::from_secs(3)));
}

#[test]
fn hidden_unless_forwarded() {
    let fields = TargetedFields::default().with_first(HeaderName::from_static("app-cc"));
    let mut h = headers(&[
        ("cdn-cache-control", "max-age=1"),
        ("app-cc", "max-age=2"),
        ("cache-control", "no-cache"),
    ]);
    assert!(fields.hides_any(&h));
    fields.forwarded(true).hide(&mut h);
    assert_eq!(h.len(), 3);
    fields.hide(&mut h);
    assert_eq!(h.len(), 1);
    assert!(!fields.hides_any(&h));
}
