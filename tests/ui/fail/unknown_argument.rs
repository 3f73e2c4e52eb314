use cache_layer::cached;

#[cached(tll = "5m")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
