use cache_layer::cached;

#[cached(ttl = "5m", key = "sum:<a>", handles)]
async fn sum(a: u64, (b, c): (u64, u64)) -> u64 {
    a + b + c
}

fn main() {}
