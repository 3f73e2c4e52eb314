//! [`Cache::entry_info`]: what this instance's memory holds under one key, for operators
//! (the admin service's key page): its age, where it is in its life, its size and tags; never
//! its value.

use std::time::Duration;

use super::Cache;
use crate::engine::clock;
use crate::engine::entry::Age;

/// What memory holds under one key (see [`Cache::entry_info`]). Times are measured on the
/// cache's clock at the call; a window already over is zero.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// How long ago this instance stored the entry (or copied it from Redis).
    pub age: Duration,
    /// Time left fresh (zero once stale, and after a soft purge).
    pub fresh_for: Duration,
    /// The stale-while-revalidate window: how long the entry may be served stale after its
    /// fresh time, while one refresh runs.
    pub stale_window: Duration,
    /// The stale-if-error window after that: how long it may stand in for a failed load.
    pub stale_if_error_window: Duration,
    /// Time left until the entry is gone (the end of its last window).
    pub expires_in: Duration,
    /// Whether a soft purge made it stale.
    pub soft_purged: bool,
    /// Its estimated size in bytes, as the memory budget counts it.
    pub size: u64,
    /// The names that invalidate it besides its own key.
    pub tags: Vec<String>,
}

impl EntryInfo {
    /// `"fresh"`, `"stale"` (served while refreshed), `"stale-if-error"` (kept for a failed
    /// load) or `"expired"`.
    pub fn state(&self) -> &'static str {
        if !self.fresh_for.is_zero() {
            "fresh"
        } else if self.expires_in.saturating_sub(self.stale_if_error_window) > Duration::ZERO {
            "stale"
        } else if !self.expires_in.is_zero() {
            "stale-if-error"
        } else {
            "expired"
        }
    }
}

impl Cache {
    /// What this instance's memory holds under `key` (a rendered key: `user:7`, or an HTTP
    /// response's `GET https://example.com/users/7`), or `None`. Never the value; the shared
    /// tier is not read.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, Key, LoadOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache = Cache::builder().jitter(0.0).build().unwrap();
    /// let options = LoadOptions::new(Duration::from_secs(60)).stale(Duration::from_secs(10)).tag("users");
    /// cache.insert(&Key::new("user").part(7), 7u32, &options).await;
    /// let info = cache.entry_info("user:7").unwrap();
    /// assert_eq!(info.state(), "fresh");
    /// assert_eq!(info.stale_window, Duration::from_secs(10));
    /// assert!(info.tags.iter().any(|t| t == "users"));
    /// # }
    /// ```
    pub fn entry_info(&self, key: &str) -> Option<EntryInfo> {
        let entry = self.inner.memory().get(key)?;
        let now = clock::now();
        let d = &entry.deadlines;
        let left = |until: clock::Instant| until.saturating_duration_since(now);
        let fresh_for = match entry.age(now) {
            Age::Fresh => left(d.fresh_until),
            _ => Duration::ZERO,
        };
        Some(EntryInfo {
            age: now.saturating_duration_since(entry.made_at),
            fresh_for,
            stale_window: d.stale_until.saturating_duration_since(d.fresh_until),
            stale_if_error_window: d.expires_at.saturating_duration_since(d.stale_until),
            expires_in: left(d.expires_at),
            soft_purged: entry.is_soft_purged(),
            size: u64::from(entry.weight),
            tags: entry.tags.iter().map(|t| t.to_string()).collect(),
        })
    }
}
