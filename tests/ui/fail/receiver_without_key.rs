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

    // An explicit key that names nothing of `self` shares one entry between tenants too.
    #[cached(ttl = "5m", key = "count:<kind>")]
    async fn count_of(&self, kind: u8) -> u64 {
        self.tenant + u64::from(kind)
    }

    // A handle receiver may say so; a key naming `self`, or a cache from `self`, is enough.
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
