//! Procedural macros for [`cache-layer`](https://docs.rs/cache-layer): `#[cached]`,
//! `#[invalidates]` and `#[derive(KeyArg)]`. Depend on `cache-layer` and use them from there; the generated code calls
//! `::cache_layer::__private`.

use proc_macro::TokenStream;

mod args;
mod derive_key;
mod duration;
mod expand;
mod handles;
mod invalidates;
mod params;
mod stale;
mod template;

/// Defined in `cache-macros`; use it as `cache_layer::cached`, whose documentation is the
/// reference of every argument, with examples.
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(attr.into(), item.into()).into()
}

/// Defined in `cache-macros`; use it as `cache_layer::invalidates`, whose documentation is
/// the reference of its arguments, with examples.
#[proc_macro_attribute]
pub fn invalidates(attr: TokenStream, item: TokenStream) -> TokenStream {
    invalidates::invalidates(attr.into(), item.into()).into()
}

/// Defined in `cache-macros`; use it as `cache_layer::KeyArg` (`#[derive(KeyArg)]` with
/// `use cache_layer::KeyArg;`), whose trait documentation describes the derived encoding
/// ("Deriving").
#[proc_macro_derive(KeyArg)]
pub fn derive_key_arg(item: TokenStream) -> TokenStream {
    derive_key::derive_key_arg(item.into()).into()
}
