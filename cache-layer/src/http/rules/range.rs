//! Byte ranges (RFC 9110 §14) answered from a stored complete `200` response: one satisfiable
//! range is a `206` with `Content-Range`, an unsatisfiable one a `416`; several ranges, another
//! unit or a malformed `Range` get the whole response (which RFC 9110 §14.2 allows). `If-Range`
//! (§13.1.5) lets a range through only for the same representation, by strong comparison.
//!
//! The layer never stores a `206`: a range request that misses is forwarded as it came, and a
//! full `200` it gets back is stored and the range cut from it.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use http::header::{IF_RANGE, RANGE};
use http::HeaderMap;

use super::etag::EntityTag;
use super::freshness::parse_http_date;

/// How a request's `Range` is answered from a stored representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// The whole response, as without `Range`.
    Whole,
    /// These bytes, as a `206`.
    Partial(Range<usize>),
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// The stored representation's validators, for `If-Range`.
pub(crate) struct Validators<'a> {
    pub(crate) etag: Option<&'a EntityTag>,
    pub(crate) last_modified: Option<SystemTime>,
    pub(crate) date: Option<SystemTime>,
}

/// How a request with `request` headers is answered from a stored body of `length` bytes.
pub(crate) fn answer(
    request: &HeaderMap,
    length: usize,
    validators: &Validators<'_>,
) -> RangeAnswer {
    let mut lines = request.get_all(RANGE).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return RangeAnswer::Whole;
    };
    if request.contains_key(IF_RANGE) && !if_range_holds(request, validators) {
        return RangeAnswer::Whole;
    }
    let Some(spec) = single_byte_range(line.as_bytes()) else {
        return RangeAnswer::Whole;
    };
    resolve(spec, length)
}

/// One `range-spec` of the `bytes` unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` (`last` absent: to the end).
    From(u64, Option<u64>),
    /// `-suffix`: the last bytes.
    Suffix(u64),
}

/// The one range of a `bytes` `Range` value; `None` for another unit, several ranges, or
/// malformed syntax.
fn single_byte_range(value: &[u8]) -> Option<Spec> {
    let text = std::str::from_utf8(value).ok()?;
    let (unit, set) = text.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return None;
    };
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::From(first, None));
    }
    let last = digits(last)?;
    // `last < first` is invalid (RFC 9110 §14.1.1): the field is ignored.
    (last >= first).then_some(Spec::From(first, Some(last)))
}

/// ASCII digits as a number, saturating.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// The bytes `spec` selects of `length` (RFC 9110 §14.1.2).
fn resolve(spec: Spec, length: usize) -> RangeAnswer {
    let len = length as u64;
    let (start, end) = match spec {
        Spec::Suffix(0) => return RangeAnswer::Unsatisfiable,
        Spec::Suffix(n) => (len.saturating_sub(n), len),
        Spec::From(first, last) => {
            let end = last.map_or(len, |last| last.saturating_add(1).min(len));
            (first, end)
        }
    };
    if start >= end {
        return RangeAnswer::Unsatisfiable;
    }
    // Both are at most `length`, a `usize`.
    match (usize::try_from(start), usize::try_from(end)) {
        (Ok(start), Ok(end)) => RangeAnswer::Partial(start..end),
        _ => RangeAnswer::Whole,
    }
}

/// Whether `If-Range` names the stored representation: a strong entity tag equal to its strong
/// one, or a date equal to its `Last-Modified` when that is a strong validator (at least one
/// second before its `Date`, RFC 9110 §8.8.2.2).
fn if_range_holds(request: &HeaderMap, validators: &Validators<'_>) -> bool {
    let mut lines = request.get_all(IF_RANGE).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let value = line.as_bytes().trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let (Some(tag), Some(current)) = (EntityTag::parse_bytes(value), validators.etag) else {
            return false;
        };
        // Strong comparison (RFC 9110 §8.8.3.2).
        return !tag.weak && !current.weak && tag.tag == current.tag;
    }
    let (Some(date), Some(modified), Some(served)) = (
        parse_http_date(value),
        validators.last_modified,
        validators.date,
    ) else {
        return false;
    };
    date == modified
        && served
            .duration_since(modified)
            .is_ok_and(|d| d >= Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ask(range: &str, length: usize) -> RangeAnswer {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_str(range).unwrap());
        let none = Validators {
            etag: None,
            last_modified: None,
            date: None,
        };
        answer(&h, length, &none)
    }

    #[test]
    fn ranges_resolve_against_the_length() {
        use RangeAnswer::*;
        assert_eq!(ask("bytes=0-0", 10), Partial(0..1));
        assert_eq!(ask("bytes=2-5", 10), Partial(2..6));
        assert_eq!(ask("bytes=9-", 10), Partial(9..10));
        assert_eq!(ask("bytes=-20", 10), Partial(0..10));
        assert_eq!(ask("bytes=0-99999999999999999999999", 10), Partial(0..10));
        assert_eq!(ask("bytes= 3-4 ,", 10), Partial(3..5));
        assert_eq!(ask("bytes=10-", 10), Unsatisfiable);
        assert_eq!(ask("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(ask("bytes=-0", 10), Unsatisfiable);
        assert_eq!(ask("bytes=0-", 0), Unsatisfiable);
        assert_eq!(ask("bytes=-5", 0), Unsatisfiable);
        for whole in [
            "bytes=0-1,3-4",
            "bytes=",
            "bytes",
            "bytes=4-3",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=0x1-2",
            "items=0-1",
            "bytes=１-2",
        ] {
            assert_eq!(ask(whole, 10), Whole, "{whole:?}");
        }
    }

    #[test]
    fn if_range_compares_strongly() {
        let etag = EntityTag::strong("a").unwrap();
        let weak = EntityTag::weak("a").unwrap();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let with = |if_range: &str, etag: Option<&EntityTag>, date: u64| {
            let mut h = HeaderMap::new();
            h.insert(RANGE, HeaderValue::from_static("bytes=0-0"));
            h.insert(IF_RANGE, HeaderValue::from_str(if_range).unwrap());
            let v = Validators {
                etag,
                last_modified: Some(t(1_000_000)),
                date: Some(t(date)),
            };
            answer(&h, 5, &v) == RangeAnswer::Partial(0..1)
        };
        assert!(with("\"a\"", Some(&etag), 0));
        assert!(!with("\"b\"", Some(&etag), 0));
        assert!(!with("W/\"a\"", Some(&etag), 0));
        assert!(!with("\"a\"", Some(&weak), 0));
        assert!(!with("\"a\"", None, 0));
        let modified = httpdate::fmt_http_date(t(1_000_000));
        assert!(with(&modified, None, 1_000_001));
        assert!(!with(&modified, None, 1_000_000), "not a strong validator");
        assert!(!with(&httpdate::fmt_http_date(t(999_999)), None, 1_000_001));
        assert!(!with("junk", Some(&etag), 1_000_001));
    }
}
