//! Code generation. The function keeps its signature exactly as written; only the body is
//! wrapped, so `&self`, generics, `impl Trait` arguments and `?` keep type-checking.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

use crate::args::{CachedArgs, InvalidatesArgs};
use crate::template::Template;

/// What the macros need to know about the function's parameters.
struct Params {
    names: Vec<String>,
    receiver: Option<syn::Receiver>,
    typed: Vec<(Ident, Option<syn::token::Mut>, Type)>,
    /// Arguments bound by a pattern rather than a name (`(a, b): (u8, u8)`).
    patterns: Vec<Span>,
}

fn params(func: &ItemFn) -> Params {
    let mut params = Params {
        names: Vec::new(),
        receiver: None,
        typed: Vec::new(),
        patterns: Vec::new(),
    };
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => params.receiver = Some(receiver.clone()),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => {
                    params.names.push(pat.ident.to_string());
                    params
                        .typed
                        .push((pat.ident.clone(), pat.mutability, (*typed.ty).clone()));
                }
                other => params.patterns.push(other_span(other)),
            },
        }
    }
    params
}

fn other_span(pat: &Pat) -> Span {
    syn::spanned::Spanned::span(pat)
}

fn return_type(func: &ItemFn) -> TokenStream {
    match &func.sig.output {
        ReturnType::Default => quote! { () },
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    }
}

fn require_async(func: &ItemFn, macro_name: &str) -> syn::Result<()> {
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            func.sig.fn_token,
            format!("#[{macro_name}] can only be used on an `async fn`"),
        ));
    }
    Ok(())
}

fn cache_expr(cache: Option<&syn::Expr>) -> TokenStream {
    match cache {
        Some(expr) => quote! { &(#expr) },
        None => quote! { ::cache_layer::__private::default_cache() },
    }
}

fn shape_of(ret: &TokenStream) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use ::cache_layer::__private::{
            ViaOption as _, ViaPlain as _, ViaResult as _, ViaResultOption as _,
        };
        (&&&&::cache_layer::__private::Probe::<#ret>::new()).shape()
    }}
}

