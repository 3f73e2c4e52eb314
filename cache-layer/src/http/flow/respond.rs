//! Building responses: the ones the cache answers itself, from a stored response (with `Age`,
//! and 304 or 412 where the request's preconditions say so); the precondition check applied to
//! responses that were not served from the cache; and responses passed through.

use std::cell::RefCell;
use std::time::Duration;

use http::header::{
    AGE, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE, SET_COOKIE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Body;

use crate::http::body::CacheBody;
use crate::http::config::Config;
use crate::http::rules::conditional::{
    evaluate, not_modified_headers, Precondition, Representation,
};
use crate::http::rules::etag::EntityTag;
use crate::http::rules::freshness::header_date;
use crate::http::rules::range::{self, RangeAnswer, Validators};
use crate::http::status::{CacheStatus, CACHE_STATUS};
use crate::http::stored::CachedResponse;
use crate::http::tags::{take_tags, CacheTags};

/// Answers `method` with `request` headers from a stored response of `age`: 304 or 412 where
/// the request's preconditions say so, otherwise the response (no body for HEAD), with `Age`.
pub(crate) fn serve<B: Body>(
    stored: &CachedResponse,
    method: &Method,
    request: &HeaderMap,
    status: CacheStatus,
    age: Duration,
) -> Response<CacheBody<B>> {
    let current = Representation {
        etag: stored.etag.as_ref(),
        last_modified: stored.modified_for_hits,
    };
    let age = age_value(age.as_secs());
    let precondition = if has_preconditions(request) {
        evaluate(method, request, stored.status, Some(current))
    } else {
        Precondition::Proceed
    };
    let (code, headers, body) = match precondition {
        Precondition::Proceed if method == Method::GET && wants_range(stored, request) => {
            partial(stored, request, &status, age)
        }
        Precondition::Proceed => {
            let body = if method == Method::HEAD {
                CacheBody::empty()
            } else {
                CacheBody::full(stored.body.clone())
            };
            let headers = stored.served.with_status_and_age(&status, age);
            (stored.status, headers, body)
        }
        Precondition::NotModified => {
            let headers = stored.not_modified.with_status_and_age(&status, age);
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

/// Whether a request for a stored response asks for a range of it: only a complete `200` is cut.
fn wants_range(stored: &CachedResponse, request: &HeaderMap) -> bool {
    stored.status == StatusCode::OK && request.contains_key(RANGE)
}

/// A GET with `Range` answered from a stored `200`: a `206` with the one range asked for, a
/// `416`, or the whole response (see [`range`](super::rules::range)).
fn partial<B: Body>(
    stored: &CachedResponse,
    request: &HeaderMap,
    status: &CacheStatus,
    age: HeaderValue,
) -> (StatusCode, HeaderMap, CacheBody<B>) {
    let validators = Validators {
        etag: stored.etag.as_ref(),
        last_modified: stored.last_modified,
        date: header_date(&stored.headers, &DATE),
    };
    let length = stored.body.len();
    let mut headers = stored.served.with_status_and_age(status, age);
    match range::answer(request, length, &validators) {
        RangeAnswer::Whole => (
            StatusCode::OK,
            headers,
            CacheBody::full(stored.body.clone()),
        ),
        RangeAnswer::Partial(bytes) => {
            let content_range = format!("bytes {}-{}/{length}", bytes.start, bytes.end - 1);
            if let Ok(value) = HeaderValue::from_str(&content_range) {
                headers.insert(CONTENT_RANGE, value);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let body = CacheBody::full(stored.body.slice(bytes));
            (StatusCode::PARTIAL_CONTENT, headers, body)
        }
        RangeAnswer::Unsatisfiable => {
            // The representation's own fields describe a body this answer does not carry.
            let mut unsatisfiable = HeaderMap::new();
            for name in [DATE, ETAG, LAST_MODIFIED, AGE] {
                if let Some(value) = headers.get(&name) {
                    unsatisfiable.insert(name, value.clone());
                }
            }
            status.append_to(&mut unsatisfiable);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
                unsatisfiable.insert(CONTENT_RANGE, value);
            }
            unsatisfiable.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                unsatisfiable,
                CacheBody::empty(),
            )
        }
    }
}

/// `Age: seconds`. An age under 1000 s is static text, a header value that costs nothing to
/// clone or drop; a longer one reuses the thread's last rendering (consecutive hits mostly share
/// it).
fn age_value(seconds: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    if let Some(text) = static_decimal(seconds) {
        return HeaderValue::from_static(text);
    }
    LAST.with_borrow_mut(|(last, value)| {
        if *last != seconds {
            *last = seconds;
            *value = HeaderValue::from(seconds);
        }
        value.clone()
    })
}

/// The decimal numbers 0 to 999 written back to back: "012...9899100101...999".
static DECIMALS: [u8; 2890] = decimals();

const fn decimals() -> [u8; 2890] {
    let mut out = [0u8; 2890];
    let (mut n, mut at) = (0, 0);
    while n < 1000 {
        let width = if n < 10 {
            1
        } else if n < 100 {
            2
        } else {
            3
        };
        let (mut i, mut rest) = (width, n);
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += width;
        n += 1;
    }
    out
}

/// `n` in decimal as static text, for `n` under 1000.
fn static_decimal(n: u64) -> Option<&'static str> {
    let n = usize::try_from(n).ok()?;
    let (start, width) = match n {
        0..=9 => (n, 1),
        10..=99 => (10 + (n - 10) * 2, 2),
        100..=999 => (190 + (n - 100) * 3, 3),
        _ => return None,
    };
    std::str::from_utf8(&DECIMALS[start..start + width]).ok()
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
    for name in [CACHE_STATUS.clone(), SET_COOKIE] {
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

/// A response the layer passes through, not considered for storage: the tag fields and the
/// targeted fields (unless forwarded) removed, `status` added.
pub(crate) fn passed_through<B: Body>(
    response: Response<B>,
    config: &Config,
    status: CacheStatus,
) -> Response<CacheBody<B>> {
    let (mut parts, body) = response.into_parts();
    take_tags(
        &mut parts.headers,
        &mut parts.extensions,
        config.forward_tags,
    );
    config.targeted.hide(&mut parts.headers);
    status.append_to(&mut parts.headers);
    Response::from_parts(parts, CacheBody::inner(body))
}

/// An answer of the layer's own, without a body: `code` with `status`.
pub(crate) fn empty_response<B: Body>(
    code: StatusCode,
    status: CacheStatus,
) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = code;
    status.append_to(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_values_are_the_decimal_seconds() {
        for seconds in (0..1100).chain([9_999, 86_400, u64::MAX]) {
            assert_eq!(age_value(seconds).to_str().unwrap(), seconds.to_string());
        }
        assert_eq!(static_decimal(999), Some("999"));
        assert_eq!(static_decimal(1000), None);
    }
}
