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
mod tests;