fn duration(d: std::time::Duration) -> TokenStream {
    let nanos = d.as_nanos() as u64;
    quote! { ::cache_layer::__private::Duration::from_nanos(#nanos) }
}

fn optional_duration(d: Option<std::time::Duration>) -> TokenStream {
    match d {
        Some(d) => {
            let d = duration(d);
            quote! { ::std::option::Option::Some(#d) }
        }
        None => quote! { ::std::option::Option::None },
    }
}

/// Emits the error, and the function unchanged so that IDEs keep working.
fn with_original(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote! { #error #item }
}

/// Parses the function and runs `expand` on it; any error is emitted with the original item.
fn expand_with(
    attr: TokenStream,
    item: TokenStream,
    expand: fn(TokenStream, ItemFn) -> syn::Result<TokenStream>,
) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => return with_original(error, item),
    };
    match expand(attr, func) {
        Ok(tokens) => tokens,
        Err(error) => with_original(error, item),
    }
}

/// Collects every error so that one compile shows them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

pub(crate) fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_with(attr, item, expand_cached)
}

fn expand_cached(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut push = |e: syn::Error| errors.push(e);
    if let Err(e) = require_async(&func, "cached") {
        push(e);
    }
    let args: Option<CachedArgs> = syn::parse2(attr).map_err(&mut push).ok();
    let params = params(&func);
    let has_self = params.receiver.is_some();
    let key = args.as_ref().and_then(|a| a.key.as_ref()).and_then(|lit| {
        Template::parse(lit, &params.names, has_self)
            .map_err(&mut push)
            .ok()
    });
    let tags: Vec<Template> = args
        .iter()
        .flat_map(|a| &a.invalidate_on)
        .filter_map(|lit| {
            Template::parse(lit, &params.names, has_self)
                .map_err(&mut push)
                .ok()
        })
        .collect();
    if let Some(args) = &args {
        if args.key.is_none() {
            for span in &params.patterns {
                push(syn::Error::new(
                    *span,
                    "a pattern argument cannot be part of the default key; give `key = \"...\"`",
                ));
            }
        }
        // A key that did not parse has its own error already.
        if args.key.is_none() || key.is_some() {
            if let Err(e) = check_receiver_keyed(&func, &params, args, key.as_ref()) {
                push(e);
            }
        }
        if args.stale.is_some() {
            if let Err(e) = check_refreshable(&params) {
                push(e);
            }
        }
    }
    errors.finish()?;
    let args = args.expect("no errors means the arguments parsed");

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let ret = return_type(&func);
    let fn_name = sig.ident.to_string();
    // The key namespace is the function's path (and version), whatever its `name`: two
    // functions never read each other's entries through a shared display name.
    let version = args.version.map(|v| format!("@v{v}")).unwrap_or_default();
    let namespace = quote! { ::core::concat!(::core::module_path!(), "::", #fn_name, #version) };
    let site_name = match &args.name {
        Some(name) => name.to_token_stream(),
        None => quote! { ::core::concat!(::core::module_path!(), "::", #fn_name) },
    };
    let ttl = duration(args.ttl);
    let stale = duration(args.stale.unwrap_or_default());
    let stale_if_error = duration(args.stale_if_error.unwrap_or_default());
    let none_ttl = optional_duration(args.none_ttl);
    let lock = optional_duration(args.lock);
    let jitter = match args.jitter {
        Some(j) => quote! { ::std::option::Option::Some(#j) },
        None => quote! { ::std::option::Option::None },
    };
    let cache = cache_expr(args.cache.as_ref());
    let shape = shape_of(&ret);
    let mut tags: Vec<TokenStream> = tags
        .iter()
        .map(|t| {
            let render = t.render();
            quote! { #render.into_string() }
        })
        .collect();
    let key = match &key {
        Some(template) => explicit_key(template, &version, &mut tags),
        None => default_key(&params, &namespace),
    };
    let policy = policy(&args, &ret);
    let site = quote! {
        static __CL_SITE: ::cache_layer::__private::Site = ::cache_layer::__private::Site {
            name: #site_name,
            ttl: #ttl,
            stale: #stale,
            stale_if_error: #stale_if_error,
            none_ttl: #none_ttl,
            jitter: #jitter,
            lock: #lock,
        };
        let __cl_cache: &::cache_layer::Cache = #cache;
        let __cl_shape = #shape;
        let __cl_key: ::cache_layer::__private::KeyBuf = #key;
    };
    let lookup = quote! {
        ::cache_layer::__private::lookup(__cl_cache, &__CL_SITE, __cl_shape, __cl_key.as_str()).await
    };
    if args.stale.is_some() {
        let refreshed = stale_body(
            &func,
            &params,
            &args,
            Refreshed {
                ret: &ret,
                tags: &tags,
                policy,
                lookup,
            },
        );
        let StaleExpansion { sig, body, sibling } = refreshed;
        return Ok(quote! {
            #(#attrs)*
            #vis #sig {
                #site
                #body
            }
            #sibling
        });
    }
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #site
            match #lookup {
                ::cache_layer::__private::Lookup::Hit(__cl_value) => __cl_value,
                ::cache_layer::__private::Lookup::Stale(__cl_value, _) => __cl_value,
                ::cache_layer::__private::Lookup::Miss(__cl_miss) => {
                    let __cl_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
                    __cl_miss
                        .load(__cl_tags, #policy, ::cache_layer::__private::typed::<#ret, _>(async move #block))
                        .await
                }
            }
        }
    })
}

/// An explicit key; with a version, stored as `<key>@vN` and tagged `<key>` so that
/// invalidating the key as written (`#[invalidates]`, `cache.invalidate`) still reaches it.
fn explicit_key(template: &Template, version: &str, tags: &mut Vec<TokenStream>) -> TokenStream {
    let render = template.render();
    if version.is_empty() {
        return render;
    }
    let suffix_len = version.len();
    tags.push(quote! {
        ::std::string::String::from(&__cl_key.as_str()[..__cl_key.len() - #suffix_len])
    });
    quote! {{
        let mut __cl_out = #render;
        __cl_out.push_str(#version);
        __cl_out
    }}
}

/// `::cache_layer::__private::policy(...)` with the fn's `ttl_from` (called through a closure
/// that accepts `Duration` or `Option<Duration>`) and `cache_if`, spanned at the user's path
/// so that a wrong signature is reported there.
fn policy(args: &CachedArgs, ret: &TokenStream) -> TokenStream {
    let none = quote! { ::std::option::Option::None };
    let ttl_from = args.ttl_from.as_ref().map_or(none.clone(), |path| {
        let span = syn::spanned::Spanned::span(path);
        quote_spanned! {span=>
            ::std::option::Option::Some(|__cl_value| {
                ::cache_layer::__private::IntoTtl::into_ttl(#path(__cl_value))
            })
        }
    });
    let cache_if = args.cache_if.as_ref().map_or(none, |path| {
        let span = syn::spanned::Spanned::span(path);
        quote_spanned! {span=> ::std::option::Option::Some(#path) }
    });
    quote! { ::cache_layer::__private::policy::<#ret, _>(__cl_shape, #ttl_from, #cache_if) }
}

/// The function's path (and `@vN` with a `version`) followed by every argument:
/// `my_crate::get_user:7:42`.
fn default_key(params: &Params, namespace: &TokenStream) -> TokenStream {
    let args = params.typed.iter().map(|(ident, _, _)| {
        quote! {
            __cl_out.push(':');
            ::cache_layer::__private::push(&mut __cl_out, &#ident);
        }
    });
    quote! {{
        let mut __cl_out = ::cache_layer::__private::KeyBuf::new();
        __cl_out.push_str(#namespace);
        #(#args)*
        __cl_out
    }}
}

/// A method's entries must depend on its receiver, or `TenantRepo { tenant: 1 }.count()`
/// answers for tenant 2: its key names `self` (`<self.tenant>`), or `ignore_self = true` says
/// the receiver does not change the answer. The default key never names `self`. A cache taken
/// from `self` (`cache = self.cache`) is not enough: `Cache` is a handle that receivers share.
fn check_receiver_keyed(
    func: &ItemFn,
    params: &Params,
    args: &CachedArgs,
    key: Option<&Template>,
) -> syn::Result<()> {
    let Some(receiver) = &params.receiver else {
        return Ok(());
    };
    if args.ignore_self || key.is_some_and(Template::names_self) {
        return Ok(());
    }
    let mut example = format!("{}:<self.id>", func.sig.ident);
    for name in &params.names {
        example.push_str(&format!(":<{name}>"));
    }
    let problem = if key.is_some() {
        "this method's key names nothing of `self`"
    } else {
        "the default key of a method leaves out `self`"
    };
    Err(syn::Error::new_spanned(
        receiver,
        format!(
            "{problem}, so every receiver would share one entry; \
             name what identifies the receiver in the key, e.g. `key = \"{example}\"`, \
             or write `ignore_self = true` if the receiver does not change the answer (a pool, a client)"
        ),
    ))
}

/// With `stale`, the body also runs in a background task after the caller has returned, so
/// the refresh needs owned copies of a borrowed receiver and of reference arguments.
fn check_refreshable(params: &Params) -> syn::Result<()> {
    if let Some(receiver) = &params.receiver {
        if matches!(&*receiver.ty, Type::Reference(r) if r.mutability.is_some()) {
            return Err(syn::Error::new_spanned(
                receiver,
                "`stale` refreshes in the background with a clone of `self`; `&mut self` cannot be shared",
            ));
        }
    }
    for (ident, _, ty) in &params.typed {
        if let Type::Reference(reference) = ty {
            if reference.mutability.is_some() {
                return Err(syn::Error::new_spanned(
                    ident,
                    "`stale` refreshes in the background with copies of the arguments; a `&mut` argument cannot be copied",
                ));
            }
        }
    }
    if let Some(span) = params.patterns.first() {
        return Err(syn::Error::new(
            *span,
            "`stale` needs plain argument names (it passes them to the background refresh)",
        ));
    }
    Ok(())
}

/// What [`stale_body`] builds on.
struct Refreshed<'a> {
    ret: &'a TokenStream,
    tags: &'a [TokenStream],
    policy: TokenStream,
    lookup: TokenStream,
}

/// The expansion of a `stale` fn: its body after the site and key, and for a method the
/// hidden sibling that holds the body.
struct StaleExpansion {
    sig: syn::Signature,
    body: TokenStream,
    sibling: Option<TokenStream>,
}

/// With `stale`, one call runs the body either for its caller (a miss) or in a background
/// task after the caller has returned with the stale value (a refresh), never both. The body
/// is emitted once, as written: a method's in a hidden sibling method with the same signature,
/// which the refresh calls on an owned clone of the receiver (the body's `self` cannot be
/// rebound); any other fn's in an async closure. The refresh owns what it runs on: reference
/// arguments are copied with `ToOwned`, the others moved.
fn stale_body(
    func: &ItemFn,
    params: &Params,
    args: &CachedArgs,
    parts: Refreshed<'_>,
) -> StaleExpansion {
    let Refreshed {
        ret,
        tags,
        policy,
        lookup,
    } = parts;
    let copies: Vec<TokenStream> = params
        .typed
        .iter()
        .filter(|(_, _, ty)| borrowed(ty).is_some())
        .map(|(ident, _, _)| {
            let own = format_ident!("__cl_own_{}", ident);
            quote_spanned! {at(ident.span())=>
                let #own = ::std::borrow::ToOwned::to_owned(#ident);
            }
        })
        .collect();
    let (callee, sibling) = match &params.receiver {
        Some(receiver) => method_callee(func, params, args, receiver),
        None => (closure_callee(params, ret, &func.block), None),
    };
    let Callee {
        setup,
        foreground,
        refresh_setup,
        background,
    } = callee;
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
                __cl_miss
                    .load(__cl_tags, __cl_policy, ::cache_layer::__private::typed::<#ret, _>(#foreground))
                    .await
            }
            ::std::result::Result::Err((__cl_value, __cl_refresh)) => {
                #(#copies)*
                #refresh_setup
                #spawn
                __cl_value
            }
        }
    };
    let sig = match sibling {
        Some(_) => without_binding_mut(&func.sig),
        None => func.sig.clone(),
    };
    StaleExpansion { sig, body, sibling }
}

/// The signature of a method whose body moved to its sibling, as callers see it, without
/// `mut` on its bindings: the sibling keeps them; here they would be unused.
fn without_binding_mut(sig: &syn::Signature) -> syn::Signature {
    let mut sig = sig.clone();
    for input in &mut sig.inputs {
        match input {
            FnArg::Receiver(receiver) => receiver.mutability = None,
            FnArg::Typed(typed) => {
                if let Pat::Ident(pat) = &mut *typed.pat {
                    pat.mutability = None;
                }
            }
        }
    }
    sig
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

/// The arguments of the refresh's call, in order: owned copies of borrowed ones (see
/// `copies` in [`stale_body`]), the others moved.
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

/// A borrow of the refresh's copy of the argument `ident`.
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

/// Attributes the hidden sibling of a method keeps: lints and conditional compilation.
const SIBLING_ATTRIBUTES: [&str; 7] = [
    "cfg", "cfg_attr", "allow", "warn", "deny", "forbid", "expect",
];

/// A method: the body goes into a hidden sibling with the same signature (named at `stale`,
/// so that where an extra method is not allowed, in a trait impl, the error points there).
/// The refresh calls it on a clone of a borrowed receiver; `Self` must be
/// `Clone + Send + Sync + 'static`, which `owned_receiver` checks with an error that says so.
fn method_callee(
    func: &ItemFn,
    params: &Params,
    args: &CachedArgs,
    receiver: &syn::Receiver,
) -> (Callee, Option<TokenStream>) {
    let sig = &func.sig;
    let sibling = format_ident!("__cl_body_{}", sig.ident, span = at(args.stale_span));
    let generics: Vec<&Ident> = sig
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            syn::GenericParam::Type(param) => Some(&param.ident),
            syn::GenericParam::Const(param) => Some(&param.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    let turbofish = if generics.is_empty() {
        quote! {}
    } else {
        quote! { ::<#(#generics),*> }
    };
    let names = params.typed.iter().map(|(ident, _, _)| ident);
    let owned = owned_arguments(params);
    // A borrowed receiver is cloned on the refresh path only: a miss borrows `self`.
    let (refresh_setup, own_self) = if matches!(&*receiver.ty, Type::Reference(_)) {
        let setup = quote_spanned! {at(syn::spanned::Spanned::span(receiver))=>
            let __cl_own_self = ::cache_layer::__private::owned_receiver(self);
        };
        (setup, quote! { &__cl_own_self })
    } else {
        (quote! {}, quote! { self })
    };
    let mut sibling_sig = sig.clone();
    sibling_sig.ident = sibling.clone();
    let attrs = func.attrs.iter().filter(|attr| {
        SIBLING_ATTRIBUTES
            .iter()
            .any(|name| attr.path().is_ident(name))
    });
    let block = &func.block;
    let callee = Callee {
        setup: quote! {},
        foreground: quote! { Self::#sibling #turbofish(self, #(#names),*) },
        refresh_setup,
        background: quote! { Self::#sibling #turbofish(#own_self, #(#owned),*) },
    };
    let sibling = quote! {
        #[allow(dead_code)]
        #(#attrs)*
        #[doc(hidden)]
        #sibling_sig #block
    };
    (callee, Some(sibling))
}

pub(crate) fn invalidates(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_with(attr, item, expand_invalidates)
}

fn expand_invalidates(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut push = |e: syn::Error| errors.push(e);
    if let Err(e) = require_async(&func, "invalidates") {
        push(e);
    }
    let args: Option<InvalidatesArgs> = syn::parse2(attr).map_err(&mut push).ok();
    let params = params(&func);
    let names: Vec<Template> = args
        .iter()
        .flat_map(|a| &a.names)
        .filter_map(|lit| {
            Template::parse(lit, &params.names, params.receiver.is_some())
                .map_err(&mut push)
                .ok()
        })
        .collect();
    errors.finish()?;
    let args = args.expect("no errors means the arguments parsed");
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let ret = return_type(&func);
    let cache = cache_expr(args.cache.as_ref());
    let shape = shape_of(&ret);
    let names = names.iter().map(|t| {
        let render = t.render();
        quote! { #render.into_string() }
    });
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __cl_cache: &::cache_layer::Cache = #cache;
            // Rendered before the body runs: the body may consume the arguments.
            let __cl_names: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#names),*];
            let __cl_result: #ret = ::cache_layer::__private::typed::<#ret, _>(async move #block).await;
            ::cache_layer::__private::invalidate_after(__cl_cache, #shape, &__cl_result, __cl_names).await;
            __cl_result
        }
    })
}
