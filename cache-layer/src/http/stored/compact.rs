//! The stored form of a response's bytes: its body and every header value that is not
//! interned, copied into one buffer of exactly their size.
//!
//! What the inner service hands over often shares a larger allocation: hyper parses a head and
//! small bodies into slices of its connection's read buffer, so a stored `Date` value or a
//! 300-byte body could keep many kilobytes alive, out of sight of the memory budget, until
//! every response read into that buffer left the cache. A stored response holds only its own
//! bytes, so its weight is what it really costs. A hit clones the values and the body as
//! before: one reference count each, now all on the one buffer.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

use super::interned::{intern_common_values, interned_positions};

/// `headers` and `body` holding only their own bytes: common values interned (see
/// `interned`), the others and the body in one new buffer.
pub(crate) fn compact(mut headers: HeaderMap, body: &Bytes) -> (HeaderMap, Bytes) {
    intern_common_values(&mut headers);
    let interned = interned_positions(&headers);
    let copied = headers
        .values()
        .zip(&interned)
        .filter(|(_, &interned)| !interned)
        .map(|(value, _)| value.len())
        .sum::<usize>();
    let mut buffer = BytesMut::with_capacity(body.len() + copied);
    buffer.extend_from_slice(body);
    for (value, _) in headers.values().zip(&interned).filter(|(_, &i)| !i) {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = buffer.freeze();
    let mut at = body.len();
    let mut stored = HeaderMap::with_capacity(headers.len());
    for ((name, value), interned) in headers.iter().zip(interned) {
        if interned {
            stored.append(name.clone(), value.clone());
            continue;
        }
        let end = at + value.len();
        // The bytes were a valid value a moment ago, so this cannot fail; if it did, the
        // value as it came is still correct, only not compact.
        let mut copy =
            HeaderValue::from_maybe_shared(buffer.slice(at..end)).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        stored.append(name.clone(), copy);
        at = end;
    }
    (stored, buffer.slice(..body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, DATE, SET_COOKIE, VARY};

    #[test]
    fn the_stored_copy_keeps_no_larger_buffer_alive() {
        let received = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut headers = HeaderMap::new();
        let date = HeaderValue::from_maybe_shared(received.slice(0..29)).unwrap();
        headers.insert(DATE, date);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.append(VARY, HeaderValue::from_static("accept"));
        headers.append(VARY, HeaderValue::from_static("accept-language"));
        let body = received.slice(100..400);
        let (stored, stored_body) = compact(headers.clone(), &body);
        assert_eq!(stored, headers, "every field and value, in order");
        assert_eq!(stored_body, body);
        drop((headers, body));
        assert!(
            received.is_unique(),
            "nothing stored refers to the buffer the response was read into"
        );
    }

    #[test]
    fn sensitive_values_stay_sensitive() {
        let mut headers = HeaderMap::new();
        let mut cookie = HeaderValue::from_static("a=b");
        cookie.set_sensitive(true);
        headers.insert(SET_COOKIE, cookie);
        let (stored, body) = compact(headers, &Bytes::new());
        assert!(stored[SET_COOKIE].is_sensitive());
        assert!(body.is_empty());
    }
}
