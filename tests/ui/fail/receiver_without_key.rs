use cache_layer::cached;

struct TenantRepo {
    tenant: u64,
}

impl TenantRepo {
    // Without a key, `TenantRepo { tenant: 1 }.count()` would answer for tenant 2.
    #[cached(ttl = "5m")]
    async fn count(&self) -> u64 {
        self.tenant
    }
}

fn main() {}
