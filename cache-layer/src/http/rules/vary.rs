//! The response's `Vary` field (RFC 9110 §12.5.5): the request headers a stored response was
//! selected by.

use http::header::VARY;
use http::{HeaderMap, HeaderName};

use super::field::first_of_each;

/// The members of every `Vary` line, OWS trimmed, empty ones skipped.
fn members(response: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    response
        .get_all(VARY)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|member| !member.is_empty())
}

/// Whether any `Vary` line lists `*` (the response varies on more than request headers).
pub(crate) fn has_vary_star(response: &HeaderMap) -> bool {
    members(response).any(|member| member == b"*")
}

/// The header names of a response's `Vary`, lowercased, in order, without duplicates.
/// `None` for `Vary: *` or a name that is not a valid header name (never matches).
pub(crate) fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for member in members(response) {
        if member == b"*" {
            return None;
        }
        names.push(HeaderName::from_bytes(member).ok()?);
    }
    Some(first_of_each(names, |name| name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn response(lines: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(VARY, HeaderValue::from_static(line));
        }
        headers
    }

    #[test]
    fn names_in_order_lowercased_once() {
        let names = vary_names(&response(&["Accept-Language, accept", "ACCEPT", " ,"])).unwrap();
        assert_eq!(names, ["accept-language", "accept"]);
        assert_eq!(vary_names(&response(&[])), Some(vec![]));
    }

    #[test]
    fn a_star_or_an_invalid_name_varies_on_everything() {
        for lines in [&["x, *"][..], &["a", " * "], &["a b"]] {
            assert_eq!(vary_names(&response(lines)), None, "{lines:?}");
        }
        assert!(has_vary_star(&response(&["a", "b,*"])));
        assert!(!has_vary_star(&response(&["a b", "x*"])));
    }
}
