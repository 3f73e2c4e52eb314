//! How arguments become parts of cache keys and tags.

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// A value that can be part of a cache key or tag: the `<placeholders>` of `#[cached(key = ...)]`,
/// `invalidate_on` and `#[invalidates(...)]`, and every argument of a default key.
///
/// Implemented for integers, `bool`, `char`, strings, references, boxes, `Option`s, slices,
/// arrays, `Vec`s and tuples (up to 6) of those. The encoding is injective: two different
/// values of one type never render the same text, and a rendered value never contains the
/// characters that separate placeholders in a template (see [the crate docs](crate#keys)):
///
/// | value | renders as |
/// | --- | --- |
/// | integers, `bool` | decimal (`-7`), `true` / `false` |
/// | `str`, `String`, `char` | as is, except ASCII characters other than letters, digits and `-._~`, written `%XX` (`a/b c` → `a%2Fb%20c`) |
/// | `None` | `%N` |
/// | `Some(v)` | `v`; `%S` then `v` when `v` itself starts with `%N` or `%S` (`Some(None)` → `%S%N`) |
/// | slices, arrays, `Vec` | `[a,b]`, with a trailing `,` when the last element renders empty (`[""]` → `[,]`, `[]` → `[]`) |
/// | tuples | `(a,b)` |
///
/// Implement it for your own id types by delegating to the fields that identify a value
/// (several fields: write them as a tuple, so their boundaries stay unambiguous):
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
///
/// # Arguments whose type the signature leaves open
///
/// A generic argument (`id: T`), an `impl KeyArg` or a `dyn KeyArg` one may hold values of
/// several types that render alike: `UserId(7)` and `OrgId(7)` both render `7`. For such an
/// argument, `#[cached]` adds its type's name to the key (see
/// [`write_key_type`](KeyArg::write_key_type)): `name(UserId(7))` and `name(OrgId(7))` are two
/// entries. An argument whose type the signature fixes (`id: u64`, `id: &UserId`) renders as
/// above, and its keys are as documented in [the crate docs](crate#keys).
///
/// # Writing an implementation
///
/// An implementation must keep the encoding injective:
///
/// - Render distinct values of the type differently, and write text only through other
///   `KeyArg`s (a raw [`KeyBuf::push_str`] of a reserved character such as `:` could forge
///   the text around a placeholder). Several fields: a tuple of them, as above.
/// - Name the type apart from every other `KeyArg` type: the default
///   [`write_key_type`](KeyArg::write_key_type) writes its path
///   ([`std::any::type_name`]). That text is the same in every build of the same source with
///   the same compiler, so instances sharing Redis agree on it; a toolchain upgrade or moving
///   the type to another module may change it (entries under the old name are then misses,
///   never wrong answers: an invalidation still reaches them, see
///   [`write_key_type`](KeyArg::write_key_type)). To keep keys across those, write a fixed
///   name that no other type uses, such as the type's path as written today:
///
/// ```
/// use cache_layer::{KeyArg, KeyBuf};
///
/// struct OrgId(u64);
///
/// impl KeyArg for OrgId {
///     fn write_key(&self, out: &mut KeyBuf) {
///         self.0.write_key(out);
///     }
///
///     fn write_key_type(&self, out: &mut KeyBuf) {
///         out.push_str("my_app::OrgId");
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    label = "this value is used in a cache key or tag",
    note = "implement `cache_layer::KeyArg` for it, or use one of its fields: `<arg.field>`"
)]
pub trait KeyArg {
    /// Appends this value's key form to `out`.
    fn write_key(&self, out: &mut KeyBuf);

