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
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key(uri: &str, host: Option<&str>) -> Option<String> {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        }
        primary_key(&uri.parse().unwrap(), &headers, false)
    }

    #[test]
    fn keys_name_scheme_authority_path_and_the_query_as_sent() {
        let a = key("/p?b=2&a=1", Some("Example.COM")).unwrap();
        assert_eq!(a, "GET http://example.com/p?b=2&a=1");
        assert_ne!(key("/p?a=1&b=2", Some("example.com")).unwrap(), a);
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("example.com"));
        let sorted = primary_key(&"/p?b=2&a=1".parse().unwrap(), &headers, true);
        assert_eq!(sorted.unwrap(), "GET http://example.com/p?a=1&b=2");
        // HTTP/2 (and absolute-form): the authority in the URI, no Host.
        assert_eq!(key("http://example.com/p?b=2&a=1", None).unwrap(), a);
        assert_eq!(
            key("https://example.com/p", None).unwrap(),
            "GET https://example.com/p"
        );
        assert_ne!(
            key("/p?", Some("example.com")),
            key("/p", Some("example.com"))
        );
        assert_eq!(
            key("/p", Some("[::1]:8080")).unwrap(),
            "GET http://[::1]:8080/p"
        );
    }

    #[test]
    fn percent_encodings_of_unreserved_characters_and_hex_case_share_a_key() {
        let host = Some("example.com");
        let seven = key("/products/7", host).unwrap();
        assert_eq!(key("/products/%37", host).unwrap(), seven);
        let tilde = key("/~a?q=~", host).unwrap();
        assert_eq!(tilde, "GET http://example.com/~a?q=~");
        assert_eq!(key("/%7ea?q=%7E", host).unwrap(), tilde);
        assert_eq!(key("/%7Ea?q=%7e", host).unwrap(), tilde);
        assert_eq!(
            key("/%41%2d%2E%5f%7A%30", host).unwrap(),
            "GET http://example.com/A-._z0"
        );
        // Other encodings keep their meaning, hex in upper case.
        let slash = key("/a%2fb?x=%3d%26", host).unwrap();
        assert_eq!(slash, "GET http://example.com/a%2Fb?x=%3D%26");
        assert_eq!(key("/a%2Fb?x=%3D%26", host).unwrap(), slash);
        assert_ne!(key("/a/b?x=%3D%26", host).unwrap(), slash);
        assert_ne!(key("/a%2Fb?x==&", host).unwrap(), slash);
        assert_ne!(key("/a%3Fb", host), key("/a?b", host));
        // Sorted queries sort what they would be keyed as.
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("example.com"));
        let sorted = |uri: &str| primary_key(&uri.parse().unwrap(), &headers, true).unwrap();
        assert_eq!(sorted("/p?%61=1&a=0"), sorted("/p?a=1&a=0"));
        assert_eq!(sorted("/p?%61=1&a=0"), "GET http://example.com/p?a=0&a=1");
    }

    #[test]
    fn invalid_percent_sequences_are_kept_as_sent() {
        for text in ["%", "/a%", "/a%4", "/a%zz%37", "/%%37e", "/%4%31", "/%g1"] {
            let mut out = String::new();
            push_normalised(&mut out, text);
            assert_eq!(out, text);
        }
        let mut out = String::from("kept ");
        push_normalised(&mut out, "/%37%");
        assert_eq!(out, "kept /%37%", "only what was appended is replaced");
    }

    /// Every byte `text` stands for, each percent-encoding decoded (`None` when one is invalid).
    fn decoded(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            if bytes[at] == b'%' {
                out.push(decode_hex(bytes.get(at + 1..at + 3)?)?);
                at += 3;
            } else {
                out.push(bytes[at]);
                at += 1;
            }
        }
        Some(out)
    }

    #[test]
    fn normalising_is_idempotent_keeps_meaning_and_never_panics() {
        const PIECES: &[&str] = &[
            "%", "%2", "%2f", "%2F", "%37", "%7e", "%7E", "%41", "%e9", "%C3%A9", "%25", "a", "F",
            "7", "~", "/", "?", "&", "=", "é", "g", "%%", "%zz",
        ];
        let mut rng = fastrand::Rng::with_seed(24);
        for _ in 0..20_000 {
            let text: String = (0..rng.usize(0..8))
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect();
            let mut once = String::new();
            push_normalised(&mut once, &text);
            let mut twice = String::new();
            push_normalised(&mut twice, &once);
            assert_eq!(twice, once, "not idempotent on {text:?}");
            match decoded(&text) {
                // The same bytes, and the same ones encoded: only unreserved ones decoded.
                Some(bytes) => {
                    assert_eq!(decoded(&once), Some(bytes), "{text:?} -> {once:?}");
                    let encoded = |s: &str| {
                        let (mut at, mut out) = (0, Vec::new());
                        while let Some(found) = s[at..].find('%') {
                            let byte = decode_hex(&s.as_bytes()[at + found + 1..][..2]).unwrap();
                            if !is_unreserved(byte) {
                                out.push(byte);
                            }
                            at += found + 3;
                        }
                        out
                    };
                    assert_eq!(encoded(&once), encoded(&text), "{text:?} -> {once:?}");
                    let triplets: Vec<&str> = once.split('%').skip(1).collect();
                    assert_eq!(encoded(&once).len(), triplets.len(), "{once:?}");
                    assert!(
                        triplets
                            .iter()
                            .all(|t| !t[..2].bytes().any(|b| b.is_ascii_lowercase())),
                        "{once:?}"
                    );
                }
                None => assert_eq!(once, text),
            }
        }
    }

    #[test]
    fn invalid_authorities_are_never_keyed() {
        for host in [
            "example.com/admin",
            "example.com?x",
            "example.com#x",
            "user@example.com",
            "example.com:80:80",
            "example.com:x",
            "exa mple.com",
            "",
            ":80",
            "[::1",
            "[]",
            "[::1]x",
            "%zz.example",
            "example.com\\",
        ] {
            assert_eq!(key("/x", Some(host)), None, "{host:?}");
        }
        assert_eq!(key("/x", None), None, "no authority at all");
        assert_eq!(key("http://user@example.com/x", None), None);
        let mut two = HeaderMap::new();
        two.append(HOST, HeaderValue::from_static("a.example"));
        two.append(HOST, HeaderValue::from_static("b.example"));
        assert_eq!(primary_key(&"/x".parse().unwrap(), &two, false), None);
        for host in [
            "example.com",
            "example.com:",
            "127.0.0.1:65535",
            "a-b_c~d.%41",
        ] {
            assert!(key("/x", Some(host)).is_some(), "{host:?}");
        }
    }

    #[test]
    fn no_two_requests_share_a_key() {
        // The Host-with-a-path forgery of issue 12, and its relatives.
        let forged = key("/x", Some("example.com/admin"));
        let real = key("/admin/x", Some("example.com"));
        assert_ne!(forged, real);
        assert_ne!(
            key("/x", Some("a.example")),
            key("/x", Some("a.example:80"))
        );
    }

    #[test]
    fn vary_names_and_secondary_keys() {
        use crate::http::rules::vary::vary_names;
        use http::header::VARY;

        let mut response = HeaderMap::new();
        response.append(VARY, HeaderValue::from_static("Accept-Language, accept"));
        response.append(VARY, HeaderValue::from_static("ACCEPT"));
        let names = vary_names(&response).unwrap();
        assert_eq!(names.len(), 2);
        let mut request = HeaderMap::new();
        request.insert("accept", HeaderValue::from_static("text/html , */*"));
        let key = secondary_key(&names, &request);
        assert_eq!(key, "accept-language!\naccept=text/html,*/*\n");
        response.append(VARY, HeaderValue::from_static("x, *"));
        assert!(vary_names(&response).is_none());
    }

    #[test]
    fn credentials_never_appear_in_secondary_keys_and_values_never_collide() {
        let names = [COOKIE, AUTHORIZATION, HeaderName::from_static("accept")];
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_static("sid=alice-secret"));
        request.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok3n"));
        let key = secondary_key(&names, &request);
        assert!(
            !key.contains("alice-secret") && !key.contains("tok3n"),
            "{key}"
        );
        request.insert(COOKIE, HeaderValue::from_static("sid=bob"));
        assert_ne!(secondary_key(&names, &request), key);
        let accept = |bytes: &[u8]| {
            let mut request = HeaderMap::new();
            request.insert("accept", HeaderValue::from_bytes(bytes).unwrap());
            secondary_key(&names[2..], &request)
        };
        assert_ne!(accept(b"\xff"), accept(b"\xfe"));
        assert_ne!(accept(b"%FF"), accept(b"\xff"));
    }
}
