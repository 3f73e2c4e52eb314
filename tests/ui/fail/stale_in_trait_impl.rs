use cache_layer::cached;

trait Source {
    async fn count(&self) -> u64;
}

#[derive(Clone)]
struct Repo {
    tenant: u64,
}

impl Source for Repo {
    #[cached(ttl = "5m", stale = "1m", key = "count:<self.tenant>")]
    async fn count(&self) -> u64 {
        self.tenant
    }
}

fn main() {}
