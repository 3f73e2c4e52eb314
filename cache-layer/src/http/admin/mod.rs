//! [`Admin`]: a cache's admin service, for operators: stats, one key's entry, clears and
//! invalidations, as JSON and as an HTML page, behind a token.
//!
//! - `json`: the JSON bodies; `page`: the HTML page; `query`: the query string's parameters.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use super::purge::bearer_or_basic_check;
use crate::Cache;

mod json;
mod page;
mod query;

/// The response body of the admin service.
pub type AdminBody = Full<Bytes>;

type Authorize = dyn Fn(&HeaderMap) -> bool + Send + Sync;

/// A cache's admin service: stats as JSON and as an HTML page, one key's entry, clears,
/// invalidations and soft purges. A [`tower_service::Service`], mountable in axum like
/// [`Purge`](crate::Purge), under a path of its own:
/// `router.nest_service("/admin", Admin::with_token(cache, token))`.
///
/// What it answers, by the last segment of the path:
///
/// - `GET .../` (the page): the figures below as HTML, with a bar chart of each site's hit
///   ratio (server-rendered, no script; reload to refresh);
/// - `GET .../stats`: JSON: per site hits, misses, stale, ratio, loads and load errors; the
///   whole cache's counters; entries and bytes in memory against the budget; the shared tier;
/// - `GET .../entry?key=<key>`: JSON: whether memory holds the key, its age, fresh time left,
///   stale windows, size and tags (never the value; see [`Cache::entry_info`]);
/// - `POST .../clear` (`?prefix=<prefix>`: a namespace; `&scope=local`: this instance only):
///   [`Cache::clear_prefix`], across the fleet by default;
/// - `POST .../invalidate?key=<key>` or `?tag=<tag>` (`&soft=1`: a soft purge):
///   [`Cache::invalidate`] or [`Cache::soft_invalidate`].
///
/// Every request must carry the token: `Authorization: Bearer <token>`, or Basic
/// authentication with the token as the password (what a browser sends after the `401`'s
/// prompt: open `http://<host>/admin/`, any user name). The token's digest is compared in
/// constant time, as the purge service's is. A request without it is answered
/// `401 Unauthorized` and does nothing.
///
/// ```
/// use cache_layer::{Admin, Cache};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = Cache::builder().build().unwrap();
/// let admin = Admin::with_token(cache, "secret");
/// let request = http::Request::get("/admin/stats")
///     .header("authorization", "Bearer secret")
///     .body(())
///     .unwrap();
/// let response = admin.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct Admin {
    cache: Cache,
    authorize: Arc<Authorize>,
}

impl Admin {
    /// The admin service of `cache`, for requests that carry `token` (an empty token lets
    /// nothing through). Only its SHA-256 digest is kept.
    pub fn with_token(cache: Cache, token: impl AsRef<[u8]>) -> Self {
        Admin {
            cache,
            authorize: Arc::new(bearer_or_basic_check(token.as_ref())),
        }
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("cache", &self.cache.name())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Answers one request.
    async fn answer(
        self,
        method: Method,
        uri: http::Uri,
        headers: HeaderMap,
    ) -> Response<AdminBody> {
        if !(self.authorize)(&headers) {
            let mut response = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "unauthorized\n".into(),
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"cache-layer admin\""),
            );
            return response;
        }
        let path = uri.path().trim_end_matches('/');
        let last = path.rsplit('/').next().unwrap_or("");
        let params = query::Params::parse(uri.query().unwrap_or(""));
        let Some(params) = params else {
            return reply(StatusCode::BAD_REQUEST, "text/plain", "bad query\n".into());
        };
        match (&method, last) {
            (&Method::GET | &Method::HEAD, "stats") => json_reply(json::stats(&self.cache)),
            (&Method::GET | &Method::HEAD, "entry") => match params.get("key") {
                Some(key) => json_reply(json::entry(&self.cache, key)),
                None => reply(StatusCode::BAD_REQUEST, "text/plain", "name a key\n".into()),
            },
            (&Method::POST, "clear") => self.clear(&params).await,
            (&Method::POST, "invalidate") => self.invalidate(&params).await,
            (&Method::GET | &Method::HEAD, _) => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render(&self.cache),
            ),
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "not allowed\n".into(),
            ),
        }
    }

    /// `POST clear`: everything, or the keys starting with `prefix`; here only with
    /// `scope=local`, else in every instance.
    async fn clear(&self, params: &query::Params) -> Response<AdminBody> {
        let prefix = params.get("prefix").unwrap_or("");
        let local = match params.get("scope") {
            None | Some("fleet") => false,
            Some("local") => true,
            Some(_) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "scope: local or fleet\n".into(),
                )
            }
        };
        tracing::info!(cache = self.cache.name(), prefix, local, "admin: clear");
        if local {
            self.cache.clear_here(prefix);
        } else {
            self.cache.clear_prefix(prefix).await;
        }
        json_reply(json::done("cleared", prefix))
    }

    /// `POST invalidate`: a key or a tag (the same: a name), hard or, with `soft=1`, soft.
    async fn invalidate(&self, params: &query::Params) -> Response<AdminBody> {
        let Some(name) = params.get("key").or_else(|| params.get("tag")) else {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "name a key or a tag\n".into(),
            );
        };
        let soft = params.get("soft") == Some("1");
        tracing::info!(cache = self.cache.name(), name, soft, "admin: invalidate");
        if soft {
            self.cache.soft_invalidate(name).await;
            json_reply(json::done("soft-purged", name))
        } else {
            self.cache.invalidate(name).await;
            json_reply(json::done("invalidated", name))
        }
    }
}

fn json_reply(body: String) -> Response<AdminBody> {
    reply(StatusCode::OK, "application/json", body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<AdminBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Figures of the moment, for this operator only.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<AdminBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The body is not read: every request says what it wants in its head.
        let (parts, _) = request.into_parts();
        let admin = self.clone();
        Box::pin(async move { Ok(admin.answer(parts.method, parts.uri, parts.headers).await) })
    }
}
