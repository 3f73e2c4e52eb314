use cache_layer::cached;
use std::time::Duration;

fn keep_string(_: &String) -> bool {
    true
}

fn seconds(_: &u64) -> u64 {
    1
}

fn ttl(_: &u64) -> Duration {
    Duration::from_secs(1)
}

// The predicate takes another type than the cached value (`u64`, inside the `Result`).
#[cached(ttl = "5m", key = "a:<id>", cache_if = keep_string)]
async fn wrong_argument(id: u64) -> Result<u64, ()> {
    Ok(id)
}

// A TTL must be a `Duration` (or `Option<Duration>`), not a number.
#[cached(ttl = "5m", key = "b:<id>", ttl_from = seconds)]
async fn wrong_return(id: u64) -> Option<u64> {
    Some(id)
}

// A TTL function as a predicate.
#[cached(ttl = "5m", key = "c:<id>", cache_if = ttl)]
async fn not_a_predicate(id: u64) -> u64 {
    id
}

fn main() {}
