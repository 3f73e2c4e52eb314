//! Entry points for the `fuzz/` targets (`cache_layer::__fuzz`): the header parsers on raw
//! bytes, a response read back from Redis, and the whole service. Not a stable API: compiled
//! only for fuzzing (`--cfg fuzzing`, set by `cargo fuzz`) and tests.

pub use super::fuzz_service::service;
use http::header::{CACHE_CONTROL, IF_NONE_MATCH};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::http::config::Config;
use crate::http::rules::cache_control::{RequestDirectives, ResponseDirectives};
use crate::http::rules::etag::{match_list, Comparison, EntityTag, ListMatch};
use crate::http::rules::freshness::parse_http_date;
use crate::http::stored::shared::{decode, RESPONSE_FORMAT, VARIANTS_FORMAT};
use crate::store::codec::{self, WallDeadlines};
use crate::Cache;

/// Parses `data` as a `Cache-Control` field, as a response's and as a request's.
pub fn cache_control(data: &[u8]) -> bool {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return false;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, value);
    let response = ResponseDirectives::parse(&headers);
    let request = RequestDirectives::parse(&headers);
    response.no_store || request.no_cache
}

/// Parses `data` as one entity tag and as an `If-None-Match` list (matched as
/// preconditions do); whether the list matches the tag.
pub fn etag_list(data: &[u8]) -> bool {
    let tag = EntityTag::parse_bytes(data);
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return false;
    };
    let mut headers = HeaderMap::new();
    headers.insert(IF_NONE_MATCH, value);
    matches!(
        match_list(&headers, &IF_NONE_MATCH, tag.as_ref(), Comparison::Weak),
        Some(ListMatch::Any | ListMatch::Tags(true))
    )
}

/// Parses `data` as an HTTP-date.
pub fn http_date(data: &[u8]) -> bool {
    parse_http_date(data).is_some()
}

/// Decodes `data` as bytes read from Redis under a response's key and under a variant's key
/// (see `http/stored/shared.rs`); whether either holds a usable response or `Vary` record. With
/// a first byte of 0x80 or more (a real entry's is 1), the rest is the payload behind a valid
/// header, so that the fuzzer reaches the MessagePack decoding and the gate.
pub fn shared_entry(data: &[u8]) -> bool {
    static CONFIG: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let cache = Cache::builder()
            .build()
            .expect("the default configuration is valid");
        Arc::clone(&crate::CacheLayer::new(cache).config)
    });
    let framed;
    let bytes = match data.split_first() {
        Some((first, payload)) if *first >= 0x80 => {
            let now = codec::now_millis();
            let at = WallDeadlines {
                fresh_until: now + 1000,
                stale_until: now + 2000,
                expires_at: now + 3000,
            };
            let format = if first % 2 == 0 {
                RESPONSE_FORMAT
            } else {
                VARIANTS_FORMAT
            };
            // A valid header around a one-byte payload (0), then the fuzzer's payload instead.
            let mut header = codec::encode_as(format, &0u8, at, &[]).unwrap_or_default();
            header.pop();
            header.extend_from_slice(payload);
            framed = header;
            &framed[..]
        }
        _ => data,
    };
    let primary = decode(config, ("k", "k"), bytes).is_ok();
    primary | decode(config, ("k", "k\0accept=x\n"), bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use crate::http::__fuzz;

    #[test]
    fn parse_what_the_targets_feed_them() {
        assert!(__fuzz::cache_control(b"max-age=5, No-Store"));
        assert!(!__fuzz::cache_control(b"\xff\x00"));
        assert!(__fuzz::etag_list(b"W/\"a\""));
        assert!(!__fuzz::etag_list(b"\"unterminated"));
        assert!(__fuzz::http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!__fuzz::http_date(b"yesterday"));
        assert!(!__fuzz::shared_entry(b"\x00not an entry"));
    }

    #[test]
    fn drive_the_service_as_the_target_does() {
        let input: &[u8] = b"/a\nhost: example.com\x00200\ncache-control: max-age=60\n\
            cache-tag: t\nconnection: x\nx: 1\x00/a\nhost: example.com\x00304\netag: \"a\"\x00\
            /a\nhost: example.com\ncookie: s=1\ncache-control: no-cache\x00\x00\
            /a\nhost: example.com/x\x00\x00/a\nhost: example.com";
        assert_eq!(__fuzz::service(input), 5);
        assert_eq!(__fuzz::service(b""), 1);
        assert_eq!(__fuzz::service(b"\xff\0\xff\n:\0"), 2);
    }
}
