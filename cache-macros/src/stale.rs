//! `stale`: the expansion of a stale-while-revalidate site, whose body runs either for its
//! caller or in a background refresh after the caller has returned.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{ItemFn, Type};

use crate::args::CachedArgs;
use crate::handles::{turbofish, without_binding_mut, Handles, SIBLING_ATTRIBUTES};
use crate::params::Params;

/// With `stale`, the body also runs in a background task after the caller has returned, so
/// the refresh needs owned copies of a borrowed receiver and of reference arguments.
/// Likewise with a timeout, whose load finishes in the background after its caller was
/// answered. `stale`: whether the errors name `stale` (else the timeouts).
pub(crate) fn check_refreshable(params: &Params, stale: bool) -> syn::Result<()> {
    let (runs, names) = if stale {
        (
            "`stale` refreshes in the background",
            "`stale` needs plain argument names (it passes them to the background refresh)",
        )
    } else {
        (
            "with `soft_timeout` or `hard_timeout`, the load runs on a task of its own",
            "`soft_timeout` and `hard_timeout` need plain argument names (they pass them to the load's task)",
        )
    };
    if let Some(receiver) = &params.receiver {
        if crate::params::borrowed_mut(receiver) {
            return Err(syn::Error::new_spanned(
                receiver,
                format!("{runs} with a clone of `self`; `&mut self` cannot be shared"),
            ));
        }
    }
    for (ident, _, ty) in &params.typed {
        if let Type::Reference(reference) = ty {
            if reference.mutability.is_some() {
                return Err(syn::Error::new_spanned(
                    ident,
                    format!(
                        "{runs} with copies of the arguments; a `&mut` argument cannot be copied"
                    ),
                ));
            }
        }
    }
    if let Some(span) = params.patterns.first() {
        return Err(syn::Error::new(*span, names));
    }
    Ok(())
}

/// What [`stale_body`] builds on.
pub(crate) struct Refreshed<'a> {
    pub(crate) ret: &'a TokenStream,
    pub(crate) tags: &'a [TokenStream],
    pub(crate) policy: TokenStream,
    pub(crate) lookup: TokenStream,
    /// With a timeout: the return value past the hard timeout (`Option<fn(TimeoutError) -> R>`);
    /// a miss then runs the body from owned copies, on a task of its own.
    pub(crate) timed: Option<TokenStream>,
}

/// The expansion of a `stale` fn: its body after the site and key, and for a method the
/// hidden sibling that holds the body.
pub(crate) struct StaleExpansion {
    pub(crate) sig: syn::Signature,
    pub(crate) body: TokenStream,
    pub(crate) sibling: Option<TokenStream>,
}

