//! Invalidation tags on responses: the `Cache-Tag` and `Surrogate-Key` headers (removed before
//! the client sees them, unless the layer forwards them) and the [`CacheTags`] response
//! extension.

use http::{Extensions, HeaderMap};

use super::rules::field::first_of_each;
pub(crate) use super::rules::gate::TAG_FIELDS;

/// Invalidation tags of a response.
///
/// A handler sets it as a response extension (or sends a `Cache-Tag` or `Surrogate-Key` header)
/// to name what the response depends on; [`CacheLayer`](crate::CacheLayer) stores the response
/// tagged with these names, and `cache.invalidate(name)` drops it. On the way out the layer sets
/// this extension to every tag it read, and removes the `Cache-Tag` and `Surrogate-Key` headers
/// (unless [`forward_tag_headers`](crate::CacheLayer::forward_tag_headers) keeps them).
///
/// ```
/// use cache_layer::CacheTags;
///
/// let mut response = http::Response::new(());
/// response
///     .extensions_mut()
///     .insert(CacheTags::new(["user:7", "users"]));
/// let tags = response.extensions().get::<CacheTags>().unwrap();
/// assert_eq!(tags.as_slice(), ["user:7", "users"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheTags(pub(crate) Vec<String>);

impl CacheTags {
    /// Tags with these names.
    pub fn new<I, T>(names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        CacheTags(names.into_iter().map(Into::into).collect())
    }

    /// The tag names, in the order given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl<T: Into<String>> FromIterator<T> for CacheTags {
    fn from_iter<I: IntoIterator<Item = T>>(names: I) -> Self {
        CacheTags::new(names)
    }
}

/// The tag names in one `Cache-Tag` (or `Surrogate-Key`) line: separated by commas or spaces.
pub(crate) fn tag_names(line: &str) -> impl Iterator<Item = &str> {
    line.split([',', ' ', '\t']).filter(|t| !t.is_empty())
}

/// Takes the tags out of a response's [`CacheTags`] extension and its `Cache-Tag` and
/// `Surrogate-Key` headers (removed unless `keep_headers`), and puts the union back as the
/// extension.
pub(crate) fn take_tags(
    headers: &mut HeaderMap,
    extensions: &mut Extensions,
    keep_headers: bool,
) -> Vec<String> {
    let mut tags = extensions
        .get::<CacheTags>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    for name in TAG_FIELDS {
        if !headers.contains_key(name) {
            continue;
        }
        for line in headers.get_all(name) {
            let line = String::from_utf8_lossy(line.as_bytes());
            tags.extend(tag_names(&line).map(str::to_owned));
        }
        if !keep_headers {
            headers.remove(name);
        }
    }
    // Repeated names once each, in linear time: an origin's field may name many tags.
    let tags = first_of_each(tags, String::as_str);
    if !tags.is_empty() {
        extensions.insert(CacheTags(tags.clone()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::rules::gate::{CACHE_TAG, SURROGATE_KEY};
    use http::HeaderValue;

    #[test]
    fn header_and_extension_merge() {
        let mut headers = HeaderMap::new();
        headers.append(&CACHE_TAG, HeaderValue::from_static("a, b"));
        headers.append(&CACHE_TAG, HeaderValue::from_static("c a"));
        let mut extensions = Extensions::new();
        extensions.insert(CacheTags(vec!["z".into()]));
        let tags = take_tags(&mut headers, &mut extensions, false);
        assert_eq!(tags, ["z", "a", "b", "c"]);
        assert!(!headers.contains_key(&CACHE_TAG));
        assert_eq!(extensions.get::<CacheTags>().unwrap().0, tags);
    }

    #[test]
    fn many_repeated_tags_are_kept_once_in_order() {
        let mut headers = HeaderMap::new();
        let names: Vec<String> = (0..20_000).map(|i| format!("t{i}")).collect();
        let line = format!("{} {}", names.join(" "), names.join(","));
        headers.append(&CACHE_TAG, HeaderValue::from_str(&line).unwrap());
        let tags = take_tags(&mut headers, &mut Extensions::new(), false);
        assert_eq!(tags, names);
    }

    #[test]
    fn surrogate_keys_are_tags_too() {
        let mut headers = HeaderMap::new();
        headers.append(&CACHE_TAG, HeaderValue::from_static("a"));
        headers.append(&SURROGATE_KEY, HeaderValue::from_static("b  a\tc"));
        let tags = take_tags(&mut headers.clone(), &mut Extensions::new(), true);
        assert_eq!(tags, ["a", "b", "c"]);
        let mut kept = headers.clone();
        take_tags(&mut kept, &mut Extensions::new(), true);
        assert_eq!(kept, headers, "kept for a CDN downstream");
        take_tags(&mut headers, &mut Extensions::new(), false);
        assert!(headers.is_empty(), "{headers:?}");
    }
}
