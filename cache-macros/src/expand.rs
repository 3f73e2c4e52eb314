//! Code generation. The function keeps its signature exactly as written; only the body is
//! wrapped, so `&self`, generics, `impl Trait` arguments and `?` keep type-checking.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
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
    let stale_arm = if args.stale.is_some() {
        let (copies, rebinds) = owned_copies(&params);
        let body = rewrite_self(block.to_token_stream());
        quote! {
            ::cache_layer::__private::Lookup::Stale(__cl_value, __cl_refresh) => {
                if let ::std::option::Option::Some(__cl_refresh) = __cl_refresh {
                    let __cl_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
                    #(#copies)*
                    __cl_refresh.spawn(
                        __cl_tags,
                        #policy,
                        ::cache_layer::__private::typed::<#ret, _>(async move {
                            #(#rebinds)*
                            #body
                        }),
                    );
                }
                __cl_value
            }
        }
    } else {
        quote! { ::cache_layer::__private::Lookup::Stale(__cl_value, _) => __cl_value, }
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
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
            match ::cache_layer::__private::lookup(__cl_cache, &__CL_SITE, __cl_shape, __cl_key.as_str()).await {
                ::cache_layer::__private::Lookup::Hit(__cl_value) => __cl_value,
                #stale_arm
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

/// With `stale`, the body also runs in a background task after the caller has returned, so it
/// needs owned copies of `self` and the arguments.
fn check_refreshable(params: &Params) -> syn::Result<()> {
    if let Some(receiver) = &params.receiver {
        if receiver.mutability.is_some() && receiver.reference.is_some() {
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
            "`stale` needs plain argument names (it copies them for the background refresh)",
        ));
    }
    Ok(())
}

/// `let` statements cloning `self` and the arguments before the refresh task is spawned, and
/// the statements inside the task that rebind them under their original names and types.
fn owned_copies(params: &Params) -> (Vec<TokenStream>, Vec<TokenStream>) {
    let mut copies = Vec::new();
    let mut rebinds = Vec::new();
    if let Some(receiver) = &params.receiver {
        if receiver.reference.is_some() {
            copies.push(quote! { let __cl_own_self = ::std::clone::Clone::clone(self); });
            rebinds.push(quote! { let __cl_self = &__cl_own_self; });
        } else {
            copies.push(quote! { let __cl_own_self = ::std::clone::Clone::clone(&self); });
            rebinds.push(quote! { #[allow(unused_mut)] let mut __cl_self = __cl_own_self; });
        }
    }
    for (ident, mutability, ty) in &params.typed {
        let owned = format_ident!("__cl_own_{}", ident);
        if let Type::Reference(reference) = ty {
            let inner = &reference.elem;
            copies.push(quote! { let #owned = ::std::borrow::ToOwned::to_owned(#ident); });
            rebinds.push(quote! {
                let #ident: &#inner = ::std::borrow::Borrow::borrow(&#owned);
            });
        } else {
            copies.push(quote! { let #owned = ::std::clone::Clone::clone(&#ident); });
            rebinds.push(quote! { let #mutability #ident = #owned; });
        }
    }
    (copies, rebinds)
}

/// Replaces the `self` keyword by `__cl_self` (not in `self::` paths), for the copy of the
/// body that runs on a clone of `self`.
fn rewrite_self(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        match token {
            TokenTree::Ident(ident) if ident == "self" => {
                let path = matches!(iter.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                if path {
                    out.push(TokenTree::Ident(ident));
                } else {
                    out.push(TokenTree::Ident(Ident::new("__cl_self", ident.span())));
                }
            }
            TokenTree::Group(group) => {
                let mut rewritten = Group::new(group.delimiter(), rewrite_self(group.stream()));
                rewritten.set_span(group.span());
                out.push(TokenTree::Group(rewritten));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
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
