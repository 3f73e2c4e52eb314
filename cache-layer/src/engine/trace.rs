//! The `tracing` spans of cache decisions: one `cache.lookup` span per look-up (memo, HTTP and
//! gRPC, level DEBUG: it is on the hit path), one `cache.load` span per memo load (level INFO)
//! and one `cache.refresh` span per background refresh (stale-while-revalidate: memo, HTTP and
//! gRPC, level INFO). A refresh span has no parent: it outlives the request that started it,
//! which it [follows from](tracing::Span::follows_from) (an OpenTelemetry link).
//!
//! Fields, named after OpenTelemetry's conventions where one exists (`code.function.name`,
//! `http.request.method`), else under `cache.`:
//!
//! | field | on | value |
//! | --- | --- | --- |
//! | `cache.name` | both | the cache's [name](crate::CacheBuilder::name) |
//! | `code.function.name` | memo | the `#[cached]` site's `name` (or [`LoadOptions::name`](crate::LoadOptions::name)) |
//! | `http.request.method` | HTTP | the request's method |
//! | `cache.outcome` | all | lookup: `hit`, `stale`, `miss`, `bypass`; load: `miss` (this caller loaded), `coalesced` (served by another caller's load), `stale_if_error`, `bypass` (caching off); refresh: `refreshed` (a new value or response was stored or offered to the storage rules), `failed` (the loader or inner service failed: the stale value stays), `coalesced` (a load of the key was already running in this process: nothing ran) |
//! | `cache.tier` | lookup | where the answer came from: `memory` or `redis` (none on a miss) |
//! | `cache.load.duration_us` | load, refresh | the load's time (the source call, storing its value), in microseconds |
//! | `http.response.status_code` | HTTP refresh | the status the revalidation got |
//! | `cache.key` | memo | the key, only with [`CacheBuilder::trace_keys`](crate::CacheBuilder::trace_keys) (keys may hold user data) |
//!
//! A span's own start and end time it as a whole (waiting included).

use tracing::field::Empty;
use tracing::Span;

use crate::cache::Cache;

/// What a look-up or load ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Stale,
    Miss,
    Coalesced,
    StaleIfError,
    Bypass,
    Refreshed,
    Failed,
    /// A timeout passed: a stale value or the timeout answered the caller.
    Timeout,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::StaleIfError => "stale_if_error",
            Outcome::Bypass => "bypass",
            Outcome::Refreshed => "refreshed",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Memory,
    Redis,
}

/// A memo look-up's span.
#[inline(always)]
pub(crate) fn memo_lookup(cache: &Cache, site: &'static str, key: &str) -> Span {
    let span = tracing::debug_span!(
        "cache.lookup",
        cache.name = Empty,
        code.function.name = site,
        cache.outcome = Empty,
        cache.tier = Empty,
        cache.key = Empty,
    );
    name_and_key(&span, cache, key);
    span
}

/// An HTTP look-up's span (a gRPC call's too: `POST`).
#[inline]
pub(crate) fn http_lookup(cache: &Cache, method: &http::Method) -> Span {
    let span = tracing::debug_span!(
        "cache.lookup",
        cache.name = Empty,
        http.request.method = method.as_str(),
        cache.outcome = Empty,
        cache.tier = Empty,
    );
    name_and_key(&span, cache, "");
    span
}

/// A memo load's span.
pub(crate) fn memo_load(cache: &Cache, site: &'static str, key: &str) -> Span {
    let span = tracing::info_span!(
        "cache.load",
        cache.name = Empty,
        code.function.name = site,
        cache.outcome = Empty,
        cache.load.duration_us = Empty,
        cache.key = Empty,
    );
    name_and_key(&span, cache, key);
    span
}

/// A memo background refresh's span: a root of its own (the caller has returned the stale
/// value by the time it ends) that follows from the caller's current span.
pub(crate) fn memo_refresh(cache: &Cache, site: &'static str, key: &str) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "cache.refresh",
        cache.name = Empty,
        code.function.name = site,
        cache.outcome = Empty,
        cache.load.duration_us = Empty,
        cache.key = Empty,
    );
    span.follows_from(Span::current());
    name_and_key(&span, cache, key);
    span
}

/// An HTTP (or gRPC) background revalidation's span, like [`memo_refresh`]'s.
pub(crate) fn http_refresh(cache: &Cache, method: &http::Method) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "cache.refresh",
        cache.name = Empty,
        http.request.method = method.as_str(),
        cache.outcome = Empty,
        cache.load.duration_us = Empty,
        http.response.status_code = Empty,
    );
    span.follows_from(Span::current());
    name_and_key(&span, cache, "");
    span
}

/// Records the status of the response a revalidation got.
pub(crate) fn status_code(span: &Span, status: http::StatusCode) {
    span.record("http.response.status_code", status.as_u16());
}

#[inline]
fn name_and_key(span: &Span, cache: &Cache, key: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("cache.name", cache.name());
    if cache.inner().trace_keys() && !key.is_empty() {
        span.record("cache.key", key);
    }
}

/// Records how a look-up or load ended.
#[inline]
pub(crate) fn outcome(span: &Span, outcome: Outcome, tier: Option<Tier>) {
    if span.is_disabled() {
        return;
    }
    span.record("cache.outcome", outcome.as_str());
    if let Some(tier) = tier {
        let tier = match tier {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
        };
        span.record("cache.tier", tier);
    }
}

/// Records a load's time (the source call and storing its value) on its span.
pub(crate) fn load_time(span: &Span, elapsed: std::time::Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    span.record("cache.load.duration_us", micros);
}

#[cfg(test)]
#[path = "tests/trace.rs"]
mod tests;
