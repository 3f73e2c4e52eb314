//! A stale entry's refresh: the first caller to see an entry stale gets the right to reload
//! it, in the background (`stale = ...`) or in its own task (after a soft purge), while
//! callers are served the stale value.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use super::keep::Storable;
use super::load::{boxed, load_and_store, Miss};
use super::options::{Policy, Site};
use super::returns::Shape;
use crate::cache::Cache;
use crate::engine::entry::RefreshClaim;
use crate::engine::pipeline::{self, Refreshing};
use crate::engine::trace;
use crate::store::SharedSince;

/// The right to refresh one stale entry in the background; see [`Refresh::spawn`].
pub struct Refresh<S> {
    /// Boxed: a look-up's answer (every hit's too) stays small; only a stale one pays for it.
    claimed: Box<Claimed>,
    shape: PhantomData<S>,
}

/// What a [`Refresh`] holds.
struct Claimed {
    cache: Cache,
    site: Site,
    key: String,
    claim: RefreshClaim,
    /// Where Redis's invalidation history stood before the value was loaded, when it was
    /// loaded before the refresh was spawned (a batch); otherwise read when the load begins.
    shared_since: Option<SharedSince>,
}

impl<S> Refresh<S> {
    /// The right to refresh `key`, claimed by a look-up that found it stale.
    pub(super) fn new(cache: &Cache, site: &Site, key: &str, claim: RefreshClaim) -> Self {
        Refresh {
            claimed: Box::new(Claimed {
                shared_since: None,
                cache: cache.clone(),
                site: *site,
                key: key.to_owned(),
                claim,
            }),
            shape: PhantomData,
        }
    }

    /// The refreshed value's Redis write is checked against `shared_since`, read before the
    /// value was loaded.
    pub(crate) fn with_shared_since(mut self, shared_since: SharedSince) -> Self {
        self.claimed.shared_since = Some(shared_since);
        self
    }

    /// The refresh as a load in the caller's task, for a `#[cached]` fn without `stale` (whose
    /// body cannot run after the caller returns: its arguments may be borrowed), which sees a
    /// stale entry only after a soft purge. The claim stays with `self` while the load runs,
    /// so concurrent callers are served the stale value meanwhile; if the load fails, the
    /// stale value is served (stale-if-error).
    pub fn in_place(&self) -> Miss<'_, S> {
        let claimed = &*self.claimed;
        Miss::new(
            &claimed.cache,
            &claimed.site,
            &claimed.key,
            Some(Arc::clone(claimed.claim.entry())),
            claimed.shared_since,
        )
    }

    /// Runs `load` on the Tokio runtime and stores its value, tagged with `tags`; the caller
    /// returns the stale value without waiting. Outside a Tokio runtime nothing is spawned and
    /// the entry is refreshed by a later miss.
    pub fn spawn<R, F>(self, tags: Vec<String>, policy: Policy<<S as Shape<R>>::Success>, load: F)
    where
        S: Shape<R>,
        S::Success: 'static,
        S::Value: Storable<S::Keep>,
        R: Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let Claimed {
            cache,
            site,
            key,
            claim,
            shared_since,
        } = *self.claimed;
        let tags = boxed(tags);
        let span = trace::memo_refresh(&cache, site.name, &key);
        pipeline::refresh(&cache, key, tags, claim, span, move |refresh| async move {
            let Refreshing {
                cache,
                key,
                tags,
                leader,
                ..
            } = refresh;
            let at = shared_since;
            let (_, stored) =
                load_and_store::<R, S, F>(&cache, &site, &key, &tags, &policy, at, load).await;
            match stored {
                Some(value) => {
                    leader.complete(value);
                    trace::Outcome::Refreshed
                }
                None => trace::Outcome::Failed,
            }
        });
    }
}