/// With `stale`, one call runs the body either for its caller (a miss) or in a background
/// task after the caller has returned with the stale value (a refresh), never both. The body
/// is emitted once, as written: a method's in a hidden sibling method with the same signature,
/// which the refresh calls on an owned clone of the receiver (the body's `self` cannot be
/// rebound); any other fn's in an async closure. The refresh owns what it runs on: reference
/// arguments are copied with `ToOwned`, the others moved.
pub(crate) fn stale_body(
    func: &ItemFn,
    params: &Params,
    args: &CachedArgs,
    handles: Option<&Handles>,
    parts: Refreshed<'_>,
) -> StaleExpansion {
    let Refreshed {
        ret,
        tags,
        policy,
        lookup,
        timed,
    } = parts;
    let copies = argument_copies(params);
    let (callee, sibling) = match (handles, &params.receiver) {
        // The body is `<fn>_uncached` already.
        (Some(handles), _) => (sibling_callee(params, handles.body_path(func)), None),
        (None, Some(_)) => method_callee(func, params, args),
        (None, None) => (closure_callee(params, ret, &func.block), None),
    };
    let Callee {
        setup,
        foreground,
        refresh_setup,
        background,
    } = callee;
    let miss = match timed {
        Some(timed_out) => quote! {
            #(#copies)*
            #refresh_setup
            __cl_miss
                .load_within(
                    __cl_tags,
                    __cl_policy,
                    ::cache_layer::__private::typed::<#ret, _>(async move { #background.await }),
                    #timed_out,
                )
                .await
        },
        None => quote! {
            __cl_miss
                .load(__cl_tags, __cl_policy, ::cache_layer::__private::typed::<#ret, _>(#foreground))
                .await
        },
    };
    let spawn = quote_spanned! {at(args.stale_span)=>
        __cl_refresh.spawn(__cl_tags, __cl_policy, async move { #background.await });
    };
    let body = quote! {
        let __cl_next = match #lookup {
            ::cache_layer::__private::Lookup::Hit(__cl_value)
            | ::cache_layer::__private::Lookup::Stale(__cl_value, ::std::option::Option::None) => {
                return __cl_value;
            }
            ::cache_layer::__private::Lookup::Stale(__cl_value, ::std::option::Option::Some(__cl_refresh)) => {
                ::std::result::Result::Err((__cl_value, __cl_refresh))
            }
            ::cache_layer::__private::Lookup::Miss(__cl_miss) => ::std::result::Result::Ok(__cl_miss),
        };
        let __cl_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
        let __cl_policy = #policy;
        #setup
        match __cl_next {
            ::std::result::Result::Ok(__cl_miss) => {
                #miss
            }
            ::std::result::Result::Err((__cl_value, __cl_refresh)) => {
                #(#copies)*
                #refresh_setup
                #spawn
                __cl_value
            }
        }
    };
    // A body moved to a sibling keeps the `mut` of its bindings; here they would be unused.
    let mut sig = func.sig.clone();
    if sibling.is_some() || handles.is_some() {
        without_binding_mut(&mut sig);
    }
    StaleExpansion { sig, body, sibling }
}

/// How a `stale` fn reaches its body: `setup` before the miss/refresh split, the call for
/// the caller (`foreground`), and the call for the background refresh (`background`, after
/// `refresh_setup`), which owns what it runs on.
struct Callee {
    setup: TokenStream,
    foreground: TokenStream,
    refresh_setup: TokenStream,
    background: TokenStream,
}

/// A span at `span` for errors, resolved like the rest of the expansion.
fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

/// The referent of an argument that the refresh copies: `&T`, except `&'static T`, which it
/// can keep.
fn borrowed(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(reference)
            if reference.mutability.is_none()
                && reference
                    .lifetime
                    .as_ref()
                    .is_none_or(|l| l.ident != "static") =>
        {
            Some(&reference.elem)
        }
        _ => None,
    }
}

/// The arguments of the refresh's call, in order: the copies of borrowed ones (see
/// [`argument_copies`]), the others moved.
fn owned_arguments(params: &Params) -> Vec<TokenStream> {
    params
        .typed
        .iter()
        .map(|(ident, _, ty)| match borrowed(ty) {
            Some(_) => owned_copy(ident),
            None => ident.to_token_stream(),
        })
        .collect()
}

/// The refresh's copies of the borrowed arguments (`__cl_own_<name>`), each spanned at its
/// argument so that one that is not `ToOwned` is reported there.
fn argument_copies(params: &Params) -> Vec<TokenStream> {
    params
        .typed
        .iter()
        .filter(|(_, _, ty)| borrowed(ty).is_some())
        .map(|(ident, _, _)| {
            let own = format_ident!("__cl_own_{}", ident);
            quote_spanned! {at(ident.span())=>
                let #own = ::std::borrow::ToOwned::to_owned(#ident);
            }
        })
        .collect()
}

/// A borrow of the refresh's copy of the argument `ident` (see [`argument_copies`]).
fn owned_copy(ident: &Ident) -> TokenStream {
    let own = format_ident!("__cl_own_{}", ident);
    quote! { ::std::borrow::Borrow::borrow(&#own) }
}

/// A fn without a receiver: the body is an async closure over the borrowed arguments (typed
/// as written, so they stay references) that moves the others in, called once through
/// `call_once` (which owns the closure, so its future needs no `Sync` captures).
fn closure_callee(params: &Params, ret: &TokenStream, block: &syn::Block) -> Callee {
    let borrowed_args: Vec<_> = params
        .typed
        .iter()
        .filter_map(|(ident, mutability, ty)| borrowed(ty).map(|elem| (ident, mutability, elem)))
        .collect();
    let patterns = borrowed_args
        .iter()
        .map(|(ident, mutability, _)| quote! { #mutability #ident });
    let types = borrowed_args.iter().map(|(_, _, elem)| quote! { &#elem });
    let names = borrowed_args.iter().map(|(ident, _, _)| ident);
    let owned = borrowed_args.iter().map(|(ident, _, _)| owned_copy(ident));
    Callee {
        setup: quote! {
            let __cl_body = async move |(#(#patterns,)*): (#(#types,)*)| -> #ret #block;
        },
        foreground: quote! {
            ::cache_layer::__private::call_once(__cl_body, (#(#names,)*))
        },
        refresh_setup: quote! {},
        background: quote! {
            ::cache_layer::__private::call_once(__cl_body, (#(#owned,)*))
        },
    }
}

/// A method: the body goes into a hidden sibling with the same signature (named at `stale`,
/// so that where an extra method is not allowed, in a trait impl, the error points there).
/// The refresh calls it on a clone of a borrowed receiver; `Self` must be
/// `Clone + Send + Sync + 'static`, which `owned_receiver` checks with an error that says so.
///
/// Why a sibling rather than the method calling itself (with a flag that skips the look-up):
/// the refresh's future must be `Send`, and the compiler cannot tell whether an `async fn`'s
/// own future is `Send` from inside that fn's body (an opaque type's auto traits are not
/// visible in its defining scope). The sibling's future is a different type, checked from
/// outside. A closure (as for fns without a receiver) cannot hold a body that names `self`.
fn method_callee(
    func: &ItemFn,
    params: &Params,
    args: &CachedArgs,
) -> (Callee, Option<TokenStream>) {
    let sibling = format_ident!("__cl_body_{}", func.sig.ident, span = at(args.stale_span));
    let turbofish = turbofish(func);
    let callee = sibling_callee(params, quote! { Self::#sibling #turbofish });
    let mut sibling_sig = func.sig.clone();
    sibling_sig.ident = sibling;
    let attrs = func.attrs.iter().filter(|attr| {
        SIBLING_ATTRIBUTES
            .iter()
            .any(|name| attr.path().is_ident(name))
    });
    let block = &func.block;
    let sibling = quote! {
        #[allow(dead_code)]
        #(#attrs)*
        #[doc(hidden)]
        #sibling_sig #block
    };
    (callee, Some(sibling))
}

/// The body in a sibling fn at `path` with the same signature (the hidden one of a method, or
/// `<fn>_uncached` with `handles`), called with the fn's arguments; the refresh calls it with
/// owned copies, on a clone of a borrowed receiver.
fn sibling_callee(params: &Params, path: TokenStream) -> Callee {
    let names = params.typed.iter().map(|(ident, _, _)| ident);
    let owned = owned_arguments(params);
    // A borrowed receiver is cloned on the refresh path only: a miss borrows `self`.
    let (refresh_setup, own_self) = match &params.receiver {
        Some(receiver) if crate::params::borrowed(receiver) => {
            let setup = quote_spanned! {at(syn::spanned::Spanned::span(receiver))=>
                let __cl_own_self = ::cache_layer::__private::owned_receiver(self);
            };
            (setup, quote! { &__cl_own_self, })
        }
        Some(_) => (quote! {}, quote! { self, }),
        None => (quote! {}, quote! {}),
    };
    let receiver = params.receiver.as_ref().map(|_| quote! { self, });
    Callee {
        setup: quote! {},
        foreground: quote! { #path(#receiver #(#names),*) },
        refresh_setup,
        background: quote! { #path(#own_self #(#owned),*) },
    }
}
