//! Invalidation tags on responses: the `Cache-Tag` header (removed before the client sees it)
//! and the [`CacheTags`] response extension.

use http::{Extensions, HeaderMap};

pub(crate) use super::rules::gate::CACHE_TAG;

/// Invalidation tags of a response.
///
/// A handler sets it as a response extension (or sends a `Cache-Tag` header) to name what the
/// response depends on; [`CacheLayer`](crate::CacheLayer) stores the response tagged with these
/// names, and `cache.invalidate(name)` drops it. On the way out the layer sets this extension to
/// every tag it read, and removes the `Cache-Tag` header.
///
/// ```
/// use cache_layer::CacheTags;
///
/// let mut response = http::Response::new(());
/// response
///     .extensions_mut()
///     .insert(CacheTags(vec!["user:7".into(), "users".into()]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheTags(pub Vec<String>);

/// The tag names in one `Cache-Tag` (or `Surrogate-Key`) line: separated by commas or spaces.
pub(crate) fn tag_names(line: &str) -> impl Iterator<Item = &str> {
    line.split([',', ' ', '\t']).filter(|t| !t.is_empty())
}

/// Takes the tags out of a response's `Cache-Tag` header and [`CacheTags`] extension, and puts
/// the union back as the extension.
pub(crate) fn take_tags(headers: &mut HeaderMap, extensions: &mut Extensions) -> Vec<String> {
    let mut tags = extensions
        .get::<CacheTags>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    if headers.contains_key(&CACHE_TAG) {
        for line in headers.get_all(&CACHE_TAG) {
            let line = String::from_utf8_lossy(line.as_bytes());
            for tag in tag_names(&line) {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_owned());
                }
            }
        }
        headers.remove(&CACHE_TAG);
    }
    if !tags.is_empty() {
        extensions.insert(CacheTags(tags.clone()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_and_extension_merge() {
        let mut headers = HeaderMap::new();
        headers.append(&CACHE_TAG, HeaderValue::from_static("a, b"));
        headers.append(&CACHE_TAG, HeaderValue::from_static("c a"));
        let mut extensions = Extensions::new();
        extensions.insert(CacheTags(vec!["z".into()]));
        let tags = take_tags(&mut headers, &mut extensions);
        assert_eq!(tags, ["z", "a", "b", "c"]);
        assert!(!headers.contains_key(&CACHE_TAG));
        assert_eq!(extensions.get::<CacheTags>().unwrap().0, tags);
    }
}
