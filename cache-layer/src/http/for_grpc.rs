//! What `grpc/` uses of the HTTP layer, and nothing else of it: opted-in gRPC calls go through
//! the same storage gate, records, single-flight, tags, bodies and `Cache-Status` as HTTP
//! responses. Besides these items, gRPC reaches [`CacheService`](crate::CacheService)'s
//! crate-private methods (`call_http`, `pass_grpc`, the cache, the configuration and the inner
//! service), [`CacheLayer::map_mode`](crate::CacheLayer) and [`Config::recording`].

pub(crate) use super::body::RecordedStore;
pub(crate) use super::config::Config;
pub(crate) use super::flow::lookup::live_entry;
pub(crate) use super::flow::refresh::refresh_outcome;
pub(crate) use super::flow::store::mark_uncacheable;
pub(crate) use super::rules::cache_control::ResponseDirectives;
pub(crate) use super::rules::freshness::remaining_ttl;
pub(crate) use super::rules::gate::{admit, Admitted, Exchange};
pub(crate) use super::rules::key::{authority_of, push_lowercase};
pub(crate) use super::status::{CacheStatus, Forward};
pub(crate) use super::stored::{ServedHeaders, Uncacheable};
pub(crate) use super::tags::take_tags;
