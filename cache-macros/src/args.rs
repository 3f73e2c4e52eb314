//! Parsing the arguments of `#[cached(...)]` and `#[invalidates(...)]`.

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{bracketed, Expr, Ident, LitBool, LitFloat, LitInt, LitStr, Token};

const CACHED_ARGS: &str =
    "`ttl`, `key`, `invalidate_on`, `stale`, `stale_if_error`, `none_ttl`, `jitter`, `lock`, `cache`, `name`, `version`, `ttl_from`, `cache_if`, `ignore_self`, `local`, `handles`, `soft_timeout`, `hard_timeout`, `finish_on_hard_timeout`";

/// `#[cached(...)]`, parsed and checked.
pub(crate) struct CachedArgs {
    pub(crate) ttl: Duration,
    pub(crate) key: Option<LitStr>,
    pub(crate) invalidate_on: Vec<LitStr>,
    pub(crate) stale: Option<Duration>,
    /// Where `stale` is written: errors about the background refresh point here.
    pub(crate) stale_span: Span,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) none_ttl: Option<Duration>,
    pub(crate) jitter: Option<f64>,
    pub(crate) lock: Option<Duration>,
    /// Where `lock` is written, for errors about it.
    pub(crate) lock_span: Option<Span>,
    pub(crate) cache: Option<Expr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<u32>,
    pub(crate) ttl_from: Option<syn::Path>,
    pub(crate) cache_if: Option<syn::Path>,
    /// `ignore_self = true`: the receiver does not change the answer (a pool, a client).
    pub(crate) ignore_self: bool,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    /// Where `hard_timeout` is written: a return type that cannot carry it is reported there.
    pub(crate) hard_timeout_span: Span,
    /// Where the first timeout is written (a sync fn refuses it there).
    pub(crate) timeout_span: Option<Span>,
    pub(crate) finish_on_hard_timeout: bool,
    /// `local`: values stay in this process's memory (no serde needed, never in Redis).
    pub(crate) local: bool,
    /// `handles`: where it is written, when the fn's handles (`<fn>_key`, `<fn>_refresh`,
    /// `<fn>_uncached`, `<fn>_invalidate`) are generated; errors about them point there.
    pub(crate) handles: Option<Span>,
}

impl CachedArgs {
    /// Whether a timeout is set: the body then runs on a task of its own, from owned copies
    /// of the arguments, as a `stale` refresh does.
    pub(crate) fn timed(&self) -> bool {
        self.soft_timeout.is_some() || self.hard_timeout.is_some()
    }
}

impl Parse for CachedArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut ttl = None;
        let mut args = CachedArgs {
            ttl: Duration::ZERO,
            key: None,
            invalidate_on: Vec::new(),
            stale: None,
            stale_span: Span::call_site(),
            stale_if_error: None,
            none_ttl: None,
            jitter: None,
            lock: None,
            lock_span: None,
            cache: None,
            name: None,
            version: None,
            ttl_from: None,
            cache_if: None,
            ignore_self: false,
            soft_timeout: None,
            hard_timeout: None,
            hard_timeout_span: Span::call_site(),
            timeout_span: None,
            finish_on_hard_timeout: true,
            local: false,
            handles: None,
        };
        let mut local_span = None;
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let ident: Ident = input.call(syn::ext::IdentExt::parse_any)?;
            let name = ident.to_string();
            if seen.contains(&name) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("duplicate argument `{name}`"),
                ));
            }
            if !CACHED_ARGS.contains(&format!("`{name}`")) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("unknown argument `{name}`; expected one of {CACHED_ARGS}"),
                ));
            }
            seen.push(name.clone());
            if name == "local" || name == "handles" {
                // Bare words: the site keeps its values in memory only; the fn's handles.
                if name == "local" {
                    args.local = true;
                    local_span = Some(ident.span());
                } else {
                    args.handles = Some(ident.span());
                }
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
                continue;
            }
            input.parse::<Token![=]>()?;
            match name.as_str() {
                "ttl" => ttl = Some(duration(input)?),
                "key" => args.key = Some(input.parse()?),
                "invalidate_on" => {
                    let content;
                    bracketed!(content in input);
                    let tags = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                    args.invalidate_on = tags.into_iter().collect();
                }
                "stale" => {
                    args.stale = Some(duration(input)?);
                    args.stale_span = ident.span();
                }
                "stale_if_error" => args.stale_if_error = Some(duration(input)?),
                "none_ttl" => args.none_ttl = Some(duration(input)?),
                "jitter" => args.jitter = Some(jitter(input)?),
                "lock" => {
                    args.lock = Some(duration(input)?);
                    args.lock_span = Some(ident.span());
                }
                "cache" => args.cache = Some(input.parse()?),
                "name" => args.name = Some(input.parse()?),
                "version" => args.version = Some(version(input)?),
                "ttl_from" => args.ttl_from = Some(function_path(input, "ttl_from")?),
                "cache_if" => args.cache_if = Some(function_path(input, "cache_if")?),
                "ignore_self" => args.ignore_self = input.parse::<LitBool>()?.value,
                "soft_timeout" => {
                    args.soft_timeout = Some(duration(input)?);
                    args.timeout_span.get_or_insert(ident.span());
                }
                "hard_timeout" => {
                    args.hard_timeout = Some(duration(input)?);
                    args.hard_timeout_span = ident.span();
                    args.timeout_span.get_or_insert(ident.span());
                }
                "finish_on_hard_timeout" => {
                    args.finish_on_hard_timeout = input.parse::<LitBool>()?.value;
                }
                _ => unreachable!("checked against CACHED_ARGS"),
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        args.ttl = ttl.ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "missing `ttl`: how long a value stays fresh, e.g. `#[cached(ttl = \"5m\")]`",
            )
        })?;
        if let (Some(span), Some(_)) = (local_span, args.lock) {
            return Err(syn::Error::new(
                span,
                "`local` values never leave this process, so `lock` (which makes other instances wait for a value in Redis) cannot apply: drop one of them",
            ));
        }
        Ok(args)
    }
}

