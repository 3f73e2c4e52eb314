//! The site an HTTP request counts under: its route, as axum matched it (`MatchedPath`, with
//! the `axum` feature, when the layer runs inside the router: `Router::layer`), else
//! [`UNROUTED`]. A route is a pattern of the application's (`/users/{id}`), never the path a
//! client sent, so the label values stay few; a cache counts at most a thousand sites anyway.

/// The site of requests without a matched route.
pub(crate) const UNROUTED: &str = "unrouted";

/// The route `extensions` carry (axum's `MatchedPath`), or [`UNROUTED`].
#[inline]
pub(crate) fn route_of(extensions: &http::Extensions) -> &str {
    #[cfg(feature = "axum")]
    if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
        return path.as_str();
    }
    let _ = extensions;
    UNROUTED
}
