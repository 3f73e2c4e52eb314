//! The catalog service: its read and write paths (memoised with `#[cached]`, invalidated with
//! `#[invalidates]`), its router (behind `CacheLayer`), and starting it on a socket.
//!
//! `tests/catalog.rs` includes this one file to build the same router, so its modules are
//! declared here with paths relative to this file rather than in `main.rs`.

#[path = "db.rs"]
pub(crate) mod db;
#[path = "routes.rs"]
mod routes;
#[path = "telemetry.rs"]
pub(crate) mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use axum::Router;
use cache_layer::{cached, invalidates, Admin, Cache, CacheLayer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use db::{Db, DbError, FeaturedCourse, Product, Settings, User};

/// How the service is started.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Without caching: the cache is built `disabled()`, so every memoised read goes to the
    /// database and the `CacheLayer` passes every request through.
    pub(crate) no_cache: bool,
    /// A Redis URL for the tiered store (memory in front of Redis).
    pub(crate) redis: Option<String>,
}

/// The application's read and write paths: reads are `#[cached]` methods; writers invalidate
/// what they changed. With `--no-cache` the same code runs on a disabled cache.
pub(crate) struct Catalog {
    pub(crate) db: Db,
    /// One cache for the memoised reads *and* the HTTP responses: one invalidation of
    /// `user:7` drops both.
    pub(crate) cache: Cache,
    caching: bool,
}

impl Catalog {
    /// The featured courses; uncached here: the HTTP layer caches the whole response.
    pub(crate) async fn featured_courses(&self) -> Result<Vec<FeaturedCourse>, DbError> {
        self.db.featured_courses().await
    }

    /// A user's profile, shared by `GET /users/{id}` and `GET /me`. Errors (an unknown id, a
    /// failed query) are never cached: only `Ok` is stored.
    #[cached(ttl = "5m", key = "user:<id>", cache = self.cache, ignore_self = true)]
    pub(crate) async fn user(&self, id: u64) -> Result<User, DbError> {
        self.db.user(id).await
    }

    /// Renames a user; afterwards `user:<id>` is gone from the cache: the memoised profile
    /// and, through the `Cache-Tag` on `GET /users/{id}`, the cached HTTP response.
    #[invalidates("user:<id>", cache = self.cache)]
    pub(crate) async fn rename_user(&self, id: u64, name: String) -> Result<(), DbError> {
        self.db.rename_user(id, name).await
    }

    /// A product, or `None`. Unknown ids are cached too, for 30 s (`none_ttl`), so a flood
    /// of made-up ids costs one query per id, not one per request (cache penetration).
    #[cached(ttl = "10m", none_ttl = "30s", key = "product:<id>", cache = self.cache, ignore_self = true)]
    pub(crate) async fn product(&self, id: u64) -> Option<Product> {
        product_or_panic(self.db.product(id).await)
    }

    /// One tenant's settings, keyed by tenant so that no tenant ever sees another's.
    #[cached(ttl = "1m", key = "tenant:<tenant>:settings", cache = self.cache, ignore_self = true)]
    pub(crate) async fn tenant_settings(&self, tenant: &str) -> Result<Settings, DbError> {
        self.db.tenant_settings(tenant.to_owned()).await
    }

    /// Whether this instance caches at all.
    pub(crate) fn caching(&self) -> bool {
        self.caching
    }
}

/// An `Option` cannot carry an error, and mapping a failed query to `None` would cache "no
/// such product" for a product that exists. So a failure ends the request instead (hyper
/// closes the connection); the `#[cached]` engine hands the load to the next caller.
fn product_or_panic(found: Result<Option<Product>, DbError>) -> Option<Product> {
    match found {
        Ok(product) => product,
        Err(e) => panic!("product lookup failed: {e}"),
    }
}

/// The cache the service runs on: in memory, or tiered over Redis with `--redis URL`.
///
/// Errors when the configuration is invalid or the store is unreachable.
pub(crate) fn build_cache(redis: Option<&str>, no_cache: bool) -> Result<Cache, String> {
    let builder = Cache::builder()
        .name("catalog")
        .memory_budget(64 * 1024 * 1024)
        // `--no-cache`: the same code, every read to the database (`CacheBuilder::disabled`).
        .disabled_if(no_cache);
    let builder = match redis {
        None => builder,
        Some(url) => builder.tiered(url).key_prefix("catalog:"),
    };
    builder.build().map_err(|e| e.to_string())
}

/// A built service: its router and the handles behind it.
pub(crate) struct App {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) router: Router,
}

/// Seeds a fresh database and builds the router: every route is behind one `CacheLayer`;
/// each handler states its own policy in `Cache-Control`.
pub(crate) async fn build(options: &Options) -> Result<App, String> {
    // The recorder (a cache built before it would reach it too, from its next export).
    let metrics = telemetry::install();
    let cache = build_cache(options.redis.as_deref(), options.no_cache)?;
    // A few more connections than cores: requests are short and some wait on the WAL.
    let connections = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let db = Db::open(connections).await.map_err(|e| e.to_string())?;
    let catalog = Arc::new(Catalog {
        db,
        cache: cache.clone(),
        caching: !options.no_cache,
    });
    // With `--no-cache` the layer passes every request through (`Cache-Status: ...; fwd=bypass`).
    let routes = routes::router(Arc::clone(&catalog), metrics);
    // One `Router::layer` call for both: axum wraps every route once per call, and clones each
    // wrapping per request. The latency middleware is outermost, so that the histogram includes
    // responses served from the cache.
    let router = routes.layer(
        tower::ServiceBuilder::new()
            .layer(telemetry::RecordLatencyLayer)
            .layer(CacheLayer::new(cache)),
    );
    // After the layers: health checks skip the cache and the histogram.
    let router = router.merge(routes::health());
    // The cache's admin service (stats, a key's entry, clears; a page at /admin/), outside the
    // cache layer. Its token comes from the environment; without one it lets nothing through.
    let token = std::env::var("CATALOG_ADMIN_TOKEN").unwrap_or_default();
    let router = router.nest_service("/admin", Admin::with_token(catalog.cache.clone(), token));
    Ok(App { catalog, router })
}

/// A service listening on a socket.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) catalog: Arc<Catalog>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting connections and drops the service.
    pub(crate) fn stop(self) {
        self.task.abort();
    }

    /// Serves until the server fails.
    pub(crate) async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Builds the service and serves it on `listen` (`127.0.0.1:0` picks a free port).
pub(crate) async fn start(listen: &str, options: &Options) -> Result<Running, String> {
    let app = build(options).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Responses go out at once, not after the client's ACK of the previous one (Nagle).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move { axum::serve(listener, app.router).await });
    Ok(Running {
        addr,
        catalog: app.catalog,
        task,
    })
}
