use cache_layer::cached;

#[cached(ttl = "5m", key = "user:<id")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
