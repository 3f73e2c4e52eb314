//! The shared tier's settings when the `redis` feature is off: there are none, and no shared
//! tier is ever made. Each item has the signature of its namesake in `shared`.

use std::sync::{Arc, Weak};

use crate::cache::Inner;
use crate::engine::counters::Counters;
use crate::error::BuildError;
use crate::store::SharedTier;

/// Stands in for `shared::SharedOptions`: nothing to set.
#[derive(Clone, Debug, Default)]
pub(super) struct SharedOptions {}

impl SharedOptions {
    /// Always `None`: no shared tier.
    pub(super) fn pending(
        self,
        _counters: &Arc<Counters>,
    ) -> Result<Option<PendingTier>, BuildError> {
        Ok(None)
    }
}

/// Stands in for `shared::PendingTier`: no value exists.
pub(super) enum PendingTier {}

impl PendingTier {
    pub(super) fn start(self, _inner: Weak<Inner>) -> SharedTier {
        match self {}
    }
}
