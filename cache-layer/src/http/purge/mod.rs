//! [`Purge`]: purge over HTTP. `PURGE <path>` drops the stored responses of that URL (every
//! `Vary` variant, for the request's authority); a request with `Cache-Tag` or
//! `Surrogate-Key` values drops everything tagged with them. Both go through the cache's
//! invalidation, so on a shared (Redis) tier every instance drops its copies. With
//! `Fastly-Soft-Purge: 1` the purge is soft: the responses are kept but made stale.
//!
//! URLs are named for invalidation exactly as a successful write names them (`url_keys`):
//! one place decides which keys a URL's responses live under.
//!
//! - `layer`: [`PurgeOr`], the purge as a layer in front of the cached service.
//! - `token`: the check of a purge request's bearer token.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use super::config::{Applied, Config};
use super::flow::invalidate::url_keys;
use super::flow::lookup::live_entry;
use super::tags::{tag_names, TAG_FIELDS};
use crate::engine::clock;
use crate::Cache;

mod layer;
mod token;

pub use layer::PurgeOr;
pub(crate) use token::{bearer_check, bearer_or_basic_check};

/// `Fastly-Soft-Purge: 1`: the purge is soft (see [`Purge`]).
static SOFT_PURGE: HeaderName = HeaderName::from_static("fastly-soft-purge");

/// The most tags one request may purge; more is answered `400`.
const MAX_TAGS: usize = 256;

/// The application's check of a purge request's headers (a bearer token, say).
type Authorize = dyn Fn(&HeaderMap) -> bool + Send + Sync;

/// A [`tower_service::Service`] that purges stored responses; built by
/// [`CacheLayer::purge`](crate::CacheLayer::purge).
///
/// Every request is first shown to the application's check; one it refuses is answered
/// `403 Forbidden` and purges nothing. Then:
///
/// - with `Cache-Tag` or `Surrogate-Key` header values (separated by commas or spaces), every
///   response tagged with one of them is purged (`200`);
/// - otherwise a `PURGE` request purges the stored responses of its own URL, all variants,
///   for its authority (`Host`): `200` when this instance held one, or, on a cache with a
///   shared tier, Redis did (another instance stored it); `404` when not (the purge still
///   reaches the other instances);
/// - anything else is `405 Method Not Allowed`.
///
/// Purges use [`Cache::invalidate`]: in memory at once, and with a Redis tier in Redis and on
/// every instance. This is a hard purge: the responses are gone, the next request goes to the
/// application.
///
/// # Soft purge
/// With the request header `Fastly-Soft-Purge: 1` (Fastly's name; exactly one line, value
/// `1`), the same URL or tags are soft-purged instead, with [`Cache::soft_invalidate`]: the
/// responses stay, but stale. The next request is served the stored response at once
/// (`Cache-Status: cache-layer; hit; ttl=0; detail=stale-while-revalidate`) while one
/// background request to the application revalidates it, as `stale-while-revalidate` would;
/// the answer is `200` with `soft-purged` in the body. This holds even for a response without
/// `stale-while-revalidate`, as long as its fresh time had not run out; one that may never be
/// served stale (`must-revalidate`, `s-maxage`, `no-cache`) is revalidated before it is
/// served. Any other value of the header means a hard purge.
///
/// Use it as a [`Layer`](tower_layer::Layer) in front of the cached service, so that `PURGE` on any URL reaches it
/// (with axum: `router.layer(cache_layer).layer(purge.clone())`), and/or mount it at a path
/// for tag purges (`router.route_service("/_purge", purge)`).
///
/// ```
/// use std::convert::Infallible;
/// use cache_layer::{Cache, CacheLayer};
/// use tower::ServiceBuilder;
///
/// let layer = CacheLayer::new(Cache::global().clone());
/// // `PURGE /products/7` with `Authorization: Bearer secret` purges that URL.
/// let purge = layer.purge_with_token("secret");
/// let app = tower::service_fn(|_: http::Request<String>| async {
///     Ok::<_, Infallible>(http::Response::new(String::from("a product")))
/// });
/// let service = ServiceBuilder::new().layer(purge).layer(layer).service(app);
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct Purge {
    cache: Cache,
    /// The layer's settings when the purge was taken: used until the layer builds a service.
    config: Arc<Config>,
    applied: Arc<Applied>,
    authorize: Arc<Authorize>,
}

