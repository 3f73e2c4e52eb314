//! What the benches share: the cached value and reading criterion's medians back for the
//! ratio summaries.

#![allow(dead_code)]

use serde::{Deserialize, Serialize};

/// The value every memoisation bench caches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) email: String,
}

/// A user with realistic string fields.
pub(crate) fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("user{id}@example.com"),
    }
}

/// Median point estimate (ns) criterion wrote for `group/function` in this run.
pub(crate) fn median(group: &str, function: &str) -> Option<f64> {
    // Criterion writes under the workspace's target directory; benches run in `benches/`.
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
    let path = format!("{dir}/criterion/{group}/{function}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let at = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let rest = &rest[at..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}
