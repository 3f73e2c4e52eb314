use cache_layer::cached;

#[cached(ttl = "5m", jitter = 2.0, key = "x")]
async fn f() -> u64 {
    1
}

fn main() {}
