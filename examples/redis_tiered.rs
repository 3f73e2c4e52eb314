//! Two `Cache` instances standing in for two instances of a service that share one Redis:
//! memory (L1) in front of Redis (L2). A write on instance A invalidates instance B's L1 copy
//! over Redis pub/sub.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run --example redis_tiered
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_layer::{cached, invalidates, Cache};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct DbError;

/// The database both instances share (here: a map behind a 50 ms delay).
#[derive(Clone, Default)]
struct Db {
    names: Arc<Mutex<Vec<String>>>,
    queries: Arc<AtomicUsize>,
}

/// One service instance: its own cache handle (and L1), the shared database and Redis.
struct Instance {
    name: &'static str,
    cache: Cache,
    db: Db,
}

impl Instance {
    #[cached(ttl = "10m", key = "profile:<id>", cache = self.cache, ignore_self = true)]
    async fn profile(&self, id: u64) -> Result<Profile, DbError> {
        self.db.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let names = self.db.names.lock().unwrap();
        let name = names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| "Ada".into());
        Ok(Profile { id, name })
    }

    #[invalidates("profile:<id>", cache = self.cache)]
    async fn rename(&self, id: u64, name: &str) -> Result<(), DbError> {
        let mut names = self.db.names.lock().unwrap();
        let len = names.len().max(id as usize + 1);
        names.resize(len, "Ada".into());
        names[id as usize] = name.to_owned();
        Ok(())
    }

    async fn show(&self, what: &str) {
        let before = self.db.queries.load(Ordering::SeqCst);
        let stats_before = self.cache.stats();
        let started = Instant::now();
        let profile = self.profile(1).await.expect("fake database");
        let stats = self.cache.stats();
        let source = if self.db.queries.load(Ordering::SeqCst) > before {
            "database"
        } else if stats.shared_hits > stats_before.shared_hits {
            "Redis (L2)"
        } else {
            "memory (L1)"
        };
        println!(
            "{:<10} {what:<38} {:>8.3} ms  from {source:<12} -> {}",
            self.name,
            started.elapsed().as_secs_f64() * 1e3,
            profile.name
        );
    }
}

fn instance(name: &'static str, url: &str, db: &Db) -> Instance {
    let cache = Cache::builder()
        .name(name)
        .tiered(url)
        .key_prefix("example:redis_tiered:")
        .build()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    Instance {
        name,
        cache,
        db: db.clone(),
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_default();
    if let Err(error) = check_redis(&url).await {
        eprintln!(
            "Cannot reach Redis at REDIS_URL={url:?}: {error}\n\n\
             Start one (Debian: `apt-get install -y redis-server`, then `redis-server --port 6390`)\n\
             and point REDIS_URL at it, e.g.\n\n    \
             REDIS_URL=redis://127.0.0.1:6390/ cargo run --example redis_tiered\n\n\
             (cache-layer itself never fails a call when Redis is down: it falls back to the\n\
             source; this example needs Redis only to show two instances sharing it.)"
        );
        std::process::exit(1);
    }
    let db = Db::default();
    let a = instance("instance-a", &url, &db);
    let b = instance("instance-b", &url, &db);
    a.cache.invalidate("profile:1").await; // start clean

    a.show("first read").await;
    b.show("same key on the other instance").await;
    // Give b's subscriber a moment to connect, then read twice: the second is an L1 hit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.show("again").await;
    b.show("again").await;

    a.rename(1, "Grace").await.expect("write");
    println!("instance-a rename(1, \"Grace\")  -> invalidates profile:1 everywhere");
    let started = Instant::now();
    loop {
        if b.profile(1).await.expect("fake database").name == "Grace" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "instance-b dropped its L1 copy and read the new name {:.3} ms after the write (one 50 ms query included)",
        started.elapsed().as_secs_f64() * 1e3
    );
    b.show("after the write").await;
    a.show("after the write").await;
}

async fn check_redis(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let connect = client.get_multiplexed_async_connection();
    let mut connection = tokio::time::timeout(Duration::from_secs(1), connect)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
