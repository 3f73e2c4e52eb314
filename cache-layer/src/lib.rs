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
//! are `Clone + Send + Sync + Serialize + DeserializeOwned + 'static` ([`Shareable`]): the same
//! code runs on an in-memory or a shared store. A function marked
//! [`local`](macro@cached#local-values-without-serde) keeps its values in this process's memory
//! and needs no serde ([`Cacheable`]). A memory hit clones the value; it never serialises it, and a
//! repeated hit on a thread is answered from that thread's copy of the entry (see
//! [`CacheBuilder::memory_budget`]). An entry is fresh for `ttl`, then stale for `stale`
//! (served while one background task refreshes it), then served only when the loader fails for
//! `stale_if_error` ([lifetimes](docs::lifetimes)).
//!
//! # Keys
//! `key = "user:<id>"` stores `get_user(7)` under `user:7`; without `key`, under the function's
//! path and its arguments. Different arguments never render the same key, whatever they
//! contain: [Keys](docs::keys) has the rules, namespaces, versions and methods, and
//! [`cached`](macro@cached) every argument of the macro. [`Cache::get_or_load`] and its
//! siblings do by hand what the macro does ([Without the macro](docs::by_hand)).
//!
//! # Sharing between instances
//! [`CacheBuilder::tiered`] keeps memory in front of Redis (or a Redis Cluster), and every
//! invalidation reaches every instance. Redis never fails a call: errors and timeouts fall back
//! to the source, and memory stays in front of it, within a bound, while invalidations cannot
//! be heard ([Sharing between instances](docs::sharing), with "Invalidations when Redis is
//! unreachable"; what Redis holds is a stable contract: [Redis layout](docs::redis_layout)).
//! [`Cache::soft_invalidate`] keeps entries, stale, while one refresh runs
//! ([Soft purge](docs::soft_purge)).
//!
//! # HTTP response caching
//! [`CacheLayer`] puts the same [`Cache`] in front of any `tower::Service<http::Request<B>>`
//! (an axum `Router`, a hyper service) as an RFC 9111 shared cache that also answers
//! conditional requests ([HTTP response caching](docs::http)):
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
//! # gRPC
//! On a tonic server, gRPC calls pass through the layer untouched; with the `grpc` feature,
//! opted-in unary methods are cached ([gRPC](docs::grpc)).
//!
//! # Chapters
//! [Keys](docs::keys), [Entry lifetime and concurrent calls](docs::lifetimes),
//! [Without the macro](docs::by_hand), [Sharing between instances](docs::sharing),
//! [Soft purge](docs::soft_purge), [Redis layout](docs::redis_layout),
//! [HTTP response caching](docs::http), [gRPC](docs::grpc), [Traces](docs::traces),
//! [Testing code that caches](docs::testing).
//!
//! # Features
//! | feature | default | adds |
//! | --- | --- | --- |
//! | (none) | yes | the in-memory engine, `#[cached]` / `#[invalidates]`, the imperative and batch API, [`CacheLayer`] for HTTP: no Redis, TLS or gRPC code |
//! | `redis` | no | the shared tier: [`CacheBuilder::redis`], [`tiered`](CacheBuilder::tiered) and their cluster and Sentinel forms, or on the application's own client ([`RedisSource`]), pub/sub invalidation, the distributed load lock (`lock = "..."`), shared HTTP responses |
//! | `tls` | no | `rediss://` URLs (implies `redis`): TLS to Redis with rustls (ring), trusting the system's roots or a given CA |
//! | `grpc` | no | caching opted-in gRPC unary methods (gzip/deflate request decoding, descriptor sets); without it, gRPC calls pass through untouched |
//! | `test-clock` | no | `testing::follow_tokio_time`: entry lifetimes on Tokio's pausable clock, for tests |
//! | `uuid` | no | [`KeyArg`] for `uuid::Uuid`: ids as keys (`67e55044-10b1-426f-9247-bb680e5fe0c8`) |
//! | `chrono` | no | [`KeyArg`] for chrono's `NaiveDate`, `NaiveTime`, `NaiveDateTime`, `DateTime<Utc>` and `DateTime<FixedOffset>`, as ISO 8601 text |
//! | `time` | no | [`KeyArg`] for the time crate's `Date`, `Time`, `PrimitiveDateTime` and `OffsetDateTime`, as ISO 8601 text |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
pub mod docs;
mod engine;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(not(feature = "grpc"))]
mod grpc;
pub mod http;
mod key;
mod memo;
mod store;

#[doc(hidden)]
#[path = "memo/private.rs"]
pub mod __private;

#[cfg(feature = "grpc")]
pub use self::grpc::{DescriptorError, GrpcConfigError, GrpcMethods, GrpcRequestBody, LayerMode};
#[cfg(fuzzing)]
#[doc(hidden)]
pub use self::http::__fuzz;
pub use self::http::{
    Admin, AdminBody, CacheBody, CacheLayer, CacheService, CacheTags, EtagMode, HttpOnly, Purge,
    PurgeBody, PurgeOr, ResponseFuture,
};
pub use cache::{Cache, CacheBuilder};
#[doc = include_str!("docs/cached.md")]
#[doc(inline)]
pub use cache_macros::cached;
#[doc = include_str!("docs/invalidates.md")]
#[doc(inline)]
pub use cache_macros::invalidates;
/// Derives [`KeyArg`](trait@KeyArg) for a struct or an enum (not a union), with an encoding
/// that is injective by construction: see [Deriving](trait@KeyArg#deriving).
#[doc(inline)]
pub use cache_macros::KeyArg;
pub use error::BuildError;
pub use key::{Key, KeyArg, KeyBuf};
pub use memo::{Cacheable, Shareable};
pub use memo::{HardTimeout, LoadOptions};
/// The `redis` crate this one is built with, for [`RedisSource`]'s clients: its version is
/// the one the cache accepts.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(no_inline)]
pub use redis;
#[cfg(feature = "redis")]
pub use store::RedisSource;

/// Support for testing code that caches: caching off is
/// [`CacheBuilder::disabled`]; entry lifetimes on Tokio's paused clock are
/// `follow_tokio_time` (feature `test-clock`).
pub mod testing {
    #[cfg(feature = "test-clock")]
    pub use crate::engine::clock::follow_tokio_time;
}
pub use cache::EntryInfo;
pub use engine::hooks::{Eviction, EvictionCause, Invalidated, Invalidation, LoadFailure, Origin};
pub use engine::stats::{SiteStats, Stats};
pub use engine::timed_out::TimeoutError;

/// The crate's README (what crates.io shows), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
