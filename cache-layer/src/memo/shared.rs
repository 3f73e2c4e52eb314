//! Reading memo's entries from the shared tier (Redis, shared between instances): the bytes
//! another instance stored, decoded as the function's value and copied into memory.

use std::sync::Arc;

use super::keep::Storable;
use crate::cache::{Cache, EntryKind};
use crate::engine::clock;
use crate::engine::entry::{Age, Entry};
use crate::engine::pipeline;
use crate::engine::stats::Counter;
use crate::store::codec;
use crate::store::ENTRY_OVERHEAD;

/// The entry the shared tier holds for `key`, read and decoded by [`decode_shared`]; `None`
/// without a shared tier, for a `local` site, on a miss or a Redis failure.
pub(super) async fn read_shared<V: Storable<K>, K>(cache: &Cache, key: &str) -> Option<Arc<Entry>> {
    if !V::SHARED {
        return None;
    }
    let tier = cache.shared_tier()?;
    cache.listen_for_invalidations();
    let since = cache.inner().log().current();
    let bytes = tier.store.get(key).await?;
    decode_shared::<V, K>(cache, key, &bytes, since)
}

/// The entry another instance stored in the shared tier for `key`, while fresh.
pub(super) async fn read_fresh_shared<V: Storable<K>, K>(
    cache: &Cache,
    key: &str,
) -> Option<Arc<Entry>> {
    let entry = read_shared::<V, K>(cache, key).await?;
    (entry.age(clock::now()) == Age::Fresh).then_some(entry)
}

/// The entry in `bytes`, read from the shared tier for `key` after the invalidation log stood
/// at `since`: decoded, and copied into memory (through the gate, `Inner::admit`) when
/// neither `key` nor its tags were invalidated while it was being read (a read racing an
/// invalidation must not leave a stale copy in memory). Bytes that do not decode as `V` are a
/// miss (counted and logged); the next store overwrites them.
pub(crate) fn decode_shared<V: Storable<K>, K>(
    cache: &Cache,
    key: &str,
    bytes: &[u8],
    since: u64,
) -> Option<Arc<Entry>> {
    let inner = cache.inner();
    let decoded = match codec::decode_with(codec::fingerprint::<V>(), bytes, V::from_payload) {
        Ok(decoded) => decoded,
        Err(error) => {
            inner.counters().add(Counter::DecodeError);
            tracing::warn!(
                cache = inner.counters().name(),
                key,
                ?error,
                "undecodable value in the shared store: treated as a miss"
            );
            return None;
        }
    };
    let weight = u32::try_from(ENTRY_OVERHEAD + key.len() + bytes.len()).unwrap_or(u32::MAX);
    let entry = Entry::new(
        Arc::new(decoded.value),
        decoded.deadlines.to_local(clock::now()),
        decoded.tags.into(),
        weight,
    );
    Some(pipeline::adopt_shared(
        cache,
        EntryKind::Memoised,
        key,
        entry,
        since,
    ))
}
