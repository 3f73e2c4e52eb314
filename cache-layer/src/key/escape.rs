//! The alphabet of rendered values: which characters are written `%XX`, and how.

use super::buf::KeyBuf;

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
pub(super) fn escape_into(s: &str, out: &mut KeyBuf) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyArg;

    #[test]
    fn reserved_characters_are_percent_encoded() {
        let mut out = KeyBuf::new();
        "a/b c:d%é-._~".write_key(&mut out);
        'ü'.write_key(&mut out);
        '['.write_key(&mut out);
        assert_eq!(out.as_str(), "a%2Fb%20c%3Ad%25é-._~ü%5B");
    }
}
