//! How arguments become parts of cache keys and tags.

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// A value that can be part of a cache key or tag: the `<placeholders>` of `#[cached(key = ...)]`,
/// `invalidate_on` and `#[invalidates(...)]`.
///
/// Implemented for integers, `bool`, `char`, strings, and references, boxes, `Option`s and
/// slices of those. Strings are escaped (`%` → `%25`, `:` → `%3A`, `,` → `%2C`) so that two
/// different argument lists never render to the same key. Implement it for your own id types:
///
/// ```
/// use cache_layer::{KeyArg, KeyBuf};
///
/// struct UserId(u64);
///
/// impl KeyArg for UserId {
///     fn write_key(&self, out: &mut KeyBuf) {
///         self.0.write_key(out);
///     }
/// }
///
/// let mut key = cache_layer::KeyBuf::new();
/// key.push_str("user:");
/// UserId(7).write_key(&mut key);
/// assert_eq!(key.as_str(), "user:7");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    label = "this value is used in a cache key or tag",
    note = "implement `cache_layer::KeyArg` for it, or use one of its fields: `<arg.field>`"
)]
pub trait KeyArg {
    /// Appends this value's key form to `out`.
    fn write_key(&self, out: &mut KeyBuf);
}

/// A key or tag being rendered. Short keys (up to 64 bytes) stay on the stack, so rendering
/// the key of a cache hit allocates nothing.
#[derive(Clone, Default)]
pub struct KeyBuf {
    inline: arrayvec::ArrayString<64>,
    spilled: Option<String>,
}

impl KeyBuf {
    /// An empty key.
    pub fn new() -> Self {
        KeyBuf::default()
    }

    /// Appends `s` as is (no escaping: use [`KeyArg::write_key`] for values).
    #[inline]
    pub fn push_str(&mut self, s: &str) {
        match &mut self.spilled {
            Some(heap) => heap.push_str(s),
            None => {
                if self.inline.try_push_str(s).is_err() {
                    let mut heap = String::with_capacity(self.inline.len() + s.len() + 64);
                    heap.push_str(&self.inline);
                    heap.push_str(s);
                    self.spilled = Some(heap);
                }
            }
        }
    }

    /// Appends one character as is.
    #[inline]
    pub fn push(&mut self, c: char) {
        match &mut self.spilled {
            Some(heap) => heap.push(c),
            None => {
                if self.inline.try_push(c).is_err() {
                    self.push_str(c.encode_utf8(&mut [0; 4]));
                }
            }
        }
    }

    /// The key rendered so far.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.spilled {
            Some(heap) => heap,
            None => &self.inline,
        }
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        match self.spilled {
            Some(heap) => heap,
            None => self.inline.as_str().to_owned(),
        }
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Appends `n` in decimal, after a `-` when `negative`. Digits by hand, in 64-bit arithmetic:
/// `write!` goes through `fmt` machinery, and 128-bit division is a library call, each a
/// measurable share of a cache hit.
#[inline]
fn write_decimal(out: &mut KeyBuf, negative: bool, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        out.push('-');
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

macro_rules! integer_keys {
    (unsigned: $($u:ty),*; signed: $($i:ty),*) => {
        $(impl KeyArg for $u {
            #[inline]
            fn write_key(&self, out: &mut KeyBuf) {
                write_decimal(out, false, *self as u64);
            }
        })*
        $(impl KeyArg for $i {
            #[inline]
            fn write_key(&self, out: &mut KeyBuf) {
                write_decimal(out, *self < 0, (*self as i64).unsigned_abs());
            }
        })*
    };
}

integer_keys!(unsigned: u8, u16, u32, u64, usize; signed: i8, i16, i32, i64, isize);

impl KeyArg for i128 {
    fn write_key(&self, out: &mut KeyBuf) {
        out.push_str(&self.to_string());
    }
}

impl KeyArg for u128 {
    fn write_key(&self, out: &mut KeyBuf) {
        out.push_str(&self.to_string());
    }
}

impl KeyArg for bool {
    fn write_key(&self, out: &mut KeyBuf) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl KeyArg for char {
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self.encode_utf8(&mut [0; 4]), out);
    }
}

impl KeyArg for str {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self, out);
    }
}

impl KeyArg for String {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self, out);
    }
}

impl KeyArg for Cow<'_, str> {
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self, out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for &mut T {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for Box<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for Arc<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for Rc<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }
}

impl<T: KeyArg> KeyArg for Option<T> {
    /// `None` renders as `%N`, which no escaped value can produce.
    fn write_key(&self, out: &mut KeyBuf) {
        match self {
            Some(value) => value.write_key(out),
            None => out.push_str("%N"),
        }
    }
}

impl<T: KeyArg> KeyArg for [T] {
    /// Elements joined by `,`.
    fn write_key(&self, out: &mut KeyBuf) {
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write_key(out);
        }
    }
}

impl<T: KeyArg> KeyArg for Vec<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        self.as_slice().write_key(out);
    }
}

fn escape_into(s: &str, out: &mut KeyBuf) {
    if !s.contains(['%', ':', ',']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            ',' => out.push_str("%2C"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&dyn Fn(&mut KeyBuf)]) -> String {
        let mut out = KeyBuf::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            part(&mut out);
        }
        out.into_string()
    }

    #[test]
    fn separators_inside_values_cannot_forge_another_key() {
        let a = key(&[&|o| "a:b".write_key(o), &|o| "c".write_key(o)]);
        let b = key(&[&|o| "a".write_key(o), &|o| "b:c".write_key(o)]);
        assert_ne!(a, b);
        assert_eq!(a, "a%3Ab:c");
    }

    #[test]
    fn integers_render_like_display() {
        for n in [0i64, 7, -7, 10, i64::MIN, i64::MAX] {
            let mut out = KeyBuf::new();
            n.write_key(&mut out);
            assert_eq!(out.as_str(), n.to_string());
        }
        let mut out = KeyBuf::new();
        u64::MAX.write_key(&mut out);
        i128::MIN.write_key(&mut out);
        assert_eq!(out.as_str(), format!("{}{}", u64::MAX, i128::MIN));
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let mut out = KeyBuf::new();
        let long = "x".repeat(100);
        out.push_str("k:");
        long.write_key(&mut out);
        out.push('!');
        assert_eq!(out.as_str(), format!("k:{long}!"));
        assert_eq!(out.into_string(), format!("k:{long}!"));
    }

    #[test]
    fn options_and_slices() {
        let mut out = KeyBuf::new();
        None::<u8>.write_key(&mut out);
        out.push('|');
        Some("%N").write_key(&mut out);
        out.push('|');
        vec![1u8, 2].write_key(&mut out);
        assert_eq!(out.as_str(), "%N|%25N|1,2");
    }
}
