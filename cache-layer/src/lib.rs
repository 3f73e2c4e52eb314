//! Caching for Rust web back ends: memoised `async fn`s with `#[cached]`, invalidated by
//! writers with `#[invalidates]`, and RFC 9111 HTTP response caching with [`CacheLayer`], on
//! one engine with single-flight, TTL jitter, stale-while-revalidate, stale-if-error and
//! negative caching.
//!
//! ```
//! use cache_layer::{cached, invalidates};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct User { id: u64, name: String }
//!
//! #[derive(Debug)]
//! struct DbError;
//!
//! #[cached(ttl = "5m", key = "user:<id>", invalidate_on = ["users"])]
//! async fn get_user(id: u64) -> Result<User, DbError> {
//!     Ok(User { id, name: "Ada".into() }) // the expensive query
//! }
//!
//! #[invalidates("user:<id>")]
//! async fn rename_user(id: u64, name: &str) -> Result<(), DbError> {
//!     Ok(()) // the write; on Ok, `user:<id>` is invalidated
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), DbError> {
//! let first = get_user(7).await?; // miss: runs the query
//! let again = get_user(7).await?; // hit: served from memory
//! rename_user(7, "Grace").await?; // drops user:7
//! # Ok(()) }
//! ```
//!
//! # What is cached
//! `Result<T, E>` caches `Ok(T)` and never `Err`; `Option<T>` caches `Some(T)`, and `None` only
//! with `none_ttl` (negative caching); other return types are cached as they are. Cached values
//! are `Clone + Send + Sync + Serialize + DeserializeOwned + 'static`: the same code runs on an
//! in-memory or a shared store. A memory hit clones the value; it never serialises it, and a
//! repeated hit on a thread is answered from that thread's copy of the entry (see
//! [`CacheBuilder::memory_budget`]).
//!
//! # Entry lifetime
//! An entry is *fresh* for `ttl` (±10% jitter by default), then *stale* for `stale`
//! (served at once while one background task refreshes it), then usable only if the loader
//! fails for `stale_if_error`, then gone.
//!
//! # Sharing between instances: Redis
//! [`CacheBuilder::redis`] stores entries in Redis, [`CacheBuilder::tiered`] keeps memory in
//! front of it, and [`CacheBuilder::redis_cluster`] / [`CacheBuilder::tiered_cluster`] run on
//! a Redis Cluster; `rediss://` URLs use TLS. The same `#[cached]` code runs on every
//! configuration. Redis never fails a call: errors and timeouts (100 ms by default) fall back
//! to the source, and a circuit breaker skips Redis while it is down.
//!
//! # Redis layout
//! A stable contract: instances running different versions of an application share entries.
//! With the key prefix `P` (default empty; [`CacheBuilder::key_prefix`]):
//!
//! | Redis key / channel | type | holds |
//! | --- | --- | --- |
//! | `P` `v:` key | string | the entry (layout below); `PX` = its whole lifetime |
//! | `P` `t:` tag | set | the value keys (`P` `v:` ...) carrying the tag; expires with its longest-lived entry |
//! | `P` `l:` key | string | the distributed load lock (`lock = "5s"`): a random token, `PX` = the lock time |
//! | `P` `invalidate` | pub/sub channel | each invalidated name (key or tag), for every instance's memory tier |
//!
//! A key or tag longer than 200 bytes is stored as its first 64 bytes, `#`, and the hex SHA-256
//! of the whole. No command touches two keys, so the layout is correct on Redis Cluster.
//!
//! An entry's bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | format: `1` = MessagePack with field names (`rmp_serde::to_vec_named`) |
//! | 1 | 8 | type fingerprint: FNV-1a 64 of `std::any::type_name` of the value, big-endian |
//! | 9 | 8 | fresh until, Unix milliseconds, big-endian |
//! | 17 | 8 | stale-while-revalidate until, Unix milliseconds, big-endian |
//! | 25 | 8 | stale-if-error until (the end of the entry's life), Unix milliseconds, big-endian |
//! | 33 | 2 | number of tags N, big-endian |
//! | 35 | | N times: a 2-byte big-endian length, then the tag in UTF-8 |
//! | | | the value, MessagePack |
//!
//! Bytes that do not decode (garbage, truncated, another format or type) are a miss: counted
//! in [`Stats::decode_errors`], logged, and overwritten by the next store.
//!
//! # Concurrent calls on the same key
//! Concurrent misses on one key run the function body once; the other callers wait for its
//! value. A caller that is cancelled or panics while loading hands the load to a waiter. With
//! `lock = "5s"` and Redis, instances also take a distributed lock (`SET NX PX` with a token):
//! the others wait for the holder's value, at most the lock time.
//!
//! # HTTP response caching
//! [`CacheLayer`] puts the same [`Cache`] in front of any `tower::Service<http::Request<B>>`
//! (an axum `Router`, a hyper service) as an RFC 9111 *shared* cache, and evaluates the
//! RFC 9110 §13 preconditions for it:
//!
//! ```text
//! let app = Router::new()
//!     .route("/users/{id}", get(user).put(update_user))
//!     .layer(CacheLayer::new(cache.clone()));
//! ```
//!
//! A runnable version with a hand-written service:
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::{ready, Ready};
//! use std::task::{Context, Poll};
//!
//! use bytes::Bytes;
//! use cache_layer::{Cache, CacheLayer};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! #[derive(Clone)]
//! struct Hello;
//!
//! impl Service<Request<()>> for Hello {
//!     type Response = Response<Full<Bytes>>;
//!     type Error = Infallible;
//!     type Future = Ready<Result<Self::Response, Infallible>>;
//!
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
//!         Poll::Ready(Ok(()))
//!     }
//!
//!     fn call(&mut self, _: Request<()>) -> Self::Future {
//!         let response = Response::builder()
//!             .header("cache-control", "max-age=60")
//!             .body(Full::new(Bytes::from("hello")))
//!             .unwrap();
//!         ready(Ok(response))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut service = CacheLayer::new(Cache::builder().build().unwrap()).layer(Hello);
//! let request = || Request::get("http://example.com/").body(()).unwrap();
//!
//! let first = service.call(request()).await.unwrap();
//! assert_eq!(
//!     first.headers()["cache-status"],
//!     "cache-layer; fwd=uri-miss; fwd-status=200; stored"
//! );
//! let again = service.call(request()).await.unwrap(); // served from the cache
//! assert!(again.headers()["cache-status"].to_str().unwrap().starts_with("cache-layer; hit"));
//! assert_eq!(again.into_body().collect().await.unwrap().to_bytes(), "hello");
//! # }
//! ```
//!
//! - **What is stored**: responses to GET (HEAD is answered from them) that give freshness
//!   (`s-maxage`, `max-age`, `Expires`, or heuristically `Last-Modified`), or any storable
//!   response once you opt in with [`CacheLayer::default_ttl`]. Never stored: `no-store`,
//!   `private`, `Vary: *`, `Set-Cookie`, status 206/304/1xx, responses to requests with
//!   `Authorization` unless `public`/`s-maxage`/`must-revalidate`, responses to requests with
//!   `Cookie` unless `public`/`s-maxage`/`Vary: Cookie`, bodies over
//!   [`max_body`](CacheLayer::max_body) or with trailers. `no-cache` is stored and revalidated
//!   on every use.
//! - **Keys**: `GET <scheme>://<authority><path>?<query>` (or [`CacheLayer::key_fn`]), plus
//!   the request headers the response `Vary`s on (up to
//!   [`max_variants`](CacheLayer::max_variants) variants per URL). The authority comes from the
//!   URI (HTTP/2, absolute-form) or the one `Host` line and must be an RFC 3986
//!   `host[:port]`: a request with an invalid or missing one passes through uncached. The query
//!   is kept as sent ([`CacheLayer::sort_query`] opts in to sorting its pairs). Varied
//!   `Cookie` / `Authorization` values are keyed by a digest, never written into a key.
//! - **Serving**: `Age` per RFC 9111 §4.2.3, `Date` kept as the origin sent it (added once
//!   when missing), an RFC 9211 `Cache-Status` member such as `cache-layer; hit; ttl=42` or
//!   `cache-layer; fwd=uri-miss; fwd-status=200; stored`.
//! - **Request `Cache-Control`**: by default `max-age`, `min-fresh`, `no-cache` (and
//!   `Pragma: no-cache`) force a revalidation, which is coalesced with concurrent ones;
//!   `max-stale` accepts stale responses (never past `must-revalidate`); `only-if-cached` gets
//!   504 on a miss. [`CacheLayer::request_cache_control`]`(false)` stops clients from forcing
//!   revalidations at all.
//! - **Revalidation**: a stale response with an `ETag` or `Last-Modified` is revalidated with
//!   `If-None-Match`/`If-Modified-Since`; a 304 refreshes its headers and freshness.
//!   `stale-while-revalidate` serves it at once and refreshes in the background;
//!   `stale-if-error` serves it when the inner service fails or answers 5xx.
//! - **Conditional requests**: responses without an `ETag` get a strong one from their bytes
//!   ([`EtagMode`]) when they are stored, or small enough to read before sending (bodies of
//!   unknown length stream out without one on their first, storing, pass). `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//!   `If-Modified-Since` are evaluated in RFC 9110 §13.2.2 order, on hits (without calling the
//!   inner service) and on forwarded responses alike: 304 or 412. A write's `If-Match` /
//!   `If-Unmodified-Since` is left to the application: a stored copy may be outdated or
//!   another variant, and deciding from it could refuse a valid write with a false 412.
//! - **Invalidation**: a successful POST/PUT/PATCH/DELETE drops its URL and same-origin
//!   `Location`/`Content-Location`; the [`CacheTags`] extension or a `Cache-Tag` header
//!   (removed before the client sees it) tag a response, and `cache.invalidate(tag)` drops it.
//! - **Load**: concurrent misses on one key make one inner call; a response that may not be
//!   stored is never shared with the waiters, and its URL skips coalescing for a few seconds.
//! - **Bodies**: the decision is made from the headers first. Bodies of known size up to the
//!   cap are read before the head is sent; others are read ahead by a task at the inner
//!   service's pace (up to the cap) and streamed to the client from there, so neither the store
//!   nor the requests coalesced behind it wait for a slow or stalled client; past the cap the
//!   client reads the rest at its own pace. Larger or endless bodies and trailers pass through;
//!   server-sent events (`text/event-stream`) are never stored and never coalesced; the inner
//!   service's error type is never changed.
//!
//! # gRPC
//! On a tonic server (`Server::builder().layer(CacheLayer::new(cache))`), gRPC calls pass
//! through the layer untouched: unary and streaming, headers, trailers, `grpc-status` and
//! `grpc-message`, compression and deadlines. They are not treated as HTTP writes.
//!
//! With the `grpc` feature, unary methods are cached once opted in, by path
//! (`grpc_method("/catalog.v1.Catalog/GetCourse", ttl)`), by predicate
//! (`grpc_methods_where`), or from a file descriptor set's `idempotency_level =
//! NO_SIDE_EFFECTS` (`grpc_descriptors`); this makes the layer a `CacheLayer<GrpcMethods>`,
//! whose service hands the inner one a `GrpcRequestBody`.
//!
//! - **Key**: `grpc <authority><path>` (the authority validated as for HTTP; a call without a
//!   valid one passes through) and a SHA-256 of the *decoded* request message (one
//!   frame; `gzip` or `deflate` per `grpc-encoding` decompressed, so compression does not split
//!   keys), the client's `grpc-accept-encoding` (a compressed answer is only replayed to
//!   clients that decode it) and the metadata added with `grpc_key_metadata` (tenant,
//!   `authorization`). A call carrying `authorization` is not cached unless it is keyed;
//!   `grpc-timeout` never is.
//! - **Stored**: headers, message bytes and trailers, replayed exactly; only when the trailers
//!   say `grpc-status: 0` and the answer is one message (never a Trailers-Only error, never a
//!   stream). Fresh for the method's TTL, or `max-age`/`s-maxage` from a `cache-control`
//!   response metadata entry; `no-store` and `private` are not stored.
//! - **Invalidation**: `cache-tag` response metadata (removed before the client sees it) tags
//!   the entry, and every entry is tagged with its method path.
//! - **Load**: concurrent identical calls make one inner call; stale-while-revalidate and
//!   stale-if-error (the layer's windows, or `cache-control`'s) as for HTTP; UNKNOWN,
//!   DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE and DATA_LOSS count as the service failing.
//! - **Not cached**: a message over [`max_body`](CacheLayer::max_body), several request
//!   frames, an unknown `grpc-encoding`: the call passes through, with a `Cache-Status` detail.

mod cache;
mod clock;
mod entry;
mod flight;
mod invalidation;
mod key;
mod layer;
mod memo;
mod shape;
mod stats;
mod store;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use cache::{BuildError, Cache, CacheBuilder};
pub use cache_macros::{cached, invalidates};
pub use key::{KeyArg, KeyBuf};
#[doc(hidden)]
pub use layer::__fuzz;
pub use layer::{
    CacheBody, CacheLayer, CacheService, CacheTags, EtagMode, HttpOnly, ResponseFuture,
};
#[cfg(feature = "grpc")]
pub use layer::{DescriptorError, GrpcMethods, GrpcRequestBody, LayerMode};
pub use stats::Stats;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
