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

mod cache;
mod clock;
mod entry;
mod flight;
mod invalidation;
mod key;
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
pub use stats::Stats;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
