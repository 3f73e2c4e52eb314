//! Targeted cache control (RFC 9213): `CDN-Cache-Control` and a field named by the application
//! (say `CacheLayer-Cache-Control`) give this cache its own directives. The first such field,
//! in the configured order, that is present and valid replaces `Cache-Control` *and*
//! `Expires` for this cache; an empty or malformed one is ignored (§2.1). Targeted fields are
//! Structured Fields Dictionaries (RFC 9651 §3.2), parsed as such here.
//!
//! The fields stay in the stored response (a 304 updates them like any other), and are removed
//! from what clients receive unless the layer is told to forward them.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use super::cache_control::{Directive, ResponseDirectives};
use super::field::first_of_each;

/// `CDN-Cache-Control` (RFC 9213 §3).
pub(crate) static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// The targeted fields this cache obeys, most specific first, and whether clients see them.
#[derive(Clone, Debug)]
pub(crate) struct TargetedFields {
    names: Arc<[HeaderName]>,
    forward: bool,
}

impl Default for TargetedFields {
    /// `CDN-Cache-Control`, not forwarded.
    fn default() -> Self {
        TargetedFields {
            names: Arc::new([CDN_CACHE_CONTROL.clone()]),
            forward: false,
        }
    }
}

impl TargetedFields {
    /// No targeted field: `Cache-Control` alone (gRPC calls).
    pub(crate) fn none() -> Self {
        TargetedFields {
            names: Arc::new([]),
            forward: true,
        }
    }

    /// These fields with `name` first: the application's own field is the most specific.
    pub(crate) fn with_first(&self, name: HeaderName) -> Self {
        let mut names = vec![name.clone()];
        names.extend(self.names.iter().filter(|n| **n != name).cloned());
        TargetedFields {
            names: names.into(),
            forward: self.forward,
        }
    }

    /// These fields, forwarded to clients or not.
    pub(crate) fn forwarded(&self, forward: bool) -> Self {
        TargetedFields {
            names: Arc::clone(&self.names),
            forward,
        }
    }

    /// The directives this cache follows for a response with `headers`: the first valid
    /// targeted field's, else `Cache-Control`'s.
    pub(crate) fn directives(&self, headers: &HeaderMap) -> ResponseDirectives {
        for name in self.names.iter() {
            if !headers.contains_key(name) {
                continue;
            }
            if let Some(members) = dictionary(headers, name) {
                let mut directives = ResponseDirectives::from_directives(members);
                directives.targeted = true;
                return directives;
            }
        }
        ResponseDirectives::parse(headers)
    }

    /// Removes the targeted fields from headers a client is about to receive, unless they are
    /// forwarded.
    pub(crate) fn hide(&self, headers: &mut HeaderMap) {
        if self.forward {
            return;
        }
        for name in self.names.iter() {
            if headers.contains_key(name) {
                headers.remove(name);
            }
        }
    }

    /// Whether [`hide`](Self::hide) would remove something from `headers`.
    pub(crate) fn hides_any(&self, headers: &HeaderMap) -> bool {
        !self.forward && self.names.iter().any(|name| headers.contains_key(name))
    }
}

