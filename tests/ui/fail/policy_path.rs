use cache_layer::cached;
use std::time::Duration;

// No such function.
#[cached(ttl = "5m", key = "a:<id>", ttl_from = policies::missing)]
async fn unknown(id: u64) -> u64 {
    id
}

// Not a path.
#[cached(ttl = "5m", key = "b:<id>", cache_if = "keep")]
async fn quoted(id: u64) -> u64 {
    id
}

fn keep(_: &u64) -> bool {
    true
}

fn ttl(_: &u64) -> Duration {
    Duration::from_secs(1)
}

fn main() {
    let _ = (keep, ttl);
}
