use cache_layer::{cached, invalidates, Cache, KeyArg};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    org: String,
}

#[derive(Debug)]
struct DbError;

type DbResult<T> = Result<T, DbError>;

#[derive(Clone)]
struct Service {
    cache: Cache,
}

impl Service {
    #[cached(ttl = "30s", key = "user:<user.id>", invalidate_on = ["org:<user.org>"], cache = self.cache, ignore_self = true)]
    async fn profile(&self, user: &User) -> DbResult<User> {
        Ok(user.clone())
    }

    // The receiver is a handle: it does not change the answer.
    #[cached(ttl = "1h30m", stale = "5m", stale_if_error = "1h", key = "name:<name>", ignore_self = true)]
    async fn by_name(&self, name: &str) -> Option<u64> {
        self.lookup(name).await
    }

    async fn lookup(&self, name: &str) -> Option<u64> {
        name.parse().ok()
    }

    // A receiver taken by value, and a cache taken from it.
    #[cached(ttl = "30s", key = "arc:<id>", cache = self.cache, ignore_self = true)]
    async fn by_arc(self: std::sync::Arc<Self>, id: u64) -> u64 {
        drop(self);
        id
    }

    #[invalidates("arc:<id>", cache = self.cache)]
    async fn forget_arc(self: std::sync::Arc<Self>, id: u64) -> DbResult<()> {
        drop(self);
        let _ = id;
        Ok(())
    }

    #[invalidates("user:<id>", "users", cache = self.cache)]
    async fn rename(&self, id: u64, name: String) -> DbResult<()> {
        let _ = (id, name);
        Ok(())
    }
}

#[cached(ttl = "10s", none_ttl = "1s", jitter = false, lock = "5s", name = "tagged")]
async fn generic<K: KeyArg + Send + Sync>(k: K) -> std::io::Result<String> {
    let mut out = cache_layer::KeyBuf::new();
    k.write_key(&mut out);
    Ok(out.into_string())
}

fn main() {}
