//! The [`KeyArg`] trait, and its implementations for the standard library's types.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use super::buf::KeyBuf;
use super::escape::escape_into;

/// A value that can be part of a cache key or tag: the `<placeholders>` of `#[cached(key = ...)]`,
/// `invalidate_on` and `#[invalidates(...)]`, and every argument of a default key.
///
/// Implemented for integers, `bool`, `char`, strings, references, boxes, `Option`s, slices,
/// arrays, `Vec`s and tuples (up to 6) of those; with the features of those names, for
/// `uuid::Uuid` and the dates and times of `chrono` and `time`. The encoding is injective: two different
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
/// | `uuid::Uuid` (feature `uuid`) | hyphenated lowercase: `67e55044-10b1-426f-9247-bb680e5fe0c8` |
/// | dates and times (features `chrono`, `time`) | ISO 8601, escaped: `2024-03-01`, `12%3A30%3A05.25` (a leap second is `60`), `2024-03-01T12%3A30%3A05` |
/// | chrono's `DateTime<Utc>` | the date and time, then `Z`: `2024-03-01T12%3A30%3A05Z` |
/// | chrono's `DateTime<FixedOffset>`, time's `OffsetDateTime` | RFC 3339, the local date and time then the offset: `2024-03-01T13%3A30%3A05%2B01%3A00`. One instant in two offsets is two keys (the offset is part of the value: a function may answer differently for it); for one key per instant, key by the value in UTC |
///
/// | `#[derive(KeyArg)]` types | see [Deriving](KeyArg#deriving): `UserId(7)` → `7`, `Point { x: 1, y: 2 }` → `(1,2)`, `Shape::Circle(3)` → `Circle(3)` |
///
/// Derive it for your own types ([Deriving](KeyArg#deriving)), or implement it by
/// delegating to the fields that identify a value (several fields: write them as a tuple,
/// so their boundaries stay unambiguous):
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
/// # Deriving
///
/// `#[derive(KeyArg)]` implements it for a struct or an enum whose fields are `KeyArg`s (a
/// type parameter that a field names is bound by `KeyArg` too; `PhantomData` fields hold no
/// value and are left out, so a typed id `Id<T>` needs no bound on `T`):
///
/// | type | renders as |
/// | --- | --- |
/// | a struct of one field | the field: `UserId(7)` → `7` |
/// | a struct of several fields, or of none | a tuple of them: `Point { x: 1, y: 2 }` → `(1,2)`, a unit struct → `()` |
/// | an enum | the variant's name, then its fields as a tuple unless it is a unit variant: `Active`, `Circle(3)`, `Rect { w: 2, h: 3 }` → `Rect(2,3)` |
///
/// Fields frame themselves and variant names are distinct, so no two values of a derived
/// type render alike. Renaming a field keeps its keys; reordering fields or renaming a
/// variant changes them (entries under the old keys are then misses). The derived
/// [`write_key_type`](KeyArg::write_key_type) writes a fixed name: the path of the module
/// that declares the type, `::` and its name (`my_app::ids::UserId`), then, for a generic
/// type, its type arguments ([`std::any::type_name`]) and const arguments in `<>`. So
/// derived `UserId(7)` and `OrgId(7)`, which both render `7`, are two entries wherever the
/// type takes part in the key (below). Two types of one name declared inside functions of
/// one module share a path: name them apart.
///
/// ```
/// use cache_layer::{cached, Key, KeyArg};
///
/// #[derive(KeyArg)]
/// struct UserId(u64);
///
/// #[derive(KeyArg)]
/// enum Filter {
///     All,
///     Tag(String),
///     Range { from: u32, to: u32 },
/// }
///
/// #[cached(ttl = "1m", key = "posts:<user>:<filter>")]
/// async fn posts(user: UserId, filter: Filter) -> Vec<String> {
///     Vec::new() // the query
/// }
///
/// let key = Key::new("posts").part(UserId(7)).part(Filter::Range { from: 1, to: 5 });
/// assert_eq!(key.as_str(), "posts:7:Range(1,5)");
/// let key = Key::new("posts").part(UserId(7)).part(Filter::Tag("a/b".into()));
/// assert_eq!(key.as_str(), "posts:7:Tag(a%2Fb)");
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
    note = "derive it (`#[derive(cache_layer::KeyArg)]`), implement `cache_layer::KeyArg` for it, or use one of its fields: `<arg.field>`"
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
    /// `core::option::Option<T>`; the feature types their path at their crate's root
    /// (`uuid::Uuid`, `chrono::NaiveDate`, `chrono::DateTime<chrono::Utc>`, `time::Date`).
    /// References, `Box`, `Arc` and `Rc` write what they point
    /// to (a `dyn KeyArg`, the type behind it). A name may be any text: it is escaped.
    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str(std::any::type_name::<Self>());
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
}
