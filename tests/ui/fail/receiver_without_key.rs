use cache_layer::cached;

struct TenantRepo {
    tenant: u64,
    cache: cache_layer::Cache,
}

impl TenantRepo {
    // Without a key, `TenantRepo { tenant: 1 }.count()` would answer for tenant 2.
    #[cached(ttl = "5m")]
    async fn count(&self) -> u64 {
        self.tenant
    }

    // An explicit key that names nothing of `self` shares one entry between tenants too.
    #[cached(ttl = "5m", key = "count:<kind>")]
    async fn count_of(&self, kind: u8) -> u64 {
        self.tenant + u64::from(kind)
    }

    // Taking the cache from `self` does not separate tenants: they share one `Cache` handle.
    #[cached(ttl = "5m", key = "count", cache = self.cache)]
    async fn count_in_own_cache(&self) -> u64 {
        self.tenant
    }

    // A handle receiver may say so; or the key names `self`.
    #[cached(ttl = "5m", ignore_self = true)]
    async fn handle(&self, kind: u8) -> u64 {
        u64::from(kind)
    }

    #[cached(ttl = "5m", key = "t:<self.tenant>")]
    async fn named(&self) -> u64 {
        self.tenant
    }
}

fn main() {}