    /// Appends the name of this value's type to `out`, a buffer of its own: `#[cached]` writes
    /// it into the key after an argument whose type the signature leaves open (a generic, an
    /// `impl KeyArg` or a `dyn KeyArg` argument), as `%T` and the name, escaped as a string
    /// is: `my_app::get_name:7%Tmy_app%3A%3AUserId`. Such an entry is also tagged with the
    /// key without the names (`my_app::get_name:7`), so invalidating that reaches the
    /// entries of every type.
    ///
    /// The default is [`std::any::type_name`] of the type (see [Writing an
    /// implementation](KeyArg#writing-an-implementation) for when to write a fixed name).
    /// The implementations here write fixed names: `u64`, `bool`, `char`; `str` for `str`,
    /// `String` and `Cow<str>`; `[T]` for `[T]`, `[T; N]` and `Vec<T>` (elements behind
    /// `dyn KeyArg` of several types: each one's, `[u8,u16]`); `(A,B)` for tuples;
    /// `core::option::Option<T>`. References, `Box`, `Arc` and `Rc` write what they point
    /// to (a `dyn KeyArg`, the type behind it). A name may be any text: it is escaped.
    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str(std::any::type_name::<Self>());
    }
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

    /// The length of the key rendered so far, in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether nothing has been rendered yet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// Inserts `s` at byte offset `at` (a character boundary). Rare: only `Some` of a value
    /// that starts with a marker takes it.
    fn insert_str(&mut self, at: usize, s: &str) {
        match &mut self.spilled {
            Some(heap) => heap.insert_str(at, s),
            None => {
                // Fits: it was part of the inline buffer.
                let tail = arrayvec::ArrayString::<64>::from(&self.inline[at..])
                    .expect("a suffix of the inline buffer fits in one");
                self.inline.truncate(at);
                self.push_str(s);
                self.push_str(&tail);
            }
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

/// Integers in decimal, with `itoa` (no `fmt` machinery on the key path).
macro_rules! integer_keys {
    ($($t:ty),*) => {
        $(impl KeyArg for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyBuf) {
                out.push_str(itoa::Buffer::new().format(*self));
            }

            fn write_key_type(&self, out: &mut KeyBuf) {
                out.push_str(stringify!($t));
            }
        })*
    };
}

integer_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl KeyArg for bool {
    fn write_key(&self, out: &mut KeyBuf) {
        out.push_str(if *self { "true" } else { "false" });
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str("bool");
    }
}

impl KeyArg for char {
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self.encode_utf8(&mut [0; 4]), out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str("char");
    }
}

/// The name of every string type (see [`KeyArg::write_key_type`]).
const STR: &str = "str";

impl KeyArg for str {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self, out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str(STR);
    }
}

impl KeyArg for String {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self, out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str(STR);
    }
}

impl KeyArg for Cow<'_, str> {
    fn write_key(&self, out: &mut KeyBuf) {
        escape_into(self, out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str(STR);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        (**self).write_key_type(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for &mut T {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        (**self).write_key_type(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for Box<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        (**self).write_key_type(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for Arc<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        (**self).write_key_type(out);
    }
}

impl<T: KeyArg + ?Sized> KeyArg for Rc<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        (**self).write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        (**self).write_key_type(out);
    }
}

/// `None`'s encoding, and the prefix that marks a `Some` whose value starts with a marker.
/// `%` followed by a letter that is not a hex digit: no escaped character can produce it.
const NONE: &str = "%N";
const SOME: &str = "%S";

impl<T: KeyArg> KeyArg for Option<T> {
    /// `None` renders as `%N`; `Some(v)` as `v`, or `%S` then `v` when `v` starts with `%N`
    /// or `%S` (a nested `Option`), so `Some(None)` is not `None`.
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        match self {
            Some(value) => {
                let start = out.len();
                value.write_key(out);
                let written = &out.as_str()[start..];
                if written.starts_with(NONE) || written.starts_with(SOME) {
                    out.insert_str(start, SOME);
                }
            }
            None => out.push_str(NONE),
        }
    }

    /// `core::option::Option<` and the name of the value's type (for `None`, of `T`) `>`.
    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str("core::option::Option<");
        match self {
            Some(value) => value.write_key_type(out),
            None => out.push_str(std::any::type_name::<T>()),
        }
        out.push('>');
    }
}

