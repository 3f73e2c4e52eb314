//! Cache keys for HTTP responses: the primary key (method class, scheme, validated authority,
//! path, query as sent, percent-encodings in one spelling) and the secondary key of the
//! request headers a response `Vary`s on.
//!
//! Keys are injective: the authority is checked against RFC 3986 `host[:port]`, so none of the
//! delimiters that follow it can appear in it, and a request whose authority is not valid is
//! never keyed. Credentials never appear in a key: a varied `Cookie` or `Authorization` is
//! keyed by a digest of its value.

use std::fmt::Write as _;

use http::header::{AUTHORIZATION, COOKIE, HOST, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, Method, Uri};
use sha2::{Digest, Sha256};

use crate::key::percent_encoded;

/// The default primary key: `GET <scheme>://<authority><path>[?<query>]`, or `None` when the
/// request's authority is missing or invalid (such a request is passed through uncached).
///
/// GET and HEAD share the key, so HEAD is answered from a stored GET. The authority comes
/// from the URI (absolute-form, HTTP/2 `:authority`) or else the single `Host` header, and is
/// lowercased; the scheme is the URI's, `http` when the request line does not say. The path
/// and query are kept as sent but for their percent-encodings ([`push_normalised`]), the query
/// unsorted unless `sort_query` (see [`CacheLayer::sort_query`](crate::CacheLayer::sort_query)).
pub(crate) fn primary_key(uri: &Uri, headers: &HeaderMap, sort_query: bool) -> Option<String> {
    let mut key = String::new();
    write_primary_key(&mut key, uri, headers, sort_query).then_some(key)
}

/// [`primary_key`], appended to `key`; `false` (and `key` unchanged) when there is none.
pub(crate) fn write_primary_key(
    key: &mut String,
    uri: &Uri,
    headers: &HeaderMap,
    sort_query: bool,
) -> bool {
    let Some(authority) = authority_of(uri, headers) else {
        return false;
    };
    let scheme = uri.scheme_str().unwrap_or("http");
    let path = uri.path();
    let query = uri.query();
    key.reserve(8 + scheme.len() + authority.len() + path.len() + query.map_or(0, str::len));
    key.push_str("GET ");
    push_lowercase(key, scheme);
    key.push_str("://");
    push_lowercase(key, authority);
    push_normalised(key, path);
    if let Some(query) = query {
        key.push('?');
        if sort_query && query.contains('&') {
            // Sorted as normalised, so that every spelling of the pairs sorts alike.
            let mut normal = String::with_capacity(query.len());
            push_normalised(&mut normal, query);
            let mut pairs: Vec<&str> = normal.split('&').filter(|p| !p.is_empty()).collect();
            pairs.sort_unstable();
            key.push_str(&pairs.join("&"));
        } else {
            push_normalised(key, query);
        }
    }
    true
}

/// Appends `text`, a URI path or query, in the one spelling that keys, purges and writes'
/// invalidations use (RFC 3986 §6.2.2.1-2): a percent-encoded unreserved character
/// (`ALPHA / DIGIT / "-" / "." / "_" / "~"`) is decoded, and every other percent-encoding gets
/// uppercase hex digits. Nothing else changes: `%2F` and `/`, `%3F` and `?` stay apart, as
/// RFC 3986 gives them different meanings. A `text` with a `%` not followed by two hex
/// digits (not a valid URI component) is kept as sent: decoding around it could make new
/// percent-encodings out of what was sent as text.
fn push_normalised(key: &mut String, text: &str) {
    let start = key.len();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        key.push_str(&rest[..at]);
        let Some(byte) = rest.as_bytes().get(at + 1..at + 3).and_then(decode_hex) else {
            key.truncate(start);
            key.push_str(text);
            return;
        };
        if is_unreserved(byte) {
            key.push(char::from(byte));
        } else {
            key.extend(percent_encoded(byte));
        }
        // `%` and two ASCII hex digits: `at + 3` is a character boundary.
        rest = &rest[at + 3..];
    }
    key.push_str(rest);
}

/// The byte two hex digits (either case) encode.
fn decode_hex(digits: &[u8]) -> Option<u8> {
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    };
    match digits {
        [high, low] => Some(value(*high)? << 4 | value(*low)?),
        _ => None,
    }
}

