//! A revalidation answered `304 Not Modified` (RFC 9111 §4.3.4): the stored response it
//! selects is updated and stored again when the storage gate admits the update, and the client
//! is answered from the update either way.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{AGE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use http_body::Body;

use super::plan::Exchanged;
use super::respond::{apply_preconditions, serve};
use super::store::{forget, store_response};
use crate::engine::clock;
use crate::engine::entry::Value;
use crate::engine::pipeline::Leader;
use crate::http::body::CacheBody;
use crate::http::rules::freshness::current_age;
use crate::http::rules::gate::{admit, strip_connection_fields, Admitted, Exchange};
use crate::http::rules::vary::vary_names;
use crate::http::status::CacheStatus;
use crate::http::stored::CachedResponse;
use crate::http::tags::take_tags;

/// Applies a `304 Not Modified` to the stored response it revalidated (RFC 9111 §4.3.4): the
/// update is stored only if it selects that response and passes the storage gate, and the
/// client is answered from the update either way (with its own `Set-Cookie`, if any).
pub(crate) fn not_modified<B: Body>(
    x: Exchanged<'_>,
    stale: &Arc<CachedResponse>,
    response: Response<B>,
    leader: Option<Leader>,
) -> Response<CacheBody<B>> {
    let (mut parts, _) = response.into_parts();
    let mut tags = stale.tags.clone();
    let keep_tags = x.config.forward_tags;
    for tag in take_tags(&mut parts.headers, &mut parts.extensions, keep_tags) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let status = CacheStatus::forward(x.plan.forward).forward_status(304);
    if !stale.selected_by(&parts.headers) {
        // About another representation: the stored one is neither updated nor confirmed.
        drop(leader);
        let status = status.detail("not-selected");
        let mut served = serve(stale, x.method, x.client, status, stale.age(clock::now()));
        for cookie in parts.headers.get_all(SET_COOKIE) {
            served.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        return served;
    }
    let headers = stale.updated_headers(&parts.headers, x.times.1);
    let cc = x.config.targeted.directives(&headers);
    let exchange = Exchange::Http {
        // A HEAD's 304 updates the stored GET response (RFC 9111 §4.3.5).
        method: &Method::GET,
        request: x.client,
        status: stale.status,
        has_default_ttl: x.config.default_ttl.is_some(),
        targeted: &x.config.targeted,
        keep_tags,
    };
    match admit(exchange, headers.clone(), &cc) {
        Ok(admitted) if !varies_alike(admitted.get(), &stale.vary) => {
            // The update selects on other request fields than the stored copy was kept for
            // (e.g. a `Vary: Cookie` added to a copy stored under the URL alone): storing it
            // under the old key would serve this client's update to everyone. Drop the copy.
            drop(leader);
            forget(x.cache, x.plan.key());
            let status = status.detail("vary-changed");
            unstored_update(stale, headers, x, status, parts.extensions)
        }
        Ok(admitted) => store_update(x, stale, admitted, tags, status, leader),
        Err(reason) => {
            drop(leader);
            if cc.no_store || cc.private {
                // The origin no longer lets shared caches keep this response.
                forget(x.cache, x.plan.key());
            }
            let status = status.detail(reason.as_str());
            unstored_update(stale, headers, x, status, parts.extensions)
        }
    }
}

/// Whether `headers` `Vary` on the same request fields as `stored` (in any order).
fn varies_alike(headers: &HeaderMap, stored: &[HeaderName]) -> bool {
    let names = vary_names(headers).unwrap_or_default();
    names.len() == stored.len() && names.iter().all(|name| stored.contains(name))
}

/// Stores the stored response updated by a 304 the gate `admitted` (unless invalidated since
/// the revalidation began), hands it to coalesced waiters, and answers the client from it.
fn store_update<B: Body>(
    x: Exchanged<'_>,
    stale: &CachedResponse,
    admitted: Admitted,
    tags: Vec<String>,
    mut status: CacheStatus,
    leader: Option<Leader>,
) -> Response<CacheBody<B>> {
    let defaults = (x.config.stale_while_revalidate, x.config.stale_if_error);
    let refreshed =
        Arc::new(stale.refreshed(admitted, x.times, (x.config.default_ttl, defaults), tags));
    let at = (x.since, x.shared_since);
    let kept = store_response(x.cache, x.config, &x.plan.primary, &refreshed, at);
    if kept {
        status = status.stored();
        if let Some(leader) = leader {
            leader.complete(Arc::clone(&refreshed) as Value);
        }
    }
    serve(
        &refreshed,
        x.method,
        x.client,
        status,
        refreshed.age(clock::now()),
    )
}

/// The stored response with a 304's update that may not be stored, for the client that
/// triggered it only (its own `Set-Cookie` included).
fn unstored_update<B: Body>(
    stale: &CachedResponse,
    mut headers: HeaderMap,
    x: Exchanged<'_>,
    status: CacheStatus,
    extensions: http::Extensions,
) -> Response<CacheBody<B>> {
    strip_connection_fields(&mut headers);
    x.config.targeted.hide(&mut headers);
    let age = current_age(&headers, x.times.0, x.times.1, SystemTime::now());
    headers.insert(AGE, HeaderValue::from(age.as_secs()));
    status.append_to(&mut headers);
    let body = if *x.method == Method::HEAD {
        CacheBody::empty()
    } else {
        CacheBody::full(stale.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = stale.status;
    *response.headers_mut() = headers;
    *response.extensions_mut() = extensions;
    apply_preconditions(response, x.method, x.client)
}