impl Purge {
    /// A purge of what `cache` stores, naming URLs with `config` until the layer builds a
    /// service (then with the settings in `applied`), guarded by `authorize`.
    pub(crate) fn new<F>(
        cache: Cache,
        config: Arc<Config>,
        applied: Arc<Applied>,
        authorize: F,
    ) -> Self
    where
        F: Fn(&HeaderMap) -> bool + Send + Sync + 'static,
    {
        Purge {
            cache,
            config,
            applied,
            authorize: Arc::new(authorize),
        }
    }
}

impl fmt::Debug for Purge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Purge")
            .field("cache", &self.cache.name())
            .finish_non_exhaustive()
    }
}

/// The response body of a purge: a short text.
pub type PurgeBody = Full<Bytes>;

impl Purge {
    /// Answers one purge request.
    async fn answer(
        self,
        method: Method,
        uri: http::Uri,
        headers: HeaderMap,
    ) -> Response<PurgeBody> {
        if !(self.authorize)(&headers) {
            return text(StatusCode::FORBIDDEN, "forbidden\n");
        }
        let soft = soft_requested(&headers);
        let tags = requested_tags(&headers);
        if tags.len() > MAX_TAGS {
            return text(StatusCode::BAD_REQUEST, "too many tags\n");
        }
        if !tags.is_empty() {
            let count = tags.len();
            tracing::info!(cache = self.cache.name(), ?tags, soft, "purge by tag");
            self.cache.purge_names(tags, soft).await;
            let done = if soft { "soft-purged" } else { "purged" };
            return text(StatusCode::OK, &format!("{done} {count} tag(s)\n"));
        }
        if method.as_str() != "PURGE" {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use PURGE\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("PURGE"));
            return response;
        }
        let config = self
            .applied
            .get()
            .unwrap_or_else(|| Arc::clone(&self.config));
        let keys = url_keys(&config, &uri, &headers);
        if keys.is_empty() {
            return text(StatusCode::BAD_REQUEST, "no valid authority\n");
        }
        let held = self.held(&keys).await;
        tracing::info!(cache = self.cache.name(), ?keys, soft, "purge by URL");
        self.cache.purge_names(keys, soft).await;
        match (held, soft) {
            (true, false) => text(StatusCode::OK, "purged\n"),
            (true, true) => text(StatusCode::OK, "soft-purged\n"),
            (false, _) => text(StatusCode::NOT_FOUND, "not stored here\n"),
        }
    }

    /// Whether a response is stored under one of `keys`: in this instance's memory, or in the
    /// shared tier, where another instance may have stored it (`false` when Redis does not
    /// answer: the purge still goes out).
    async fn held(&self, keys: &[String]) -> bool {
        let now = clock::now();
        if keys
            .iter()
            .any(|key| live_entry(&self.cache, key, now).is_some())
        {
            return true;
        }
        match self.cache.shared_tier() {
            Some(remote) => remote.store.holds_any(keys).await.unwrap_or(false),
            None => false,
        }
    }
}

/// The distinct `Cache-Tag` and `Surrogate-Key` values of a purge request.
fn requested_tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for name in TAG_FIELDS {
        for line in headers.get_all(name) {
            for tag in tag_names(&String::from_utf8_lossy(line.as_bytes())) {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_owned());
                }
                // Past the bound the request is refused anyway: stop collecting.
                if tags.len() > MAX_TAGS {
                    return tags;
                }
            }
        }
    }
    tags
}

/// Whether the request asks for a soft purge: exactly one `Fastly-Soft-Purge` line, `1`.
/// Anything else (absent, `0`, garbage, several lines) is a hard purge: a malformed request
/// never keeps content it meant to drop.
fn soft_requested(headers: &HeaderMap) -> bool {
    let mut lines = headers.get_all(&SOFT_PURGE).iter();
    matches!((lines.next(), lines.next()), (Some(line), None) if line.as_bytes().trim_ascii() == b"1")
}

fn text(status: StatusCode, body: &str) -> Response<PurgeBody> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl<B> Service<Request<B>> for Purge {
    type Response = Response<PurgeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The body is not read: a purge says everything in its head.
        let (parts, _) = request.into_parts();
        let purge = self.clone();
        Box::pin(async move { Ok(purge.answer(parts.method, parts.uri, parts.headers).await) })
    }
}