/// The members of the field `name` as cache directives, or `None` when the field is empty or
/// not a valid Structured Fields Dictionary. Lines are joined with commas (RFC 9651 §4.2).
fn dictionary(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<Directive>> {
    let mut joined = Vec::new();
    for (i, line) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    let mut members = Parser {
        input: &joined,
        at: 0,
    }
    .dictionary()?;
    if members.is_empty() {
        return None;
    }
    // A Dictionary keeps the last value of a repeated key (RFC 9651 §3.2); `false` means absent.
    members.reverse();
    let mut last = first_of_each(members, |(name, _)| name.as_str());
    last.reverse();
    let directives = last.into_iter().filter_map(|(name, value)| match value {
        Value::False => None,
        Value::True => Some(Directive { name, arg: None }),
        Value::Text(arg) => Some(Directive {
            name,
            arg: Some(arg),
        }),
    });
    Some(directives.collect())
}

/// A member's value as a cache directive sees it.
enum Value {
    /// A Boolean true: the directive without argument.
    True,
    /// A Boolean false: as if absent.
    False,
    /// An Integer, Decimal, String or Token, as text; anything else as empty text, which no
    /// typed argument accepts.
    Text(String),
}

/// A Structured Fields parser over one field value, just enough to validate a Dictionary and
/// read its members.
struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|b| set.contains(&b)) {
            self.at += 1;
        }
    }

    /// RFC 9651 §4.2.2 (leading and trailing spaces of the field allowed, §4.2).
    fn dictionary(mut self) -> Option<Vec<(String, Value)>> {
        let mut members = Vec::new();
        self.skip(b" ");
        while self.peek().is_some() {
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.at += 1;
                if self.peek() == Some(b'(') {
                    self.inner_list()?;
                    Value::Text(String::new())
                } else {
                    let value = self.bare_item()?;
                    self.parameters()?;
                    value
                }
            } else {
                self.parameters()?;
                Value::True
            };
            members.push((key, value));
            self.skip(b" \t");
            if self.peek().is_none() {
                break;
            }
            if self.peek() != Some(b',') {
                return None;
            }
            self.at += 1;
            self.skip(b" \t");
            self.peek()?; // a trailing comma is an error
        }
        Some(members)
    }

    /// RFC 9651 §4.2.3.3.
    fn key(&mut self) -> Option<String> {
        let start = self.at;
        match self.peek() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => self.at += 1,
            _ => return None,
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            self.at += 1;
        }
        Some(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    /// RFC 9651 §4.2.3.2.
    fn parameters(&mut self) -> Option<()> {
        while self.peek() == Some(b';') {
            self.at += 1;
            self.skip(b" ");
            self.key()?;
            if self.peek() == Some(b'=') {
                self.at += 1;
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// RFC 9651 §4.2.1.2.
    fn inner_list(&mut self) -> Option<()> {
        self.at += 1; // '('
        loop {
            self.skip(b" ");
            if self.peek() == Some(b')') {
                self.at += 1;
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    /// RFC 9651 §4.2.3.1: Integer, Decimal, String, Token, Byte Sequence or Boolean.
    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number().map(Value::Text),
            b'"' => self.string().map(Value::Text),
            b':' => self.byte_sequence().map(|()| Value::Text(String::new())),
            b'?' => self.boolean(),
            b if b.is_ascii_alphabetic() || b == b'*' => Some(Value::Text(self.token())),
            _ => None,
        }
    }

    /// RFC 9651 §4.2.4: at most 15 integer digits, or 12 with a fraction of 1 to 3.
    fn number(&mut self) -> Option<String> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits_start = self.at;
        self.skip(b"0123456789");
        let integer = self.at - digits_start;
        if integer == 0 {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let fraction_start = self.at;
            self.skip(b"0123456789");
            let fraction = self.at - fraction_start;
            if integer > 12 || !(1..=3).contains(&fraction) {
                return None;
            }
        } else if integer > 15 {
            return None;
        }
        Some(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    /// RFC 9651 §4.2.5: printable ASCII, `\` escaping only `"` and `\`.
    fn string(&mut self) -> Option<String> {
        self.at += 1; // '"'
        let mut out = String::new();
        loop {
            let b = self.peek()?;
            self.at += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let escaped = self.peek().filter(|e| *e == b'"' || *e == b'\\')?;
                    self.at += 1;
                    out.push(char::from(escaped));
                }
                0x20..=0x7e => out.push(char::from(b)),
                _ => return None,
            }
        }
    }

    /// RFC 9651 §4.2.6 (the first character was checked by the caller).
    fn token(&mut self) -> String {
        let start = self.at;
        self.at += 1;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.input[start..self.at]).into_owned()
    }

    /// RFC 9651 §4.2.7: base64 between colons.
    fn byte_sequence(&mut self) -> Option<()> {
        self.at += 1; // ':'
        loop {
            match self.peek()? {
                b':' => {
                    self.at += 1;
                    return Some(());
                }
                b if b.is_ascii_alphanumeric() || b"+/=".contains(&b) => self.at += 1,
                _ => return None,
            }
        }
    }

    /// RFC 9651 §4.2.8.
    fn boolean(&mut self) -> Option<Value> {
        self.at += 1; // '?'
        let value = match self.peek()? {
            b'1' => Value::True,
            b'0' => Value::False,
            _ => return None,
        };
        self.at += 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests;
