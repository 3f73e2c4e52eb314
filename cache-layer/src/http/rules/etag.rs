//! Entity tags (RFC 9110 §8.8.3): parsing, comparison, `If-Match` /
//! `If-None-Match` list parsing, and generation of tags from body bytes.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::field::{is_ows, trim_ows};

/// An entity tag; `tag` holds the opaque-tag without its quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EntityTag {
    /// Whether the tag carries the `W/` weakness indicator.
    pub(crate) weak: bool,
    /// Opaque tag contents, unquoted.
    pub(crate) tag: String,
}

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

impl EntityTag {
    /// Builds a strong tag; `None` if `tag` contains a non-etagc byte.
    #[cfg(test)]
    pub(crate) fn strong(tag: &str) -> Option<Self> {
        tag.bytes().all(is_etagc).then(|| Self {
            weak: false,
            tag: tag.to_owned(),
        })
    }

    /// Builds a weak tag; `None` if `tag` contains a non-etagc byte.
    #[cfg(test)]
    pub(crate) fn weak(tag: &str) -> Option<Self> {
        tag.bytes().all(is_etagc).then(|| Self {
            weak: true,
            tag: tag.to_owned(),
        })
    }

    /// Parses `"abc"` or `W/"abc"` (surrounding whitespace tolerated).
    #[cfg(test)]
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::parse_bytes(s.as_bytes())
    }

    /// Parses a tag from raw field bytes.
    ///
    /// Non-UTF-8 obs-text is rejected because `tag` is a `String`; rejecting
    /// (rather than lossy conversion) avoids false matches.
    pub(crate) fn parse_bytes(b: &[u8]) -> Option<Self> {
        TagRef::parse(b).map(TagRef::to_owned)
    }

    /// Parses the (single) `ETag` field of a response.
    pub(crate) fn from_etag_header(headers: &HeaderMap) -> Option<Self> {
        let mut lines = headers.get_all(http::header::ETAG).iter();
        let first = lines.next()?;
        // More than one ETag line is ambiguous; refuse to pick one.
        if lines.next().is_some() {
            return None;
        }
        Self::parse_bytes(first.as_bytes())
    }

    /// The wire form as a header value.
    pub(crate) fn to_header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.to_string()).ok()
    }

    /// Strong tag derived from a hash of the full body.
    pub(crate) fn strong_from_bytes(body: &[u8]) -> Self {
        Self {
            weak: false,
            tag: body_tag(body),
        }
    }

    /// Weak tag derived from a hash of the full body.
    pub(crate) fn weak_from_bytes(body: &[u8]) -> Self {
        Self {
            weak: true,
            tag: body_tag(body),
        }
    }
}

/// An entity tag borrowed from the field it was parsed from: what list matching compares,
/// so that evaluating `If-None-Match` allocates nothing.
#[derive(Clone, Copy, Debug)]
struct TagRef<'a> {
    weak: bool,
    tag: &'a str,
}

impl<'a> TagRef<'a> {
    /// Parses `"abc"` or `W/"abc"` (surrounding whitespace tolerated).
    fn parse(b: &'a [u8]) -> Option<Self> {
        let b = trim_ows(b);
        let (weak, rest) = match b.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, b),
        };
        let inner = rest.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if !inner.iter().all(|&c| is_etagc(c)) {
            return None;
        }
        let tag = std::str::from_utf8(inner).ok()?;
        Some(Self { weak, tag })
    }

    fn to_owned(self) -> EntityTag {
        EntityTag {
            weak: self.weak,
            tag: self.tag.to_owned(),
        }
    }

    /// Strong or weak comparison with `current` (RFC 9110 §8.8.3.2).
    fn matches(self, current: &EntityTag, comparison: Comparison) -> bool {
        let strong_enough = match comparison {
            Comparison::Strong => !self.weak && !current.weak,
            Comparison::Weak => true,
        };
        strong_enough && self.tag == current.tag
    }
}

/// Which comparison a precondition uses (RFC 9110 §8.8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// `If-Match`: both tags strong and identical.
    Strong,
    /// `If-None-Match`: identical tags, weak or not.
    Weak,
}

/// How an `If-Match` / `If-None-Match` list applies to the current representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListMatch {
    /// `*`: any current representation.
    Any,
    /// Listed tags: whether one of them matches.
    Tags(bool),
}

/// Evaluates the request's `name` list (every field line) against `current`, without building
/// the list; `None` when the header is absent. `*` counts only as the sole member; invalid
/// members are skipped (they match nothing).
pub(crate) fn match_list(
    headers: &HeaderMap,
    name: &HeaderName,
    current: Option<&EntityTag>,
    comparison: Comparison,
) -> Option<ListMatch> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut matched = false;
    let any = {
        let mut scan = ListScan::new(|member: TagRef<'_>| {
            matched |= current.is_some_and(|current| member.matches(current, comparison));
        });
        for line in lines {
            scan.scan(line.as_bytes());
        }
        scan.is_any()
    };
    Some(if any {
        ListMatch::Any
    } else {
        ListMatch::Tags(matched)
    })
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.tag)
    }
}

/// `<len hex>-<32 hex>`: the body's length and the first 128 bits of its SHA-256. A
/// cryptographic hash, so a tag neither reveals the body nor lets anyone craft a different body
/// with the same tag (a fast non-cryptographic hash can be inverted or collided on purpose).
/// Deterministic, so every instance and release gives a body the same tag.
fn body_tag(body: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    // `{:.32x}`: the digest's first 32 hex digits (16 bytes).
    format!("{:x}-{:.32x}", body.len(), Sha256::digest(body))
}

/// Scans list members across field lines, handing each valid tag to `on_tag`.
struct ListScan<F> {
    /// Number of `*` members seen.
    stars: usize,
    /// Number of non-`*` members seen, valid or not.
    others: usize,
    on_tag: F,
}

impl<F: FnMut(TagRef<'_>)> ListScan<F> {
    fn new(on_tag: F) -> Self {
        ListScan {
            stars: 0,
            others: 0,
            on_tag,
        }
    }

    /// `*` alone: mixed with other members it is invalid and dropped.
    fn is_any(&self) -> bool {
        self.stars > 0 && self.others == 0
    }

    /// Scans one field line. Commas inside quotes are part of the tag.
    fn scan(&mut self, v: &[u8]) {
        let n = v.len();
        let mut i = 0;
        while i < n {
            while i < n && (is_ows(v[i]) || v[i] == b',') {
                i += 1;
            }
            if i >= n {
                break;
            }
            let start = i;
            let quote = if v[i..].starts_with(b"W/\"") {
                Some(i + 3)
            } else if v[i] == b'"' {
                Some(i + 1)
            } else {
                None
            };
            if let Some(q) = quote {
                // Find the closing quote; etagc cannot contain '"', so no escapes.
                let end = v[q..]
                    .iter()
                    .position(|&b| b == b'"')
                    .map_or(n, |p| q + p + 1);
                i = end;
                while i < n && v[i] != b',' {
                    i += 1;
                }
                self.others += 1;
                if trim_ows(&v[end..i]).is_empty() {
                    if let Some(tag) = TagRef::parse(&v[start..end]) {
                        (self.on_tag)(tag);
                    }
                }
            } else {
                while i < n && v[i] != b',' {
                    i += 1;
                }
                if trim_ows(&v[start..i]) == b"*" {
                    self.stars += 1;
                } else {
                    self.others += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
