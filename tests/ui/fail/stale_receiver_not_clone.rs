use cache_layer::cached;

struct Repo {
    tenant: u64,
}

impl Repo {
    #[cached(ttl = "5m", stale = "1m", key = "count:<self.tenant>")]
    async fn count(&self) -> u64 {
        self.tenant
    }
}

fn main() {}
