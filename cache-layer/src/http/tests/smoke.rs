//! Deterministic pseudo-random inputs through every parser: none may panic.

use std::time::{Duration, UNIX_EPOCH};

use http::header::{
    AGE, CACHE_CONTROL, DATE, EXPIRES, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    PRAGMA, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::http::rules::cache_control::{RequestDirectives, ResponseDirectives};
use crate::http::rules::conditional::{evaluate, Representation};
use crate::http::rules::etag::EntityTag;
use crate::http::rules::freshness::{current_age, freshness_lifetime, parse_http_date};
use crate::http::rules::storable::storable;

/// Bytes biased toward syntax-relevant characters.
const ALPHABET: &[u8] = b"\"\\,=*W/ \t-0123456789maxgeWsnocht\xff\x80GMT:";

#[test]
fn random_inputs_do_not_panic() {
    let mut state: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let t = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let _ = parse_http_date(&bytes);
        let _ = EntityTag::parse_bytes(&bytes);
        let Ok(v) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let mut h = HeaderMap::new();
        for name in [
            CACHE_CONTROL,
            PRAGMA,
            AGE,
            DATE,
            EXPIRES,
            LAST_MODIFIED,
            VARY,
            IF_MATCH,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
        ] {
            h.append(name, v.clone());
        }
        let cc = ResponseDirectives::parse(&h);
        let _ = RequestDirectives::parse(&h);
        let _ = freshness_lifetime(StatusCode::OK, &h, &cc, t);
        let _ = current_age(&h, t, t, t);
        let etag = EntityTag::strong_from_bytes(&bytes);
        let rep = Representation {
            etag: Some(&etag),
            last_modified: Some(t),
        };
        let _ = evaluate(&Method::GET, &h, StatusCode::OK, Some(rep));
        let _ = storable(&Method::GET, &h, StatusCode::OK, &h, &cc, false);
    }
}