/// `#[invalidates("user:<id>", "users", cache = expr)]`.
pub(crate) struct InvalidatesArgs {
    pub(crate) names: Vec<LitStr>,
    pub(crate) cache: Option<Expr>,
}

impl Parse for InvalidatesArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = InvalidatesArgs {
            names: Vec::new(),
            cache: None,
        };
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(LitStr) {
                args.names.push(input.parse()?);
            } else if lookahead.peek(Ident) {
                let ident: Ident = input.parse()?;
                if ident != "cache" {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!("unknown argument `{ident}`; expected key or tag templates (\"user:<id>\") or `cache = <expr>`"),
                    ));
                }
                if args.cache.is_some() {
                    return Err(syn::Error::new(ident.span(), "duplicate argument `cache`"));
                }
                input.parse::<Token![=]>()?;
                args.cache = Some(input.parse()?);
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        if args.names.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[invalidates] needs at least one key or tag template, e.g. #[invalidates(\"user:<id>\")]",
            ));
        }
        Ok(args)
    }
}

/// A duration string such as `"30s"`, `"5m"`, `"1h30m"`.
fn duration(input: ParseStream<'_>) -> syn::Result<Duration> {
    let lit: LitStr = input.parse()?;
    let text = lit.value();
    let parsed = crate::duration::parse(&text).map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!("invalid duration \"{text}\": {e}; write it like \"30s\", \"5m\" or \"1h30m\""),
        )
    })?;
    if parsed.is_zero() {
        return Err(syn::Error::new(
            lit.span(),
            "duration must be longer than zero",
        ));
    }
    // The engine clamps every deadline to 100 years; a longer duration would not mean what
    // it says.
    if parsed > Duration::from_secs(100 * 365 * 24 * 60 * 60) {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "duration \"{text}\" is longer than 100 years, the longest a cache keeps anything"
            ),
        ));
    }
    Ok(parsed)
}

/// `ttl_from = path::to::function`: a path, not a string or a closure.
fn function_path(input: ParseStream<'_>, name: &str) -> syn::Result<syn::Path> {
    input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{name}` takes a path to a function, e.g. `{name} = policies::{name}`"),
        )
    })
}

/// `version = 2`: a non-negative integer literal.
fn version(input: ParseStream<'_>) -> syn::Result<u32> {
    let wrong = |span| {
        syn::Error::new(
            span,
            "`version` must be an integer such as `version = 2`: bump it when a value's meaning changes",
        )
    };
    let lit: LitInt = input.parse().map_err(|e| wrong(e.span()))?;
    if !lit.suffix().is_empty() {
        return Err(wrong(lit.span()));
    }
    lit.base10_parse().map_err(|_| wrong(lit.span()))
}

/// `jitter = 0.1` (a fraction in [0, 1)) or `jitter = false` (none).
fn jitter(input: ParseStream<'_>) -> syn::Result<f64> {
    if input.peek(LitBool) {
        let lit: LitBool = input.parse()?;
        if lit.value {
            return Err(syn::Error::new(
                lit.span(),
                "`jitter = true` is the default; give a fraction such as `jitter = 0.2`, or `false`",
            ));
        }
        return Ok(0.0);
    }
    let lit: LitFloat = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a fraction such as `jitter = 0.1`, or `jitter = false`",
        )
    })?;
    let value: f64 = lit.base10_parse()?;
    if !(0.0..1.0).contains(&value) {
        return Err(syn::Error::new(
            lit.span(),
            format!("jitter must be a fraction in [0, 1), got {value}"),
        ));
    }
    Ok(value)
}
