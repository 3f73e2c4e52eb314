use cache_layer::cached;

#[cached(ttl = "5m", stale = "1m", key = "x:<n>")]
async fn bump(n: &mut u64) -> u64 {
    *n
}

fn main() {}
