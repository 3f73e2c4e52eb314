use cache_layer::cached;

// No such function.
#[cached(ttl = "5m", key = "a:<id>", ttl_from = policies::missing)]
async fn unknown(id: u64) -> u64 {
    id
}

mod policies {}

fn main() {}
