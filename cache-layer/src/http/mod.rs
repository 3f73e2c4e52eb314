//! HTTP response caching: [`CacheLayer`] makes the [`Cache`](crate::Cache) an RFC 9111 shared
//! cache and the RFC 9110 §13 precondition evaluator in front of any
//! `tower::Service<http::Request<B>>`. What is stored, how it is served and every knob are
//! described in the [crate documentation](crate#http-response-caching); the types are also
//! re-exported at the crate root (`cache_layer::CacheLayer`).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use cache_layer::http::CacheLayer;
//! use cache_layer::Cache;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = service_fn(|_: Request<()>| async {
//!     let response = Response::builder()
//!         .header("cache-control", "max-age=60")
//!         .body(Full::new(Bytes::from("hello")))
//!         .unwrap();
//!     Ok::<_, Infallible>(response)
//! });
//! let layer = CacheLayer::new(Cache::builder().build().unwrap())
//!     .stale_while_revalidate(Duration::from_secs(10));
//! let service = layer.layer(app);
//! let request = || Request::get("http://example.com/").body(()).unwrap();
//!
//! let first = service.clone().oneshot(request()).await.unwrap(); // stored
//! let again = service.oneshot(request()).await.unwrap(); // served from the cache
//! assert!(first.headers()["cache-status"].to_str().unwrap().ends_with("stored"));
//! assert!(again.headers()["cache-status"].to_str().unwrap().starts_with("cache-layer; hit"));
//! assert_eq!(again.into_body().collect().await.unwrap().to_bytes(), "hello");
//! # }
//! ```
//!
//! # Layout
//!
//! In the shape of a tower-http middleware:
//!
//! - `layer`: [`CacheLayer`], the builder; `config`: the settings it shares with every
//!   service, [`EtagMode`] and [`HttpOnly`].
//! - `service`: [`CacheService`], which decides how each request is answered (from the cache,
//!   refreshed in the background, or forwarded) and invalidates after successful writes;
//!   `forward`: a request sent to the inner service through the load pipeline; `lookup`:
//!   reading stored responses; `record`: writing them; `respond`: building answers from them.
//! - `future`: [`ResponseFuture`]; `body`: [`CacheBody`], stored bytes or the inner body
//!   streamed (and copied for the cache).
//! - `stored`: what a stored response is; `status`: the `Cache-Status` field; `tags`:
//!   [`CacheTags`] and `Cache-Tag`; `purge`: [`Purge`], purging over HTTP.
//! - `rules/`: the RFC rules as pure functions (`cache_control`, `freshness`, `storable`,
//!   `gate`, the one storage gate, `conditional`, `etag`, `vary`, `field`, `targeted`, `range`,
//!   `key`), importing nothing from the files above.
//!
//! gRPC is `cache_layer::grpc`'s (feature `grpc`): calls pass through unless opted in, and
//! opted-in unary calls reuse the same records, single-flight, tags, bodies and `Cache-Status`.
//!
//! Responses are kept in the cache's memory. With a shared (Redis) tier configured, every
//! instance's stored responses are dropped by any instance's invalidation (over Redis
//! pub/sub), and an instance that cannot hear invalidations (not subscribed, Redis down)
//! keeps each response it stores at most the outage bound (`CacheBuilder::outage_ttl`) until
//! it can again.

pub(crate) mod body;
pub(crate) mod compact;
pub(crate) mod config;
#[cfg(test)]
mod differential;
mod forward;
pub(crate) mod future;
#[cfg(any(fuzzing, test))]
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
mod fuzz_service;
pub(crate) mod in_flight;
pub(crate) mod interned;
pub(crate) mod layer;
pub(crate) mod lookup;
mod purge;
pub(crate) mod record;
mod respond;
pub(crate) mod rules;
mod service;
pub(crate) mod shared;
pub(crate) mod status;
pub(crate) mod stored;
pub(crate) mod tags;

pub use body::CacheBody;
pub use config::{EtagMode, HttpOnly};
pub use future::ResponseFuture;
pub use layer::CacheLayer;
pub use purge::{Purge, PurgeBody, PurgeOr};
pub use service::CacheService;
pub use tags::CacheTags;

/// Entry points for the `fuzz/` targets: the header parsers on raw bytes, and the whole service.
/// Not a stable API: compiled only for fuzzing (`--cfg fuzzing`, set by `cargo fuzz`) and tests.
#[cfg(any(fuzzing, test))]
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
#[doc(hidden)]
pub mod __fuzz {
    pub use super::fuzz_service::service;
    use http::header::{CACHE_CONTROL, IF_NONE_MATCH};
    use http::{HeaderMap, HeaderValue};

    use super::rules::cache_control::{RequestDirectives, ResponseDirectives};
    use super::rules::etag::{match_list, Comparison, EntityTag, ListMatch};
    use super::rules::freshness::parse_http_date;

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

    /// Decodes `data` as bytes read from Redis under a response's key (see
    /// `http/shared.rs`); whether they hold a usable response or `Vary` record.
    pub fn shared_entry(data: &[u8]) -> bool {
        super::shared::fuzz_decode(data)
    }
}

#[cfg(test)]
mod fuzz_entry_points {
    use super::__fuzz;

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

#[cfg(test)]
mod smoke {
    //! Deterministic pseudo-random inputs through every parser: none may panic.

    use std::time::{Duration, UNIX_EPOCH};

    use http::header::{
        AGE, CACHE_CONTROL, DATE, EXPIRES, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
        LAST_MODIFIED, PRAGMA, VARY,
    };
    use http::{HeaderMap, HeaderValue, Method, StatusCode};

    use super::rules::cache_control::{RequestDirectives, ResponseDirectives};
    use super::rules::conditional::{evaluate, Representation};
    use super::rules::etag::EntityTag;
    use super::rules::freshness::{current_age, freshness_lifetime, parse_http_date};
    use super::rules::storable::storable;

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
}
