//! Field value syntax the header rules share (RFC 9110 §5.6): optional whitespace, and the
//! members of a list that repeat an earlier one's name.

use std::collections::HashSet;
use std::hash::Hash;

/// Whether `b` is optional whitespace (`OWS`: SP / HTAB, RFC 9110 §5.6.3).
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing OWS.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |p| p + 1);
    &s[start..end]
}

/// `items` without those whose `key` an earlier item has, in order. Linear in the number of
/// items (one set of the keys seen): a list searched for each item would make a field of many
/// distinct names, which any origin can send, quadratic to parse.
pub(crate) fn first_of_each<T, K>(items: Vec<T>, key: impl Fn(&T) -> &K) -> Vec<T>
where
    K: Hash + Eq + ?Sized,
{
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(items.len());
        items.iter().map(|item| seen.insert(key(item))).collect()
    };
    items
        .into_iter()
        .zip(first)
        .filter_map(|(item, first)| first.then_some(item))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn only_spaces_and_tabs_are_trimmed() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"\r\na\x0c"), b"\r\na\x0c");
    }

    thread_local! {
        /// Hashes and comparisons of [`Counted`] keys on this thread.
        static STEPS: Cell<usize> = const { Cell::new(0) };
    }

    /// A key that counts the work done on it.
    struct Counted(u32);

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            STEPS.set(STEPS.get() + 1);
            self.0 == other.0
        }
    }

    impl Eq for Counted {}

    impl Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            STEPS.set(STEPS.get() + 1);
            self.0.hash(state);
        }
    }

    #[test]
    fn first_of_each_keeps_first_occurrences_in_linear_steps() {
        let items = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')];
        assert_eq!(
            first_of_each(items, |(key, _)| key),
            [(3, 'a'), (1, 'b'), (2, 'd')]
        );
        // The worst case of a list searched per item: all distinct (and then all repeated).
        let n: u32 = 4_000;
        let items: Vec<Counted> = (0..n).chain(0..n).map(Counted).collect();
        STEPS.set(0);
        let kept = first_of_each(items, |item| item);
        assert!(kept.iter().map(|k| k.0).eq(0..n));
        let steps = STEPS.get();
        // One hash per item, a comparison per repeat (and per rare hash collision).
        assert!(
            steps <= 4 * 2 * n as usize,
            "{steps} steps for {} items",
            2 * n
        );
    }
}
