use std::rc::Rc;

use cache_layer::cached;

#[cached(ttl = "5m", stale = "1m", key = "count:<n>")]
async fn count(n: u64) -> u64 {
    let local = Rc::new(n);
    tokio::task::yield_now().await;
    *local
}

fn main() {}
