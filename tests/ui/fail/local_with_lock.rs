use cache_layer::cached;

#[cached(ttl = "5m", key = "conn", lock = "2s", local)]
async fn connect() -> u8 {
    1
}

fn main() {}
