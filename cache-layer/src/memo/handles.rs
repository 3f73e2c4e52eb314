//! What a `#[cached(handles)]` fn's handles do that a call does not: `<fn>_refresh` runs the
//! body now and replaces the entry, whatever the cache holds. (`<fn>_key` only renders the
//! key, `<fn>_uncached` is the body alone, `<fn>_invalidate` is `Cache::invalidate`.)

use std::future::Future;

use super::keep::Storable;
use super::load::{boxed, load_and_store};
use super::options::{Policy, Site};
use super::returns::Shape;
use crate::cache::Cache;
use crate::engine::trace;

/// Runs `load` now (no look-up, no flight to join) and stores what it returns as a miss
/// would, replacing the entry under `key`; returns it.
pub async fn refresh<R, S, F>(
    cache: &Cache,
    site: &Site,
    _shape: S,
    key: &str,
    tags: Vec<String>,
    policy: Policy<<S as Shape<R>>::Success>,
    load: F,
) -> R
where
    S: Shape<R>,
    S::Value: Storable<S::Keep>,
    F: Future<Output = R>,
{
    let span = trace::memo_load(cache, site.name, key);
    supersede(cache, key);
    let tags = boxed(tags);
    let started = std::time::Instant::now();
    let load = load_and_store::<R, S, F>(cache, site, key, &tags, &policy, None, load);
    let (result, _) = Box::pin(tracing::Instrument::instrument(load, span.clone())).await;
    trace::load_time(&span, started.elapsed());
    trace::outcome(&span, trace::Outcome::Miss, None);
    result
}

/// Before a refresh of `key` begins: a load of it already in flight in this process read the
/// source earlier, so it must not store its result over the refresh's (the invalidation log
/// makes it discard it, as after an invalidation, but leaves the entry in place meanwhile).
pub(super) fn supersede(cache: &Cache, key: &str) {
    if !cache.inner().disabled() {
        cache.inner().log().record(key);
    }
}
