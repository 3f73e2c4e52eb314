//! Code generation. The function keeps its signature exactly as written; only the body is
//! wrapped, so `&self`, generics, `impl Trait` arguments and `?` keep type-checking.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::{ItemFn, ReturnType};

use crate::args::CachedArgs;
use crate::handles::{self, Handles};
use crate::params::{params, Params};
use crate::stale::{check_refreshable, stale_body, Refreshed, StaleExpansion};
use crate::template::Template;

pub(crate) fn return_type(func: &ItemFn) -> TokenStream {
    match &func.sig.output {
        ReturnType::Default => quote! { () },
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    }
}

/// `let __cl_cache: &Cache = ...;`. A cache taken from a receiver that the body consumes
/// (`self: Arc<Self>` with `cache = self.cache`) is a clone of the handle: the body owns the
/// receiver while the cache is in use.
pub(crate) fn cache_binding(cache: Option<&syn::Expr>, params: &Params) -> TokenStream {
    let owned_receiver = params
        .receiver
        .as_ref()
        .is_some_and(|receiver| !crate::params::borrowed(receiver));
    match cache {
        Some(expr) if owned_receiver => quote! {
            let __cl_cache_handle: ::cache_layer::Cache = ::std::clone::Clone::clone(&(#expr));
            let __cl_cache: &::cache_layer::Cache = &__cl_cache_handle;
        },
        Some(expr) => quote! { let __cl_cache: &::cache_layer::Cache = &(#expr); },
        None => quote! {
            let __cl_cache: &::cache_layer::Cache = ::cache_layer::__private::default_cache();
        },
    }
}

pub(crate) fn shape_of(ret: &TokenStream) -> TokenStream {
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
pub(crate) fn expand_with(
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
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

pub(crate) fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_with(attr, item, expand_cached)
}

/// A `#[cached]` fn that passed every check.
struct Checked {
    args: CachedArgs,
    params: Params,
    key: Option<Template>,
    tags: Vec<Template>,
}

/// Parses and checks the arguments against the fn, collecting every error.
fn check_cached(attr: TokenStream, func: &ItemFn) -> syn::Result<Checked> {
    let mut errors = Errors::default();
    let mut push = |e: syn::Error| errors.push(e);
    let args: Option<CachedArgs> = syn::parse2(attr).map_err(&mut push).ok();
    let params = params(func);
    if let Some(args) = &args {
        for e in check_sync(func, args)
            .into_iter()
            .chain(check_handles(args, &params))
        {
            push(e);
        }
    }
    let has_self = params.receiver.is_some();
    let mut parse = |lit: &syn::LitStr| {
        Template::parse(lit, &params.names, has_self)
            .map_err(&mut push)
            .ok()
    };
    let key = args
        .as_ref()
        .and_then(|a| a.key.as_ref())
        .and_then(&mut parse);
    let tags: Vec<Template> = args
        .iter()
        .flat_map(|a| &a.invalidate_on)
        .filter_map(parse)
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
            if let Err(e) = check_receiver_keyed(func, &params, args, key.as_ref()) {
                push(e);
            }
        }
        if args.stale.is_some() || args.timed() {
            if let Err(e) = check_refreshable(&params, args.stale.is_some()) {
                push(e);
            }
        }
    }
    errors.finish()?;
    let args = args.expect("no errors means the arguments parsed");
    Ok(Checked {
        args,
        params,
        key,
        tags,
    })
}

/// A sync fn's site is a `local` one that blocks: what needs a runtime is refused, saying why.
fn check_sync(func: &ItemFn, args: &CachedArgs) -> Vec<syn::Error> {
    if func.sig.asyncness.is_some() {
        return Vec::new();
    }
    let mut errors = Vec::new();
    if args.stale.is_some() {
        errors.push(syn::Error::new(
            args.stale_span,
            "`stale` refreshes in the background on the Tokio runtime, which a sync fn does not need; \
             drop `stale` (a soft purge still makes the next caller reload), or make the fn `async`",
        ));
    }
    if let Some(span) = args.lock_span {
        errors.push(syn::Error::new(
            span,
            "a sync fn keeps its values in this process's memory (it never touches Redis), so \
             `lock` (which makes other instances wait for a value in Redis) cannot apply: drop it, \
             or make the fn `async`",
        ));
    }
    if let Some(span) = args.timeout_span {
        errors.push(syn::Error::new(
            span,
            "`soft_timeout` and `hard_timeout` answer the caller while the load goes on in a task \
             of its own on the Tokio runtime, which a sync fn cannot leave behind: drop them, or \
             make the fn `async`",
        ));
    }
    errors
}

/// `handles` passes the arguments on to `<fn>_uncached` by name.
fn check_handles(args: &CachedArgs, params: &Params) -> Vec<syn::Error> {
    if args.handles.is_none() {
        return Vec::new();
    }
    params
        .patterns
        .iter()
        .map(|span| {
            syn::Error::new(
                *span,
                "`handles` passes each argument on to `<fn>_uncached` by its name; bind this argument to a name",
            )
        })
        .collect()
}

fn expand_cached(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let Checked {
        args,
        params,
        key,
        tags,
    } = check_cached(attr, &func)?;
    let ret = return_type(&func);
    let mut tags: Vec<TokenStream> = tags
        .iter()
        .map(|t| {
            let render = t.render(&[]);
            quote! { #render.into_string() }
        })
        .collect();
    let rendered = render_key(&args, &func, &params, key.as_ref(), &mut tags);
    let cache = cache_binding(args.cache.as_ref(), &params);
    let site = site(&args, &func, &cache, &rendered);
    let policy = policy(&args, &ret);
    let handles = args.handles.map(|span| Handles::new(&func, &params, span));
    let siblings = handles.as_ref().map(|handles| {
        let parts = handles::Parts {
            site: &site,
            cache: &cache,
            key: &rendered,
            tags: &tags,
            policy: &policy,
            ret: &ret,
        };
        handles.items(&func, &params, parts)
    });
    let cached = if func.sig.asyncness.is_none() {
        sync_fn(&func, &params, handles.as_ref(), &site, &tags, &policy)
    } else {
        async_fn(
            &args,
            &func,
            &params,
            handles.as_ref(),
            &site,
            &tags,
            &policy,
        )
    };
    Ok(quote! { #cached #siblings })
}

/// The cached fn of an `async fn`: the site, the look-up, and the load of a miss (or a
/// refresh of a stale entry).
fn async_fn(
    args: &CachedArgs,
    func: &ItemFn,
    params: &Params,
    handles: Option<&Handles>,
    site: &TokenStream,
    tags: &[TokenStream],
    policy: &TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs, vis, block, ..
    } = func;
    let ret = return_type(func);
    let policy = policy.clone();
    // A memory hit is answered without building (and moving) the shared tier's future.
    let lookup = quote! {
        match ::cache_layer::__private::lookup_now(__cl_cache, &__CL_SITE, __cl_shape, __cl_key.as_str()) {
            ::std::result::Result::Ok(__cl_found) => __cl_found,
            ::std::result::Result::Err(__cl_pending) => __cl_pending.finish().await,
        }
    };
    if args.stale.is_some() || args.timed() {
        let parts = Refreshed {
            ret: &ret,
            tags,
            policy,
            lookup,
            timed: args.timed().then(|| timed_out(args, &ret)),
        };
        let StaleExpansion { sig, body, sibling } = stale_body(func, params, args, handles, parts);
        return quote! {
            #(#attrs)*
            #vis #sig {
                #site
                #body
            }
            #sibling
        };
    }
    let (sig, load) = match handles {
        Some(handles) => {
            let mut sig = func.sig.clone();
            handles::without_binding_mut(&mut sig);
            (sig, handles.call_body(func, params))
        }
        None => (func.sig.clone(), quote! { async move #block }),
    };
    // Without `stale`, an entry is stale only after a soft purge: the body cannot run after the
    // caller returns, so the caller that claims the refresh reloads in place (the others are
    // served the stale value meanwhile).
    quote! {
        #(#attrs)*
        #vis #sig {
            #site
            let __cl_refresh;
            let __cl_miss = match #lookup {
                ::cache_layer::__private::Lookup::Hit(__cl_value)
                | ::cache_layer::__private::Lookup::Stale(__cl_value, ::std::option::Option::None) => {
                    return __cl_value;
                }
                ::cache_layer::__private::Lookup::Stale(_, ::std::option::Option::Some(__cl_claimed)) => {
                    __cl_refresh = __cl_claimed;
                    __cl_refresh.in_place()
                }
                ::cache_layer::__private::Lookup::Miss(__cl_miss) => __cl_miss,
            };
            let __cl_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
            __cl_miss
                .load(__cl_tags, #policy, ::cache_layer::__private::typed::<#ret, _>(#load))
                .await
        }
    }
}

/// The cached fn of a sync fn: a `local` site whose miss blocks on the key's flight (see
/// `Miss::load_blocking`); a stale entry (after a soft purge) is reloaded in place.
fn sync_fn(
    func: &ItemFn,
    params: &Params,
    handles: Option<&Handles>,
    site: &TokenStream,
    tags: &[TokenStream],
    policy: &TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs, vis, block, ..
    } = func;
    let ret = return_type(func);
    let (sig, load) = match handles {
        Some(handles) => {
            let mut sig = func.sig.clone();
            handles::without_binding_mut(&mut sig);
            (sig, handles.call_body(func, params))
        }
        None => (func.sig.clone(), quote! { #block }),
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #site
            let __cl_refresh;
            let __cl_miss = match ::cache_layer::__private::lookup_blocking(__cl_cache, &__CL_SITE, __cl_shape, __cl_key.as_str()) {
                ::cache_layer::__private::Lookup::Hit(__cl_value)
                | ::cache_layer::__private::Lookup::Stale(__cl_value, ::std::option::Option::None) => {
                    return __cl_value;
                }
                ::cache_layer::__private::Lookup::Stale(_, ::std::option::Option::Some(__cl_claimed)) => {
                    __cl_refresh = __cl_claimed;
                    __cl_refresh.in_place()
                }
                ::cache_layer::__private::Lookup::Miss(__cl_miss) => __cl_miss,
            };
            let __cl_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
            __cl_miss.load_blocking(__cl_tags, #policy, || -> #ret { #load })
        }
    }
}

/// The return value past the hard timeout: `timed_out::<R>()`, which needs `R` to carry a
/// `TimeoutError` (reported at `hard_timeout`); `None` without a hard timeout.
fn timed_out(args: &CachedArgs, ret: &TokenStream) -> TokenStream {
    if args.hard_timeout.is_none() {
        return quote! { ::std::option::Option::None };
    }
    quote_spanned! {args.hard_timeout_span.resolved_at(proc_macro2::Span::call_site())=>
        ::cache_layer::__private::timed_out::<#ret>()
    }
}

/// The rendered key (a `KeyBuf` expression) of a call; a versioned explicit key, and a key
/// with arguments whose type the signature leaves open, add the key as written to `tags`.
fn render_key(
    args: &CachedArgs,
    func: &ItemFn,
    params: &Params,
    key: Option<&Template>,
    tags: &mut Vec<TokenStream>,
) -> TokenStream {
    let fn_name = func.sig.ident.to_string();
    // The key namespace is the function's path (and version), whatever its `name`: two
    // functions never read each other's entries through a shared display name.
    let version = args.version.map(|v| format!("@v{v}")).unwrap_or_default();
    let namespace = quote! { ::core::concat!(::core::module_path!(), "::", #fn_name, #version) };
    match key {
        Some(template) => explicit_key(template, &version, &params.open, tags),
        None => default_key(params, &namespace, tags),
    }
}

/// The start of every `#[cached]` body (and of its `<fn>_refresh`): the site's `static`
/// configuration, the cache (`cache`, its binding), the shape of the return type (kept in
/// memory only for a `local` site and a sync fn) and the rendered key (`key`).
fn site(args: &CachedArgs, func: &ItemFn, cache: &TokenStream, key: &TokenStream) -> TokenStream {
    let fn_name = func.sig.ident.to_string();
    let site_name = match &args.name {
        Some(name) => name.to_token_stream(),
        None => quote! { ::core::concat!(::core::module_path!(), "::", #fn_name) },
    };
    let ttl = duration(args.ttl);
    let stale = duration(args.stale.unwrap_or_default());
    let stale_if_error = duration(args.stale_if_error.unwrap_or_default());
    let none_ttl = optional_duration(args.none_ttl);
    let lock = optional_duration(args.lock);
    let soft_timeout = optional_duration(args.soft_timeout);
    let hard_timeout = optional_duration(args.hard_timeout);
    let finish_on_hard = args.finish_on_hard_timeout;
    let jitter = match args.jitter {
        Some(j) => quote! { ::std::option::Option::Some(#j) },
        None => quote! { ::std::option::Option::None },
    };
    let mut shape = shape_of(&return_type(func));
    if args.local || func.sig.asyncness.is_none() {
        shape = quote! { ::cache_layer::__private::Local(#shape) };
    }
    quote! {
        static __CL_SITE: ::cache_layer::__private::Site = ::cache_layer::__private::Site {
            name: #site_name,
            ttl: #ttl,
            stale: #stale,
            stale_if_error: #stale_if_error,
            none_ttl: #none_ttl,
            jitter: #jitter,
            lock: #lock,
            counters: ::cache_layer::__private::SiteSlot::new(),
            timeouts: ::cache_layer::__private::Timeouts {
                soft: #soft_timeout,
                hard: #hard_timeout,
                finish_on_hard: #finish_on_hard,
            },
        };
        #cache
        let __cl_shape = #shape;
        let __cl_key: ::cache_layer::__private::KeyBuf = #key;
    }
}

/// An explicit key; with a version, stored as `<key>@vN`, and with placeholders of `open`
/// arguments, with their types' names (see `KeyArg::write_key_type`): then also tagged
/// `<key>` as written, so that invalidating that (`#[invalidates]`, `cache.invalidate`)
/// still reaches it.
fn explicit_key(
    template: &Template,
    version: &str,
    open: &[String],
    tags: &mut Vec<TokenStream>,
) -> TokenStream {
    let render = template.render(open);
    if template.names_any(open) {
        let as_written = template.render(&[]);
        tags.push(quote! { #as_written.into_string() });
    } else if !version.is_empty() {
        let suffix_len = version.len();
        tags.push(quote! {
            ::std::string::String::from(&__cl_key.as_str()[..__cl_key.len() - #suffix_len])
        });
    }
    if version.is_empty() {
        return render;
    }
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
/// `my_crate::get_user:7:42`. An argument whose type the signature leaves open adds its type's
/// name (see `KeyArg::write_key_type`); the key without them is then a tag of the entry, so
/// that invalidating it reaches every type's entry.
fn default_key(
    params: &Params,
    namespace: &TokenStream,
    tags: &mut Vec<TokenStream>,
) -> TokenStream {
    if !params.open.is_empty() {
        let as_written = render_default_key(params, namespace, &[]);
        tags.push(quote! { #as_written.into_string() });
    }
    render_default_key(params, namespace, &params.open)
}

/// [`default_key`], with the names of the types of the `typed` arguments.
fn render_default_key(params: &Params, namespace: &TokenStream, typed: &[String]) -> TokenStream {
    let args = params.typed.iter().map(|(ident, _, _)| {
        let push = if typed.contains(&ident.to_string()) {
            quote! { push_typed }
        } else {
            quote! { push }
        };
        quote! {
            __cl_out.push(':');
            ::cache_layer::__private::#push(&mut __cl_out, &#ident);
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
