//! What else is kept under a URL's primary key besides a response: the record of its `Vary`
//! variants ([`Variants`]), and the short-lived [`Uncacheable`] marker.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderName;

use super::weight::{ALLOCATION, ARC};
use crate::engine::pipeline::Stored;

/// Under a URL's primary key when its responses `Vary`: which headers, and which variants are
/// stored (at most `max_variants`: the least recently used goes first, so that requests with
/// new header values cannot push out a variant in use).
pub(crate) struct Variants {
    pub(crate) names: Box<[HeaderName]>,
    variants: Vec<Variant>,
    /// The latest use of any variant: each `Variant::used` is one of its values.
    uses: AtomicU64,
}

/// One stored variant of a URL: its key, and when it was last stored or served.
struct Variant {
    key: String,
    used: AtomicU64,
}

impl Variants {
    /// No variant stored yet for `names`.
    pub(crate) fn new(names: Box<[HeaderName]>) -> Self {
        Variants {
            names,
            variants: Vec::new(),
            uses: AtomicU64::new(0),
        }
    }

    /// A use of the variant under `key`: it becomes the most recently used. A variant used
    /// again and again, with no other between, writes nothing.
    pub(crate) fn touch(&self, key: &str) {
        let Some(variant) = self.variants.iter().find(|v| v.key == key) else {
            return;
        };
        if variant.used.load(Ordering::Relaxed) != self.uses.load(Ordering::Relaxed) {
            let now = self.uses.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            variant.used.store(now, Ordering::Relaxed);
        }
    }

    /// This record with `key` stored as its most recently used variant, and the keys of the
    /// least recently used beyond `max` (at least one is kept: `key`), to be dropped.
    pub(crate) fn with_variant(&self, key: String, max: usize) -> (Variants, Vec<String>) {
        let now = self.uses.load(Ordering::Relaxed).wrapping_add(1);
        let mut variants: Vec<Variant> = self
            .variants
            .iter()
            .filter(|v| v.key != key)
            .map(|v| Variant {
                key: v.key.clone(),
                used: AtomicU64::new(v.used.load(Ordering::Relaxed)),
            })
            .collect();
        let mut dropped = Vec::new();
        while variants.len() >= max.max(1) {
            let least = (0..variants.len())
                .min_by_key(|&i| variants[i].used.load(Ordering::Relaxed))
                .unwrap_or(0);
            dropped.push(variants.swap_remove(least).key);
        }
        variants.push(Variant {
            key,
            used: AtomicU64::new(now),
        });
        let record = Variants {
            names: self.names.clone(),
            variants,
            uses: AtomicU64::new(now),
        };
        (record, dropped)
    }
}

impl Stored for Variants {
    /// Bytes held, for the memory budget (see [`CachedResponse::weight`]).
    fn weight(&self) -> usize {
        ARC + std::mem::size_of::<Self>()
            + self.names.len() * std::mem::size_of::<HeaderName>()
            + self.variants.capacity() * std::mem::size_of::<Variant>()
            + self
                .variants
                .iter()
                .map(|v| v.key.capacity() + ALLOCATION)
                .sum::<usize>()
            + 2 * ALLOCATION
    }
}

/// Under a URL's primary key for a few seconds after a response that may not be stored, so that
/// requests for it go straight to the inner service instead of queueing behind each other.
pub(crate) struct Uncacheable;

impl Stored for Uncacheable {
    fn weight(&self) -> usize {
        ARC
    }
}
