//! [`CacheLayer`]: the builder of the configuration (and of [`Purge`] services sharing it), and
//! the [`Layer`] that wraps a service in a [`CacheService`]. The builder methods that opt gRPC
//! methods in are `grpc/layer.rs`'s, compiled with the `grpc` feature.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::HeaderMap;
use tower_layer::Layer;

use super::body::BodyBudget;
use super::config::{Applied, Config, EtagMode, HttpOnly};
use super::purge::{bearer_check, Purge};
use super::rules::targeted::TargetedFields;
use super::service::CacheService;
use crate::engine::pipeline::Timeouts;
use crate::Cache;

/// A [`tower_layer::Layer`] that caches HTTP responses in a [`Cache`] like an RFC 9111 shared
/// cache, and answers conditional requests (RFC 9110 §13) for the service it wraps.
///
/// See the [module documentation](crate#http-response-caching) for what is stored and how it
/// is served. Builder methods take and return `self`.
///
/// gRPC calls (`content-type: application/grpc...`) pass through untouched: unary and
/// streaming, trailers, compression and deadlines. With the `grpc` feature, `grpc_method` and
/// its siblings opt unary methods in (see the [module documentation](crate#grpc)); they turn a
/// `CacheLayer<HttpOnly>` into a `CacheLayer<GrpcMethods>`, whose services hand the inner
/// service a `GrpcRequestBody`.
///
/// # Request headers the application reads
///
/// A stored response is served to every request with the same key: method, URL (with a
/// validated authority) and the request headers the response names in `Vary`. A request
/// header the handler reads to build a cacheable response must therefore be named in `Vary`
/// or be part of the key ([`key_fn`](Self::key_fn)); otherwise the first client's value
/// decides what everyone is served. `X-Forwarded-Host` is the classic case: an application
/// that builds a redirect or a link from it, behind this layer, stores a redirect to
/// `https://evil.example/` for every user once an attacker sends that header (web cache
/// poisoning). Headers that no request should control (forwarding fields a proxy in front
/// does not set, URL-rewrite and method-override fields some frameworks obey) are removed
/// before the inner service sees them with [`strip_request_headers`](Self::strip_request_headers);
/// a reverse proxy in front should set the forwarding fields itself, as
/// `examples/reverse_proxy.rs` does.
///
/// ```
/// use std::time::Duration;
/// use cache_layer::{Cache, CacheLayer, EtagMode};
///
/// let cache = Cache::builder().name("http").build().expect("valid configuration");
/// let layer = CacheLayer::new(cache)
///     .default_ttl(Duration::from_secs(30)) // only for responses that give no freshness
///     .max_body(256 * 1024)
///     .etag(EtagMode::Strong)
///     .stale_while_revalidate(Duration::from_secs(10));
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[must_use]
pub struct CacheLayer<M = HttpOnly> {
    cache: Cache,
    // Shared with every service built, so that `layer` (which axum may call per route) is
    // two reference-count increments (and a look at `applied`).
    pub(in crate::http) config: Arc<Config>,
    /// The settings services were last built with, for the purge services taken from this
    /// layer (see [`CacheLayer::purge`]).
    applied: Arc<Applied>,
    /// What is cached besides HTTP: nothing, or opted-in gRPC methods.
    pub(crate) mode: M,
}

impl CacheLayer {
    /// A layer storing responses in `cache`, with the defaults: no default TTL (responses
    /// without freshness information are not stored), 1 MiB body cap, strong generated
    /// ETags, no default stale windows, 8 variants per URL, request `Cache-Control` honoured.
    pub fn new(cache: Cache) -> Self {
        let share = usize::try_from(cache.inner().memory().budget() / 4).unwrap_or(usize::MAX);
        CacheLayer {
            mode: HttpOnly,
            cache,
            applied: Arc::default(),
            config: Arc::new(Config {
                default_ttl: None,
                max_body: 1024 * 1024,
                max_shared_body: 1024 * 1024,
                shared_lock: Duration::from_secs(5),
                etag: EtagMode::Strong,
                key_fn: None,
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                max_variants: 8,
                request_cache_control: true,
                sort_query: false,
                uncacheable_for: Duration::from_secs(5),
                body_budget: BodyBudget::new(share),
                targeted: TargetedFields::default(),
                forward_tags: false,
                strip_request: Vec::new(),
                timeouts: Timeouts::NONE,
            }),
        }
    }
}

