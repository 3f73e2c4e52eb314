//! Waiting for what happens off the caller's path: a background refresh, a write to Redis, an
//! invalidation heard over pub/sub.

use std::time::{Duration, Instant};

/// Polls `check` every 5 ms until it holds; returns how long that took. Panics, naming `what`,
/// when it does not hold within 5 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if check().await {
            return started.elapsed();
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("not reached within 5 s: {what}");
}
