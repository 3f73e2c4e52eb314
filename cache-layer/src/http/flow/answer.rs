//! The inner service's full answer to a miss: stored through the storage gate when it may be
//! (a small body of known size read at once, any other copied while it streams), and turned
//! into the client's response; an answer that may not be stored goes to this client only.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE, ETAG, RANGE};
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body::Body;
use http_body_util::BodyExt;

use super::plan::Exchanged;
use super::respond::{apply_preconditions, serve};
use super::store::{add_etag, mark_uncacheable, ResponseBeingRecorded};
use crate::engine::clock;
use crate::engine::pipeline::Leader;
use crate::http::body::{CacheBody, Held};
use crate::http::config::{Config, EtagMode};
use crate::http::rules::cache_control::{RequestDirectives, ResponseDirectives};
use crate::http::rules::gate::{admit, Admitted, Exchange};
use crate::http::rules::key::secondary_key;
use crate::http::rules::storable::NotStorable;
use crate::http::rules::vary::vary_names;
use crate::http::status::CacheStatus;
use crate::http::stored::lifetime_of;
use crate::http::tags::take_tags;

/// The inner service's full answer: stored through the gate when it may be (read now when
/// small, else spooled), and the client's response.
pub(crate) async fn answer<B>(
    x: Exchanged<'_>,
    response: Response<B>,
    leader: Option<Leader>,
) -> Response<CacheBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send + 'static,
{
    let (cache, config, method, client) = (x.cache, x.config, x.method, x.client);
    let (mut parts, body) = response.into_parts();
    let keep_tags = config.forward_tags;
    let tags = take_tags(&mut parts.headers, &mut parts.extensions, keep_tags);
    if !parts.headers.contains_key(DATE) {
        // RFC 9110 §6.6.1: a recipient that caches a response without Date records one.
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(x.times.1)) {
            parts.headers.insert(DATE, date);
        }
    }
    let cc = config.targeted.directives(&parts.headers);
    let exchange = Exchange::Http {
        method,
        request: client,
        status: parts.status,
        has_default_ttl: config.default_ttl.is_some(),
        targeted: &config.targeted,
        keep_tags,
    };
    let verdict = admit(exchange, parts.headers.clone(), &cc).and_then(|admitted| {
        check_size(&parts.headers, &body.size_hint(), config.max_body).map(|()| admitted)
    });
    // The client's copy: targeted fields are for this cache (the stored copy keeps them).
    config.targeted.hide(&mut parts.headers);
    let status = CacheStatus::forward(x.plan.forward).forward_status(parts.status.as_u16());
    let admitted = match verdict {
        Ok(admitted) => admitted,
        Err(reason) => {
            drop(leader);
            return unstored(x, reason, status, Response::from_parts(parts, body)).await;
        }
    };
    let recorded = being_recorded(&x, &parts, admitted, cc, tags, leader);
    // Known and small (and room for it in the body budget): read it now, so this response
    // already carries the generated ETag and is answered exactly like the hits that follow.
    if let Some(_held) = hold_small(&body, config) {
        return read_and_store(&x, recorded, status, parts, body).await;
    }
    let recording = config.recording(Box::new(recorded));
    let mut response = Response::from_parts(
        parts,
        CacheBody::spooled(body, recording, cache.inner().max_wait()),
    );
    status.append_to(response.headers_mut());
    apply_preconditions(response, method, client)
}

/// The admitted response head, to be stored once its body is read.
fn being_recorded(
    x: &Exchanged<'_>,
    parts: &http::response::Parts,
    admitted: Admitted,
    cc: ResponseDirectives,
    tags: Vec<String>,
    leader: Option<Leader>,
) -> ResponseBeingRecorded {
    let names = vary_names(admitted.get()).unwrap_or_default();
    let secondary = secondary_key(&names, x.client);
    let default_ttl = x.config.default_ttl;
    ResponseBeingRecorded {
        cache: x.cache.clone(),
        config: Arc::clone(x.config),
        lifetime: lifetime_of(parts.status, &parts.headers, &cc, default_ttl, x.times.1),
        primary: x.plan.primary.clone(),
        status: parts.status,
        headers: admitted,
        times: x.times,
        directives: cc,
        vary: (names.into(), secondary),
        tags,
        since: x.since,
        shared_since: x.shared_since,
        leader,
    }
}

