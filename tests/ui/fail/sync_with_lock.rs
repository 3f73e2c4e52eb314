use cache_layer::cached;

#[cached(ttl = "5m", lock = "5s")]
fn parse(text: String) -> usize {
    text.len()
}

fn main() {}
