//! Procedural macros for [`cache-layer`](https://docs.rs/cache-layer): `#[cached]` and
//! `#[invalidates]`. Depend on `cache-layer` and use them from there; the generated code calls
//! `::cache_layer::__private`.

use proc_macro::TokenStream;

mod args;
mod expand;
mod template;

/// Memoises an `async fn`. The full reference of its arguments, with examples, is in the
/// `cache-layer` crate docs ("`#[cached]` arguments" and "Keys").
///
/// ```text
/// #[cached(ttl = "5m", key = "user:<id>", invalidate_on = ["users"])]
/// async fn get_user(id: u64) -> Result<User, DbError> { /* ... */ }
/// ```
///
/// Arguments: `ttl` (required), `key`, `invalidate_on`, `stale`, `stale_if_error`,
/// `none_ttl`, `jitter`, `lock`, `cache`, `name`, `version`, `ttl_from`, `cache_if`,
/// `ignore_self`.
/// Without `key`, the key is the function's path and its arguments
/// (`my_app::users::get_user:7`); a method's key must name `self` (or say `ignore_self = true`).
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(attr.into(), item.into()).into()
}

/// Invalidates keys and tags after an `async fn` writer succeeds (`Ok`, or any value of a
/// function that does not return a `Result`). Arguments: key or tag templates (rendered
/// before the body runs, with the same encoding as `#[cached]` keys) and `cache = expr`.
///
/// ```text
/// #[invalidates("user:<id>", "users")]
/// async fn rename_user(id: u64, name: &str) -> Result<(), DbError> { /* ... */ }
/// ```
#[proc_macro_attribute]
pub fn invalidates(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidates(attr.into(), item.into()).into()
}
