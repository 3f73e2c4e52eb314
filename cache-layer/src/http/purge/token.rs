//! A purge guarded by a bearer token: `Authorization: Bearer <token>`, compared digest to
//! digest.

use http::HeaderMap;
use sha2::{Digest as _, Sha256};

/// A check of purge requests that lets through those with `Authorization: Bearer <token>`
/// (see [`CacheLayer::purge_with_token`](crate::CacheLayer::purge_with_token)).
pub(crate) fn bearer_check(token: &[u8]) -> impl Fn(&HeaderMap) -> bool + Send + Sync + 'static {
    let token = BearerToken::new(token);
    move |headers| bearer_matches(headers, &token)
}

/// A check that lets through `Authorization: Bearer <token>`, and also `Authorization: Basic`
/// with `<token>` as the password (any user name), which is what a browser sends for a page
/// (the admin service's).
pub(crate) fn bearer_or_basic_check(
    token: &[u8],
) -> impl Fn(&HeaderMap) -> bool + Send + Sync + 'static {
    let token = BearerToken::new(token);
    move |headers| bearer_matches(headers, &token) || basic_matches(headers, &token)
}

/// Whether `headers` carry exactly one `Authorization: Basic` whose password is the token.
fn basic_matches(headers: &HeaderMap, token: &BearerToken) -> bool {
    let mut lines = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let value = line.as_bytes();
    let Some(encoded) = value
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
        .and_then(|_| value.get(6..))
    else {
        return false;
    };
    let Some(decoded) = base64_decode(encoded.trim_ascii()) else {
        return false;
    };
    match decoded.iter().position(|&b| b == b':') {
        Some(colon) => token.is(&decoded[colon + 1..]),
        None => false,
    }
}

/// Standard base64 (padding optional); `None` on any other byte, or past 1 KiB.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() > 1024 {
        return None;
    }
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= digit(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// A bearer token, kept as its SHA-256 digest (`None` for the empty token, which matches
/// nothing). Guesses are compared digest to digest: fixed-size values compared in constant
/// time, so the time taken says neither where a guess differs nor how long the token is.
struct BearerToken(Option<[u8; 32]>);

impl BearerToken {
    fn new(token: &[u8]) -> Self {
        BearerToken((!token.is_empty()).then(|| Sha256::digest(token).into()))
    }

    /// Whether `given` is the token.
    fn is(&self, given: &[u8]) -> bool {
        let Some(expected) = &self.0 else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given).into();
        let diff = given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b));
        // Opaque to the optimiser: the loop above is not cut short at the first difference.
        std::hint::black_box(diff) == 0
    }
}

/// Whether `headers` carry exactly one `Authorization: Bearer <token>`.
fn bearer_matches(headers: &HeaderMap, token: &BearerToken) -> bool {
    let mut lines = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let value = line.as_bytes();
    let Some(given) = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| value.get(7..))
    else {
        return false;
    };
    token.is(given)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn basic_passwords_match_the_token() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
            basic_matches(&h, &BearerToken::new(b"s3cret"))
        };
        // base64("admin:s3cret"), base64(":s3cret")
        assert!(with("Basic YWRtaW46czNjcmV0"));
        assert!(with("basic OnMzY3JldA=="));
        // base64("admin:s3cre"), base64("s3cret"), garbage
        for wrong in [
            "Basic YWRtaW46czNjcmU=",
            "Basic czNjcmV0",
            "Basic !!!!",
            "Basic",
            "",
        ] {
            assert!(!with(wrong), "{wrong}");
        }
    }

    #[test]
    fn bearer_tokens_match_exactly() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
            bearer_matches(&h, &BearerToken::new(b"s3cret"))
        };
        assert!(with("Bearer s3cret"));
        assert!(with("bearer s3cret"));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret ",
            "Basic s3cret",
            "Bearer",
            "s3cret",
            "",
        ] {
            assert!(!with(wrong), "{wrong:?}");
        }
        assert!(!bearer_matches(
            &HeaderMap::new(),
            &BearerToken::new(b"s3cret")
        ));
        let mut two = HeaderMap::new();
        two.append(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        two.append(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(!bearer_matches(&two, &BearerToken::new(b"s3cret")));
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer "),
        );
        assert!(
            !bearer_matches(&h, &BearerToken::new(b"")),
            "an empty token never matches"
        );
    }

    #[test]
    fn tokens_are_compared_as_fixed_size_digests() {
        let token = BearerToken::new(b"s3cret-token");
        assert!(token.is(b"s3cret-token"));
        for wrong in [
            &b""[..],
            b"s",
            b"s3cret",
            b"s3cret-toke",
            b"s3cret-tokenX",
            b"s3cret-token\0",
            b"S3cret-token",
            b"x3cret-token",
            b"s3cret-tokeN",
        ] {
            assert!(!token.is(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
        // Whatever the lengths, only two 32-byte digests are ever compared.
        assert_eq!(token.0.map(|d| d.len()), Some(32));
        assert!(!BearerToken::new(b"").is(b""));
        let long = vec![b'a'; 100_000];
        assert!(BearerToken::new(&long).is(&long));
        assert!(!BearerToken::new(&long).is(&long[..99_999]));
    }
}
