//! How arguments become parts of cache keys and tags: [`KeyArg`] renders a value (`arg`), into
//! a [`KeyBuf`] (`buf`), escaping what it writes (`escape`); [`Key`] is the imperative API's
//! key of a namespace and parts. Optional key types, a file per feature: `uuid`, and the
//! dates and times of `chrono` and `time`, both written as ISO 8601 text (`iso8601`).

mod arg;
mod buf;
#[cfg(feature = "chrono")]
mod chrono;
mod escape;
#[cfg(any(feature = "chrono", feature = "time"))]
mod iso8601;
#[cfg(feature = "time")]
mod time;
#[cfg(feature = "uuid")]
mod uuid;

use std::fmt;

pub(crate) use self::arg::write_typed;
pub use self::arg::KeyArg;
pub use self::buf::KeyBuf;
pub(crate) use self::escape::percent_encoded;

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

    /// A key rendered by a `#[cached]` fn's template (its `<fn>_key` handle).
    #[inline]
    pub(crate) fn rendered(buf: KeyBuf) -> Self {
        Key { buf }
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

    #[test]
    fn keys_render_like_templates_and_escape_their_parts() {
        let key = Key::new("user").part(7u64).part("a:b").part(None::<u8>);
        assert_eq!(key.as_str(), "user:7:a%3Ab:%N");
        assert_ne!(Key::new("x").part("a:b"), Key::new("x").part("a").part("b"));
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
