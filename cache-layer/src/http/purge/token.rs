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