impl<M> CacheLayer<M> {
    /// Freshness for responses that give none (no `Cache-Control: max-age`/`s-maxage`, no
    /// `Expires`, no `Last-Modified`). Off by default: a cache that invents freshness serves
    /// outdated data the application never allowed.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        Arc::make_mut(&mut self.config).default_ttl = Some(ttl);
        self
    }

    /// The largest body stored, in bytes (default 1 MiB). Larger (or endless) bodies stream
    /// through to the client untouched and are not stored. A streamed body under the cap is
    /// read for the cache after its client has left for at most the cache's `max_wait`; one
    /// that has not ended by then is dropped, unstored. For opted-in gRPC methods it also
    /// caps the request message read to compute the key (compressed and decompressed).
    ///
    /// Bodies being copied for the cache, before they are stored, and the bytes read ahead of
    /// a client that it has not taken yet hold at most a quarter of the cache's memory budget
    /// per layer, so neither concurrent misses on large bodies nor clients that never read can
    /// hold memory outside the budget without bound. Once that share is spent, bodies are read
    /// at their clients' pace (as ones passing through are), and a body that would pass the
    /// share streams through unstored (logged as `in-flight-full`).
    pub fn max_body(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_body = bytes;
        self
    }

    /// On a cache with Redis ([`CacheBuilder::tiered`](crate::CacheBuilder::tiered) or
    /// [`redis`](crate::CacheBuilder::redis)), the largest body shared through Redis, in bytes
    /// (default 1 MiB). A stored response with a longer body is kept in this instance's memory
    /// only: every instance then asks the inner service for it once. Each read of a shared
    /// response that is not in memory moves the whole body from Redis, so large bodies are
    /// often cheaper to keep per instance. Bodies above [`max_body`](Self::max_body) are
    /// not stored at all.
    pub fn max_shared_body(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_shared_body = bytes;
        self
    }

    /// On a cache with Redis, how long an instance holds a URL's distributed load lock while it
    /// asks the inner service about a miss (default 5 s; `Duration::ZERO` turns the lock off).
    /// Instances that miss the same URL meanwhile wait for the response it stores (told over
    /// Redis pub/sub when it releases the lock, they read it once) instead of asking their
    /// own inner service: behind a load balancer,
    /// each miss reaches the origin once. They stop waiting when the holder releases the lock
    /// without a shareable response (not storable, a body streamed to its client before it
    /// was stored, a failure), when Redis stops answering, or after this long (a holder that
    /// crashed), and then ask for themselves. Costs two Redis round trips per miss.
    pub fn shared_lock(mut self, lock: Duration) -> Self {
        Arc::make_mut(&mut self.config).shared_lock = lock;
        self
    }

    /// Whether and how stored responses without an `ETag` get one (default
    /// [`EtagMode::Strong`]).
    pub fn etag(mut self, mode: EtagMode) -> Self {
        Arc::make_mut(&mut self.config).etag = mode;
        self
    }

    /// Replaces the default key (`GET <scheme>://<authority><path>?<query>`, the authority
    /// validated, the query as sent). Return `None` to pass a request through uncached.
    ///
    /// The function sees GET and HEAD requests (HEAD is answered from what GET stored, so do
    /// not key on the method), and GET-shaped copies of the targets of successful unsafe
    /// requests, which it must key the same way for invalidation to find them.
    ///
    /// ```
    /// use cache_layer::{Cache, CacheLayer};
    ///
    /// // Ignore the query string, and never cache /admin.
    /// let layer = CacheLayer::new(Cache::global().clone()).key_fn(|parts| {
    ///     let path = parts.uri.path();
    ///     (!path.starts_with("/admin")).then(|| format!("page:{path}"))
    /// });
    /// # let _ = layer;
    /// ```
    pub fn key_fn<F>(mut self, key: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.config).key_fn = Some(Arc::new(key));
        self
    }

    /// Whether the default key sorts the query's `&`-separated pairs (default `false`: the
    /// query is kept as sent). Sorting makes `?b=2&a=1` and `?a=1&b=2` one stored response;
    /// turn it on only if the application never gives meaning to the order of parameters
    /// (repeated ones included: `?a=1&a=2` and `?a=2&a=1` share a key when sorted).
    pub fn sort_query(mut self, sort: bool) -> Self {
        Arc::make_mut(&mut self.config).sort_query = sort;
        self
    }

    /// Stale-while-revalidate window for responses that do not set one (default none): a
    /// stale response is served at once while one background request refreshes it. Never for
    /// responses with `s-maxage`, `must-revalidate`, `proxy-revalidate` or `no-cache`:
    /// `s-maxage` implies `proxy-revalidate` (RFC 9111 §4.2.4, §5.2.2.10).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.config).stale_while_revalidate = window;
        self
    }

    /// Stale-if-error window for responses that do not set one (default none): a stale
    /// response is served when the inner service fails or answers 5xx. Never for responses
    /// that must be revalidated (`s-maxage`, `must-revalidate`, `proxy-revalidate`, `no-cache`).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.config).stale_if_error = window;
        self
    }

    /// Soft timeout (default none): a miss whose inner service answers slower than `after`
    /// is answered with the stale response it has, when one may be served stale
    /// ([`stale_if_error`](Self::stale_if_error) or the response's own `stale-if-error`;
    /// `Cache-Status: ...; detail=timeout`), and so are the requests waiting on the same
    /// miss; the inner service's response is still read and stored, in the background. Without
    /// a stale response the request keeps waiting (up to the hard timeout, if any). See the
    /// [timeouts section](crate::docs::http#timeouts).
    pub fn soft_timeout(mut self, after: Duration) -> Self {
        Arc::make_mut(&mut self.config).timeouts.soft = Some(after);
        self
    }

    /// Hard timeout (default none): a miss whose inner service answers slower than `after` is
    /// answered with the stale response it has, when one may be served stale (`detail=timeout`),
    /// else with `504 Gateway Timeout` (`Cache-Status: ...; detail=hard-timeout`), and so are the
    /// requests waiting on the same miss. The inner service's response is still read and
    /// stored in the background, unless [`finish_on_hard_timeout`](Self::finish_on_hard_timeout)
    /// is `false`.
    pub fn hard_timeout(mut self, after: Duration) -> Self {
        Arc::make_mut(&mut self.config).timeouts.hard = Some(after);
        self
    }

    /// Whether the inner service's call goes on past the hard timeout, and its response is
    /// stored (default `true`: the origin does the work anyway, and the next request is a
    /// hit), or is dropped (`false`: the call's future is cancelled).
    pub fn finish_on_hard_timeout(mut self, finish: bool) -> Self {
        Arc::make_mut(&mut self.config).timeouts.finish_on_hard = finish;
        self
    }

    /// How many `Vary` variants of one URL are kept (default 8); the least recently used
    /// (stored or served) goes first. At least one: a response is always kept for the request
    /// that fetched it.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use cache_layer::{Cache, CacheLayer};
    ///
    /// let layer = CacheLayer::new(Cache::global().clone())
    ///     .max_variants(NonZeroUsize::new(4).expect("not zero"));
    /// # let _ = layer;
    /// ```
    pub fn max_variants(mut self, variants: NonZeroUsize) -> Self {
        Arc::make_mut(&mut self.config).max_variants = variants.get();
        self
    }

    /// Whether the request's `Cache-Control` (`no-cache`, `max-age`, `min-fresh`) may force
    /// a revalidation with the inner service (default `true`, as RFC 9111 describes).
    /// Revalidations are coalesced per key either way; set `false` so that clients cannot make
    /// the cache call the application at all. `max-stale` and `only-if-cached` are always
    /// honoured.
    pub fn request_cache_control(mut self, honour: bool) -> Self {
        Arc::make_mut(&mut self.config).request_cache_control = honour;
        self
    }

    /// A targeted cache-control field of the application's own (RFC 9213), obeyed before
    /// `CDN-Cache-Control` and `Cache-Control`: say `CacheLayer-Cache-Control: max-age=600`
    /// next to `Cache-Control: max-age=60` to keep a response here longer than browsers do,
    /// or `CacheLayer-Cache-Control: no-store` to keep it out of this cache only.
    ///
    /// `CDN-Cache-Control` is obeyed without this call. The first targeted field present with
    /// a valid value (a Structured Fields Dictionary) replaces `Cache-Control` and `Expires`
    /// for this cache, for storing and for freshness alike; an empty or malformed one is
    /// ignored. Clients do not receive targeted fields unless
    /// [`forward_targeted_cache_control`](Self::forward_targeted_cache_control) says so.
    ///
    /// ```
    /// use cache_layer::{Cache, CacheLayer};
    /// use http::HeaderName;
    ///
    /// let layer = CacheLayer::new(Cache::global().clone())
    ///     .targeted_cache_control(HeaderName::from_static("cachelayer-cache-control"));
    /// # let _ = layer;
    /// ```
    pub fn targeted_cache_control(mut self, name: http::HeaderName) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.targeted = config.targeted.with_first(name);
        self
    }

    /// Whether clients receive the targeted fields (`CDN-Cache-Control` and the one named with
    /// [`targeted_cache_control`](Self::targeted_cache_control)) of every response, stored or
    /// passed through (default `false`: they are meant for this cache). Set `true` when a CDN in
    /// front of this layer should see `CDN-Cache-Control` too.
    pub fn forward_targeted_cache_control(mut self, forward: bool) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.targeted = config.targeted.forwarded(forward);
        self
    }

    /// Request headers removed from GET and HEAD requests before the layer and the inner
    /// service see them (none by default; each call adds to the list), so that no client can
    /// change a response stored for everyone through a header that is not part of its key
    /// (see [Request headers the application reads](Self#request-headers-the-application-reads)).
    /// Other requests (writes, upgrades, gRPC calls) keep them: their responses are not stored.
    ///
    /// ```
    /// use cache_layer::{Cache, CacheLayer};
    /// use http::HeaderName;
    ///
    /// let layer = CacheLayer::new(Cache::global().clone()).strip_request_headers(
    ///     [
    ///         "x-forwarded-host",
    ///         "x-original-url",
    ///         "x-rewrite-url",
    ///         "x-http-method-override",
    ///     ]
    ///     .map(HeaderName::from_static),
    /// );
    /// # let _ = layer;
    /// ```
    pub fn strip_request_headers<I>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = http::HeaderName>,
    {
        let config = Arc::make_mut(&mut self.config);
        for name in names {
            if !config.strip_request.contains(&name) {
                config.strip_request.push(name);
            }
        }
        self
    }

    /// Whether clients receive the `Cache-Tag` and `Surrogate-Key` headers of every response,
    /// stored or passed through (default `false`: they name what this cache purges by, and
    /// Fastly and Varnish hide them too). Set `true` when a CDN in front of this layer purges
    /// by the same tags; the headers are then stored with the response. Tags are read from
    /// both either way.
    pub fn forward_tag_headers(mut self, forward: bool) -> Self {
        Arc::make_mut(&mut self.config).forward_tags = forward;
        self
    }

    /// A [`Purge`] service for what this layer stores, guarded by `authorize`: it sees each
    /// purge request's headers and says whether the request may purge.
    ///
    /// It names URLs with the settings the layer last built a service with, so builder calls
    /// made after this one (a [`key_fn`](Self::key_fn), say) apply to it too. Clones of a
    /// layer share this: when clones keyed differently wrap different services, it follows
    /// the one applied last. Build such layers with `CacheLayer::new` each, and take a purge
    /// service from each.
    pub fn purge<F>(&self, authorize: F) -> Purge
    where
        F: Fn(&HeaderMap) -> bool + Send + Sync + 'static,
    {
        let (config, applied) = (Arc::clone(&self.config), Arc::clone(&self.applied));
        Purge::new(self.cache.clone(), config, applied, authorize)
    }

    /// [`purge`](Self::purge) for requests with `Authorization: Bearer <token>`, compared in
    /// time independent of where they differ and of either one's length. An empty token
    /// matches nothing.
    ///
    /// Only the token's SHA-256 digest is kept. Read it from a file or the environment rather
    /// than the command line, where `ps` shows it to every local user.
    pub fn purge_with_token(&self, token: impl Into<String>) -> Purge {
        self.purge(bearer_check(token.into().as_bytes()))
    }
}

impl<M> CacheLayer<M> {
    /// This layer with its mode (what it caches besides HTTP) changed by `change`.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))] // gRPC's builder methods
    pub(crate) fn map_mode<N>(self, change: impl FnOnce(M) -> N) -> CacheLayer<N> {
        CacheLayer {
            cache: self.cache,
            config: self.config,
            applied: self.applied,
            mode: change(self.mode),
        }
    }
}

impl<S, M: Clone> Layer<S> for CacheLayer<M> {
    type Service = CacheService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        self.applied.set(&self.config);
        CacheService::new(
            inner,
            self.cache.clone(),
            Arc::clone(&self.config),
            self.mode.clone(),
        )
    }
}

impl<M: fmt::Debug> fmt::Debug for CacheLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("cache", &self.cache.name())
            .field("config", &self.config)
            .field("mode", &self.mode)
            .finish()
    }
}
