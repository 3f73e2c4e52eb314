//! What is kept of a gRPC call: the response headers, the message bytes exactly as sent
//! (frame header and compression included) and the trailers; [`CallBeingRecorded`], which
//! stores it once the trailers say `grpc-status: 0`; and the replay.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;

use super::frame::single_frame;
use crate::engine::clock;
use crate::engine::entry::{Lifetime, Value};
use crate::engine::flight::Leader;
use crate::engine::pipeline::{self, Stored};
use crate::http::for_grpc::{
    mark_uncacheable, Admitted, CacheStatus, Config, RecordedStore, ServedHeaders,
};
use crate::{Cache, CacheBody, CacheTags};

/// A successful unary call as stored.
pub(crate) struct CachedCall {
    pub(crate) status: StatusCode,
    /// The response headers as sent (`cache-tag` removed), plus the `Cache-Status` slot.
    pub(crate) served: ServedHeaders,
    pub(crate) message: Bytes,
    pub(crate) trailers: HeaderMap,
    pub(crate) tags: Vec<String>,
}

impl CachedCall {
    /// The call replayed: same status, headers, message bytes and trailers.
    pub(crate) fn serve<B: Body>(&self, status: &CacheStatus) -> Response<CacheBody<B>> {
        let headers = self.served.with_status(status);
        let body = CacheBody::buffered(
            Some(self.message.clone()),
            Some(self.trailers.clone()),
            None,
        );
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        if !self.tags.is_empty() {
            response
                .extensions_mut()
                .insert(CacheTags(self.tags.clone()));
        }
        response
    }
}

impl Stored for CachedCall {
    fn weight(&self) -> usize {
        let fields = |map: &HeaderMap| {
            map.iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
        };
        std::mem::size_of::<Self>()
            + fields(self.served.map())
            + fields(&self.trailers)
            + self.message.len()
            + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
    }
}

/// The `grpc-status` of a header or trailer block, when it has one.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get("grpc-status").map(|v| v.as_bytes())
}

/// A call's response head the storage gate admitted, whose message and trailers are being
/// recorded: stored (and handed to coalesced waiters) by [`complete`](Self::complete) when the
/// trailers say `grpc-status: 0`; otherwise nothing is stored and the waiters call for
/// themselves.
pub(crate) struct CallBeingRecorded {
    pub(crate) cache: Cache,
    pub(crate) config: Arc<Config>,
    pub(crate) key: String,
    /// The method path: every entry is tagged with it.
    pub(crate) path: String,
    pub(crate) status: StatusCode,
    /// The head as the storage gate admitted it.
    pub(crate) headers: Admitted,
    pub(crate) lifetime: Lifetime,
    pub(crate) tags: Vec<String>,
    pub(crate) since: u64,
    pub(crate) leader: Option<Leader>,
}

impl CallBeingRecorded {
    /// Stores the call with `message` when `trailers` say it succeeded and it answered with
    /// one message (a server stream that happened to be opted in is not stored).
    pub(crate) fn complete(self, message: Bytes, trailers: Option<&HeaderMap>) {
        let Some(trailers) = trailers.filter(|t| grpc_status(t) == Some(b"0")) else {
            return self.abandon("status");
        };
        if single_frame(&message).is_none() {
            return self.abandon("not-unary");
        }
        let call = Arc::new(CachedCall {
            status: self.status,
            served: ServedHeaders::new(self.headers.get(), false),
            message,
            trailers: trailers.clone(),
            tags: self.tags,
        });
        let mut tags: Vec<Box<str>> = call.tags.iter().map(|t| t.as_str().into()).collect();
        tags.push(self.path.into());
        let deadlines = self
            .lifetime
            .deadlines(clock::now(), self.cache.inner().jitter());
        let entry = pipeline::entry(&self.key, Arc::clone(&call), deadlines, tags.into());
        let kept = self.cache.store_in_memory(&self.key, entry, self.since);
        tracing::debug!(
            cache = self.cache.name(),
            key = self.key,
            ttl_secs = self.lifetime.ttl.as_secs(),
            kept,
            "gRPC call stored"
        );
        if let (true, Some(leader)) = (kept, self.leader) {
            leader.complete(call as Value);
        }
    }

    /// Gives up storing (`reason` is logged); the key skips coalescing for a while.
    pub(crate) fn abandon(self, reason: &'static str) {
        tracing::debug!(
            cache = self.cache.name(),
            key = self.key,
            reason,
            "gRPC call not stored"
        );
        mark_uncacheable(&self.cache, &self.config, &self.key);
    }
}

/// The lifetime of a call's entry: fresh for `ttl`, then the stale windows. A TTL the service
/// stated in `cache-control` metadata is kept exactly; the method's configured TTL gets the
/// cache's jitter, as memoised values do, so calls stored together do not expire together.
pub(crate) fn call_lifetime(
    ttl: Duration,
    windows: (Duration, Duration),
    from_service: bool,
) -> Lifetime {
    Lifetime {
        ttl,
        stale: windows.0,
        stale_if_error: windows.1,
        jitter: from_service.then_some(0.0),
    }
}

impl RecordedStore for CallBeingRecorded {
    fn finish(self: Box<Self>, body: Bytes, trailers: Option<&HeaderMap>) {
        self.complete(body, trailers);
    }

    fn abandon(self: Box<Self>, reason: &'static str) {
        CallBeingRecorded::abandon(*self, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stated_ttl_is_kept_exactly_and_a_configured_one_is_jittered() {
        let now = clock::now();
        let ttl = Duration::from_secs(100);
        let no_windows = (Duration::ZERO, Duration::ZERO);
        let stated = call_lifetime(ttl, no_windows, true).deadlines(now, 0.1);
        assert_eq!(stated.fresh_until, now + ttl);
        let configured: Vec<_> = (0..64)
            .map(|_| {
                call_lifetime(ttl, no_windows, false)
                    .deadlines(now, 0.1)
                    .fresh_until
                    .duration_since(now)
            })
            .collect();
        assert!(configured
            .iter()
            .all(|d| (Duration::from_secs(90)..=Duration::from_secs(110)).contains(d)));
        assert!(
            configured.iter().any(|d| *d != configured[0]),
            "64 TTLs all equal: {configured:?}"
        );
    }
}