impl<T: KeyArg> KeyArg for [T] {
    /// `[a,b]`. An element that renders empty (`""`) as the last one is followed by a `,`, so
    /// `[""]` (`[,]`) is not `[]`.
    fn write_key(&self, out: &mut KeyBuf) {
        out.push('[');
        let mut last_empty = false;
        for (i, item) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let start = out.len();
            item.write_key(out);
            last_empty = out.len() == start;
        }
        if last_empty {
            out.push(',');
        }
        out.push(']');
    }

    /// `[` the elements' type `]` when they all name one type (an empty slice: `T`), else
    /// `[` each element's type, separated by `,` `]` (elements of several types behind
    /// `dyn KeyArg`).
    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push('[');
        match self.split_first() {
            None => out.push_str(std::any::type_name::<T>()),
            Some((first, rest)) => {
                let mut name = KeyBuf::new();
                first.write_key_type(&mut name);
                let one_type = rest.iter().all(|item| {
                    let mut other = KeyBuf::new();
                    item.write_key_type(&mut other);
                    other.as_str() == name.as_str()
                });
                if one_type {
                    out.push_str(name.as_str());
                } else {
                    for (i, item) in self.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        item.write_key_type(out);
                    }
                }
            }
        }
        out.push(']');
    }
}

impl<T: KeyArg, const N: usize> KeyArg for [T; N] {
    fn write_key(&self, out: &mut KeyBuf) {
        self.as_slice().write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        self.as_slice().write_key_type(out);
    }
}

impl<T: KeyArg> KeyArg for Vec<T> {
    fn write_key(&self, out: &mut KeyBuf) {
        self.as_slice().write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        self.as_slice().write_key_type(out);
    }
}

/// `(a,b,...)`: a tuple's arity is fixed by its type, so empty fields stay unambiguous.
macro_rules! tuple_keys {
    ($(($($name:ident $index:tt),+))*) => {
        $(impl<$($name: KeyArg),+> KeyArg for ($($name,)+) {
            fn write_key(&self, out: &mut KeyBuf) {
                out.push('(');
                tuple_keys!(@fields self out write_key $($index)+);
                out.push(')');
            }

            fn write_key_type(&self, out: &mut KeyBuf) {
                out.push('(');
                tuple_keys!(@fields self out write_key_type $($index)+);
                out.push(')');
            }
        })*
    };
    (@fields $self:ident $out:ident $write:ident $first:tt $($rest:tt)*) => {
        $self.$first.$write($out);
        $($out.push(','); $self.$rest.$write($out);)*
    };
}

tuple_keys! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
}

/// Before the name of an open argument's type (see [`write_typed`]): `%` and a letter that is
/// not a hex digit, as `None`'s marker, so no rendered value holds it.
const TYPE: &str = "%T";

/// Appends `value`'s key form, then `%T` and the name of its type, escaped: the key form of an
/// argument whose type the signature leaves open (see [`KeyArg::write_key_type`]). The value's
/// text holds no `%T`, so where the name begins is plain, and the escaped name holds no
/// character that separates placeholders, so the whole stays one placeholder's text.
pub(crate) fn write_typed<T: KeyArg + ?Sized>(value: &T, out: &mut KeyBuf) {
    value.write_key(out);
    out.push_str(TYPE);
    let mut name = KeyBuf::new();
    value.write_key_type(&mut name);
    escape_into(name.as_str(), out);
}

