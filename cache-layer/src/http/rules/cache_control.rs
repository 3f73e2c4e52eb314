//! `Cache-Control` (and request `Pragma`) parsing (RFC 9111 §5.2, §5.4).
//!
//! Owns the directive tokenizer, delta-seconds parsing (§1.2.2) and the typed
//! request/response directive sets. Parsing never fails: malformed input is
//! mapped to the most conservative interpretation.

use std::time::Duration;

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderName};

use super::field::{is_ows, trim_ows};

/// Largest delta-seconds value; larger values clamp to it (RFC 9111 §1.2.2).
pub(crate) const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// Parses a delta-seconds value: ASCII digits only, clamped to 2^31 seconds.
///
/// Returns `None` for an empty or non-digit value (including signs and spaces).
pub(crate) fn parse_delta_seconds(s: &str) -> Option<Duration> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
        // Stop early so arbitrarily long digit strings cannot overflow.
        if v >= DELTA_SECONDS_MAX {
            return Some(Duration::from_secs(DELTA_SECONDS_MAX));
        }
    }
    Some(Duration::from_secs(v))
}

/// One directive: lowercase name plus optional argument (quotes/escapes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    /// Lowercased directive name.
    pub(crate) name: String,
    /// Argument; a malformed quoted-string becomes `Some("")` so typed
    /// arguments (delta-seconds) are rejected rather than guessed.
    pub(crate) arg: Option<String>,
}

/// Splits one field line into directives, appending to `out`.
fn split_directives(value: &[u8], out: &mut Vec<Directive>) {
    let n = value.len();
    let mut i = 0;
    while i < n {
        while i < n && (is_ows(value[i]) || value[i] == b',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && value[i] != b'=' && value[i] != b',' {
            i += 1;
        }
        let name = trim_ows(&value[start..i]);
        let mut arg = None;
        if i < n && value[i] == b'=' {
            i += 1;
            while i < n && is_ows(value[i]) {
                i += 1;
            }
            arg = Some(if i < n && value[i] == b'"' {
                quoted_argument(value, &mut i)
            } else {
                let arg_start = i;
                i = end_of_member(value, i);
                String::from_utf8_lossy(trim_ows(&value[arg_start..i])).into_owned()
            });
        }
        if !name.is_empty() {
            out.push(Directive {
                name: String::from_utf8_lossy(name).to_ascii_lowercase(),
                arg,
            });
        }
    }
}

/// Where the list member containing `value[at]` ends: the next `,`, or the end.
fn end_of_member(value: &[u8], at: usize) -> usize {
    value[at..]
        .iter()
        .position(|&b| b == b',')
        .map_or(value.len(), |p| at + p)
}

/// The quoted-string argument whose opening quote is `value[*i]`, unescaped; `*i` moves to the
/// end of the member. Unterminated, or followed by anything but OWS, it is malformed: `""`.
fn quoted_argument(value: &[u8], i: &mut usize) -> String {
    let n = value.len();
    let mut at = *i + 1;
    let mut buf = Vec::new();
    let mut closed = false;
    while at < n {
        match value[at] {
            b'\\' if at + 1 < n => {
                buf.push(value[at + 1]);
                at += 2;
            }
            b'"' => {
                closed = true;
                at += 1;
                break;
            }
            b => {
                buf.push(b);
                at += 1;
            }
        }
    }
    *i = end_of_member(value, at);
    // Junk after the closing quote makes the argument malformed.
    if closed && trim_ows(&value[at..*i]).is_empty() {
        String::from_utf8_lossy(&buf).into_owned()
    } else {
        String::new()
    }
}

/// Collects directives from every field line named `name`.
fn directives(headers: &HeaderMap, name: &HeaderName) -> Vec<Directive> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        split_directives(v.as_bytes(), &mut out);
    }
    out
}

/// Accumulator for a delta-seconds directive that may repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not seen.
    Absent,
    /// Seen with a consistent valid value.
    Value(Duration),
    /// Seen with an invalid value or conflicting duplicates.
    Invalid,
}

impl Slot {
    /// Folds one more occurrence into the slot.
    fn merge(self, arg: Option<&str>) -> Self {
        match (self, arg.and_then(parse_delta_seconds)) {
            (Slot::Invalid, _) | (_, None) => Slot::Invalid,
            (Slot::Absent, Some(d)) => Slot::Value(d),
            (Slot::Value(a), Some(d)) if a == d => Slot::Value(a),
            (Slot::Value(_), Some(_)) => Slot::Invalid,
        }
    }

    /// For freshness directives: invalid means "already stale" (RFC 9111 §4.2.1).
    fn stale_if_invalid(self) -> Option<Duration> {
        match self {
            Slot::Absent => None,
            Slot::Value(d) => Some(d),
            Slot::Invalid => Some(Duration::ZERO),
        }
    }

    /// For stale-serving extensions: invalid means "not granted".
    fn none_if_invalid(self) -> Option<Duration> {
        match self {
            Slot::Value(d) => Some(d),
            Slot::Absent | Slot::Invalid => None,
        }
    }
}

