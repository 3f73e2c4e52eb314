//! Key and tag templates: `"user:<id>"`, `"org:<user.org_id>"`, checked against the signature.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::LitStr;

/// One parsed template.
pub(crate) struct Template {
    parts: Vec<Part>,
    lit: LitStr,
}

enum Part {
    Text(String),
    /// `<a.b.c>`: an argument (or `self`) and a field path.
    Placeholder(Vec<String>),
}

impl Template {
    /// Parses `lit`, checking that every placeholder names one of `params` (or `self` when
    /// `has_self`).
    pub(crate) fn parse(lit: &LitStr, params: &[String], has_self: bool) -> syn::Result<Self> {
        let text = lit.value();
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find('<') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('>').ok_or_else(|| {
                syn::Error::new(lit.span(), format!("unclosed `<` in template \"{text}\""))
            })?;
            let inner = after[..close].trim();
            if inner.is_empty() {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("empty placeholder `<>` in template \"{text}\""),
                ));
            }
            let path: Vec<String> = inner.split('.').map(|s| s.trim().to_owned()).collect();
            if path.iter().any(|seg| !is_ident_or_index(seg)) {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("invalid placeholder `<{inner}>`: expected an argument name, optionally with fields (`<user.id>`)"),
                ));
            }
            let root = &path[0];
            let known = params.iter().any(|p| p == root) || (has_self && root == "self");
            if !known {
                let list = if params.is_empty() {
                    "it has none".to_owned()
                } else {
                    format!("its arguments are {}", params.join(", "))
                };
                return Err(syn::Error::new(
                    lit.span(),
                    format!("unknown placeholder `<{inner}>`: `{root}` is not an argument of this function ({list})"),
                ));
            }
            parts.push(Part::Placeholder(path));
            rest = &after[close + 1..];
        }
        if rest.contains('>') {
            return Err(syn::Error::new(
                lit.span(),
                format!("unmatched `>` in template \"{text}\""),
            ));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        check_separated(&parts, lit)?;
        Ok(Template {
            parts,
            lit: lit.clone(),
        })
    }

    /// Whether a placeholder names the receiver (`<self.tenant>`).
    pub(crate) fn names_self(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Placeholder(path) if path[0] == "self"))
    }

    /// Whether a placeholder renders one of `args` or a field of one.
    pub(crate) fn names_any(&self, args: &[String]) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Placeholder(path) if args.contains(&path[0])))
    }

    /// An expression rendering the template to a `KeyBuf`; a placeholder rooted at one of
    /// `typed` (arguments whose type the signature leaves open) adds its type's name.
    pub(crate) fn render(&self, typed: &[String]) -> TokenStream {
        let span = self.lit.span();
        let pushes = self.parts.iter().map(|part| match part {
            Part::Text(text) => quote! { __cl_out.push_str(#text); },
            Part::Placeholder(path) => {
                let access = access(path, span);
                let push = if typed.contains(&path[0]) {
                    quote_spanned! {span=> push_typed }
                } else {
                    quote_spanned! {span=> push }
                };
                quote_spanned! {span=> ::cache_layer::__private::#push(&mut __cl_out, &#access); }
            }
        });
        quote! {{
            let mut __cl_out = ::cache_layer::__private::KeyBuf::new();
            #(#pushes)*
            __cl_out
        }}
    }
}

/// Whether `c` separates placeholders: a character every rendered value writes `%XX`
/// (ASCII other than letters, digits and `-._~`), except `%` itself. The same set as
/// `cache_layer`'s `key::escape::is_reserved`.
fn separates(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_alphanumeric() && !matches!(c, '-' | '.' | '_' | '~' | '%')
}

/// Two placeholders need text between them that no value can produce, or `<a><b>` would
/// render `(1, 23)` and `(12, 3)` alike.
fn check_separated(parts: &[Part], lit: &LitStr) -> syn::Result<()> {
    let mut previous: Option<&[String]> = None;
    let mut separated = true;
    for part in parts {
        match part {
            Part::Text(text) => separated |= text.chars().any(separates),
            Part::Placeholder(path) => {
                if let (Some(before), false) = (previous, separated) {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "placeholders `<{}>` and `<{}>` need a separator between them, such as `:` or `/` (`<{0}>:<{1}>`): without one, different arguments could render the same key",
                            before.join("."),
                            path.join("."),
                        ),
                    ));
                }
                previous = Some(path);
                separated = false;
            }
        }
    }
    Ok(())
}

/// `a.b.c` as tokens, with `self` as the `self` keyword.
fn access(path: &[String], span: proc_macro2::Span) -> TokenStream {
    let mut tokens = if path[0] == "self" {
        quote_spanned! {span=> self }
    } else {
        let ident = format_ident!("{}", path[0], span = span);
        quote! { #ident }
    };
    for field in &path[1..] {
        if let Ok(index) = field.parse::<usize>() {
            let index = syn::Index {
                index: index as u32,
                span,
            };
            tokens = quote! { #tokens.#index };
        } else {
            let ident = format_ident!("{}", field, span = span);
            tokens = quote! { #tokens.#ident };
        }
    }
    tokens
}

fn is_ident_or_index(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => s.chars().all(|c| c.is_ascii_digit()),
        Some(c) if c == '_' || c.is_alphabetic() => chars.all(|c| c == '_' || c.is_alphanumeric()),
        _ => false,
    }
}
