//! A request's query parameters, percent-decoded (`+` is a space, as forms send it). Hostile
//! input: at most 64 parameters of at most 8 KiB each; anything else is refused (`None`).

/// The parameters of a query string.
pub(super) struct Params(Vec<(String, String)>);

const MAX_PARAMS: usize = 64;
const MAX_LEN: usize = 8 * 1024;

impl Params {
    pub(super) fn parse(query: &str) -> Option<Params> {
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if params.len() == MAX_PARAMS || pair.len() > MAX_LEN {
                return None;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.push((decode(name)?, decode(value)?));
        }
        Some(Params(params))
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decoded UTF-8; `None` for a bad escape or bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes_and_refuses_bad_ones() {
        let p = Params::parse("key=GET%20https%3A%2F%2Fa%2Fb&tag=a+b&empty").unwrap();
        assert_eq!(p.get("key"), Some("GET https://a/b"));
        assert_eq!(p.get("tag"), Some("a b"));
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.get("none"), None);
        for bad in ["key=%", "key=%g1", "key=%ff", "key=%2"] {
            assert!(Params::parse(bad).is_none(), "{bad}");
        }
        assert!(Params::parse(&"a=1&".repeat(65)).is_none());
    }
}
