use cache_layer::cached;

struct Filter {
    min: f32,
}

#[cached(ttl = "5m", key = "search:<filter>")]
async fn search(filter: Filter) -> u64 {
    filter.min as u64
}

fn main() {}
