//! What macro-generated code calls. Hidden and not a stable API: only `cache-macros` uses it.

use std::future::Future;

pub use crate::key::{KeyArg, KeyBuf};
pub use crate::memo::{lookup, Lookup, Miss, Refresh, Site};
pub use crate::shape::{
    Cacheable, OptionShape, Outcome, PlainShape, Probe, ResultOptionShape, ResultShape, Shape,
    ViaOption, ViaPlain, ViaResult, ViaResultOption,
};
pub use std::time::Duration;

use crate::Cache;

/// The cache a `#[cached]` fn without `cache = ...` uses.
#[inline]
pub fn default_cache() -> &'static Cache {
    Cache::global()
}

/// Pins the output type of a body wrapped in an `async` block, so `?` inside it converts
/// errors into the function's declared error type.
#[inline(always)]
pub fn typed<R, F: Future<Output = R>>(body: F) -> F {
    body
}

/// Appends a key part to a key being rendered.
#[inline(always)]
pub fn push<T: KeyArg + ?Sized>(out: &mut KeyBuf, part: &T) {
    part.write_key(out);
}

/// For `#[invalidates]`: invalidates each name when the writer's result means success.
pub async fn invalidate_after<R, S: Shape<R>>(
    cache: &Cache,
    _shape: S,
    result: &R,
    names: Vec<String>,
) {
    if S::succeeded(result) {
        // Runs to the end even if the caller stops waiting: the write has committed.
        cache.invalidate_names(names).await;
    }
}
