//! [`KeyBuf`]: the text of a key or tag being rendered.

use std::fmt;

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

    /// Appends `s` as is (no escaping: use [`KeyArg::write_key`](crate::KeyArg::write_key) for values).
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
    pub(super) fn insert_str(&mut self, at: usize, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyArg;

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
}
