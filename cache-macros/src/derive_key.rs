//! `#[derive(KeyArg)]`: the key encoding of a struct or an enum, injective by construction.
//!
//! A struct of one field renders as that field (`UserId(7)` → `7`); of none or several, as a
//! tuple of them (`(1,2)`, `()`). An enum variant renders as its name, then its fields as a
//! tuple when it is not a unit variant (`Active`, `Circle(3)`, `Pair(1,2)`, `Empty()`).
//! `PhantomData` fields hold no value and are left out. Each rendered field frames itself
//! (escaped text, brackets), so with a fixed arity and distinct variant names no two values
//! of a type render alike. The type's name (`write_key_type`) is its module path and name,
//! which no toolchain changes, then its type and const arguments.

use proc_macro2::{TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DataEnum, DeriveInput, Fields, GenericParam, Generics, Ident, Type};

/// The expansion of `#[derive(KeyArg)]` on `input`, or the compile error that says why not.
pub(crate) fn derive_key_arg(input: TokenStream) -> TokenStream {
    match syn::parse2::<DeriveInput>(input).and_then(|input| expand(&input)) {
        Ok(tokens) => tokens,
        Err(error) => error.to_compile_error(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let (write_key, keyed) = match &input.data {
        Data::Struct(data) => (write_struct(&data.fields), keyed_types(&data.fields)),
        Data::Enum(data) => (
            write_enum(data),
            data.variants
                .iter()
                .flat_map(|variant| keyed_types(&variant.fields))
                .collect(),
        ),
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                "`KeyArg` cannot be derived for a union: which field holds the value is not known; implement `cache_layer::KeyArg` by hand",
            ))
        }
    };
    let generics = bounded(&input.generics, &keyed);
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();
    let ident = &input.ident;
    let write_key_type = write_type_name(ident, &input.generics);
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::cache_layer::__private::KeyArg for #ident #type_generics #where_clause {
            fn write_key(&self, __cl_out: &mut ::cache_layer::__private::KeyBuf) {
                #write_key
            }

            fn write_key_type(&self, __cl_out: &mut ::cache_layer::__private::KeyBuf) {
                #write_key_type
            }
        }
    })
}

/// Whether a field is `PhantomData<...>`: it has one value, and is left out of the key.
fn is_phantom(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "PhantomData"),
        _ => false,
    }
}

/// The types of the fields that take part in the key.
fn keyed_types(fields: &Fields) -> Vec<&Type> {
    fields
        .iter()
        .map(|field| &field.ty)
        .filter(|ty| !is_phantom(ty))
        .collect()
}

