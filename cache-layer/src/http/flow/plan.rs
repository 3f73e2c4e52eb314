//! What a miss carries through the flow: its [`Plan`] before the inner service is asked, and
//! the exchange with it ([`Exchanged`]) once it has answered.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method};

use crate::engine::sites::SiteCounters;
use crate::http::config::Config;
use crate::http::route::UNROUTED;
use crate::http::status::Forward;
use crate::http::stored::CachedResponse;
use crate::store::SharedSince;
use crate::Cache;

/// What a miss does: which key to coalesce and store under, and what stale copy it has.
pub(crate) struct Plan {
    pub(crate) primary: String,
    /// The variant key, when the URL's responses vary.
    pub(crate) variant: Option<String>,
    /// A stored response to revalidate, and whether it may be served if the inner service fails.
    pub(crate) stale: Option<(Arc<CachedResponse>, bool)>,
    pub(crate) forward: Forward,
    pub(crate) coalesce: bool,
    /// The request's site (its route): filled, like `primary`, when the plan leaves `decide`.
    pub(crate) site: Option<Arc<SiteCounters>>,
}

impl Plan {
    /// A plan for a URL not found: coalesced, nothing stale, no key yet.
    pub(crate) fn empty() -> Self {
        Plan {
            primary: String::new(),
            variant: None,
            stale: None,
            forward: Forward::UriMiss,
            coalesce: true,
            site: None,
        }
    }

    /// The request's site; the cache's [`UNROUTED`] one if none was set.
    pub(crate) fn site(&self, cache: &Cache) -> Arc<SiteCounters> {
        match &self.site {
            Some(site) => Arc::clone(site),
            None => cache.inner().counters().sites().get(UNROUTED),
        }
    }

    pub(crate) fn key(&self) -> &str {
        self.variant.as_deref().unwrap_or(&self.primary)
    }
}

/// A revalidation's exchange with the inner service: what a 304 answering it is applied with.
pub(crate) struct Exchanged<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) config: &'a Arc<Config>,
    pub(crate) plan: &'a Plan,
    pub(crate) method: &'a Method,
    pub(crate) client: &'a HeaderMap,
    /// When the conditional request was sent and its answer arrived.
    pub(crate) times: (SystemTime, SystemTime),
    pub(crate) since: u64,
    /// Where Redis's invalidation history stood when the load began.
    pub(crate) shared_since: SharedSince,
}
