//! What the macros need to know about a function's parameters.

use proc_macro2::{Ident, Span};
use syn::{FnArg, ItemFn, Pat, Type};

/// What the macros need to know about the function's parameters.
pub(crate) struct Params {
    pub(crate) names: Vec<String>,
    pub(crate) receiver: Option<syn::Receiver>,
    /// Arguments bound by a name: the name, `mut` if any, the type.
    pub(crate) typed: Vec<(Ident, Option<syn::token::Mut>, Type)>,
    /// Arguments bound by a pattern rather than a name (`(a, b): (u8, u8)`).
    pub(crate) patterns: Vec<Span>,
}

pub(crate) fn params(func: &ItemFn) -> Params {
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
