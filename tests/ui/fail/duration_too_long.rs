use cache_layer::cached;

#[cached(ttl = "200years")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
