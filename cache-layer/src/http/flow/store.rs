//! Writing responses into the cache: a stored response under its key (and, when it varies,
//! the URL's variants record), in memory and, on a shared cache, in Redis; dropping one; the
//! "uncacheable" marker (memory only); generated `ETag`s; and [`ResponseBeingRecorded`], a
//! response head whose body is being recorded, stored once the body has been read and handed
//! to coalesced waiters.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::ETAG;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::lookup::live_entry;
use crate::engine::clock;
use crate::engine::entry::{Deadlines, Value};
use crate::engine::flight::Leader;
use crate::engine::pipeline;
use crate::http::body::RecordedStore;
use crate::http::config::{Config, EtagMode};
use crate::http::rules::cache_control::ResponseDirectives;
use crate::http::rules::etag::EntityTag;
use crate::http::rules::gate::Admitted;
use crate::http::rules::key::variant_key;
use crate::http::stored::shared::{encode_response, encode_variants};
use crate::http::stored::{CachedResponse, Uncacheable, Variants};
use crate::store::codec::WallDeadlines;
use crate::store::SharedSince;
use crate::Cache;

/// Stores `response` for the URL `primary`, in memory and, on a cache with a shared tier and
/// a body up to `max_shared_body`, in Redis (checked against `shared_since`); returns whether
/// it was kept (an invalidation since `since` discards it).
pub(crate) fn store_response(
    cache: &Cache,
    config: &Config,
    primary: &str,
    response: &Arc<CachedResponse>,
    (since, shared_since): (u64, SharedSince),
) -> bool {
    let now = clock::now();
    let (fresh, swr, after) = response.retention(now);
    let deadlines = Deadlines::from_windows(now, fresh, swr, after);
    let mut tags: Vec<Box<str>> = response.tags.iter().map(|t| t.as_str().into()).collect();
    if !response.vary.is_empty() {
        // Each variant is tagged with the URL, so invalidating the URL drops all of them.
        tags.push(primary.into());
    }
    let shared = (cache.shared_tier().is_some() && response.body.len() <= config.max_shared_body)
        .then(|| encode_response(response, WallDeadlines::from_local(&deadlines, now), &tags))
        .flatten()
        .map(|bytes| (bytes, shared_since));
    let value = Arc::clone(response);
    let entry = pipeline::entry(primary, value, deadlines, tags.into());
    if response.vary.is_empty() {
        return cache.store_response(primary, entry, since, shared);
    }
    let key = variant_key(primary, &response.secondary);
    if !cache.store_response(&key, entry, since, shared) {
        return false;
    }
    let record = variants_record(cache, config, primary, key, &response.vary, now);
    let expires_at = record.1.max(deadlines.expires_at);
    let deadlines = Deadlines::until(expires_at);
    let shared = cache
        .shared_tier()
        .is_some()
        .then(|| encode_variants(&response.vary, WallDeadlines::from_local(&deadlines, now)))
        .flatten()
        .map(|bytes| (bytes, shared_since));
    let entry = pipeline::entry(primary, Arc::new(record.0), deadlines, Box::new([]));
    cache.store_response(primary, entry, since, shared)
}

/// The URL's `Vary` record with `key` added as its most recently used variant (the least
/// recently used beyond `max_variants` are dropped, here and in the shared tier), and when the
/// previous record expires.
fn variants_record(
    cache: &Cache,
    config: &Config,
    primary: &str,
    key: String,
    names: &[HeaderName],
    now: clock::Instant,
) -> (Variants, clock::Instant) {
    let previous = live_entry(cache, primary, now);
    let (record, dropped) = match previous
        .as_ref()
        .and_then(|e| e.value.downcast_ref::<Variants>())
    {
        Some(record) if *record.names == *names => record.with_variant(key, config.max_variants),
        _ => Variants::new(names.into()).with_variant(key, config.max_variants),
    };
    for key in &dropped {
        forget(cache, key);
    }
    let expires_at = previous.map_or(now, |e| e.deadlines.expires_at);
    (record, expires_at)
}

/// Remembers for a few seconds that `primary` gave a response that may not be stored, unless
/// something usable is stored there.
pub(crate) fn mark_uncacheable(cache: &Cache, config: &Config, primary: &str) {
    let inner = cache.inner();
    if live_entry(cache, primary, clock::now()).is_some_and(|e| !e.value.is::<Uncacheable>()) {
        return;
    }
    let deadlines = Deadlines::until(clock::after(clock::now(), config.uncacheable_for));
    let since = inner.log().current();
    let entry = pipeline::entry(primary, Arc::new(Uncacheable), deadlines, Box::new([]));
    cache.store_in_memory(primary, entry, since);
}

