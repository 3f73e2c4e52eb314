//! What the invalidation channel carries, applied here: an invalidation (alone or in a
//! batch), a soft purge, a clear, everything, or the end of a load other callers wait for.

use std::sync::Arc;

use crate::cache::Inner;
use crate::engine::hooks::{Invalidated, Origin};
use crate::store::redis::{BATCH, BATCH_SEPARATOR, CLEAR, EVERYTHING, LOAD_ENDED, SOFT};

/// [`deliver`], on a blocking thread when it names many entries here (`Inner::large_purge`),
/// so that a big tag purged by another instance holds up no executor thread; awaited, so
/// that invalidations still apply in the order they were published.
pub(super) async fn deliver_off_executor(inner: Arc<Inner>, payload: &[u8]) {
    let name = payload
        .strip_prefix(SOFT)
        .map_or(payload, |sent| sent.get(8..).unwrap_or(&[]));
    let large = if let Some(sent) = payload.strip_prefix(CLEAR) {
        sent.len() > 8 && inner.large_clear()
    } else if let Some(names) = payload.strip_prefix(BATCH) {
        inner.large_purge(&batch_names(names).collect::<Vec<_>>())
    } else {
        std::str::from_utf8(name).is_ok_and(|name| inner.large_purge(&[name]))
    };
    if !large {
        return deliver(&inner, payload);
    }
    let payload = payload.to_vec();
    let _ = tokio::task::spawn_blocking(move || deliver(&inner, &payload)).await;
}

/// Applies one published invalidation (or a batch of them) or soft purge, or wakes the waiters of a load that ended.
pub(super) fn deliver(inner: &Inner, payload: &[u8]) {
    if payload == EVERYTHING {
        inner.invalidate_everything_local();
    } else if let Some(name) = payload.strip_prefix(LOAD_ENDED) {
        if let (Some(remote), Ok(name)) = (inner.shared_tier(), std::str::from_utf8(name)) {
            remote.load_waiters.ended(name);
        }
    } else if let Some(sent) = payload.strip_prefix(SOFT) {
        if let Some(name) = from_another(inner, sent) {
            inner.soft_invalidate_local(name);
            inner.invalidated(Invalidated::SoftPurge(name), Origin::Remote);
        }
    } else if let Some(sent) = payload.strip_prefix(CLEAR) {
        if let Some(prefix) = from_another(inner, sent) {
            inner.clear_local(prefix, Origin::Remote);
        }
    } else if let Some(names) = payload.strip_prefix(BATCH) {
        batch_names(names).for_each(|name| invalidated(inner, name));
    } else if let Ok(name) = std::str::from_utf8(payload) {
        invalidated(inner, name);
    }
}

/// Applies one published invalidation of `name` (alone or in a batch).
fn invalidated(inner: &Inner, name: &str) {
    inner.invalidate_local(name);
    if inner.hooks().invalidation.is_some() && !inner.own_echo(name) {
        inner.invalidated(Invalidated::Name(name), Origin::Remote);
    }
}

/// The names a [`BATCH`] message carries (after its first byte); a part that is not UTF-8
/// (a sender that is not this crate) is skipped.
fn batch_names(names: &[u8]) -> impl Iterator<Item = &str> {
    names
        .split(|byte| *byte == BATCH_SEPARATOR)
        .filter_map(|name| std::str::from_utf8(name).ok())
}

/// The name or prefix in `sent` (a sender's id, then the text), unless this instance sent it:
/// it applied its own already.
fn from_another<'a>(inner: &Inner, sent: &'a [u8]) -> Option<&'a str> {
    let (sender, text) = sent.split_first_chunk::<8>()?;
    let own = inner
        .shared_tier()
        .is_some_and(|remote| remote.store.instance() == u64::from_be_bytes(*sender));
    (!own).then(|| std::str::from_utf8(text).ok()).flatten()
}
