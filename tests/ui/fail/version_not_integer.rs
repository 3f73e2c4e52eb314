use cache_layer::cached;

#[cached(ttl = "5m", key = "a:<id>", version = "2")]
async fn quoted(id: u64) -> u64 {
    id
}

#[cached(ttl = "5m", key = "a:<id>", version = 2.5)]
async fn fraction(id: u64) -> u64 {
    id
}

#[cached(ttl = "5m", key = "a:<id>", version = -1)]
async fn negative(id: u64) -> u64 {
    id
}

fn main() {}