/// Drops the response stored under `key` here and in the shared tier (the origin no longer
/// lets it be kept, or a newer variant displaced it); the shared delete runs off the caller's
/// path.
pub(crate) fn forget(cache: &Cache, key: &str) {
    cache.inner().memory().remove(key);
    if cache.shared_tier().is_none() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let (cache, key) = (cache.clone(), key.to_owned());
        runtime.spawn(async move {
            if let Some(remote) = cache.shared_tier() {
                remote.store.delete(&key).await;
            }
        });
    }
}

/// Gives a response without an `ETag` one made from its bytes, as configured.
pub(crate) fn add_etag(headers: &mut HeaderMap, body: &[u8], mode: EtagMode) {
    if headers.contains_key(ETAG) {
        return;
    }
    if let Some(value) = generated_etag(body, mode) {
        headers.insert(ETAG, value);
    }
}

/// The `ETag` generated for `body`, as configured.
fn generated_etag(body: &[u8], mode: EtagMode) -> Option<HeaderValue> {
    let tag = match mode {
        EtagMode::Strong => EntityTag::strong_from_bytes(body),
        EtagMode::Weak => EntityTag::weak_from_bytes(body),
        EtagMode::Off => return None,
    };
    tag.to_header_value()
}

/// A response head the storage gate admitted, whose body is being recorded: stored (and handed
/// to coalesced waiters) by [`complete`](Self::complete); dropped or
/// [abandoned](Self::abandon), it stores nothing and releases the waiters to load for
/// themselves.
pub(crate) struct ResponseBeingRecorded {
    pub(crate) cache: Cache,
    pub(crate) config: Arc<Config>,
    pub(crate) primary: String,
    pub(crate) status: StatusCode,
    /// The head as the storage gate admitted it.
    pub(crate) headers: Admitted,
    pub(crate) times: (SystemTime, SystemTime),
    pub(crate) lifetime: Duration,
    pub(crate) directives: ResponseDirectives,
    pub(crate) vary: (Box<[HeaderName]>, String),
    pub(crate) tags: Vec<String>,
    pub(crate) since: u64,
    /// Where Redis's invalidation history stood when the load began.
    pub(crate) shared_since: SharedSince,
    pub(crate) leader: Option<Leader>,
}

impl ResponseBeingRecorded {
    /// Stores the response with `body`; returns it and whether it was kept.
    pub(crate) fn complete(self, body: Bytes) -> (Arc<CachedResponse>, bool) {
        let ResponseBeingRecorded {
            cache,
            config,
            primary,
            status,
            headers,
            times,
            lifetime,
            directives,
            vary,
            tags,
            since,
            shared_since,
            leader,
        } = self;
        let etag = if headers.get().contains_key(ETAG) {
            None
        } else {
            generated_etag(&body, config.etag)
        };
        // Replayed bodies are whole: say how long, which HEAD answers need too.
        let length = (status != StatusCode::NO_CONTENT).then_some(body.len());
        let headers = headers.with_body_fields(etag, length);
        let response = Arc::new(CachedResponse::new(
            status,
            headers,
            body,
            times,
            lifetime,
            &directives,
            (config.stale_while_revalidate, config.stale_if_error),
            vary,
            tags,
        ));
        let at = (since, shared_since);
        let kept = store_response(&cache, &config, &primary, &response, at);
        tracing::debug!(
            cache = cache.name(),
            key = primary,
            status = response.status.as_u16(),
            lifetime_secs = response.lifetime.as_secs(),
            kept,
            "response stored"
        );
        if kept {
            if let Some(leader) = leader {
                leader.complete(Arc::clone(&response) as Value);
            }
        }
        (response, kept)
    }

    /// Gives up storing (`reason` is logged); the URL skips coalescing for a while.
    pub(crate) fn abandon(self, reason: &'static str) {
        tracing::debug!(
            cache = self.cache.name(),
            key = self.primary,
            reason,
            "response not stored"
        );
        mark_uncacheable(&self.cache, &self.config, &self.primary);
    }
}

impl RecordedStore for ResponseBeingRecorded {
    fn finish(self: Box<Self>, body: Bytes, trailers: Option<&HeaderMap>) {
        // Trailers are not stored with HTTP responses: not replayable as is.
        if trailers.is_none() {
            self.complete(body);
        }
    }

    fn abandon(self: Box<Self>, reason: &'static str) {
        ResponseBeingRecorded::abandon(*self, reason);
    }
}
