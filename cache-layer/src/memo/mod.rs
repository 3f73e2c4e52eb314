//! Memoisation: what a `#[cached]` function does around its body, and the same steps for
//! [`Cache::get_or_load`](crate::Cache::get_or_load) and its siblings (`imperative.rs`,
//! `batch.rs`). The steps themselves (single-flight, refresh, the store gate) are the
//! pipeline's; memo holds what is particular to a function's call.
//!
//! # One call
//! 1. **Look up** (`lookup.rs`): the macro renders the key and calls [`lookup_now`], which
//!    answers from memory without building a future: a hit, a stale value (with, for the
//!    first caller to see it stale, a [`Refresh`]) or a miss. On a cache with a shared tier,
//!    what memory cannot answer comes back as a [`Pending`], whose
//!    [`finish`](Pending::finish) reads the shared tier (`shared.rs`) and answers the same way.
//! 2. **Load** (`load.rs`), on a miss: the caller renders the tags and hands its body to
//!    [`Miss::load`], which joins or leads the key's single-flight, takes the site's
//!    distributed lock, runs the body, stores what its return type allows (unless the key or
//!    a tag was invalidated since the load began), and serves the stale-if-error value when
//!    the body fails.
//! 3. **Refresh** (`refresh.rs`), on a stale value with the claim: [`Refresh::spawn`] runs the
//!    same load and store in the background while the caller returns the stale value
//!    ([`Refresh::in_place`] in the caller's task, for a function without `stale`).
//!
//! What is stored for a return type (`Ok` of a `Result`, `Some` of an `Option`, negative
//! entries) is `returns.rs`; a site's settings ([`Site`], [`Policy`], [`LoadOptions`], [`HardTimeout`]) are
//! `options.rs`; what generated code calls is `private.rs`, mounted as
//! `cache_layer::__private`.

mod blocking;
mod handles;
mod heap;
mod keep;
mod load;
mod lookup;
mod options;
mod refresh;
mod returns;
mod shared;

pub use self::blocking::{
    invalidate_after_blocking, invalidate_blocking, lookup_blocking, refresh_blocking,
};
pub use self::handles::refresh;
pub use self::keep::{Cacheable, KeepLocal, KeepShared, Shareable, Storable};
pub(crate) use self::load::store_value;
pub use self::load::Miss;
pub(crate) use self::lookup::lookup_now_at;
pub use self::lookup::{lookup, lookup_now, Lookup, Pending};
pub use self::options::{CacheIf, HardTimeout, LoadOptions, Policy, Site, TtlFrom};
pub use self::refresh::Refresh;
pub use self::returns::{
    Local, OptionShape, Outcome, PlainShape, Probe, ResultOptionShape, ResultShape, Shape,
    ViaOption, ViaPlain, ViaResult, ViaResultOption,
};
pub(crate) use self::shared::decode_shared;
