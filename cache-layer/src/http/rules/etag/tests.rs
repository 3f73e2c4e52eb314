use super::*;
use http::header::{ETAG, IF_MATCH, IF_NONE_MATCH};

fn s(tag: &str) -> EntityTag {
    EntityTag {
        weak: false,
        tag: tag.into(),
    }
}
fn w(tag: &str) -> EntityTag {
    EntityTag {
        weak: true,
        tag: tag.into(),
    }
}

#[test]
fn parse_table() {
    let cases: &[(&str, Option<EntityTag>)] = &[
        (r#""abc""#, Some(s("abc"))),
        (r#"W/"abc""#, Some(w("abc"))),
        (r#""""#, Some(s(""))),
        (r#"W/"""#, Some(w(""))),
        (r#"  "x"  "#, Some(s("x"))),
        (r#""a,b!#~""#, Some(s("a,b!#~"))),
        (r#""ü""#, Some(s("ü"))),
        ("abc", None),
        (r#""abc"#, None),
        (r#"abc""#, None),
        (r#"""#, None),
        (r#"w/"abc""#, None),
        (r#"W/ "abc""#, None),
        (r#""a"b""#, None),
        (r#""a b""#, None),
        ("\"a\tb\"", None),
        ("\"a\u{7f}\"", None),
        (r#""abc" x"#, None),
        ("*", None),
        ("", None),
    ];
    for (input, want) in cases {
        assert_eq!(&EntityTag::parse(input), want, "{input:?}");
    }
}

#[test]
fn non_utf8_obs_text_rejected() {
    assert_eq!(EntityTag::parse_bytes(b"\"\xff\""), None);
}

#[test]
fn display_roundtrip() {
    for t in [s("abc"), w("abc"), s(""), w("a,b")] {
        assert_eq!(EntityTag::parse(&t.to_string()), Some(t.clone()));
        assert_eq!(
            t.to_header_value().expect("valid").to_str().ok(),
            Some(t.to_string().as_str())
        );
    }
    assert_eq!(w("x").to_string(), r#"W/"x""#);
    assert_eq!(s("x").to_string(), r#""x""#);
}

#[test]
fn constructors_validate() {
    assert_eq!(EntityTag::strong("ok"), Some(s("ok")));
    assert_eq!(EntityTag::weak("ok"), Some(w("ok")));
    assert_eq!(EntityTag::strong("a\"b"), None);
    assert_eq!(EntityTag::weak("a b"), None);
}

/// How the `If-None-Match` `lines` apply to `current` under `comparison`.
fn applies(lines: &[&[u8]], current: &EntityTag, comparison: Comparison) -> Option<ListMatch> {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(IF_NONE_MATCH, HeaderValue::from_bytes(l).expect("valid"));
    }
    match_list(&h, &IF_NONE_MATCH, Some(current), comparison)
}

/// Which of `candidates` the `lines` list (weak comparison); `None` for `*`.
fn listed(lines: &[&[u8]], candidates: &[EntityTag]) -> Option<Vec<String>> {
    let mut found = Vec::new();
    for current in candidates {
        match applies(lines, current, Comparison::Weak)? {
            ListMatch::Any => return None,
            ListMatch::Tags(true) => found.push(current.to_string()),
            ListMatch::Tags(false) => {}
        }
    }
    Some(found)
}

#[test]
fn comparison_table() {
    // RFC 9110 §8.8.3.2 example table.
    let cases = [
        (w("1"), w("1"), false, true),
        (w("1"), w("2"), false, false),
        (w("1"), s("1"), false, true),
        (s("1"), s("1"), true, true),
        (s("1"), s("2"), false, false),
    ];
    for (a, b, strong, weak) in cases {
        for (x, y) in [(&a, &b), (&b, &a)] {
            let line = x.to_string();
            let tag = |c| applies(&[line.as_bytes()], y, c);
            assert_eq!(
                tag(Comparison::Strong),
                Some(ListMatch::Tags(strong)),
                "{x} {y}"
            );
            assert_eq!(
                tag(Comparison::Weak),
                Some(ListMatch::Tags(weak)),
                "{x} {y}"
            );
        }
    }
}

#[test]
fn list_parsing() {
    let all = [s("a"), w("b"), s("a,b"), s("c"), s("ok"), w("c")];
    let tags = |lines: &[&[u8]]| listed(lines, &all);
    let names = |v: &[&str]| Some(v.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>());
    assert_eq!(applies(&[], &s("a"), Comparison::Weak), None);
    assert_eq!(tags(&[b"*"]), None);
    assert_eq!(tags(&[b"  *  "]), None);
    assert_eq!(tags(&[b"*", b"*"]), None);
    assert_eq!(tags(&[b"\"a\", W/\"b\""]), names(&["\"a\"", "W/\"b\""]));
    assert_eq!(tags(&[b"\"a\"", b"W/\"b\""]), names(&["\"a\"", "W/\"b\""]));
    assert_eq!(
        tags(&[b"\"a,b\", \"c\""]),
        names(&["\"a,b\"", "\"c\"", "W/\"c\""])
    );
    assert_eq!(tags(&[b",, \"a\" ,,"]), names(&["\"a\""]));
    assert_eq!(tags(&[b"bogus, \"a\", \"b\"x, w/\"c\""]), names(&["\"a\""]));
    assert_eq!(tags(&[b"bogus"]), names(&[]));
    assert_eq!(tags(&[b""]), names(&[]));
    assert_eq!(tags(&[b"\"unterminated"]), names(&[]));
    assert_eq!(tags(&[b"*, \"a\""]), names(&["\"a\""]));
    assert_eq!(tags(&[b"*", b"junk"]), names(&[]));
    assert_eq!(tags(&[b"\"\xff\", \"ok\""]), names(&["\"ok\""]));
}

#[test]
fn list_header_name_respected() {
    let mut h = HeaderMap::new();
    h.insert(IF_MATCH, HeaderValue::from_static("\"a\""));
    assert_eq!(
        match_list(&h, &IF_NONE_MATCH, Some(&s("a")), Comparison::Weak),
        None
    );
    assert_eq!(
        match_list(&h, &IF_MATCH, Some(&s("a")), Comparison::Strong),
        Some(ListMatch::Tags(true))
    );
}

#[test]
fn list_matching() {
    let l: &[&[u8]] = &[b"W/\"a\", \"b\""];
    assert_eq!(
        applies(l, &s("a"), Comparison::Weak),
        Some(ListMatch::Tags(true))
    );
    assert_eq!(
        applies(l, &s("a"), Comparison::Strong),
        Some(ListMatch::Tags(false))
    );
    assert_eq!(
        applies(l, &s("b"), Comparison::Strong),
        Some(ListMatch::Tags(true))
    );
    assert_eq!(
        applies(l, &s("c"), Comparison::Weak),
        Some(ListMatch::Tags(false))
    );
    assert_eq!(
        applies(&[b"*"], &w("z"), Comparison::Strong),
        Some(ListMatch::Any)
    );
    let mut h = HeaderMap::new();
    h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
    assert_eq!(
        match_list(&h, &IF_NONE_MATCH, None, Comparison::Weak),
        Some(ListMatch::Tags(false))
    );
}

#[test]
fn etag_header() {
    let mut h = HeaderMap::new();
    assert_eq!(EntityTag::from_etag_header(&h), None);
    h.insert(ETAG, HeaderValue::from_static("W/\"v1\""));
    assert_eq!(EntityTag::from_etag_header(&h), Some(w("v1")));
    h.append(ETAG, HeaderValue::from_static("\"v2\""));
    assert_eq!(EntityTag::from_etag_header(&h), None);
}

#[test]
fn body_tags() {
    let a = EntityTag::strong_from_bytes(b"hello world");
    assert!(!a.weak);
    assert!(a.tag.starts_with("b-"), "{a}");
    assert_eq!(a.tag.len(), 2 + 32);
    assert!(a.tag[2..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(a, EntityTag::strong_from_bytes(b"hello world"));
    let wk = EntityTag::weak_from_bytes(b"hello world");
    assert!(wk.weak && wk.tag == a.tag);
    assert_eq!(EntityTag::parse(&a.to_string()), Some(a));
    assert!(EntityTag::strong_from_bytes(b"").tag.starts_with("0-"));
    assert_eq!(
        EntityTag::strong_from_bytes(&[0u8; 0x1a2]).tag.len(),
        4 + 32
    );
}

#[test]
fn tags_are_a_stable_cryptographic_digest() {
    // Pinned: tags must not change across platforms and releases (SHA-256 prefixes).
    assert_eq!(
        EntityTag::strong_from_bytes(b"").tag,
        "0-e3b0c44298fc1c149afbf4c8996fb924"
    );
    assert_eq!(
        EntityTag::strong_from_bytes(b"hello world").tag,
        "b-b94d27b9934d3e08a52e52d7da7dabfa"
    );
    let mut seen = std::collections::HashSet::new();
    for bit in 0..512 {
        let mut buf = [0u8; 64];
        buf[bit / 8] ^= 1 << (bit % 8);
        assert!(seen.insert(body_tag(&buf)), "collision at bit {bit}");
    }
}