/// A pattern that binds each keyed field by reference (`__cl_0`, `__cl_1`, ...) and the
/// bindings with their types, for `Self` or a variant: `{ a: __cl_0, .. }`, `(__cl_0, _)`,
/// or nothing for a unit struct or variant.
fn bind<'a>(fields: &'a Fields) -> (TokenStream, Vec<(Ident, &'a Type)>) {
    let mut bound = Vec::new();
    let mut binding = |ty: &'a Type| {
        // Spanned at the field's type: a field that is not a `KeyArg` is reported there.
        let name = format_ident!("__cl_{}", bound.len(), span = ty.span());
        bound.push((name.clone(), ty));
        name
    };
    let pattern = match fields {
        Fields::Named(named) => {
            let parts = named
                .named
                .iter()
                .filter(|field| !is_phantom(&field.ty))
                .map(|field| {
                    let member = &field.ident;
                    let name = binding(&field.ty);
                    quote! { #member: #name }
                });
            let parts: Vec<TokenStream> = parts.collect();
            quote! { { #(#parts,)* .. } }
        }
        Fields::Unnamed(unnamed) => {
            let parts = unnamed
                .unnamed
                .iter()
                .map(|field| match is_phantom(&field.ty) {
                    true => quote! { _ },
                    false => {
                        let name = binding(&field.ty);
                        quote! { #name }
                    }
                });
            let parts: Vec<TokenStream> = parts.collect();
            quote! { ( #(#parts),* ) }
        }
        Fields::Unit => TokenStream::new(),
    };
    (pattern, bound)
}

/// Writes each binding through its `KeyArg`, as a tuple: `(a,b)`. Spanned at each field's
/// type, so a field that is not a `KeyArg` is reported there.
fn write_tuple(bound: &[(Ident, &Type)]) -> TokenStream {
    let writes = bound.iter().enumerate().map(|(i, (name, ty))| {
        let comma = (i > 0).then(|| quote! { __cl_out.push(','); });
        quote_spanned! {ty.span()=>
            #comma
            ::cache_layer::__private::KeyArg::write_key(#name, __cl_out);
        }
    });
    quote! {
        __cl_out.push('(');
        #(#writes)*
        __cl_out.push(')');
    }
}

/// A struct: its one keyed field as it renders, or its keyed fields as a tuple.
fn write_struct(fields: &Fields) -> TokenStream {
    let (pattern, bound) = bind(fields);
    let write = match bound.as_slice() {
        [(name, ty)] => quote_spanned! {ty.span()=>
            ::cache_layer::__private::KeyArg::write_key(#name, __cl_out);
        },
        _ => write_tuple(&bound),
    };
    match fields {
        Fields::Unit => write,
        _ => quote! {
            let Self #pattern = self;
            #write
        },
    }
}

/// An enum: the variant's name, escaped as a string is, then (unless it is a unit variant)
/// its keyed fields as a tuple. Names are distinct and hold no `(`, so neither a variant's
/// name nor where its fields begin is ever in doubt.
fn write_enum(data: &DataEnum) -> TokenStream {
    let arms = data.variants.iter().map(|variant| {
        let ident = &variant.ident;
        let name = ident.unraw().to_string();
        let (pattern, bound) = bind(&variant.fields);
        let fields = match variant.fields {
            Fields::Unit => TokenStream::new(),
            _ => write_tuple(&bound),
        };
        quote! {
            Self::#ident #pattern => {
                ::cache_layer::__private::KeyArg::write_key(#name, __cl_out);
                #fields
            }
        }
    });
    if data.variants.is_empty() {
        // No value to render: an enum without variants has none.
        return quote! { match *self {} };
    }
    quote! {
        match self {
            #(#arms)*
        }
    }
}

/// Writes the type's name: `module_path!()`, `::` and its name as written, then its type
/// arguments (`std::any::type_name`) and const arguments (their keys) in `<>`: `Id<u64>`
/// and `Id<u32>` render their values alike and must not share a name.
fn write_type_name(ident: &Ident, generics: &Generics) -> TokenStream {
    let path = format!("::{}", ident.unraw());
    let arguments: Vec<TokenStream> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => {
                let ident = &param.ident;
                Some(quote! { __cl_out.push_str(::core::any::type_name::<#ident>()); })
            }
            GenericParam::Const(param) => {
                let ident = &param.ident;
                Some(quote! { ::cache_layer::__private::KeyArg::write_key(&#ident, __cl_out); })
            }
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    let arguments = (!arguments.is_empty()).then(|| {
        let (first, rest) = arguments.split_first().expect("not empty");
        quote! {
            __cl_out.push('<');
            #first
            #(__cl_out.push(','); #rest)*
            __cl_out.push('>');
        }
    });
    quote! {
        __cl_out.push_str(::core::concat!(::core::module_path!(), #path));
        #arguments
    }
}

/// The generics with `T: KeyArg` added for each type parameter that a keyed field's type
/// names (a parameter only in `PhantomData`, as in a typed id, needs none).
fn bounded(generics: &Generics, keyed: &[&Type]) -> Generics {
    let mut generics = generics.clone();
    let used: Vec<Ident> = generics
        .type_params()
        .map(|param| param.ident.clone())
        .filter(|ident| keyed.iter().any(|ty| names(quote! { #ty }, ident)))
        .collect();
    let where_clause = generics.make_where_clause();
    for ident in used {
        where_clause
            .predicates
            .push(syn::parse_quote! { #ident: ::cache_layer::__private::KeyArg });
    }
    generics
}

/// Whether `tokens` hold the identifier `ident`, at any depth.
fn names(tokens: TokenStream, ident: &Ident) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(found) => found == *ident,
        TokenTree::Group(group) => names(group.stream(), ident),
        _ => false,
    })
}
