//! What macro-generated code calls. Hidden and not a stable API: only `cache-macros` uses it.

use std::future::Future;

pub use crate::key::{KeyArg, KeyBuf};
pub use crate::memo::{lookup, CacheIf, Lookup, Miss, Policy, Refresh, Site, TtlFrom};
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

/// The policies of a `#[cached]` fn returning `R` (of shape `S`), with the user's functions
/// checked against the success type: `ttl_from = f` needs `fn(&T) -> Duration` or
/// `-> Option<Duration>`, `cache_if = f` needs `fn(&T) -> bool`.
#[inline]
pub fn policy<R, S: Shape<R>>(
    _shape: S,
    ttl_from: Option<TtlFrom<S::Success>>,
    cache_if: Option<CacheIf<S::Success>>,
) -> Policy<S::Success> {
    Policy { ttl_from, cache_if }
}

/// What `ttl_from` may return: a TTL, or `None` for the site's `ttl`.
#[diagnostic::on_unimplemented(
    message = "`ttl_from` must return `Duration` or `Option<Duration>`, not `{Self}`",
    label = "this function's return type",
    note = "write it as `fn(&T) -> std::time::Duration` or `fn(&T) -> Option<std::time::Duration>`"
)]
pub trait IntoTtl {
    /// The TTL, if any.
    fn into_ttl(self) -> Option<Duration>;
}

impl IntoTtl for Duration {
    #[inline]
    fn into_ttl(self) -> Option<Duration> {
        Some(self)
    }
}

impl IntoTtl for Option<Duration> {
    #[inline]
    fn into_ttl(self) -> Option<Duration> {
        self
    }
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
