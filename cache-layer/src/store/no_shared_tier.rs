//! The shared tier when the `redis` feature is off: types with no values, so that
//! `Cache::shared_tier()` is always `None` and the code that uses a shared tier compiles
//! unchanged and is never reached. Each item has the signature of its namesake in `redis`
//! or `shared_tier`.

use std::sync::Weak;
use std::time::Duration;

use crate::cache::Inner;

/// Stands in for `redis::SharedSince`: without a shared tier, every write is unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SharedSince {
    Unchecked,
}

/// Stands in for `queued::Queued`: nothing is ever queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    Overflowed,
}

/// Stands in for `shared_tier::SharedTier`: no value exists.
pub(crate) struct SharedTier {
    pub(crate) store: RedisStore,
}

/// Stands in for `redis::RedisStore`: no value exists.
pub(crate) enum RedisStore {}

/// Stands in for `shared_tier::LoadEnd`: never made, as no `SharedTier` exists (a value,
/// so that the code after a watch begins is not taken for unreachable).
pub(crate) struct LoadEnd;

impl SharedTier {
    pub(crate) fn watch_load(&self, _key: &str) -> LoadEnd {
        match self.store {}
    }

    pub(crate) fn tiered(&self) -> bool {
        match self.store {}
    }

    pub(crate) fn memory_bound(&self) -> Option<Duration> {
        match self.store {}
    }

    pub(crate) fn hears_invalidations(&self) -> bool {
        match self.store {}
    }

    pub(crate) fn ensure_subscriber(&self, _inner: Weak<Inner>) {
        match self.store {}
    }
}

impl LoadEnd {
    pub(crate) async fn heard_within(&mut self, _timeout: Duration) -> bool {
        false
    }
}

impl RedisStore {
    pub(crate) async fn get(&self, _key: &str) -> Option<Vec<u8>> {
        match *self {}
    }

    pub(crate) async fn get_many(&self, _keys: &[&str]) -> Vec<Option<Vec<u8>>> {
        match *self {}
    }

    pub(crate) async fn holds_any(&self, _keys: &[String]) -> Option<bool> {
        match *self {}
    }

    pub(crate) async fn shared_since(&self) -> SharedSince {
        match *self {}
    }

    pub(crate) async fn set(
        &self,
        _key: &str,
        _bytes: Vec<u8>,
        _ttl: Duration,
        _tags: &[Box<str>],
        _since: SharedSince,
    ) {
        match *self {}
    }

    pub(crate) async fn delete(&self, _key: &str) {
        match *self {}
    }

    pub(crate) async fn invalidate(&self, _name: &str) -> Option<Queued> {
        match *self {}
    }

    pub(crate) async fn soft_invalidate(&self, _name: &str) -> Option<Queued> {
        match *self {}
    }

    pub(crate) async fn clear(&self, _prefix: &str) {
        match *self {}
    }

    pub(crate) async fn try_lock(&self, _key: &str, _token: &str, _ttl: Duration) -> Option<bool> {
        match *self {}
    }

    pub(crate) async fn lock_held(&self, _key: &str) -> Option<bool> {
        match *self {}
    }

    pub(crate) async fn unlock(&self, _key: &str, _token: &str) {
        match *self {}
    }
}
