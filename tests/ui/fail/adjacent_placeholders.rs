use cache_layer::cached;

// `(1, 23)` and `(12, 3)` would both render `n:123`.
#[cached(ttl = "5m", key = "n:<a><b>")]
async fn adjacent(a: u32, b: u32) -> u32 {
    a + b
}

// `-` and `.` are written as they are in values, so they cannot separate them.
#[cached(ttl = "5m", key = "n:<a>-<b.0>")]
async fn dash(a: String, b: (String,)) -> u32 {
    a.len() as u32 + b.0.len() as u32
}

fn main() {}
