//! Cache keys for HTTP responses: the primary key (method class, authority, path, normalised
//! query) and the secondary key of the request headers a response `Vary`s on.

use http::header::{HOST, VARY};
use http::{HeaderMap, HeaderName, Method, Uri};

/// The default primary key: `GET <authority><path>?<query with its pairs sorted>`.
///
/// GET and HEAD share the key, so HEAD is answered from a stored GET. The authority comes
/// from the URI (proxies, HTTP/2) or else the `Host` header, lowercased.
pub(crate) fn primary_key(uri: &Uri, headers: &HeaderMap) -> String {
    let mut key = String::new();
    write_primary_key(&mut key, uri, headers);
    key
}

/// [`primary_key`], appended to `key`.
pub(crate) fn write_primary_key(key: &mut String, uri: &Uri, headers: &HeaderMap) {
    let authority = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default(),
    };
    let query = uri.query().unwrap_or_default();
    key.reserve(6 + authority.len() + uri.path().len() + query.len());
    let start = key.len();
    key.push_str("GET ");
    key.push_str(authority);
    key[start + 4..].make_ascii_lowercase();
    key.push_str(uri.path());
    if !query.is_empty() {
        key.push('?');
        if query.contains('&') {
            // `?b=2&a=1` and `?a=1&b=2` name the same resource for nearly every application.
            let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
            pairs.sort_unstable();
            key.push_str(&pairs.join("&"));
        } else {
            key.push_str(query);
        }
    }
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

/// The header names of a response's `Vary`, lowercased, in order, without duplicates.
/// `None` for `Vary: *` or a name that is not a valid header name (never matches).
pub(crate) fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in response.get_all(VARY) {
        for member in line.as_bytes().split(|&b| b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            if member == b"*" {
                return None;
            }
            let name = HeaderName::from_bytes(member).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// The secondary key: each varied header's values, whitespace around list commas removed.
/// An absent header and an empty one are different keys.
pub(crate) fn secondary_key(names: &[HeaderName], request: &HeaderMap) -> String {
    let mut key = String::new();
    for name in names {
        key.push_str(name.as_str());
        let mut values = request.get_all(name).iter().peekable();
        if values.peek().is_none() {
            key.push('!');
        }
        let mut first = true;
        for value in values {
            for member in value.as_bytes().split(|&b| b == b',') {
                key.push(if first { '=' } else { ',' });
                first = false;
                key.push_str(&String::from_utf8_lossy(member.trim_ascii()));
            }
        }
        key.push('\n');
    }
    key
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

    #[test]
    fn query_order_and_host_are_normalised() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("Example.COM"));
        let a = primary_key(&"/p?b=2&a=1".parse().unwrap(), &headers);
        let b = primary_key(&"/p?a=1&b=2".parse().unwrap(), &headers);
        assert_eq!(a, b);
        assert_eq!(a, "GET example.com/p?a=1&b=2");
        let abs = primary_key(&"http://example.com/p?a=1&b=2".parse().unwrap(), &headers);
        assert_eq!(abs, a);
        assert_ne!(primary_key(&"/q".parse().unwrap(), &headers), a);
    }

    #[test]
    fn vary_names_and_secondary_keys() {
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
}
