//! Where a memoised value may be kept, and so what its type must be: every value lives in
//! memory ([`Cacheable`]); a site's values also go to the shared tier (Redis) unless the site
//! is `local`, and then they must be [`Shareable`] (serde).
//!
//! A site says which through its shape's [`Shape::Keep`](super::Shape::Keep): [`KeepShared`]
//! for the shapes the macro picks, [`KeepLocal`] for a `local` site, whose shape the macro
//! wraps in [`Local`](super::Local). Its value's bound is then [`Storable`] by that marker.
//! A local value never leaves the process: it is not written to Redis nor read from it, no
//! distributed lock applies, and memory holds it in every set-up (Redis alone included).
//! Invalidations still reach it from every instance, by key and by tag, as they reach any
//! entry in memory.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::heap::heap_bytes;
use crate::cache::EntryKind;
use crate::store::codec;

/// A value that can be cached in memory: cloned out on a hit, shared between tasks.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached",
    label = "the cached value of this function",
    note = "a cached value must be `Clone + Send + Sync + 'static` (wrap a value that is not `Clone` in an `Arc`)"
)]
pub trait Cacheable: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> Cacheable for T {}

/// A value that can also be kept in the shared tier (Redis), which instances share: it is
/// serialised there with serde. Every `#[cached]` site without `local`, and the imperative
/// API ([`Cache::get_or_load`](crate::Cache::get_or_load) and its siblings), need it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be shared between instances: it does not implement serde's `Serialize` and `DeserializeOwned`",
    label = "the cached value of this function",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or write `local` in `#[cached(...)]` to keep its values in this process's memory only (still invalidated from every instance)"
)]
pub trait Shareable: Cacheable + Serialize + DeserializeOwned {}

impl<T: Cacheable + Serialize + DeserializeOwned> Shareable for T {}

/// A value a site that keeps its values by `K` ([`KeepShared`] or [`KeepLocal`]) can store:
/// every [`Cacheable`] value for a `local` site, every [`Shareable`] one otherwise.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached by this function",
    label = "the cached value of this function",
    note = "a cached value must be `Clone + Send + Sync + 'static` and, unless the function is `local`, implement serde's `Serialize` and `DeserializeOwned` (it is shared between instances through Redis): derive them, or write `local` in `#[cached(...)]` to keep its values in this process's memory only (still invalidated from every instance)"
)]
pub trait Storable<K>: Cacheable {
    /// Whether values go to the shared tier (and are read back from it).
    const SHARED: bool;
    /// An estimate of the heap data the value holds, for its entry's weight.
    fn heap_bytes(&self) -> usize;
    /// The value as the shared tier's payload; `None` when it is not written there.
    fn to_payload(&self) -> Option<Vec<u8>>;
    /// A value read back from a payload [`Storable::to_payload`] wrote.
    fn from_payload(payload: &[u8]) -> Option<Self>;
}

/// The shapes the macro picks: values in memory and in the shared tier.
#[derive(Clone, Copy, Debug)]
pub struct KeepShared;

/// A `local` site's: values in memory only.
#[derive(Clone, Copy, Debug)]
pub struct KeepLocal;

impl<V: Shareable> Storable<KeepShared> for V {
    const SHARED: bool = true;
    #[inline]
    fn heap_bytes(&self) -> usize {
        heap_bytes(self)
    }
    fn to_payload(&self) -> Option<Vec<u8>> {
        codec::to_payload(self)
    }
    fn from_payload(payload: &[u8]) -> Option<V> {
        codec::from_payload(payload)
    }
}

impl<V: Cacheable> Storable<KeepLocal> for V {
    const SHARED: bool = false;
    /// Without serde the heap data cannot be walked: a local entry weighs its inline size
    /// (the docs say so, for values that hold large buffers).
    #[inline]
    fn heap_bytes(&self) -> usize {
        0
    }
    fn to_payload(&self) -> Option<Vec<u8>> {
        None
    }
    fn from_payload(_payload: &[u8]) -> Option<V> {
        None
    }
}

/// What memory calls an entry of a site that keeps its values by `K`.
#[inline]
pub(super) fn entry_kind<V: Storable<K>, K>() -> EntryKind {
    if V::SHARED {
        EntryKind::Memoised
    } else {
        EntryKind::Local
    }
}
