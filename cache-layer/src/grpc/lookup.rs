//! What the cache holds for a call's key ([`Held`]), and gRPC's side of the pipeline's
//! single-flight ([`CallWaiting`]).

use std::sync::Arc;

use http::HeaderMap;

use super::key::accepts_response;
use super::stored::CachedCall;
use crate::engine::clock;
use crate::engine::entry::{Age, Entry, Value};
use crate::engine::pipeline::Waiting;
use crate::engine::sites::SiteCounters;
use crate::engine::stats::SiteCounter;
use crate::http::for_grpc::remaining_ttl as ttl_left;
use crate::http::for_grpc::{live_entry, CacheStatus, Forward, Uncacheable};
use crate::Cache;

/// What the cache holds under a call's key.
pub(super) enum Held {
    Stored(Arc<Entry>, Arc<CachedCall>),
    Uncacheable,
    Nothing,
}

/// What the cache holds under `key` for a call with `request` metadata.
pub(super) fn lookup(cache: &Cache, key: &str, request: &HeaderMap) -> Held {
    let Some(entry) = live_entry(cache, key, clock::now()) else {
        return Held::Nothing;
    };
    if let Ok(call) = Arc::clone(&entry.value).downcast::<CachedCall>() {
        // Never a compressed response to a client that cannot decode it (the key includes the
        // accepted encodings; this holds whatever keyed it).
        if accepts_response(request, call.served.map()) {
            return Held::Stored(entry, call);
        }
        return Held::Nothing;
    }
    if entry.value.is::<Uncacheable>() {
        return Held::Uncacheable;
    }
    Held::Nothing
}

/// Seconds of freshness left (negative when stale), for `Cache-Status`.
pub(super) fn remaining_ttl(entry: &Entry) -> i64 {
    let (now, until) = (clock::now(), entry.deadlines.fresh_until);
    ttl_left(
        until.saturating_duration_since(now),
        now.saturating_duration_since(until),
    )
}

/// gRPC's side of the pipeline's single-flight: a call handed by a leader is replayed; after a
/// leader that stored nothing, a fresh call stored meanwhile is served, and an uncacheable
/// method is called alone.
pub(super) struct CallWaiting<'a> {
    pub(super) cache: &'a Cache,
    pub(super) key: &'a str,
    pub(super) site: &'a SiteCounters,
    pub(super) request: &'a HeaderMap,
    pub(super) forward: Forward,
}

impl Waiting for CallWaiting<'_> {
    type Served = Replay;

    fn key(&self) -> &str {
        self.key
    }

    fn accept(&mut self, value: Value, fallback: bool) -> Option<Self::Served> {
        let call = value.downcast::<CachedCall>().ok()?;
        let status = if fallback {
            CacheStatus::forward(self.forward).detail("stale-if-error")
        } else {
            CacheStatus::hit().detail("coalesced")
        };
        Some((call, status))
    }

    fn fresh(&mut self) -> Option<Self::Served> {
        match lookup(self.cache, self.key, self.request) {
            Held::Stored(entry, call) if entry.age(clock::now()) == Age::Fresh => {
                self.cache
                    .inner()
                    .counters()
                    .count(self.site, SiteCounter::Hit);
                Some((call, CacheStatus::hit().ttl(remaining_ttl(&entry))))
            }
            _ => None,
        }
    }

    fn rejoin(&mut self) -> bool {
        !matches!(
            lookup(self.cache, self.key, self.request),
            Held::Uncacheable
        )
    }
}

/// A stored call and the `Cache-Status` it is replayed with.
pub(super) type Replay = (Arc<CachedCall>, CacheStatus);