/// RFC 3986 §2.3 `unreserved`: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Appends `text` (a scheme or an authority) lowercased: both are case-insensitive (RFC 3986
/// §3.1, §3.2.2), so `HTTP://Example.COM` and `http://example.com` share keys.
pub(crate) fn push_lowercase(key: &mut String, text: &str) {
    let start = key.len();
    key.push_str(text);
    key[start..].make_ascii_lowercase();
}

/// The request's authority: the URI's, else the one `Host` line; `None` when absent, not a
/// valid RFC 3986 `host[:port]` (a user-info part, a path, spaces...), given by several `Host`
/// lines, or when the URI's authority and a `Host` line disagree. hyper does not check that
/// they agree, and an application that builds links from `Host` would otherwise store a
/// response made for one host under another host's key (cache poisoning).
pub(crate) fn authority_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return None;
    }
    let authority = match (uri.authority(), host) {
        (Some(authority), None) => authority.as_str(),
        (Some(authority), Some(host)) => {
            let authority = authority.as_str();
            if !authority.as_bytes().eq_ignore_ascii_case(host.as_bytes()) {
                return None;
            }
            authority
        }
        (None, host) => host?.to_str().ok()?,
    };
    is_valid_authority(authority.as_bytes()).then_some(authority)
}

/// RFC 3986 §3.2: `host [ ":" port ]`, `host` an IP-literal in brackets or a non-empty
/// reg-name / IPv4 address (unreserved, percent-encoded and sub-delims characters), `port`
/// digits. No user-info.
fn is_valid_authority(authority: &[u8]) -> bool {
    let (host, port) = if authority.first() == Some(&b'[') {
        let Some(close) = authority.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &authority[1..close];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b":.-_~!$&'()*+,;=".contains(&b));
        if !literal_ok {
            return false;
        }
        (&authority[..=close], &authority[close + 1..])
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(colon) => (&authority[..colon], &authority[colon..]),
            None => (authority, &authority[authority.len()..]),
        }
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok && !host.is_empty() && (host[0] == b'[' || is_reg_name(host))
}

/// RFC 3986 `reg-name` (which includes IPv4 addresses): unreserved, sub-delims and valid
/// percent-encodings.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = host.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `method` reads through the cache (HEAD is answered from a stored GET).
pub(crate) fn is_cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Whether a successful `method` changes the resource, so stored copies must go (RFC 9111 §4.4).
pub(crate) fn is_unsafe_method(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The secondary key: each varied header's values, whitespace around list commas removed.
/// An absent header and an empty one are different keys. Bytes that are not UTF-8 (and `%`)
/// are percent-escaped, so different values never share a key; credentials (`Cookie`,
/// `Authorization`, `Proxy-Authorization`) are keyed by a SHA-256 digest of their values, so
/// the key (which traces and logs may show) never holds them.
pub(crate) fn secondary_key(names: &[HeaderName], request: &HeaderMap) -> String {
    let mut key = String::new();
    for name in names {
        key.push_str(name.as_str());
        let mut values = request.get_all(name).iter().peekable();
        if values.peek().is_none() {
            key.push('!');
            key.push('\n');
            continue;
        }
        let mut listed = String::new();
        let mut first = true;
        for value in values {
            for member in value.as_bytes().split(|&b| b == b',') {
                listed.push(if first { '=' } else { ',' });
                first = false;
                push_escaped(&mut listed, member.trim_ascii());
            }
        }
        if is_credential(name) {
            let digest = Sha256::digest(listed.as_bytes());
            // The digest's first 32 hex digits (16 bytes).
            let _ = write!(key, "#{digest:.32x}");
        } else {
            key.push_str(&listed);
        }
        key.push('\n');
    }
    key
}

/// Whether a request field carries credentials.
fn is_credential(name: &HeaderName) -> bool {
    name == COOKIE || name == AUTHORIZATION || name == PROXY_AUTHORIZATION
}

/// Appends `bytes`, with `%` and every byte of an invalid UTF-8 sequence percent-escaped.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for part in chunk.valid().split_inclusive('%') {
            match part.strip_suffix('%') {
                Some(text) => {
                    out.push_str(text);
                    out.push_str("%25");
                }
                None => out.push_str(part),
            }
        }
        for &byte in chunk.invalid() {
            out.extend(percent_encoded(byte));
        }
    }
}

/// The key a variant is stored under.
pub(crate) fn variant_key(primary: &str, secondary: &str) -> String {
    let mut key = String::with_capacity(primary.len() + 1 + secondary.len());
    key.push_str(primary);
    key.push('\u{0}');
    key.push_str(secondary);
    key
}

#[cfg(test)]
mod tests;