/// Response `Cache-Control` directives relevant to a shared cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResponseDirectives {
    /// `max-age`; `Some(ZERO)` when invalid or conflicting.
    pub(crate) max_age: Option<Duration>,
    /// `s-maxage`; `Some(ZERO)` when invalid or conflicting.
    pub(crate) s_maxage: Option<Duration>,
    /// `no-store`.
    pub(crate) no_store: bool,
    /// `no-cache`, qualified or not.
    pub(crate) no_cache: bool,
    /// `private`, qualified or not.
    pub(crate) private: bool,
    /// `public`.
    pub(crate) public: bool,
    /// `must-revalidate`.
    pub(crate) must_revalidate: bool,
    /// `proxy-revalidate`.
    pub(crate) proxy_revalidate: bool,
    /// `stale-while-revalidate` (RFC 5861); `None` when invalid.
    pub(crate) stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` (RFC 5861); `None` when invalid.
    pub(crate) stale_if_error: Option<Duration>,
    /// Read from a targeted field (RFC 9213), which replaces `Cache-Control` *and* `Expires`.
    pub(crate) targeted: bool,
}

impl ResponseDirectives {
    /// Parses all `Cache-Control` lines of a response.
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        Self::from_directives(directives(headers, &CACHE_CONTROL))
    }

    /// The directive set `directives` make up (repeated ones folded as in `Cache-Control`).
    pub(crate) fn from_directives(directives: impl IntoIterator<Item = Directive>) -> Self {
        let mut out = Self::default();
        let (mut max_age, mut s_maxage) = (Slot::Absent, Slot::Absent);
        let (mut swr, mut sie) = (Slot::Absent, Slot::Absent);
        for d in directives {
            let arg = d.arg.as_deref();
            match d.name.as_str() {
                "max-age" => max_age = max_age.merge(arg),
                "s-maxage" => s_maxage = s_maxage.merge(arg),
                "stale-while-revalidate" => swr = swr.merge(arg),
                "stale-if-error" => sie = sie.merge(arg),
                "no-store" => out.no_store = true,
                // Qualified forms are treated as unqualified: safer for a shared cache.
                "no-cache" => out.no_cache = true,
                "private" => out.private = true,
                "public" => out.public = true,
                "must-revalidate" => out.must_revalidate = true,
                "proxy-revalidate" => out.proxy_revalidate = true,
                _ => {}
            }
        }
        out.max_age = max_age.stale_if_invalid();
        out.s_maxage = s_maxage.stale_if_invalid();
        out.stale_while_revalidate = swr.none_if_invalid();
        out.stale_if_error = sie.none_if_invalid();
        out
    }
}

/// Request `Cache-Control` directives (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    /// `max-age`; invalid values are ignored, duplicates take the minimum.
    pub(crate) max_age: Option<Duration>,
    /// `max-stale`: `Some(None)` accepts any staleness, `Some(Some(d))` bounds it.
    pub(crate) max_stale: Option<Option<Duration>>,
    /// `min-fresh`; duplicates take the maximum.
    pub(crate) min_fresh: Option<Duration>,
    /// `no-cache`, or `Pragma: no-cache` without any `Cache-Control`.
    pub(crate) no_cache: bool,
    /// `no-store`.
    pub(crate) no_store: bool,
    /// `only-if-cached`.
    pub(crate) only_if_cached: bool,
}

impl RequestDirectives {
    /// Parses all `Cache-Control` lines of a request, falling back to `Pragma`.
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut out = Self::default();
        for d in directives(headers, &CACHE_CONTROL) {
            // Invalid arguments drop the directive (RFC 9111 §5.2.1 allows ignoring).
            let delta = d.arg.as_deref().and_then(parse_delta_seconds);
            match d.name.as_str() {
                "max-age" => {
                    if let Some(v) = delta {
                        out.max_age = Some(out.max_age.map_or(v, |old| old.min(v)));
                    }
                }
                "max-stale" => match (&d.arg, delta) {
                    (None, _) => {
                        if out.max_stale.is_none() {
                            out.max_stale = Some(None);
                        }
                    }
                    (Some(_), Some(v)) => {
                        // A bound is stricter than "any", so it wins.
                        let bound = match out.max_stale {
                            Some(Some(old)) => old.min(v),
                            _ => v,
                        };
                        out.max_stale = Some(Some(bound));
                    }
                    (Some(_), None) => {}
                },
                "min-fresh" => {
                    if let Some(v) = delta {
                        out.min_fresh = Some(out.min_fresh.map_or(v, |old| old.max(v)));
                    }
                }
                "no-cache" => out.no_cache = true,
                "no-store" => out.no_store = true,
                "only-if-cached" => out.only_if_cached = true,
                _ => {}
            }
        }
        // RFC 9111 §5.4: Pragma only counts when Cache-Control is absent.
        if headers.get(CACHE_CONTROL).is_none()
            && directives(headers, &PRAGMA)
                .iter()
                .any(|d| d.name == "no-cache")
        {
            out.no_cache = true;
        }
        out
    }
}

#[cfg(test)]
mod tests;
