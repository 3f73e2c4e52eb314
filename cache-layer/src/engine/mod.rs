//! The engine under every front-end (`#[cached]`, the imperative API, `CacheLayer`, gRPC):
//! the one load pipeline and what it runs on.
//!
//! Every miss takes the same steps: look up → join or lead a flight → serve stale while one
//! refresh runs → stale-if-error → store unless invalidated since the load began (the store
//! itself is the cache's one write path, `cache::write`).
//!
//! - `pipeline`: those steps, once for memo, HTTP and gRPC.
//! - `flight`: single-flight, the loads in flight in this process by key.
//! - `lock`: the load lock across instances (single-flight over the shared tier).
//! - `entry`: a stored entry, its deadlines and where it is in its life.
//! - `invalidation`: the invalidation log a load checks before keeping its result.
//! - `clock`: the monotonic clock entry lifetimes are measured on (Tokio's, for tests).
//! - `timeout`: loader timeouts (soft: serve stale; hard: give up), raced once for all;
//!   `timed_out`: what a hard timeout answers (`TimeoutError`).
//! - `hooks`: the callbacks set on the builder (evictions, invalidations, failed loads).
//! - `counters`: what a cache counts (`stats`: the counters and their snapshots; `sites`: those
//!   of each site, a `#[cached]` function, an HTTP route, a gRPC method), and `export`: their
//!   writing to the `metrics` recorder.
//! - `trace`: the `tracing` spans of look-ups, loads and refreshes.

pub(crate) mod clock;
pub(crate) mod counters;
pub(crate) mod entry;
pub(crate) mod export;
pub(crate) mod flight;
pub(crate) mod hooks;
pub(crate) mod invalidation;
mod lock;
pub(crate) mod pipeline;
pub(crate) mod random;
pub(crate) mod sites;
pub(crate) mod stats;
pub(crate) mod timed_out;
pub(crate) mod timeout;
pub(crate) mod trace;
