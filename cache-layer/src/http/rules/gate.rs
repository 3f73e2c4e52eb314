//! The storage gate: the one set of rules every response passes before it is stored or
//! updates a stored one (a first store, a 304's update, a background revalidation, a gRPC
//! call). A stored response or call can only be built from [`Admitted`] headers, which only
//! [`admit`] makes, so no path can store around the rules.
//!
//! The gate runs when something is stored, never on a hit.

use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, ETAG, SET_COOKIE, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::cache_control::ResponseDirectives;
use super::storable::{storable, NotStorable};
use super::targeted::TargetedFields;
use super::vary::vary_names;

/// The `Cache-Tag` response header: names, separated by commas or spaces, that
/// [`Cache::invalidate`](crate::Cache::invalidate) drops this response by. Not stored unless
/// the layer forwards tag fields: the tags are kept beside the response.
pub(crate) static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// `Surrogate-Key`: Fastly's and Varnish xkey's name for invalidation tags (separated by
/// spaces), read and stored like `Cache-Tag`.
pub(crate) static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// The response fields that carry invalidation tags.
pub(crate) static TAG_FIELDS: [&HeaderName; 2] = [&CACHE_TAG, &SURROGATE_KEY];

/// What is being stored, and in answer to what.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Exchange<'a> {
    /// An HTTP response. For a 304's update, `status` is the stored response's, and `method`
    /// GET when a HEAD revalidated it (RFC 9111 §4.3.5: the update applies to the stored GET).
    Http {
        method: &'a Method,
        request: &'a HeaderMap,
        status: StatusCode,
        has_default_ttl: bool,
        /// The targeted fields (RFC 9213) the directives were read from.
        targeted: &'a TargetedFields,
        /// Whether the tag fields ([`TAG_FIELDS`]) are stored, for clients (a CDN) to read.
        keep_tags: bool,
    },
    /// An opted-in gRPC unary call, whose request-side rules (`authorization`, encodings) are
    /// applied where the call is keyed.
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    GrpcCall {
        /// As for [`Exchange::Http`].
        keep_tags: bool,
    },
}

/// Response headers that passed the gate: what a stored response or call is built from.
#[derive(Debug)]
pub(crate) struct Admitted(HeaderMap, TargetedFields);

impl Admitted {
    /// The headers, to build the stored form from.
    pub(crate) fn into_inner(self) -> HeaderMap {
        self.0
    }

    /// The targeted fields the headers were admitted under: which directives they give this
    /// cache, and what clients must not see of them.
    pub(crate) fn targeted(&self) -> &TargetedFields {
        &self.1
    }

    /// The directives this cache follows for these headers (see [`TargetedFields`]).
    pub(crate) fn directives(&self) -> ResponseDirectives {
        self.1.directives(&self.0)
    }

    /// The headers.
    pub(crate) fn get(&self) -> &HeaderMap {
        &self.0
    }

    /// Adds what the layer generates once the body is known, when the response has none: an
    /// `ETag` and a `Content-Length`.
    pub(crate) fn with_body_fields(
        mut self,
        etag: Option<HeaderValue>,
        length: Option<usize>,
    ) -> Self {
        if let Some(etag) = etag {
            self.0.entry(ETAG).or_insert(etag);
        }
        if let Some(length) = length {
            self.0
                .entry(CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(length));
        }
        self
    }
}

/// Decides whether `headers` (a response, or the stored response merged with a 304) may be
/// stored for `exchange`; if so, returns them without the fields that are never stored.
///
/// `cc` is the directives of `headers` for this cache: for HTTP, what `targeted` reads from
/// them (a targeted field, else `Cache-Control`), the same that decide the response's
/// freshness; for gRPC, `Cache-Control`.
pub(crate) fn admit(
    exchange: Exchange<'_>,
    mut headers: HeaderMap,
    cc: &ResponseDirectives,
) -> Result<Admitted, NotStorable> {
    let (targeted, keep_tags) = match exchange {
        Exchange::Http {
            method,
            request,
            status,
            has_default_ttl,
            targeted,
            keep_tags,
        } => {
            debug_assert_eq!(*cc, targeted.directives(&headers), "one set of directives");
            storable(method, request, status, &headers, cc, has_default_ttl)?;
            check_cookie(request, &headers, cc)?;
            if is_event_stream(&headers) {
                return Err(NotStorable::EventStream);
            }
            (targeted.clone(), keep_tags)
        }
        Exchange::GrpcCall { keep_tags } => {
            if cc.no_store {
                return Err(NotStorable::NoStore);
            }
            if cc.private {
                return Err(NotStorable::Private);
            }
            if headers.contains_key(SET_COOKIE) {
                return Err(NotStorable::SetCookie);
            }
            (TargetedFields::none(), keep_tags)
        }
    };
    if names_in_connection(&headers).any(|name| name == VARY) {
        // `Connection: vary` would strip the `Vary` the rules above relied on (a response
        // varying on `Cookie` would be stored for everyone).
        return Err(NotStorable::VaryInvalid);
    }
    if headers.contains_key(VARY) && vary_names(&headers).is_none() {
        // `Vary: *` was refused above for HTTP; here, a member that is not a field name.
        return Err(NotStorable::VaryInvalid);
    }
    strip_unstorable_fields(&mut headers, keep_tags);
    Ok(Admitted(headers, targeted))
}

/// Whether the response is a server-sent event stream.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .get(..17)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// A shared cache does not store responses to requests with cookies unless the response
/// varies on `Cookie` or is explicitly shared: applications commonly personalise by session
/// cookie without saying so.
fn check_cookie(
    request: &HeaderMap,
    response: &HeaderMap,
    cc: &ResponseDirectives,
) -> Result<(), NotStorable> {
    let varies_on_cookie = vary_names(response).is_some_and(|names| names.contains(&COOKIE));
    if request.contains_key(COOKIE) && !cc.public && cc.s_maxage.is_none() && !varies_on_cookie {
        return Err(NotStorable::Cookie);
    }
    Ok(())
}

/// Removes what is never stored: the fields that describe one connection, `Set-Cookie`
/// (meant for one client) and, unless they are kept, the tag fields (meant for this cache).
fn strip_unstorable_fields(headers: &mut HeaderMap, keep_tags: bool) {
    strip_connection_fields(headers);
    headers.remove(SET_COOKIE);
    if !keep_tags {
        for name in TAG_FIELDS {
            headers.remove(name);
        }
    }
}

/// The field names `Connection` lists.
fn names_in_connection(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
}

/// Removes the fields that describe one connection, not the response (RFC 9111 §3.1):
/// hop-by-hop fields and those `Connection` names.
pub(crate) fn strip_connection_fields(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = names_in_connection(headers).collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE, TRAILER] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Whether `headers` could have been stored: what the gate leaves out is absent.
#[cfg(test)]
pub(crate) fn is_admissible(headers: &HeaderMap) -> bool {
    let listed = names_in_connection(headers).any(|name| headers.contains_key(name));
    !listed
        && ![
            CONNECTION,
            TE,
            TRANSFER_ENCODING,
            UPGRADE,
            TRAILER,
            SET_COOKIE,
        ]
        .iter()
        .any(|name| headers.contains_key(name))
        && !TAG_FIELDS.iter().any(|name| headers.contains_key(*name))
}

#[cfg(test)]
mod tests;
