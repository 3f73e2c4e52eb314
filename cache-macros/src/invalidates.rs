//! `#[invalidates(...)]`: a writer whose success invalidates the keys and tags it names,
//! rendered before its body runs, for an `async fn` or a sync one.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::args::InvalidatesArgs;
use crate::expand::{cache_binding, expand_with, return_type, shape_of, Errors};
use crate::params::params;
use crate::template::Template;

pub(crate) fn invalidates(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_with(attr, item, expand_invalidates)
}

fn expand_invalidates(attr: TokenStream, func: ItemFn) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let mut push = |e: syn::Error| errors.push(e);
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
        ..
    } = &func;
    let ret = return_type(&func);
    let cache = cache_binding(args.cache.as_ref(), &params);
    let shape = shape_of(&ret);
    let names = names.iter().map(|t| {
        let render = t.render(&[]);
        quote! { #render.into_string() }
    });
    // A sync writer invalidates this process at once (and Redis, with the other instances,
    // from the runtime it may run on: see `invalidate_after_blocking`).
    let run = if sig.asyncness.is_some() {
        quote! {
            let __cl_result: #ret = ::cache_layer::__private::typed::<#ret, _>(async move #block).await;
            ::cache_layer::__private::invalidate_after(__cl_cache, #shape, &__cl_result, __cl_names).await;
        }
    } else {
        quote! {
            let __cl_result: #ret = (|| -> #ret #block)();
            ::cache_layer::__private::invalidate_after_blocking(__cl_cache, #shape, &__cl_result, __cl_names);
        }
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #cache
            // Rendered before the body runs: the body may consume the arguments.
            let __cl_names: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#names),*];
            #run
            __cl_result
        }
    })
}
