use cache_layer::cached;

#[cached(ttl = "5m", stale = "1m")]
fn parse(text: String) -> usize {
    text.len()
}

fn main() {}
