//! Finding what the cache holds for a request, in memory and then, on a cache with a shared
//! tier, in Redis: the stored response (or its variant for the request's varied headers), a
//! `Vary` miss, or the "uncacheable" marker.

use std::sync::Arc;

use http::header::{CACHE_CONTROL, PRAGMA};
use http::HeaderMap;

use crate::cache::EntryKind;
use crate::engine::clock;
use crate::engine::entry::{Age, Entry};
use crate::engine::pipeline;
use crate::engine::stats::Counter;
use crate::http::config::Config;
use crate::http::rules::cache_control::RequestDirectives;
use crate::http::rules::key::{secondary_key, variant_key};
use crate::http::stored::shared::decode;
use crate::http::stored::{CachedResponse, Uncacheable, Variants};
use crate::Cache;

/// What the cache holds for a request.
pub(crate) enum Found {
    /// A stored response: the entry, whose value is a [`CachedResponse`] (see [`response_of`]).
    Stored {
        variant: Option<String>,
        entry: Arc<Entry>,
    },
    VaryMiss(String),
    Uncacheable,
    Nothing,
}

/// The response a [`Found::Stored`] entry holds. Borrowed: a hit takes no reference of its own.
pub(crate) fn response_of(entry: &Entry) -> &CachedResponse {
    entry
        .value
        .downcast_ref::<CachedResponse>()
        .expect("lookup returns only entries holding a CachedResponse as Found::Stored")
}

/// The stored response of `entry`, to keep beyond the lookup (a refresh or a revalidation).
pub(crate) fn shared_response_of(entry: &Entry) -> Option<Arc<CachedResponse>> {
    Arc::clone(&entry.value).downcast::<CachedResponse>().ok()
}

/// The entry under `key` in memory, unless its last window has closed (the store expires
/// lazily). While this instance cannot hear other instances' invalidations, memory holds only
/// what was stored under the outage bound (see `Inner::admit`); what Redis holds is read by
/// [`lookup_shared`].
pub(crate) fn live_entry(cache: &Cache, key: &str, now: clock::Instant) -> Option<Arc<Entry>> {
    cache
        .inner()
        .memory()
        .get(key)
        .filter(|entry| entry.age(now) != Age::Expired)
}

/// What the cache holds for `primary` and the request's `headers`, at `now` on the cache's clock.
pub(crate) fn lookup(
    cache: &Cache,
    primary: &str,
    request: &HeaderMap,
    now: clock::Instant,
) -> Found {
    let Some(entry) = live_entry(cache, primary, now) else {
        return Found::Nothing;
    };
    if entry.value.is::<CachedResponse>() {
        return Found::Stored {
            variant: None,
            entry,
        };
    }
    if let Some(record) = entry.value.downcast_ref::<Variants>() {
        let key = variant_key(primary, &secondary_key(&record.names, request));
        let stored =
            live_entry(cache, &key, now).filter(|entry| entry.value.is::<CachedResponse>());
        return match stored {
            Some(entry) => {
                record.touch(&key);
                Found::Stored {
                    variant: Some(key),
                    entry,
                }
            }
            None => Found::VaryMiss(key),
        };
    }
    if entry.value.is::<Uncacheable>() {
        return Found::Uncacheable;
    }
    Found::Nothing
}

/// The live entry the shared tier holds under `key` (for the URL `primary`), copied into
/// memory when memory may be used (unless invalidated while it was read, the invalidation log
/// then standing at `since`). Bytes that are not usable there are a miss, counted and logged.
async fn read_shared(
    cache: &Cache,
    config: &Config,
    (primary, key): (&str, &str),
    since: u64,
) -> Option<Arc<Entry>> {
    let bytes = cache.shared_tier()?.store.get(key).await?;
    let entry = match decode(config, (primary, key), &bytes) {
        Ok(entry) => entry,
        Err(why) => {
            let counters = cache.inner().counters();
            counters.add(Counter::DecodeError);
            tracing::warn!(
                cache = counters.name(),
                key,
                why,
                "unusable response in the shared store: treated as a miss"
            );
            return None;
        }
    };
    if entry.age(clock::now()) == Age::Expired {
        return None;
    }
    Some(pipeline::adopt_shared(
        cache,
        EntryKind::Response,
        key,
        entry,
        since,
    ))
}

/// What the shared tier holds for a request whose URL (`primary`) memory had nothing for, or
/// whose variant (`variant`) memory lacked: the stored response, a `Vary` miss, or nothing.
pub(crate) async fn lookup_shared(
    cache: &Cache,
    config: &Config,
    primary: &str,
    variant: Option<&str>,
    request: &HeaderMap,
) -> Found {
    cache.listen_for_invalidations();
    let since = cache.inner().log().current();
    let key = match variant {
        Some(key) => key.to_owned(),
        None => {
            let Some(entry) = read_shared(cache, config, (primary, primary), since).await else {
                return Found::Nothing;
            };
            let Some(record) = entry.value.downcast_ref::<Variants>() else {
                let variant = None;
                return Found::Stored { variant, entry };
            };
            variant_key(primary, &secondary_key(&record.names, request))
        }
    };
    match read_shared(cache, config, (primary, &key), since).await {
        Some(entry) if entry.value.is::<CachedResponse>() => Found::Stored {
            variant: Some(key),
            entry,
        },
        _ => Found::VaryMiss(key),
    }
}

pub(crate) fn request_directives(config: &Config, request: &HeaderMap) -> RequestDirectives {
    // Most requests carry neither header: one pass over the names settles it.
    if !request
        .keys()
        .any(|name| name == CACHE_CONTROL || name == PRAGMA)
    {
        return RequestDirectives::default();
    }
    let mut directives = RequestDirectives::parse(request);
    if !config.request_cache_control {
        directives.no_cache = false;
        directives.max_age = None;
        directives.min_fresh = None;
    }
    directives
}
