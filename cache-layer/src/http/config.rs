//! The layer's settings ([`Config`], shared by every service a layer builds), how stored
//! responses get an `ETag` ([`EtagMode`]), and the mode that caches HTTP only ([`HttpOnly`]).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::request::Parts;

use super::body::{BodyBudget, RecordedStore, Recording};
use super::rules::targeted::TargetedFields;
use crate::engine::pipeline::Timeouts;

/// How the layer gives stored responses an `ETag` when the application sets none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtagMode {
    /// A strong tag hashed from the exact body bytes (the default).
    #[default]
    Strong,
    /// A weak tag (`W/"..."`) from the body bytes: for bodies that may change in transit
    /// (for example a compression layer outside this one).
    Weak,
    /// No generated tags.
    Off,
}

/// The user's key function; see [`CacheLayer::key_fn`](super::CacheLayer::key_fn).
pub(crate) type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// The layer's settings, shared by every service it builds.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) max_body: usize,
    /// Bodies up to this many bytes are shared through Redis; longer ones stay in memory.
    pub(crate) max_shared_body: usize,
    /// How long an instance holds a key's distributed lock while it loads a miss (zero: no
    /// lock; each instance loads its own misses).
    pub(crate) shared_lock: Duration,
    pub(crate) etag: EtagMode,
    pub(crate) key_fn: Option<Arc<KeyFn>>,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) max_variants: usize,
    pub(crate) request_cache_control: bool,
    /// Whether the default key sorts the query's `&`-separated pairs.
    pub(crate) sort_query: bool,
    /// How long a URL whose response could not be stored skips coalescing.
    pub(crate) uncacheable_for: Duration,
    /// Bodies being copied for the cache, and read ahead of their clients: a quarter of the
    /// cache's memory budget.
    pub(crate) body_budget: Arc<BodyBudget>,
    /// Targeted cache-control fields (RFC 9213) obeyed before `Cache-Control`.
    pub(crate) targeted: TargetedFields,
    /// Whether clients receive (and so the cache stores) `Cache-Tag` and `Surrogate-Key`.
    pub(crate) forward_tags: bool,
    /// Request headers removed from GET and HEAD requests before anything reads them.
    pub(crate) strip_request: Vec<http::HeaderName>,
    /// How long a miss waits for the inner service before a stale response or a `504`.
    pub(crate) timeouts: Timeouts,
}

impl Config {
    /// A copy of a body for the cache, of up to `max_body` bytes held in the layer's body
    /// budget, finished into `store`.
    pub(crate) fn recording(&self, store: Box<dyn RecordedStore>) -> Recording {
        Recording::new(self.max_body, self.body_budget.start(), store)
    }
}

/// The settings a layer last built services with (in `Layer::layer`), shared with the layer's
/// clones and the [`Purge`](super::Purge) services taken from them: a purge names URLs as the
/// services key them, whatever builder calls came after it was taken.
#[derive(Debug, Default)]
pub(crate) struct Applied(Mutex<Option<Arc<Config>>>);

impl Applied {
    /// Records `config` as the settings services are being built with.
    pub(crate) fn set(&self, config: &Arc<Config>) {
        let mut applied = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, config)) {
            *applied = Some(Arc::clone(config));
        }
    }

    /// The settings services were last built with, if any were.
    pub(crate) fn get(&self) -> Option<Arc<Config>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The [`CacheLayer`](super::CacheLayer) mode that caches HTTP responses only; gRPC calls pass
/// through, and the inner service receives each request as it came.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpOnly;

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("default_ttl", &self.default_ttl)
            .field("max_body", &self.max_body)
            .field("max_shared_body", &self.max_shared_body)
            .field("shared_lock", &self.shared_lock)
            .field("etag", &self.etag)
            .field("key_fn", &self.key_fn.is_some())
            .field("stale_while_revalidate", &self.stale_while_revalidate)
            .field("stale_if_error", &self.stale_if_error)
            .field("max_variants", &self.max_variants)
            .field("request_cache_control", &self.request_cache_control)
            .field("sort_query", &self.sort_query)
            .field("in_flight_limit", &self.body_budget.limit())
            .field("targeted", &self.targeted)
            .field("forward_tags", &self.forward_tags)
            .field("strip_request", &self.strip_request)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}