/// Reads a small body of known size and stores the response with it (unless it ends with
/// trailers or an error: then it is passed on as read, unstored).
async fn read_and_store<B: Body<Data = Bytes>>(
    x: &Exchanged<'_>,
    recorded: ResponseBeingRecorded,
    status: CacheStatus,
    parts: http::response::Parts,
    body: B,
) -> Response<CacheBody<B>> {
    let (method, client) = (x.method, x.client);
    let (data, trailers, error) = read_body(body).await;
    if trailers.is_none() && error.is_none() {
        let (stored, kept) = recorded.complete(data);
        let status = if kept { status.stored() } else { status };
        let mut response = serve(&stored, method, client, status, stored.age(clock::now()));
        response.extensions_mut().extend(parts.extensions);
        return response;
    }
    drop(recorded);
    let mut response =
        Response::from_parts(parts, CacheBody::buffered(Some(data), trailers, error));
    status.detail("trailers").append_to(response.headers_mut());
    apply_preconditions(response, method, client)
}

/// A full answer that may not be stored, for this client only. A response-driven refusal makes
/// the URL skip coalescing for a while (a request's own `no-store` or `Range` says nothing
/// about the URL's other requests). A small body of known size is read to give it the ETag a
/// stored one would have, so it is still answered conditionally.
async fn unstored<B: Body<Data = Bytes>>(
    x: Exchanged<'_>,
    reason: NotStorable,
    status: CacheStatus,
    response: Response<B>,
) -> Response<CacheBody<B>> {
    let request_caused = match reason {
        NotStorable::NoStore => RequestDirectives::parse(x.client).no_store,
        NotStorable::Status => x.client.contains_key(RANGE),
        _ => false,
    };
    if reason.is_response_driven() && !request_caused {
        mark_uncacheable(x.cache, x.config, &x.plan.primary);
    }
    let (mut parts, body) = response.into_parts();
    status.detail(reason.as_str()).append_to(&mut parts.headers);
    let wants_etag = x.config.etag != EtagMode::Off
        && *x.method == Method::GET
        && parts.status.is_success()
        && !parts.headers.contains_key(ETAG);
    let held = wants_etag.then(|| hold_small(&body, x.config)).flatten();
    if let Some(_held) = held {
        let (data, trailers, error) = read_body(body).await;
        if trailers.is_none() && error.is_none() {
            add_etag(&mut parts.headers, &data, x.config.etag);
        }
        let response =
            Response::from_parts(parts, CacheBody::buffered(Some(data), trailers, error));
        return apply_preconditions(response, x.method, x.client);
    }
    let response = Response::from_parts(parts, CacheBody::inner(body));
    apply_preconditions(response, x.method, x.client)
}

fn check_size(
    response: &HeaderMap,
    hint: &http_body::SizeHint,
    max: usize,
) -> Result<(), NotStorable> {
    let declared = response
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.unwrap_or(0).max(hint.lower()) > max as u64 {
        return Err(NotStorable::TooLarge);
    }
    Ok(())
}

/// For a body of known size up to `max_body`, that size held in the layer's body budget
/// while it is read; `None` for any other body, or when the share is spent.
fn hold_small<B: Body>(body: &B, config: &Config) -> Option<Held> {
    let size = body.size_hint().exact()?;
    let size = usize::try_from(size)
        .ok()
        .filter(|n| *n <= config.max_body)?;
    config.body_budget.hold(size)
}

/// Reads a body of known, small size to its end.
async fn read_body<B: Body<Data = Bytes>>(body: B) -> (Bytes, Option<HeaderMap>, Option<B::Error>) {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.as_mut().frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => match &first {
                    None => first = Some(data),
                    Some(_) => rest.extend_from_slice(&data),
                },
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Err(error) => {
                let data = join(first, rest);
                return (data, trailers, Some(error));
            }
        }
    }
    (join(first, rest), trailers, None)
}

/// The bytes of `first` followed by `rest`, without copying when there is only `first`.
fn join(first: Option<Bytes>, rest: BytesMut) -> Bytes {
    match first {
        None => Bytes::new(),
        Some(first) if rest.is_empty() => first,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + rest.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&rest);
            all.freeze()
        }
    }
}
