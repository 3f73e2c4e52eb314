//! Building responses the cache answers itself: from a stored response (with `Age`, and 304 or
//! 412 where the request's preconditions say so), and the precondition check applied to
//! responses that were not served from the cache.

use std::cell::RefCell;
use std::time::SystemTime;

use http::header::{
    AGE, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED, SET_COOKIE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body::Body;

use super::body::CacheBody;
use super::conditional::{evaluate, not_modified_headers, Precondition, Representation};
use super::etag::EntityTag;
use super::freshness::header_date;
use super::status::CacheStatus;
use super::stored::CachedResponse;
use super::tags::CacheTags;

pub(crate) fn remaining_ttl(response: &CachedResponse, now: SystemTime) -> i64 {
    let lifetime = i64::try_from(response.lifetime.as_secs()).unwrap_or(i64::MAX);
    let age = i64::try_from(response.age(now).as_secs()).unwrap_or(i64::MAX);
    lifetime.saturating_sub(age)
}

/// Answers `method` with `request` headers from a stored response: 304 or 412 where the
/// request's preconditions say so, otherwise the response (no body for HEAD), with `Age`.
pub(crate) fn serve<B: Body>(
    stored: &CachedResponse,
    method: &Method,
    request: &HeaderMap,
    status: CacheStatus,
    now: SystemTime,
) -> Response<CacheBody<B>> {
    let current = Representation {
        etag: stored.etag.as_ref(),
        last_modified: stored.modified_for_hits,
    };
    let age = age_value(stored.age(now).as_secs());
    let precondition = if has_preconditions(request) {
        evaluate(method, request, stored.status, Some(current))
    } else {
        Precondition::Proceed
    };
    let (code, headers, body) = match precondition {
        Precondition::Proceed => {
            let body = if method == Method::HEAD {
                CacheBody::empty()
            } else {
                CacheBody::full(stored.body.clone())
            };
            let mut headers = stored.served.with_status(&status);
            set_age(&mut headers, age);
            (stored.status, headers, body)
        }
        Precondition::NotModified => {
            let mut headers = stored.not_modified.with_status(&status);
            set_age(&mut headers, age);
            (StatusCode::NOT_MODIFIED, headers, CacheBody::empty())
        }
        Precondition::Failed => {
            let mut headers = HeaderMap::new();
            status.append_to(&mut headers);
            (StatusCode::PRECONDITION_FAILED, headers, CacheBody::empty())
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    if !stored.tags.is_empty() {
        response
            .extensions_mut()
            .insert(CacheTags(stored.tags.clone()));
    }
    response
}

/// `Age: seconds`. Consecutive hits on a thread mostly share it, so the last one is kept.
fn age_value(seconds: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    LAST.with_borrow_mut(|(last, value)| {
        if *last != seconds {
            *last = seconds;
            *value = HeaderValue::from(seconds);
        }
        value.clone()
    })
}

/// Overwrites the `Age` the stored headers hold (a placeholder) in place.
fn set_age(headers: &mut HeaderMap, age: HeaderValue) {
    match headers.get_mut(AGE) {
        Some(value) => *value = age,
        None => {
            headers.insert(AGE, age);
        }
    }
}

/// Whether the request carries any precondition. One pass over its few header names costs less
/// than a hashed lookup per precondition header, on a path every hit takes.
fn has_preconditions(request: &HeaderMap) -> bool {
    request.keys().any(|name| {
        name == IF_MATCH
            || name == IF_NONE_MATCH
            || name == IF_MODIFIED_SINCE
            || name == IF_UNMODIFIED_SINCE
    })
}

/// Evaluates the request's preconditions against a response that was not served from the
/// cache, using the validators the application sent.
pub(crate) fn apply_preconditions<B: Body>(
    response: Response<CacheBody<B>>,
    method: &Method,
    request: &HeaderMap,
) -> Response<CacheBody<B>> {
    if !has_preconditions(request) {
        return response;
    }
    let etag = EntityTag::from_etag_header(response.headers());
    let current = Representation {
        etag: etag.as_ref(),
        last_modified: header_date(response.headers(), &LAST_MODIFIED),
    };
    let code = match evaluate(method, request, response.status(), Some(current)) {
        Precondition::Proceed => return response,
        Precondition::NotModified => StatusCode::NOT_MODIFIED,
        Precondition::Failed => StatusCode::PRECONDITION_FAILED,
    };
    let (parts, _body) = response.into_parts();
    let mut headers = if code == StatusCode::NOT_MODIFIED {
        not_modified_headers(&parts.headers)
    } else {
        HeaderMap::new()
    };
    // Meant for this client whatever the status: a 304 must not lose a new cookie.
    for name in [HeaderName::from_static("cache-status"), SET_COOKIE] {
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    *response.extensions_mut() = parts.extensions;
    response
}

pub(crate) fn empty_response<B: Body>(
    code: StatusCode,
    status: CacheStatus,
) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = code;
    status.append_to(response.headers_mut());
    response
}
