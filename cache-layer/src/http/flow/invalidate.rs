//! Writes: an unsafe request is forwarded, and a success or redirection drops the stored
//! responses of the URLs it names; and the keys a URL's responses are stored under, for writes
//! and purges alike.

use std::future::Future;
use std::sync::Arc;

use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Request, Response, Uri};
use http_body::Body;

use super::respond::passed_through;
use crate::http::body::CacheBody;
use crate::http::config::Config;
use crate::http::rules::key::{authority_of, primary_key};
use crate::http::status::{CacheStatus, Forward};
use crate::Cache;

/// The answer to an unsafe request: passed through, and when it is a success or a redirection,
/// the stored responses of the request's URL (`named`: its target and headers) and of the
/// same-origin `Location` / `Content-Location` it names are dropped.
pub(crate) async fn write<F, B, E>(
    cache: Cache,
    config: Arc<Config>,
    (target, request_headers): (Uri, HeaderMap),
    response: F,
) -> Result<Response<CacheBody<B>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    let status = CacheStatus::forward(Forward::Method);
    let response = passed_through(response.await?, &config, status);
    if response.status().is_success() || response.status().is_redirection() {
        let mut names = url_keys(&config, &target, &request_headers);
        for header in [LOCATION, CONTENT_LOCATION] {
            if let Some(named) = response
                .headers()
                .get(header)
                .and_then(|v| same_origin(&target, &request_headers, v.as_bytes()))
            {
                names.extend(url_keys(&config, &named, &request_headers));
            }
        }
        tracing::debug!(cache = cache.name(), keys = ?names, "invalidated by a write");
        // One batch: dropped here at once, and from Redis and the other instances on a task of
        // its own, so a client that leaves meanwhile cannot cut it short.
        cache.invalidate_names(names).await;
    }
    Ok(response)
}

/// The URI a `Location` / `Content-Location` `value` names, when it is on the request's own
/// origin (another origin's URLs are not ours to drop): an absolute URI with the request's
/// authority, or an absolute path, resolved against the request.
fn same_origin(request: &Uri, headers: &HeaderMap, value: &[u8]) -> Option<Uri> {
    let named = Uri::try_from(value).ok()?;
    let authority = authority_of(request, headers)?;
    match named.authority() {
        Some(a) if a.as_str().eq_ignore_ascii_case(authority) => Some(named),
        Some(_) => None,
        None if named.path().starts_with('/') => {
            let mut parts = named.into_parts();
            parts.scheme = Some(request.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP));
            parts.authority = Some(authority.parse().ok()?);
            Uri::from_parts(parts).ok()
        }
        None => None,
    }
}

/// The keys a GET request for `uri` with `headers` may be stored under: with the default key,
/// one per scheme (an HTTP/1.1 request line does not say whether TLS carried it; HTTP/2 does).
pub(crate) fn url_keys(config: &Config, uri: &Uri, headers: &HeaderMap) -> Vec<String> {
    match &config.key_fn {
        None => {
            let Some(authority) = authority_of(uri, headers) else {
                return Vec::new();
            };
            let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
            ["http", "https"]
                .into_iter()
                .filter_map(|scheme| format!("{scheme}://{authority}{path}").parse::<Uri>().ok())
                .filter_map(|uri| primary_key(&uri, headers, config.sort_query))
                .collect()
        }
        Some(key_fn) => {
            let mut request = Request::new(());
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            key_fn(&request.into_parts().0).into_iter().collect()
        }
    }
}