/// Whether `byte` is written `%XX` in a rendered string: every ASCII character but letters,
/// digits and `-._~` (RFC 3986's unreserved set). Templates separate placeholders with these
/// characters, so a value can never produce the text around it; `%` is the escape itself.
/// `cache-macros` checks template literals against the same set.
#[inline]
fn is_reserved(byte: u8) -> bool {
    byte.is_ascii() && !byte.is_ascii_alphanumeric() && !matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `byte` percent-encoded: `%XX`, uppercase hex (RFC 3986 §2.1).
#[inline]
pub(crate) fn percent_encoded(byte: u8) -> [char; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digit = |nibble: u8| char::from(HEX[usize::from(nibble)]);
    ['%', digit(byte >> 4), digit(byte & 0xF)]
}

/// Appends `s` with its reserved characters written `%XX` (uppercase hex). Unreserved runs
/// are appended whole, so a string with nothing to escape is one copy.
#[inline]
fn escape_into(s: &str, out: &mut KeyBuf) {
    let mut start = 0;
    for (at, &byte) in s.as_bytes().iter().enumerate() {
        if is_reserved(byte) {
            // `at` is an ASCII byte, so both slices end on character boundaries.
            out.push_str(&s[start..at]);
            for c in percent_encoded(byte) {
                out.push(c);
            }
            start = at + 1;
        }
    }
    out.push_str(&s[start..]);
}

/// A key for the imperative API ([`Cache::get`](crate::Cache::get),
/// [`Cache::insert`](crate::Cache::insert), [`Cache::get_or_load`](crate::Cache::get_or_load),
/// [`Cache::get_or_load_many`](crate::Cache::get_or_load_many), ...): a namespace written in
/// code, then parts, each after a `:`, rendered with [`KeyArg`] exactly as a `#[cached]` key
/// template renders its placeholders.
///
/// # The namespace
/// `Key::new("user").part(7)` renders `user:7`: the same key as
/// `#[cached(key = "user:<id>")]` renders for `id = 7`, so it reads and writes *that* entry
/// (how a cached function's entries are warmed at start-up; a value of another type under it
/// is a miss, as between two functions sharing a key template). A function's default key is
/// reached only by naming its path (`Key::new(concat!(module_path!(), "::get_user")).part(7)`).
/// Parts are escaped (`a:b` → `a%3Ab`), so no value, however hostile, can render another
/// key's text; HTTP responses stored by [`CacheLayer`](crate::CacheLayer) are keyed
/// `GET <url>` (with a space, which no namespace may hold) and are never reached. In Redis, the
/// key is stored under the cache's [key prefix](crate::CacheBuilder::key_prefix), and a key
/// over 200 bytes under its digest (see the crate docs, "Redis layout"), as every key is.
///
/// ```
/// use cache_layer::Key;
///
/// let key = Key::new("org").part(7).part("a/b");
/// assert_eq!(key.as_str(), "org:7:a%2Fb");
/// ```
///
/// # Panics
/// `Key::new` panics when `namespace` is empty or holds anything but printable ASCII other
/// than `%` (no spaces, no control or non-ASCII characters): namespaces are written in code,
/// never taken from input; put values in [`part`](Key::part)s.
#[derive(Clone)]
pub struct Key {
    buf: KeyBuf,
}

impl Key {
    /// A key of `namespace` alone; add parts with [`Key::part`].
    ///
    /// # Panics
    /// When `namespace` is empty or holds a character other than printable ASCII (`!` to
    /// `~`) or holds `%`.
    #[inline]
    pub fn new(namespace: &'static str) -> Self {
        assert!(
            !namespace.is_empty()
                && namespace.bytes().all(|b| b.is_ascii_graphic() && b != b'%'),
            "a cache key namespace must be non-empty printable ASCII without `%` or spaces, got {namespace:?}"
        );
        let mut buf = KeyBuf::new();
        buf.push_str(namespace);
        Key { buf }
    }

    /// Appends `:` and `part`, rendered by its [`KeyArg`] encoding (escaped, framed).
    #[inline]
    #[must_use]
    pub fn part(mut self, part: impl KeyArg) -> Self {
        self.buf.push(':');
        part.write_key(&mut self.buf);
        self
    }

    /// The rendered key (what [`Cache::invalidate`](crate::Cache::invalidate) takes).
    #[inline]
    pub fn as_str(&self) -> &str {
        self.buf.as_str()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys may hold user data: shown only where the application prints them.
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
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
        out.push('|');
        Some(None::<u8>).write_key(&mut out);
        out.push('|');
        vec![""].write_key(&mut out);
        out.push('|');
        Vec::<&str>::new().write_key(&mut out);
        out.push('|');
        ("", 1u8, ["a/b"]).write_key(&mut out);
        assert_eq!(out.as_str(), "%N|%25N|[1,2]|%S%N|[,]|[]|(,1,[a%2Fb])");
    }

    #[test]
    fn some_of_a_marker_is_marked_also_after_spilling() {
        for prefix in [0, 62, 100] {
            let mut out = KeyBuf::new();
            out.push_str(&"x".repeat(prefix));
            Some(Some(None::<u8>)).write_key(&mut out);
            assert_eq!(&out.as_str()[prefix..], "%S%S%N");
        }
    }

    #[test]
    fn reserved_characters_are_percent_encoded() {
        let mut out = KeyBuf::new();
        "a/b c:d%é-._~".write_key(&mut out);
        'ü'.write_key(&mut out);
        '['.write_key(&mut out);
        assert_eq!(out.as_str(), "a%2Fb%20c%3Ad%25é-._~ü%5B");
    }

    #[test]
    fn keys_render_like_templates_and_escape_their_parts() {
        let key = Key::new("user").part(7u64).part("a:b").part(None::<u8>);
        assert_eq!(key.as_str(), "user:7:a%3Ab:%N");
        assert_ne!(Key::new("x").part("a:b"), Key::new("x").part("a").part("b"));
    }

    fn typed<T: KeyArg + ?Sized>(value: &T) -> String {
        let mut out = KeyBuf::new();
        write_typed(value, &mut out);
        out.into_string()
    }

    #[test]
    fn open_arguments_name_their_types() {
        assert_eq!(typed(&7u64), "7%Tu64");
        assert_ne!(typed(&7u64), typed(&7u32));
        assert_eq!(typed("a/b"), "a%2Fb%Tstr");
        assert_eq!(typed(&String::from("x")), typed(&Cow::Borrowed("x")));
        assert_eq!(typed(&Box::new(7u8)), typed(&7u8));
        let inner: &dyn KeyArg = &7u16;
        assert_eq!(typed(&inner), "7%Tu16");
        assert_eq!(typed(&Some(7u8)), "7%Tcore%3A%3Aoption%3A%3AOption%3Cu8%3E");
        assert_ne!(typed(&None::<u8>), typed(&None::<u16>));
        assert_eq!(typed(&(1u8, "a")), "(1,a)%T%28u8%2Cstr%29");
        assert_eq!(typed(&[1u8, 2]), typed(&vec![1u8, 2]));
        assert_ne!(typed(&Vec::<u8>::new()), typed(&Vec::<u16>::new()));
        let one_type: Vec<&dyn KeyArg> = vec![&1u8, &2u8];
        assert_eq!(typed(&one_type), "[1,2]%T%5Bu8%5D");
        let mixed: Vec<&dyn KeyArg> = vec![&1u8, &2u16];
        assert_eq!(typed(&mixed), "[1,2]%T%5Bu8%2Cu16%5D");
        let swapped: Vec<&dyn KeyArg> = vec![&1u16, &2u8];
        assert_ne!(typed(&mixed), typed(&swapped));
    }

    #[test]
    fn namespaces_are_code_not_input() {
        for bad in ["", "GET http", "a%3A", "tab\t", "é"] {
            assert!(
                std::panic::catch_unwind(|| Key::new(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(Key::new("my_app::get_user").as_str(), "my_app::get_user");
    }
}
