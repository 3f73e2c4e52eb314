//! What the macros need to know about a function's parameters.

use proc_macro2::{Ident, Span};
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type, TypePath};

/// What the macros need to know about the function's parameters.
pub(crate) struct Params {
    pub(crate) names: Vec<String>,
    pub(crate) receiver: Option<syn::Receiver>,
    /// Arguments bound by a name: the name, `mut` if any, the type.
    pub(crate) typed: Vec<(Ident, Option<syn::token::Mut>, Type)>,
    /// Arguments bound by a pattern rather than a name (`(a, b): (u8, u8)`).
    pub(crate) patterns: Vec<Span>,
    /// The named arguments whose type the signature leaves open (see [`is_open`]): their type
    /// takes part in the key.
    pub(crate) open: Vec<String>,
}

pub(crate) fn params(func: &ItemFn) -> Params {
    let mut params = Params {
        names: Vec::new(),
        receiver: None,
        typed: Vec::new(),
        patterns: Vec::new(),
        open: Vec::new(),
    };
    let generics: Vec<&Ident> = func
        .sig
        .generics
        .type_params()
        .map(|param| &param.ident)
        .collect();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => params.receiver = Some(receiver.clone()),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => {
                    params.names.push(pat.ident.to_string());
                    if is_open(&typed.ty, &generics) {
                        params.open.push(pat.ident.to_string());
                    }
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

/// Whether values of `ty` may be of more than one type: it names one of the fn's type
/// parameters (`generics`), `Self` (a generic impl's, for all the macro can tell), an `impl
/// Trait` or a `dyn Trait`, anywhere inside (`&T`, `Vec<T>`, `T::Id`, `Box<dyn KeyArg>`); or
/// it is a type the macro cannot read (a macro). Generic parameters of the surrounding `impl`
/// are not visible to the macro.
pub(crate) fn is_open(ty: &Type, generics: &[&Ident]) -> bool {
    match ty {
        Type::ImplTrait(_) | Type::TraitObject(_) | Type::Macro(_) | Type::Verbatim(_) => true,
        Type::Path(path) => path_is_open(path, generics),
        Type::Reference(r) => is_open(&r.elem, generics),
        Type::Ptr(p) => is_open(&p.elem, generics),
        Type::Slice(s) => is_open(&s.elem, generics),
        Type::Array(a) => is_open(&a.elem, generics),
        Type::Paren(p) => is_open(&p.elem, generics),
        Type::Group(g) => is_open(&g.elem, generics),
        Type::Tuple(t) => t.elems.iter().any(|elem| is_open(elem, generics)),
        _ => false,
    }
}

fn path_is_open(path: &TypePath, generics: &[&Ident]) -> bool {
    if let Some(qself) = &path.qself {
        if is_open(&qself.ty, generics) {
            return true;
        }
    }
    let first = path.path.segments.first();
    if path.qself.is_none() && path.path.leading_colon.is_none() {
        if let Some(first) = first {
            if first.ident == "Self" || generics.iter().any(|g| first.ident == **g) {
                return true;
            }
        }
    }
    path.path
        .segments
        .iter()
        .any(|segment| match &segment.arguments {
            PathArguments::None => false,
            PathArguments::AngleBracketed(args) => args.args.iter().any(|arg| match arg {
                GenericArgument::Type(ty) => is_open(ty, generics),
                GenericArgument::AssocType(assoc) => is_open(&assoc.ty, generics),
                _ => false,
            }),
            PathArguments::Parenthesized(args) => {
                args.inputs.iter().any(|arg| is_open(&arg.ty, generics))
                    || matches!(&args.output, ReturnType::Type(_, ty) if is_open(ty, generics))
            }
        })
}

/// Whether a method borrows its receiver (`&self`, `&mut self`, `self: &Self`).
pub(crate) fn borrowed(receiver: &syn::Receiver) -> bool {
    match &receiver.kind {
        syn::ReceiverKind::Reference(..) => true,
        syn::ReceiverKind::Typed(_, ty) => matches!(&**ty, Type::Reference(_)),
        _ => false,
    }
}

/// Whether a method borrows its receiver mutably (`&mut self`, `self: &mut Self`).
pub(crate) fn borrowed_mut(receiver: &syn::Receiver) -> bool {
    match &receiver.kind {
        syn::ReceiverKind::Reference(_, _, mutability) => mutability.is_some(),
        syn::ReceiverKind::Typed(_, ty) => {
            matches!(&**ty, Type::Reference(r) if r.mutability.is_some())
        }
        _ => false,
    }
}
