use cache_layer::cached;

// A string, not a path to a function.
#[cached(ttl = "5m", key = "b:<id>", cache_if = "keep")]
async fn quoted(id: u64) -> u64 {
    id
}

fn main() {}
