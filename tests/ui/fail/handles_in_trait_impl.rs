use cache_layer::cached;

trait Source {
    async fn count(&self) -> u64;
}

struct Repo {
    tenant: u64,
}

impl Source for Repo {
    #[cached(ttl = "5m", key = "count:<self.tenant>", handles)]
    async fn count(&self) -> u64 {
        self.tenant
    }
}

fn main() {}
