//! Procedural macros for [`cache-layer`](https://docs.rs/cache-layer): `#[cached]` and
//! `#[invalidates]`. Depend on `cache-layer` and use them from there; the generated code calls
//! `::cache_layer::__private`.

use proc_macro::TokenStream;

mod args;
mod expand;
mod template;

/// Memoises an `async fn`. See the `cache-layer` crate docs for the full reference.
///
/// ```text
/// #[cached(ttl = "5m", key = "user:<id>", invalidate_on = ["users"])]
/// async fn get_user(id: u64) -> Result<User, DbError> { /* ... */ }
/// ```
///
/// Arguments: `ttl` (required), `key`, `invalidate_on`, `stale`, `stale_if_error`,
/// `none_ttl`, `jitter`, `lock`, `cache`, `name`.
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(attr.into(), item.into()).into()
}

/// Invalidates keys and tags after an `async fn` writer succeeds (`Ok`, or any value of a
/// function that does not return a `Result`).
///
/// ```text
/// #[invalidates("user:<id>", "users")]
/// async fn rename_user(id: u64, name: &str) -> Result<(), DbError> { /* ... */ }
/// ```
#[proc_macro_attribute]
pub fn invalidates(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidates(attr.into(), item.into()).into()
}
