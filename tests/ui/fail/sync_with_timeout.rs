use cache_layer::cached;

#[cached(ttl = "5m", soft_timeout = "100ms")]
fn parse(text: String) -> usize {
    text.len()
}

fn main() {}
