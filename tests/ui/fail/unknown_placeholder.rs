use cache_layer::cached;

#[cached(ttl = "5m", key = "user:<uid>")]
async fn get_user(id: u64) -> u64 {
    id
}

fn main() {}
