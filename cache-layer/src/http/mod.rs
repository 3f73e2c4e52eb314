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
//! - `service`: [`CacheService`], which dispatches each request: cacheable, a write, or
//!   passed through. `future`: [`ResponseFuture`]. `body/`: [`CacheBody`], stored bytes or the
//!   inner body streamed (and copied for the cache within the layer's body budget).
//! - `flow/`: how a request is answered: the decision, misses under single-flight, the
//!   exchange with the inner service, revalidation, storing, invalidation by writes.
//! - `stored/`: the stored-response model: what a stored response is, what it may be used
//!   for, its weight and its shared (Redis) form.
//! - `status`: the `Cache-Status` field; `tags`: [`CacheTags`] and `Cache-Tag`; `purge/`:
//!   [`Purge`], purging over HTTP.
//! - `rules/`: the RFC rules as pure functions (`cache_control`, `freshness`, `storable`,
//!   `gate`, the one storage gate, `conditional`, `etag`, `vary`, `field`, `targeted`, `range`,
//!   `key`), importing nothing from the files above.
//! - `tests/`: test-only code (the fuzz targets' entry points among it).
//!
//! gRPC is `cache_layer::grpc`'s (feature `grpc`): calls pass through unless opted in, and
//! opted-in unary calls reuse the same records, single-flight, tags, bodies and
//! `Cache-Status`, through the items `for_grpc` names.
//!
//! Responses are kept in the cache's memory. With a shared (Redis) tier configured, every
//! instance's stored responses are dropped by any instance's invalidation (over Redis
//! pub/sub), and an instance that cannot hear invalidations (not subscribed, Redis down)
//! keeps each response it stores at most the outage bound (`CacheBuilder::outage_ttl`) until
//! it can again.

mod admin;
mod body;
mod config;
mod flow;
#[cfg(feature = "grpc")]
pub(crate) mod for_grpc;
mod future;
mod layer;
mod purge;
mod route;
mod rules;
mod service;
mod status;
mod stored;
mod tags;
#[cfg(any(fuzzing, test))]
mod tests;

pub use admin::{Admin, AdminBody};
pub use body::CacheBody;
pub use config::{EtagMode, HttpOnly};
pub use future::ResponseFuture;
pub use layer::CacheLayer;
pub use purge::{Purge, PurgeBody, PurgeOr};
pub use service::CacheService;
pub use tags::CacheTags;

/// Entry points for the `fuzz/` targets (see `tests/fuzz.rs`). Not a stable API: compiled only
/// for fuzzing (`--cfg fuzzing`, set by `cargo fuzz`) and tests.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub use tests::fuzz as __fuzz;
