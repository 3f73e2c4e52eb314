//! The shared tier against a real `redis-server` that each test starts on a free port: one
//! binary, a module per topic. This file holds what the modules share: the database every
//! instance reads, the instances, and how a test builds and waits for them.

#[path = "../support/mod.rs"]
mod support;

mod clear;
mod cluster;
mod compression;
mod connection;
mod entry_bytes;
mod invalidation_history;
mod local_values;
mod lock;
mod outage_bound;
mod outages;
mod sentinel;
mod sharing;
mod tag_sets;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_layer::{cached, invalidates, Cache};
use serde::{Deserialize, Serialize};
use support::redis_server::RedisServer;
use support::relay::Relay;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct DbError;

/// The database every instance shares.
#[derive(Clone, Default)]
struct Db {
    names: Arc<Mutex<HashMap<u64, String>>>,
    queries: Arc<AtomicUsize>,
    delay: Duration,
    /// Every query fails (after `delay`).
    fails: bool,
    /// When set, each query tells `read` once it has read the name, then waits for `open`.
    gate: Option<Gate>,
}

impl Db {
    async fn user(&self, id: u64) -> Result<User, DbError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.fails {
            return Err(DbError);
        }
        let name = self.names.lock().unwrap().get(&id).cloned();
        if let Some(gate) = &self.gate {
            gate.read.notify_one();
            gate.open.notified().await;
        }
        Ok(User {
            id,
            name: name.unwrap_or_else(|| format!("user{id}")),
        })
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Default)]
struct Gate {
    read: Arc<tokio::sync::Notify>,
    open: Arc<tokio::sync::Notify>,
}

/// One service instance: its own cache handle, the shared database.
#[derive(Clone)]
struct Instance {
    cache: Cache,
    db: Db,
}

impl Instance {
    #[cached(ttl = "1m", key = "user:<id>", invalidate_on = ["users"], cache = self.cache, ignore_self = true)]
    async fn user(&self, id: u64) -> Result<User, DbError> {
        self.db.user(id).await
    }

    #[cached(ttl = "1m", key = "locked:<id>", lock = "5s", cache = self.cache, ignore_self = true)]
    async fn locked_user(&self, id: u64) -> Result<User, DbError> {
        self.db.user(id).await
    }

    #[invalidates("user:<id>", cache = self.cache)]
    async fn rename(&self, id: u64, name: &str) -> Result<(), DbError> {
        self.db.names.lock().unwrap().insert(id, name.to_owned());
        Ok(())
    }
}

/// An instance whose loads read the database, then wait at a gate before they return.
#[derive(Clone)]
struct Gated {
    cache: Cache,
    db: Db,
    read: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Notify>,
}

impl Gated {
    #[cached(ttl = "1m", key = "user:<id>", invalidate_on = ["users"], cache = self.cache, ignore_self = true)]
    async fn user(&self, id: u64) -> Result<User, DbError> {
        let user = self.db.user(id).await;
        self.read.notify_one();
        self.gate.notified().await;
        user
    }
}

/// A tiered instance with tight timeouts, so a paused Redis opens its breaker quickly.
fn tiered_fast(server: &RedisServer, prefix: &str) -> Cache {
    tiered_fast_at(server.url(), prefix)
}

/// [`tiered_fast`] on Redis at `url` (a relay in front of the server, say).
fn tiered_fast_at(url: String, prefix: &str) -> Cache {
    Cache::builder()
        .tiered(url)
        .key_prefix(prefix)
        .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
        .build()
        .expect("valid configuration")
}

/// Two tiered instances ([`tiered_fast`]) on one Redis and one database: `cut` reaches Redis
/// through a relay the test can freeze, `direct` does not.
struct Partition {
    server: RedisServer,
    relay: Relay,
    db: Db,
    cut: Instance,
    direct: Instance,
}

async fn partition(prefix: &str) -> Partition {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let db = Db::default();
    let cut = Instance {
        cache: tiered_fast_at(relay.url(), prefix),
        db: db.clone(),
    };
    let direct = Instance {
        cache: tiered_fast(&server, prefix),
        db: db.clone(),
    };
    Partition {
        server,
        relay,
        db,
        cut,
        direct,
    }
}

/// A Redis-only cache (no memory tier) with tight timeouts.
fn shared(server: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .redis(server.url())
        .key_prefix(prefix)
        .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
        .build()
        .expect("valid configuration")
}

/// The bound `cache_layer::docs::sharing` states ("Invalidations when Redis is unreachable"):
/// once Redis
/// answers again, every instance serves the new value within it (default timeouts and the
/// tight ones of these tests alike).
const RECOVERY_BOUND: Duration = Duration::from_secs(2);

/// The outage bound of a cache built without `outage_ttl`.
const DEFAULT_OUTAGE_BOUND: Duration = Duration::from_secs(1);

/// Waits until `instance` answers `user(id)` from its memory tier with an entry it stored
/// while it could hear every invalidation (subscribed, breaker closed): one still there past
/// the outage bound, which limits what is stored otherwise.
async fn until_served_from_memory(instance: &Instance, id: u64) {
    for _ in 0..10 {
        instance.user(id).await.unwrap();
        tokio::time::sleep(DEFAULT_OUTAGE_BOUND + Duration::from_millis(100)).await;
        let before = instance.cache.stats();
        instance.user(id).await.unwrap();
        let after = instance.cache.stats();
        if after.hits > before.hits && after.shared_hits == before.shared_hits {
            return;
        }
    }
    panic!("user {id} never kept in memory past the outage bound");
}

/// How many Lua scripts (`EVAL`) the server has run.
async fn scripts_run(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    command_calls(raw, "eval").await
}

/// How many times the server ran `command` (lowercase; calls from scripts included), from
/// `INFO commandstats`.
async fn command_calls(raw: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads whether each of `keys` exists, in one transaction.
async fn exist(raw: &mut redis::aio::MultiplexedConnection, keys: &[&str]) -> Vec<bool> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in keys {
        pipe.cmd("EXISTS").arg(*key);
    }
    pipe.query_async(raw).await.unwrap()
}
