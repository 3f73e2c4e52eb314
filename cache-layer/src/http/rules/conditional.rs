//! Conditional request evaluation (RFC 9110 §13.2.2) and the header set a
//! `304 Not Modified` must carry (RFC 9110 §15.4.5). Range preconditions
//! (`If-Range`) are out of scope: ranges are not served from cache.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_UNMODIFIED_SINCE, VARY,
};
use http::{HeaderMap, Method, StatusCode};

use super::etag::{match_list, Comparison, EntityTag, ListMatch};
use super::freshness::header_date;

/// Outcome of precondition evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Serve the request normally.
    Proceed,
    /// Respond `304 Not Modified` (GET/HEAD only).
    NotModified,
    /// Respond `412 Precondition Failed`.
    Failed,
}

/// Validators of the selected representation, which exists.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Representation<'a> {
    /// Current entity tag, if known.
    pub(crate) etag: Option<&'a EntityTag>,
    /// Current last-modification time, if known.
    pub(crate) last_modified: Option<SystemTime>,
}

/// Drops sub-second precision: HTTP-dates only have one-second resolution.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// Whether `method` may yield 304 (RFC 9110 §13.1.2).
fn is_get_or_head(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Evaluates request preconditions in RFC 9110 §13.2.2 order.
///
/// `unconditional_status` is the status the request would get without
/// preconditions; anything other than 2xx/412 means preconditions are ignored
/// (§13.2.1). `current` is `None` when no current representation exists.
pub(crate) fn evaluate(
    method: &Method,
    request: &HeaderMap,
    unconditional_status: StatusCode,
    current: Option<Representation<'_>>,
) -> Precondition {
    if !(unconditional_status.is_success()
        || unconditional_status == StatusCode::PRECONDITION_FAILED)
    {
        return Precondition::Proceed;
    }
    let etag = current.and_then(|c| c.etag);
    let last_modified = current.and_then(|c| c.last_modified).map(whole_seconds);

    // Step 1 / 2: If-Match, else If-Unmodified-Since.
    if let Some(list) = match_list(request, &IF_MATCH, etag, Comparison::Strong) {
        let pass = match list {
            ListMatch::Any => current.is_some(),
            ListMatch::Tags(matched) => matched,
        };
        if !pass {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(lm)) =
        (header_date(request, &IF_UNMODIFIED_SINCE), last_modified)
    {
        // Invalid dates / unknown Last-Modified: the header is ignored (§13.1.4).
        if lm > since {
            return Precondition::Failed;
        }
    }

    // Step 3 / 4: If-None-Match, else If-Modified-Since (GET/HEAD only).
    if let Some(list) = match_list(request, &IF_NONE_MATCH, etag, Comparison::Weak) {
        let matched = match list {
            ListMatch::Any => current.is_some(),
            ListMatch::Tags(matched) => matched,
        };
        if matched {
            return if is_get_or_head(method) {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if is_get_or_head(method) {
        if let (Some(since), Some(lm)) = (header_date(request, &IF_MODIFIED_SINCE), last_modified) {
            if lm <= since {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Header fields copied from a stored response into a 304 (RFC 9110 §15.4.5).
static NOT_MODIFIED_FIELDS: [http::HeaderName; 6] =
    [CONTENT_LOCATION, DATE, ETAG, VARY, CACHE_CONTROL, EXPIRES];

/// Copies exactly the fields a 304 must carry, all lines each, from `stored`.
pub(crate) fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in &NOT_MODIFIED_FIELDS {
        for v in stored.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
