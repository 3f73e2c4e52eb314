//! Header values that repeat across stored responses (`Content-Type`, `Cache-Control`, `Vary`,
//! ...) as static text, so that a hit's copy of them touches no reference count: each other
//! header value of a hit costs an atomic increment and decrement.
//!
//! The text is kept for the life of the process, so it is bounded: only the fields in
//! [`FIELDS`], values up to [`MAX_VALUE`] bytes, and [`MAX_BYTES`] bytes in all. Once the budget
//! is spent, values that are not yet interned are stored as they came (correct, one reference
//! count pair dearer per hit). Fields that differ per response (`Date`, `ETag`,
//! `Last-Modified`, `Content-Length`, cookies) are never interned.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use http::header::{
    ACCEPT_RANGES, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LANGUAGE,
    CONTENT_TYPE, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Fields whose values an application draws from a small set.
const FIELDS: [HeaderName; 8] = [
    CONTENT_TYPE,
    CACHE_CONTROL,
    VARY,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    ACCEPT_RANGES,
    X_CONTENT_TYPE_OPTIONS,
    ACCESS_CONTROL_ALLOW_ORIGIN,
];
/// The longest value interned.
pub(crate) const MAX_VALUE: usize = 128;
/// The most text interned in the life of the process.
pub(crate) const MAX_BYTES: usize = 16 * 1024;

#[derive(Default)]
struct Table {
    values: HashSet<&'static str>,
    bytes: usize,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// Replaces the values of [`FIELDS`] in `headers` with their interned copies.
pub(crate) fn intern_common_values(headers: &mut HeaderMap) {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(Table::default);
    for (name, value) in headers.iter_mut() {
        if FIELDS.contains(name) {
            if let Some(interned) = table.intern(value) {
                *value = interned;
            }
        }
    }
}

impl Table {
    /// The static copy of `value`; `None` when it may not be interned (too long, sensitive,
    /// not visible ASCII, or the budget is spent).
    fn intern(&mut self, value: &HeaderValue) -> Option<HeaderValue> {
        if value.len() > MAX_VALUE || value.is_sensitive() {
            return None;
        }
        // Visible ASCII only: what `HeaderValue::from_static` accepts.
        let text = value.to_str().ok()?;
        if let Some(&known) = self.values.get(text) {
            return Some(HeaderValue::from_static(known));
        }
        if self.bytes + text.len() > MAX_BYTES {
            return None;
        }
        let kept: &'static str = Box::leak(text.into());
        self.values.insert(kept);
        self.bytes += kept.len();
        Some(HeaderValue::from_static(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{DATE, ETAG};

    #[test]
    fn repeated_values_share_one_static_copy_and_others_are_untouched() {
        let build = || {
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_str("application/x-interned-test").unwrap(),
            );
            headers.append(VARY, HeaderValue::from_str("accept").unwrap());
            headers.append(VARY, HeaderValue::from_str("accept-language").unwrap());
            headers.insert(
                DATE,
                HeaderValue::from_str("Mon, 23 Nov 2026 10:00:00 GMT").unwrap(),
            );
            headers.insert(ETAG, HeaderValue::from_str("\"x\"").unwrap());
            headers
        };
        let (mut a, mut b) = (build(), build());
        let original = build();
        intern_common_values(&mut a);
        intern_common_values(&mut b);
        // The same fields and values, in the same order.
        assert_eq!(a, original);
        assert_eq!(
            a.get_all(VARY).iter().collect::<Vec<_>>(),
            original.get_all(VARY).iter().collect::<Vec<_>>()
        );
        // Interned: both maps point at the same text.
        assert_eq!(
            a[CONTENT_TYPE].as_bytes().as_ptr(),
            b[CONTENT_TYPE].as_bytes().as_ptr()
        );
        // Per-response fields are left alone.
        assert_ne!(a[DATE].as_bytes().as_ptr(), b[DATE].as_bytes().as_ptr());
        assert_ne!(a[ETAG].as_bytes().as_ptr(), b[ETAG].as_bytes().as_ptr());
    }

    #[test]
    fn values_that_may_not_be_interned_are_kept_as_they_came() {
        let long = "x".repeat(MAX_VALUE + 1);
        let mut sensitive = HeaderValue::from_static("text/plain");
        sensitive.set_sensitive(true);
        let obs_text = HeaderValue::from_bytes(b"text/plain; name=\xe9").unwrap();
        for value in [HeaderValue::from_str(&long).unwrap(), sensitive, obs_text] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.clone());
            intern_common_values(&mut headers);
            assert_eq!(headers[CONTENT_TYPE], value);
            assert_eq!(headers[CONTENT_TYPE].is_sensitive(), value.is_sensitive());
            assert!(Table::default().intern(&value).is_none());
        }
    }

    #[test]
    fn the_budget_bounds_what_is_ever_interned() {
        let mut table = Table::default();
        let value = |i: usize| HeaderValue::from_str(&format!("budget-{i:07}")).unwrap();
        let mut interned = 0;
        for i in 0..(MAX_BYTES / 14 + 10) {
            if table.intern(&value(i)).is_some() {
                interned += 1;
            }
        }
        assert_eq!(
            interned,
            MAX_BYTES / 14,
            "values are interned until the budget is spent"
        );
        assert!(table.bytes <= MAX_BYTES);
        // A value interned before the budget ran out is still served from the table.
        let again = table.intern(&value(0)).expect("interned before");
        assert_eq!(again, value(0));
    }
}
