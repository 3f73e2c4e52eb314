//! Header values that repeat across stored responses (`Content-Type`, `Cache-Control`, `Vary`,
//! ...) as static text, so that a hit's copy of them touches no reference count: each other
//! header value of a hit costs an atomic increment and decrement.
//!
//! The text is kept for the life of the process, so it is bounded: only the fields in
//! [`FIELDS`], values up to [`MAX_VALUE`] bytes, and [`MAX_BYTES`] in all, the table's own
//! bookkeeping included. Once the budget is spent, values that are not yet interned are stored
//! as they came (correct, one reference-count pair dearer per hit). An application that
//! computes such a value per response (`max-age` counting down, say) spends the budget on
//! them. Fields that differ per response or per client (`Date`, `ETag`, `Last-Modified`,
//! `Content-Length`, cookies, `Access-Control-Allow-Origin`, a multipart `boundary`) are never
//! interned.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_TYPE, VARY,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Fields whose values an application draws from a small set.
const FIELDS: [HeaderName; 7] = [
    CONTENT_TYPE,
    CACHE_CONTROL,
    VARY,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    ACCEPT_RANGES,
    X_CONTENT_TYPE_OPTIONS,
];
/// The longest value interned.
pub(crate) const MAX_VALUE: usize = 128;
/// The most memory interned values take in the life of the process.
pub(crate) const MAX_BYTES: usize = 16 * 1024;
/// What the table spends on each value besides its text.
const PER_VALUE: usize = 32;

#[derive(Default)]
struct Table {
    values: HashSet<&'static str>,
    bytes: usize,
}

static TABLE: RwLock<Option<Table>> = RwLock::new(None);

/// Replaces the values of [`FIELDS`] in `headers` with their interned copies. Values already
/// interned are found under the read lock; the write lock is taken only to add one.
pub(crate) fn intern_common_values(headers: &mut HeaderMap) {
    let mut to_add = false;
    {
        let table = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        for (name, value) in headers.iter_mut() {
            let Some(text) = eligible(name, value) else {
                continue;
            };
            match table
                .as_ref()
                .map_or(Lookup::Fits, |table| table.find(text))
            {
                Lookup::Known(known) => *value = HeaderValue::from_static(known),
                Lookup::Fits => to_add = true,
                Lookup::Full => {}
            }
        }
    }
    if to_add {
        let mut table = TABLE.write().unwrap_or_else(PoisonError::into_inner);
        let table = table.get_or_insert_with(Table::default);
        for (name, value) in headers.iter_mut() {
            if let Some(interned) = eligible(name, value).and_then(|text| table.intern(text)) {
                *value = interned;
            }
        }
    }
}

/// For each value of `headers`, in order: whether it is an interned static copy (as
/// [`intern_common_values`] leaves it), so that it need not be copied when the response is
/// stored.
pub(crate) fn interned_positions(headers: &HeaderMap) -> Vec<bool> {
    let table = TABLE.read().unwrap_or_else(PoisonError::into_inner);
    headers
        .iter()
        .map(|(name, value)| {
            let known = table
                .as_ref()
                .zip(eligible(name, value))
                .and_then(|(table, text)| match table.find(text) {
                    Lookup::Known(known) => Some(known),
                    Lookup::Fits | Lookup::Full => None,
                });
            known.is_some_and(|known| std::ptr::eq(known.as_ptr(), value.as_bytes().as_ptr()))
        })
        .collect()
}

/// `value`'s text, if it may be interned: a field of [`FIELDS`], not too long, not sensitive,
/// visible ASCII (what `HeaderValue::from_static` accepts), and no multipart boundary.
fn eligible<'a>(name: &HeaderName, value: &'a HeaderValue) -> Option<&'a str> {
    if !FIELDS.contains(name) || value.len() > MAX_VALUE || value.is_sensitive() {
        return None;
    }
    let text = value.to_str().ok()?;
    if name == CONTENT_TYPE && text.to_ascii_lowercase().contains("boundary=") {
        return None;
    }
    Some(text)
}

enum Lookup {
    Known(&'static str),
    Fits,
    Full,
}

impl Table {
    fn find(&self, text: &str) -> Lookup {
        match self.values.get(text) {
            Some(&known) => Lookup::Known(known),
            None if self.bytes + text.len() + PER_VALUE <= MAX_BYTES => Lookup::Fits,
            None => Lookup::Full,
        }
    }

    /// The static copy of `text`, added if it is new and fits the budget.
    fn intern(&mut self, text: &str) -> Option<HeaderValue> {
        let kept = match self.find(text) {
            Lookup::Known(known) => known,
            Lookup::Full => return None,
            Lookup::Fits => {
                let kept: &'static str = Box::leak(text.into());
                self.values.insert(kept);
                self.bytes += kept.len() + PER_VALUE;
                kept
            }
        };
        Some(HeaderValue::from_static(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, DATE, ETAG};

    fn value(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn interning_keeps_every_field_and_value_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, value("application/x-interned-test"));
        headers.append(VARY, value("accept"));
        headers.append(VARY, value("accept-language"));
        headers.insert(DATE, value("Mon, 23 Nov 2026 10:00:00 GMT"));
        headers.insert(ETAG, value("\"x\""));
        let original = headers.clone();
        intern_common_values(&mut headers);
        assert_eq!(headers, original);
        assert_eq!(
            headers.get_all(VARY).iter().collect::<Vec<_>>(),
            original.get_all(VARY).iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_repeated_value_is_one_static_copy() {
        let mut table = Table::default();
        let a = table.intern("application/json").unwrap();
        let b = table.intern("application/json").unwrap();
        assert_eq!(a, "application/json");
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        assert_eq!(table.values.len(), 1);
    }

    #[test]
    fn values_that_may_not_be_interned_are_kept_as_they_came() {
        let long = "x".repeat(MAX_VALUE + 1);
        let mut sensitive = HeaderValue::from_static("text/plain");
        sensitive.set_sensitive(true);
        let obs_text = HeaderValue::from_bytes(b"text/plain; name=\xe9").unwrap();
        let multipart = value("multipart/form-data; Boundary=x7f3a");
        for value in [value(&long), sensitive, obs_text, multipart] {
            assert!(eligible(&CONTENT_TYPE, &value).is_none());
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.clone());
            intern_common_values(&mut headers);
            assert_eq!(headers[CONTENT_TYPE], value);
            assert_eq!(headers[CONTENT_TYPE].is_sensitive(), value.is_sensitive());
        }
        // Per-response and per-client fields are never candidates.
        for name in [DATE, ETAG, ACCESS_CONTROL_ALLOW_ORIGIN] {
            assert!(eligible(&name, &value("https://a.example")).is_none());
        }
    }

    #[test]
    fn the_budget_bounds_what_is_ever_interned() {
        let mut table = Table::default();
        let text = |i: usize| format!("budget-{i:07}");
        let per_value = text(0).len() + PER_VALUE;
        let fitting = MAX_BYTES / per_value;
        let interned = (0..fitting + 10)
            .filter(|&i| table.intern(&text(i)).is_some())
            .count();
        assert_eq!(
            interned, fitting,
            "values are interned until the budget is spent"
        );
        assert!(table.bytes <= MAX_BYTES);
        // A value interned before the budget ran out is still served from the table.
        assert_eq!(
            table.intern(&text(0)).expect("interned before"),
            text(0).as_str()
        );
        assert!(table.intern(&text(fitting + 1)).is_none());
    }
}
