//! What macro-generated code calls. Hidden and not a stable API: only `cache-macros` uses it.

use std::future::Future;

pub use crate::engine::sites::SiteSlot;
pub use crate::engine::timed_out::CarriesTimeout;
pub use crate::engine::timeout::Timeouts;
pub use crate::key::{KeyArg, KeyBuf};
pub use crate::memo::{
    invalidate_after_blocking, invalidate_blocking, lookup_blocking, refresh_blocking,
};
pub use crate::memo::{
    lookup, lookup_now, refresh, CacheIf, Lookup, Miss, Pending, Policy, Refresh, Site, TtlFrom,
};
pub use crate::memo::{
    Cacheable, KeepLocal, KeepShared, Local, OptionShape, Outcome, PlainShape, Probe,
    ResultOptionShape, ResultShape, Shape, Storable, ViaOption, ViaPlain, ViaResult,
    ViaResultOption,
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

/// Runs the body of a `#[cached(stale = ...)]` fn without a receiver, which the macro keeps in
/// an async closure over its reference arguments: with the caller's references on a miss, with
/// references to owned copies in a background refresh. Taking the closure by value makes its
/// future own what the closure captured (the arguments passed by value), as the body would.
#[inline]
pub async fn call_once<A, R, F: AsyncFnOnce(A) -> R>(body: F, arguments: A) -> R {
    body(arguments).await
}

/// The owned receiver a background refresh of a `#[cached(stale = ...)]` method runs on.
#[diagnostic::on_unimplemented(
    message = "`stale` on a method needs an owned receiver to refresh in the background: `{Self}` must be `Clone + Send + Sync + 'static`",
    label = "the refresh runs the body on a clone of this receiver",
    note = "derive or implement `Clone` for `{Self}` (a handle to a pool or a client usually is cheap to clone), take `self: Arc<Self>`, or drop `stale`"
)]
pub trait OwnedReceiver: Sized {
    /// A clone for the refresh.
    fn to_owned_receiver(&self) -> Self;
}

// `do_not_recommend`: a receiver that is not `Clone` is reported with the message above, not
// as a missing `Clone`.
#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync + 'static> OwnedReceiver for T {
    #[inline]
    fn to_owned_receiver(&self) -> Self {
        self.clone()
    }
}

/// See [`OwnedReceiver`].
#[inline]
pub fn owned_receiver<T: OwnedReceiver>(receiver: &T) -> T {
    receiver.to_owned_receiver()
}

/// The key a `<fn>_key` handle rendered, as the imperative API takes it.
#[inline]
pub fn key(rendered: KeyBuf) -> crate::Key {
    crate::Key::rendered(rendered)
}

/// Appends a key part to a key being rendered.
#[inline(always)]
pub fn push<T: KeyArg + ?Sized>(out: &mut KeyBuf, part: &T) {
    part.write_key(out);
}

/// Appends a key part whose type the signature leaves open (a generic, `impl` or `dyn`
/// argument): its key form and its type's name (see [`KeyArg::write_key_type`]).
#[inline]
pub fn push_typed<T: KeyArg + ?Sized>(out: &mut KeyBuf, part: &T) {
    crate::key::write_typed(part, out);
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

/// The return value of a `#[cached(hard_timeout = ...)]` fn past its hard timeout: checks
/// at compile time that `R` carries a [`TimeoutError`](crate::TimeoutError).
#[inline]
pub fn timed_out<R: CarriesTimeout>() -> Option<fn(crate::TimeoutError) -> R> {
    Some(R::timed_out)
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
