//! The HTTP face: one handler per endpoint. Each response states its own caching policy in
//! `Cache-Control`, which the `CacheLayer` in front of the router (and any CDN or browser
//! behind it) follows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use super::db::DbError;
use super::Catalog;

/// `Cache-Tag`: read (and removed) by `CacheLayer`, so `invalidate("user:7")` drops the response.
const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// The routes, before any layer.
pub(super) fn router(catalog: Arc<Catalog>, metrics: PrometheusHandle) -> Router {
    let cache = catalog.cache.clone();
    Router::new()
        .route("/courses/featured", get(featured))
        .route("/users/{id}", get(user).put(rename_user))
        .route("/products/{id}", get(product))
        .route("/tenants/{tenant}/settings", get(tenant_settings))
        .route("/me", get(me))
        .with_state(catalog)
        .route(
            "/metrics",
            get(move || async move {
                // The cache's counters as they are now (an export thread also writes them
                // each second).
                cache.export_metrics();
                (
                    [
                        (header::CACHE_CONTROL, "no-store"),
                        (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                    ],
                    metrics.render(),
                )
            }),
        )
}

/// `GET /healthz`, for load balancers, merged outside every layer: no cache lookup, no latency
/// histogram, no database. Also the ceiling row of `benches/compare.sh`: what this server
/// answers with nothing in its way.
pub(super) fn health() -> Router {
    Router::new().route(
        "/healthz",
        get(|| async { ([(header::CACHE_CONTROL, "no-store")], "ok") }),
    )
}

/// Errors as responses; never cacheable, so a failure is not served to the next caller.
fn error(e: DbError) -> Response {
    let status = match e {
        DbError::NotFound => StatusCode::NOT_FOUND,
        DbError::Sqlite(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, [(header::CACHE_CONTROL, "no-store")], e.to_string()).into_response()
}

/// Public, the same for everyone, and the most expensive query: cached as a whole response by
/// the shared `CacheLayer` for 30 s (`s-maxage`: browsers keep no copy). After that, the next
/// requests wait for one refresh (coalesced): `s-maxage` implies `proxy-revalidate` (RFC 9111
/// §5.2.2.10), so a shared cache never serves it stale, and a `stale-while-revalidate` here would
/// never apply. Clients revalidate with the layer's ETag and get a 304.
async fn featured(State(catalog): State<Arc<Catalog>>) -> Response {
    match catalog.featured_courses().await {
        Ok(courses) => (
            [(header::CACHE_CONTROL, "public, s-maxage=30")],
            Json(courses),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

/// A public profile: memoised under `user:<id>` and, as an HTTP response, tagged `user:<id>`,
/// so the writer's one invalidation drops both.
async fn user(State(catalog): State<Arc<Catalog>>, Path(id): Path<u64>) -> Response {
    match catalog.user(id).await {
        Ok(user) => (
            [
                (header::CACHE_CONTROL, "public, max-age=60".to_owned()),
                (CACHE_TAG, format!("user:{id}")),
            ],
            Json(user),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

/// Renames a user (the body is the new name). `#[invalidates("user:<id>")]` on the writer
/// drops the memoised profile and the tagged response.
async fn rename_user(
    State(catalog): State<Arc<Catalog>>,
    Path(id): Path<u64>,
    name: String,
) -> Response {
    match catalog.rename_user(id, name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

/// A product; unknown ids are a 404 that is itself cached (negative caching), so repeated
/// lookups of ids that do not exist do not reach the database.
async fn product(State(catalog): State<Arc<Catalog>>, Path(id): Path<u64>) -> Response {
    match catalog.product(id).await {
        Some(product) => (
            [(header::CACHE_CONTROL, "public, max-age=60")],
            Json(product),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "public, max-age=30")],
            "no such product",
        )
            .into_response(),
    }
}

/// Per-tenant settings: memoised under `tenant:<tenant>:settings`. The response is `private`:
/// settings are for the tenant's own users, so no shared cache keeps them.
async fn tenant_settings(
    State(catalog): State<Arc<Catalog>>,
    Path(tenant): Path<String>,
) -> Response {
    match catalog.tenant_settings(&tenant).await {
        Ok(settings) => (
            [(header::CACHE_CONTROL, "private, max-age=60")],
            Json(settings),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

/// The caller's own profile, from `Authorization: Bearer user-<id>` (a stand-in for real
/// authentication). Served from the memoised `user:<id>`, but the response is `private`: a
/// shared cache never stores it, so one user can never be answered with another's.
async fn me(State(catalog): State<Arc<Catalog>>, headers: HeaderMap) -> Response {
    let id = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer user-"))
        .and_then(|id| id.parse::<u64>().ok());
    let Some(id) = id else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            "send Authorization: Bearer user-<id>",
        )
            .into_response();
    };
    match catalog.user(id).await {
        Ok(user) => ([(header::CACHE_CONTROL, "private, no-cache")], Json(user)).into_response(),
        Err(e) => error(e),
    }
}
