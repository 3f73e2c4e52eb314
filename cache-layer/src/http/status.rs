//! The RFC 9211 `Cache-Status` member this layer adds to each response.

use std::cell::RefCell;

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The `Cache-Status` field (RFC 9211).
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why the request went to the inner service (RFC 9211 §2.2 `fwd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forward {
    /// Nothing stored for the URL.
    UriMiss,
    /// The URL has stored variants, none for this request's varied headers.
    VaryMiss,
    /// Nothing usable stored (expired, or the URL is remembered as uncacheable).
    Miss,
    /// A stored response had to be revalidated.
    Stale,
    /// The request asked for a fresh or validated response.
    Request,
    /// The method is not served from the cache.
    Method,
    /// The key function declined the request.
    Bypass,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Miss => "miss",
            Forward::Stale => "stale",
            Forward::Request => "request",
            Forward::Method => "method",
            Forward::Bypass => "bypass",
        }
    }
}

/// Builds and appends this layer's `Cache-Status` member, after any the inner service sent
/// (caches closer to the origin come first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheStatus {
    hit: bool,
    forward: Option<Forward>,
    forward_status: Option<u16>,
    stored: bool,
    ttl: Option<i64>,
    detail: Option<&'static str>,
}

impl CacheStatus {
    pub(crate) fn hit() -> Self {
        CacheStatus {
            hit: true,
            ..Self::default()
        }
    }

    pub(crate) fn forward(forward: Forward) -> Self {
        CacheStatus {
            forward: Some(forward),
            ..Self::default()
        }
    }

    pub(crate) fn forward_status(mut self, status: u16) -> Self {
        self.forward_status = Some(status);
        self
    }

    pub(crate) fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    /// Remaining freshness in seconds (negative when stale).
    pub(crate) fn ttl(mut self, seconds: i64) -> Self {
        self.ttl = Some(seconds);
        self
    }

    pub(crate) fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    pub(crate) fn append_to(&self, headers: &mut HeaderMap) {
        if let Some(value) = self.render() {
            headers.append(CACHE_STATUS.clone(), value);
        }
    }

    /// Writes this member over the last `Cache-Status` value, the slot of
    /// [`ServedHeaders`](super::stored::ServedHeaders).
    pub(crate) fn replace_last_in(&self, headers: &mut HeaderMap) {
        let Some(value) = self.render() else {
            return;
        };
        if let Entry::Occupied(mut entry) = headers.entry(&CACHE_STATUS) {
            if let Some(last) = entry.iter_mut().last() {
                *last = value;
                return;
            }
        }
        headers.append(CACHE_STATUS.clone(), value);
    }

    /// The rendered member. Consecutive responses on a thread mostly carry the same one (a hit
    /// with the same whole-second TTL), so the last rendering is kept and shared.
    pub(crate) fn render(&self) -> Option<HeaderValue> {
        thread_local! {
            static LAST: RefCell<Option<(CacheStatus, HeaderValue)>> = const { RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| match last {
            Some((status, value)) if status == self => Some(value.clone()),
            _ => {
                let value = self.render_new()?;
                *last = Some((*self, value.clone()));
                Some(value)
            }
        })
    }

    fn render_new(&self) -> Option<HeaderValue> {
        let mut member = String::with_capacity(64);
        member.push_str("cache-layer");
        if self.hit {
            member.push_str("; hit");
        }
        if let Some(forward) = self.forward {
            member.push_str("; fwd=");
            member.push_str(forward.as_str());
        }
        if let Some(status) = self.forward_status {
            member.push_str("; fwd-status=");
            member.push_str(itoa::Buffer::new().format(status));
        }
        if self.stored {
            member.push_str("; stored");
        }
        if let Some(ttl) = self.ttl {
            member.push_str("; ttl=");
            member.push_str(itoa::Buffer::new().format(ttl));
        }
        if let Some(detail) = self.detail {
            member.push_str("; detail=");
            member.push_str(detail);
        }
        // Hands the buffer over instead of copying it.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(member)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_render_in_rfc_9211_form() {
        let mut headers = HeaderMap::new();
        CacheStatus::hit().ttl(42).append_to(&mut headers);
        CacheStatus::forward(Forward::UriMiss)
            .forward_status(200)
            .stored()
            .append_to(&mut headers);
        CacheStatus::forward(Forward::Miss)
            .detail("set-cookie")
            .append_to(&mut headers);
        let all: Vec<_> = headers.get_all(&CACHE_STATUS).iter().collect();
        assert_eq!(all[0], "cache-layer; hit; ttl=42");
        assert_eq!(all[1], "cache-layer; fwd=uri-miss; fwd-status=200; stored");
        assert_eq!(all[2], "cache-layer; fwd=miss; detail=set-cookie");
    }
}
