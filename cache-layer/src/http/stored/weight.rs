//! What stored responses cost in memory, for the memory budget: the allocator's overhead per
//! allocation, a `HeaderMap`'s table, and [`CachedResponse`]'s weight (calibrated with a
//! counting allocator in tests/memory_budget.rs).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::response::CachedResponse;
use crate::engine::pipeline::Stored;

/// What the allocator spends on each allocation besides the bytes asked for (glibc malloc: an
/// 8-byte header, chunks rounded to 16 bytes).
pub(crate) const ALLOCATION: usize = 16;
/// An `Arc`'s counts and its allocation.
pub(crate) const ARC: usize = 16 + ALLOCATION;
/// The shared part of a `Bytes` buffer that is cloned (its counts and its allocation), and the
/// buffer's own allocation.
const SHARED_BUFFER: usize = 24 + 2 * ALLOCATION;

/// Bytes a `HeaderMap` holds beyond its values' bytes: its table of positions and its slots,
/// by capacity, and extra slots for fields with several values.
fn header_map_bytes(map: &HeaderMap) -> usize {
    /// A slot: hash, name, value, links (`http`'s `Bucket<HeaderValue>`).
    const SLOT: usize = 2 * std::mem::size_of::<HeaderValue>() + 24;
    /// A further value of a field (`http`'s `ExtraValue<HeaderValue>`).
    const EXTRA: usize = std::mem::size_of::<HeaderValue>() + 32;
    let capacity = map.capacity();
    let positions = (capacity + capacity / 3).next_power_of_two() * 4;
    let extra = map.len() - map.keys_len();
    capacity * SLOT + positions + extra * EXTRA * 2 + 3 * ALLOCATION
}

impl Stored for CachedResponse {
    /// Bytes held, for the memory budget (calibrated with a counting allocator in
    /// tests/memory_budget.rs): the three header maps by their capacity, the one buffer of the
    /// body and the values (see `compact`), and the small parts, each allocation with the
    /// allocator's own [`ALLOCATION`] bytes.
    fn weight(&self) -> usize {
        let values: usize = self.headers.values().map(HeaderValue::len).sum();
        let tags: usize = self.tags.iter().map(|t| t.capacity() + ALLOCATION).sum();
        let strings = self.secondary.capacity()
            + self
                .etag
                .as_ref()
                .map_or(0, |tag| tag.tag.capacity() + ALLOCATION)
            + self.vary.len() * std::mem::size_of::<HeaderName>()
            + self.tags.capacity() * std::mem::size_of::<String>()
            + tags;
        std::mem::size_of::<Self>()
            + ARC
            + header_map_bytes(&self.headers)
            + header_map_bytes(self.served.map())
            + header_map_bytes(self.not_modified.map())
            + SHARED_BUFFER
            + self.body.len()
            + values
            + strings
            + 3 * ALLOCATION
    }
}
