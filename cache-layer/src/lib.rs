//! Caching for Rust web back ends: memoised `async fn`s with `#[cached]`, invalidated by
//! writers with `#[invalidates]`, on one engine with single-flight, TTL jitter,
//! stale-while-revalidate, stale-if-error and negative caching.
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
//! in-memory or a shared store. A memory hit clones the value; it never serialises it.
//!
//! # Entry lifetime
//! An entry is *fresh* for `ttl` (±10% jitter by default), then *stale* for `stale`
//! (served at once while one background task refreshes it), then usable only if the loader
//! fails for `stale_if_error`, then gone.
//!
//! # Concurrent calls on the same key
//! Concurrent misses on one key run the function body once; the other callers wait for its
//! value. A caller that is cancelled or panics while loading hands the load to a waiter.

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
pub use layer::{CacheBody, CacheLayer, CacheService, CacheTags, EtagMode, ResponseFuture};
pub use stats::Stats;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
