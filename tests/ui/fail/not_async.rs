use cache_layer::cached;

#[cached(ttl = "5m")]
fn not_async(id: u64) -> u64 {
    id
}

fn main() {}
