use cache_layer::cached;

#[cached(ttl = "5m", key = "a", ttl = "1m")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
