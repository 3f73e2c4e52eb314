//! The shared tier against a real `redis-server` that each test starts on a free port:
//! sharing and invalidation between instances, outages (killed, paused), undecodable bytes,
//! the distributed lock and key prefixes.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_layer::{cached, invalidates, Cache, Key, LoadOptions};
use serde::{Deserialize, Serialize};
use support::redis_server::{subscribers, RedisCluster, RedisServer};
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

#[derive(Clone, Default)]
struct Gate {
    read: Arc<tokio::sync::Notify>,
    open: Arc<tokio::sync::Notify>,
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

fn tiered(server: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .tiered(server.url())
        .key_prefix(prefix)
        .build()
        .expect("valid configuration")
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

/// The bound the crate docs state ("Invalidations when Redis is unreachable"): once Redis
/// answers again, every instance serves the new value within it (default timeouts and the
/// tight ones of these tests alike).
const RECOVERY_BOUND: Duration = Duration::from_secs(2);

fn shared(server: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .redis(server.url())
        .key_prefix(prefix)
        .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
        .build()
        .expect("valid configuration")
}

/// Polls `check` every 5 ms for up to 5 s; returns how long it took to hold.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 5 s");
}

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

#[tokio::test]
async fn entries_are_shared_and_invalidations_reach_every_instances_l1() {
    let server = RedisServer::start();
    let db = Db::default();
    let a = Instance {
        cache: tiered(&server, "app:"),
        db: db.clone(),
    };
    let b = Instance {
        cache: tiered(&server, "app:"),
        db: db.clone(),
    };
    assert_eq!(a.user(1).await.unwrap().name, "user1");
    assert_eq!(b.user(1).await.unwrap().name, "user1");
    assert_eq!(
        db.queries(),
        1,
        "instance b read instance a's entry from Redis"
    );

    // Let b subscribe and serve the entry from its L1 (memory), not from Redis.
    until_served_from_memory(&b, 1).await;

    a.rename(1, "Ada").await.unwrap();
    let took = eventually(async || b.user(1).await.unwrap().name == "Ada").await;
    println!("invalidation reached the other instance's L1 in {took:?}");
    assert!(took < Duration::from_secs(1));

    b.user(2).await.unwrap();
    let before = db.queries();
    a.cache.invalidate("users").await;
    eventually(async || {
        b.user(2).await.unwrap();
        db.queries() > before
    })
    .await;
}

#[tokio::test]
async fn an_instance_that_cannot_hear_invalidations_does_not_serve_what_its_l1_held() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let b = Instance {
        cache: Cache::builder()
            .tiered(server.url())
            .key_prefix("sub:")
            .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    until_served_from_memory(&b, 1).await;
    let before = db.queries();
    server.kill();
    // Writes made elsewhere now cannot reach b: its L1 copy must not be served.
    eventually(async || {
        b.user(1).await.unwrap();
        db.queries() > before
    })
    .await;
    server.restart();
    // Resubscribed (and L1 emptied): memory hits again.
    until_served_from_memory(&b, 1).await;
}

#[tokio::test]
async fn tags_and_expiry_through_redis() {
    let server = RedisServer::start();
    let db = Db::default();
    let one = Instance {
        cache: shared(&server, "t:"),
        db: db.clone(),
    };
    one.user(1).await.unwrap();
    one.user(2).await.unwrap();
    one.user(1).await.unwrap();
    assert_eq!(db.queries(), 2);
    assert!(one.cache.stats().hits >= 1);

    one.cache.invalidate("users").await;
    one.user(1).await.unwrap();
    one.user(2).await.unwrap();
    assert_eq!(db.queries(), 4, "the tag set dropped both entries");

    let mut raw = server.raw().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:v:user:1")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        ttl > 50_000 && ttl <= 66_000,
        "entry expires with its lifetime: {ttl} ms"
    );
    let tag_ttl: i64 = redis::cmd("PTTL")
        .arg("t:t:users")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(tag_ttl > 0, "the tag set expires too: {tag_ttl} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_redis_fails_no_call_and_is_used_again_after_restart() {
    let mut server = RedisServer::start();
    let db = Db {
        delay: Duration::from_millis(1),
        ..Db::default()
    };
    let instance = Instance {
        cache: shared(&server, "k:"),
        db: db.clone(),
    };
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let tasks: Vec<_> = (0..50u64)
        .map(|task| {
            let instance = instance.clone();
            let worst = Arc::clone(&worst);
            tokio::spawn(async move {
                for call in 0..200u64 {
                    let started = Instant::now();
                    let user = instance.user((task * 200 + call) % 100).await;
                    let took = started.elapsed();
                    assert!(user.is_ok(), "no call fails");
                    let mut worst = worst.lock().unwrap();
                    *worst = (*worst).max(took);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill();
    for task in tasks {
        task.await.expect("10,000 calls, none failed");
    }
    let worst = *worst.lock().unwrap();
    println!("slowest call while Redis died: {worst:?}");
    assert!(
        worst < Duration::from_secs(2),
        "bounded by the timeouts, not TCP's: {worst:?}"
    );
    assert!(instance.cache.stats().store_errors > 0);

    server.restart();
    let mut raw = server.raw().await;
    eventually(async || {
        instance.user(4242).await.unwrap();
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg("k:v:user:4242")
            .query_async(&mut raw)
            .await
            .unwrap();
        stored.is_some()
    })
    .await;
}

#[tokio::test]
async fn a_paused_redis_costs_at_most_the_timeout() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: shared(&server, "p:"),
        db: db.clone(),
    };
    instance.user(1).await.unwrap();
    server.pause();
    for id in 0..20 {
        let started = Instant::now();
        assert!(instance.user(id).await.is_ok());
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "call {id} took {:?}",
            started.elapsed()
        );
    }
    server.resume();
}

#[tokio::test]
async fn garbage_truncated_and_wrong_type_bytes_are_a_miss_then_healed() {
    let server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: shared(&server, "g:"),
        db: db.clone(),
    };
    let mut raw = server.raw().await;
    // A valid entry of another type, to truncate.
    instance.user(99).await.unwrap();
    let valid: Vec<u8> = redis::cmd("GET")
        .arg("g:v:user:99")
        .query_async(&mut raw)
        .await
        .unwrap();
    let samples: Vec<Vec<u8>> = vec![
        b"not a cache entry".to_vec(),
        valid[..valid.len() / 2].to_vec(),
        Vec::new(),
    ];
    for (id, bytes) in samples.into_iter().enumerate() {
        let key = format!("g:v:user:{id}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .query_async(&mut raw)
            .await
            .unwrap();
        let before = db.queries();
        assert_eq!(instance.user(id as u64).await.unwrap().id, id as u64);
        assert_eq!(db.queries(), before + 1, "undecodable bytes are a miss");
        instance.user(id as u64).await.unwrap();
        assert_eq!(db.queries(), before + 1, "and were overwritten (healed)");
    }
    // The empty value reads as absent (a bounded `GETRANGE` cannot tell them apart): a miss,
    // but not a decode error.
    assert_eq!(instance.cache.stats().decode_errors, 2);

    // The same key read as another type by another function.
    #[cached(ttl = "1m", key = "user:<id>", cache = cache)]
    async fn as_text(cache: &Cache, id: u64) -> String {
        let _ = cache;
        format!("text {id}")
    }
    assert_eq!(as_text(&instance.cache, 99).await, "text 99");
    assert_eq!(instance.cache.stats().decode_errors, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_distributed_lock_lets_one_instance_load() {
    let server = RedisServer::start();
    let db = Db {
        delay: Duration::from_millis(200),
        ..Db::default()
    };
    let instances: Vec<Instance> = (0..4)
        .map(|_| Instance {
            cache: shared(&server, "l:"),
            db: db.clone(),
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut calls = Vec::new();
    for instance in &instances {
        for _ in 0..50 {
            let instance = instance.clone();
            let barrier = Arc::clone(&barrier);
            calls.push(tokio::spawn(async move {
                barrier.wait().await;
                instance.locked_user(7).await
            }));
        }
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().id, 7);
    }
    assert_eq!(db.queries(), 1, "4 instances x 50 callers, one source call");
}

#[tokio::test]
async fn a_key_prefix_isolates_applications() {
    let server = RedisServer::start();
    let (db_a, db_b) = (Db::default(), Db::default());
    let a = Instance {
        cache: shared(&server, "shop:"),
        db: db_a.clone(),
    };
    let b = Instance {
        cache: shared(&server, "blog:"),
        db: db_b.clone(),
    };
    db_b.names.lock().unwrap().insert(1, "blog author".into());
    assert_eq!(a.user(1).await.unwrap().name, "user1");
    assert_eq!(b.user(1).await.unwrap().name, "blog author");
    assert_eq!((db_a.queries(), db_b.queries()), (1, 1));
    b.cache.invalidate("user:1").await;
    a.user(1).await.unwrap();
    assert_eq!(
        db_a.queries(),
        1,
        "b's invalidation did not touch a's entry"
    );
}

#[tokio::test]
async fn acl_credentials_from_the_url_and_every_key_under_the_prefix() {
    // The ACL user may only touch keys under "app:": proof that every key and channel the
    // cache uses lives under its prefix.
    let server = RedisServer::start_with(&[
        "--requirepass",
        "admin-secret",
        "--user",
        "app",
        "on",
        ">app-password",
        "~app:*",
        "&*",
        "+@all",
    ]);
    let db = Db::default();
    let cache = Cache::builder()
        .tiered(server.url_as("app", "app-password"))
        .key_prefix("app:")
        .build()
        .expect("valid configuration");
    let instance = Instance {
        cache,
        db: db.clone(),
    };
    instance.user(1).await.unwrap();
    instance.rename(1, "Ada").await.unwrap();
    assert_eq!(instance.user(1).await.unwrap().name, "Ada");
    instance.user(1).await.unwrap();
    assert_eq!(db.queries(), 2);
    let stats = instance.cache.stats();
    assert_eq!(
        stats.store_errors, 0,
        "authenticated, and no key outside the prefix"
    );

    let wrong = Instance {
        cache: Cache::builder()
            .redis(server.url_as("app", "wrong"))
            .key_prefix("app:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    assert!(wrong.user(5).await.is_ok(), "bad credentials fail open");
    assert!(wrong.cache.stats().store_errors > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_keys_and_tags_across_slots_still_invalidate() {
    let cluster = RedisCluster::start();
    let db = Db::default();
    let a = Instance {
        cache: Cache::builder()
            .tiered_cluster(cluster.urls())
            .key_prefix("c:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    let b = Instance {
        cache: Cache::builder()
            .redis_cluster(cluster.urls())
            .key_prefix("c:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    for id in 0..60 {
        a.user(id).await.unwrap();
    }
    assert_eq!(db.queries(), 60);
    for id in 0..60 {
        b.user(id).await.unwrap();
    }
    assert_eq!(
        db.queries(),
        60,
        "instance b read every entry from the cluster"
    );
    let counts = cluster.key_counts();
    assert!(
        counts.iter().filter(|&&n| n > 0).count() == 3,
        "keys spread over the three masters: {counts:?}"
    );
    assert_eq!(
        a.cache.stats().store_errors + b.cache.stats().store_errors,
        0
    );

    // One tag set, its members on every node.
    a.cache.invalidate("users").await;
    for id in 0..60 {
        b.user(id).await.unwrap();
    }
    assert_eq!(db.queries(), 120, "the tag dropped entries on every node");

    b.rename(7, "Ada").await.unwrap();
    eventually(async || a.user(7).await.unwrap().name == "Ada").await;
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("cache-layer-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A private CA and a server certificate it signs (webpki refuses a CA as end entity).
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian: apt-get install -y openssl)");
        assert!(status.success(), "openssl {args:?}");
    };
    let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
    let (cert, key, csr) = (path("server.pem"), path("server.key"), path("server.csr"));
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ]
        .into_iter()
        .chain([
            "-subj",
            "/CN=cache-layer test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ]
        .into_iter()
        .chain(["-keyout", &key, "-out", &csr])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "x509", "-req", "-days", "1", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key,
        ]
        .into_iter()
        .chain([
            "-CAcreateserial",
            "-out",
            &cert,
            "-extfile",
            &path("san.ext"),
        ])
        .collect::<Vec<_>>(),
    );
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
    ]);
    let db = Db::default();
    let instance = Instance {
        cache: Cache::builder()
            .redis(format!("rediss://127.0.0.1:{tls_port}/"))
            .redis_root_certificate(std::fs::read(&ca).unwrap())
            .key_prefix("tls:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    instance.user(1).await.unwrap();
    instance.user(1).await.unwrap();
    assert_eq!(db.queries(), 1);
    assert_eq!(instance.cache.stats().shared_hits, 1, "served over TLS");
    let mut raw = server.raw().await;
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("tls:v:user:1")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(stored.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_redis_url_is_a_build_error() {
    let error = Cache::builder().redis("http://nope").build().unwrap_err();
    assert!(error.to_string().contains("invalid Redis URL"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_made_while_redis_is_paused_reaches_every_instance_after_it_resumes() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let a = Instance {
        cache: tiered_fast(&server, "pause:"),
        db: db.clone(),
    };
    let b = Instance {
        cache: tiered_fast(&server, "pause:"),
        db: db.clone(),
    };
    a.user(1).await.unwrap();
    until_served_from_memory(&a, 1).await;
    until_served_from_memory(&b, 1).await;

    server.pause();
    // Misses on a until its breaker opens.
    let mut id = 100;
    while a.cache.stats().store_errors < 3 {
        a.user(id).await.unwrap();
        id += 1;
    }
    a.rename(1, "Ada").await.unwrap();
    assert_eq!(
        a.user(1).await.unwrap().name,
        "Ada",
        "the writer reads its write"
    );
    server.resume();

    let took = eventually(async || {
        a.user(1).await.unwrap().name == "Ada" && b.user(1).await.unwrap().name == "Ada"
    })
    .await;
    println!("both instances serve the new value {took:?} after Redis resumed");
    assert!(took < RECOVERY_BOUND, "within the stated bound: {took:?}");
    // And keep serving it once the breakers have closed and L1 is in use again.
    let until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < until {
        assert_eq!(a.user(1).await.unwrap().name, "Ada");
        assert_eq!(b.user(1).await.unwrap().name, "Ada");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_waiter_loads_as_soon_as_a_failed_holder_releases_the_lock() {
    let server = RedisServer::start();
    let holder = Instance {
        cache: shared(&server, "lf:"),
        db: Db {
            delay: Duration::from_millis(300),
            fails: true,
            ..Db::default()
        },
    };
    let waiter = Instance {
        cache: shared(&server, "lf:"),
        db: Db::default(),
    };
    let held = {
        let holder = holder.clone();
        tokio::spawn(async move { holder.locked_user(7).await })
    };
    let mut raw = server.raw().await;
    eventually(async || {
        redis::cmd("EXISTS")
            .arg("lf:l:locked:7")
            .query_async::<bool>(&mut raw)
            .await
            .unwrap()
    })
    .await;
    let started = Instant::now();
    assert_eq!(waiter.locked_user(7).await.unwrap().id, 7);
    let waited = started.elapsed();
    assert_eq!(
        held.await.unwrap(),
        Err(DbError),
        "the holder's load failed"
    );
    assert_eq!(waiter.db.queries(), 1, "the waiter loaded itself");
    println!("the waiter returned after {waited:?} (lock: 5 s, holder failed after 300 ms)");
    assert!(
        waited < Duration::from_millis(2_500),
        "stopped waiting when the lock was released, not after the lock's 5 s: {waited:?}"
    );
}

#[tokio::test]
async fn entries_with_absurd_deadlines_or_lengths_are_a_miss_then_healed() {
    let server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: shared(&server, "x:"),
        db: db.clone(),
    };
    let mut raw = server.raw().await;
    instance.user(99).await.unwrap();
    let valid: Vec<u8> = redis::cmd("GET")
        .arg("x:v:user:99")
        .query_async(&mut raw)
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let with_deadlines = |fresh: u64, stale: u64, expires: u64| {
        let mut bytes = valid.clone();
        bytes[9..17].copy_from_slice(&fresh.to_be_bytes());
        bytes[17..25].copy_from_slice(&stale.to_be_bytes());
        bytes[25..33].copy_from_slice(&expires.to_be_bytes());
        bytes
    };
    let two_centuries = 200 * 365 * 24 * 3_600 * 1_000;
    let hour = 3_600_000;
    // The payload: {"id": 0, "name": <a str32 claiming 4 GiB>}.
    let mut huge_string = valid[..33].to_vec();
    huge_string.extend_from_slice(&[0x00, 0x00]);
    huge_string.extend_from_slice(&[0x82, 0xa2, b'i', b'd', 0x00, 0xa4]);
    huge_string.extend_from_slice(b"name");
    huge_string.extend_from_slice(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'x']);
    // A tag count of 65,535 with no tags behind it.
    let mut many_tags = valid[..33].to_vec();
    many_tags.extend_from_slice(&[0xff, 0xff, 0x00, 0x05]);
    let samples: Vec<Vec<u8>> = vec![
        with_deadlines(u64::MAX, u64::MAX, u64::MAX),
        with_deadlines(
            now + two_centuries,
            now + two_centuries,
            now + two_centuries,
        ),
        with_deadlines(now + hour, now + hour, now + 1_000),
        with_deadlines(now + hour, now + 1_000, now + hour),
        huge_string,
        many_tags,
    ];
    let count = samples.len();
    for (id, bytes) in samples.into_iter().enumerate() {
        let key = format!("x:v:user:{id}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .query_async(&mut raw)
            .await
            .unwrap();
        let before = db.queries();
        assert_eq!(instance.user(id as u64).await.unwrap().id, id as u64);
        assert_eq!(db.queries(), before + 1, "sample {id} is a miss");
        assert_eq!(instance.user(id as u64).await.unwrap().id, id as u64);
        assert_eq!(db.queries(), before + 1, "sample {id} was overwritten");
        let healed: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        let expires = u64::from_be_bytes(healed[25..33].try_into().unwrap());
        assert!(
            expires > now && expires < now + 2 * hour,
            "healed with a real deadline"
        );
    }
    assert_eq!(instance.cache.stats().decode_errors, count as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dropped_after_its_write_still_invalidates_every_instance() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let a = Instance {
        cache: tiered(&server, "drop:"),
        db: db.clone(),
    };
    let b = Instance {
        cache: tiered(&server, "drop:"),
        db: db.clone(),
    };
    a.user(1).await.unwrap();
    until_served_from_memory(&b, 1).await;

    // The write commits, its invalidation waits on a frozen Redis, and the caller goes away
    // (a client that disconnects at the wrong moment); then Redis answers again.
    server.pause();
    let write = a.rename(1, "Ada");
    assert!(tokio::time::timeout(Duration::from_millis(30), write)
        .await
        .is_err());
    assert_eq!(db.names.lock().unwrap()[&1], "Ada", "the write committed");
    server.resume();

    let took = eventually(async || {
        a.user(1).await.unwrap().name == "Ada" && b.user(1).await.unwrap().name == "Ada"
    })
    .await;
    assert!(took < RECOVERY_BOUND, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_goes_silent_empties_memory() {
    let Partition {
        server: _server,
        relay,
        direct: a,
        cut: b,
        ..
    } = partition("hb:").await;
    a.user(1).await.unwrap();
    until_served_from_memory(&b, 1).await;

    // b's path to Redis stops forwarding without closing: it hears nothing, and nothing fails
    // while it serves from memory.
    relay.freeze();
    a.rename(1, "Ada").await.unwrap();
    let took = eventually(async || b.user(1).await.unwrap().name == "Ada").await;
    println!("the silent instance stopped serving its memory copy after {took:?}");
    assert!(took < RECOVERY_BOUND, "{took:?}");

    relay.thaw();
    until_served_from_memory(&b, 1).await;
    assert_eq!(b.user(1).await.unwrap().name, "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_an_invalidation_leaves_no_stale_copy_in_memory() {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let db = Db::default();
    let a = Instance {
        cache: tiered(&server, "race:"),
        db: db.clone(),
    };
    // Generous timeouts: b's replies are held on purpose below.
    let b = Instance {
        cache: Cache::builder()
            .tiered(relay.url())
            .key_prefix("race:")
            .redis_timeouts(Duration::from_secs(3), Duration::from_secs(3))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    a.user(1).await.unwrap();
    until_served_from_memory(&b, 2).await;

    // b reads user 1 (the old value) from Redis, but hears the invalidation before the reply.
    relay.hold_replies();
    let read = {
        let b = b.clone();
        tokio::spawn(async move { b.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.rename(1, "Ada").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.release_subscribers();
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.release_all();
    assert_eq!(
        read.await.unwrap().unwrap().name,
        "user1",
        "the read began before the write"
    );
    assert_eq!(
        b.user(1).await.unwrap().name,
        "Ada",
        "the old value was not kept in memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_sets_stay_complete_under_concurrent_writes_and_invalidations() {
    let server = RedisServer::start();
    let db = Db::default();
    let writers: Vec<Instance> = (0..4)
        .map(|_| Instance {
            cache: shared(&server, "cc:"),
            db: db.clone(),
        })
        .collect();
    let invalidator = shared(&server, "cc:");
    let mut tasks = Vec::new();
    for (n, writer) in writers.iter().enumerate() {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..150u64 {
                writer.user(n as u64 * 1_000 + i).await.unwrap();
            }
        }));
    }
    let invalidations = tokio::spawn(async move {
        for _ in 0..150 {
            invalidator.invalidate("users").await;
        }
        invalidator
    });
    for task in tasks {
        task.await.unwrap();
    }
    let invalidator = invalidations.await.unwrap();
    invalidator.invalidate("users").await;
    let mut raw = server.raw().await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("cc:v:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "every entry stays reachable from its tag: {} survived",
        left.len()
    );
    assert_eq!(
        writers
            .iter()
            .map(|w| w.cache.stats().store_errors)
            .sum::<u64>(),
        0
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_another_instances_invalidation_is_not_kept_in_redis() {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let db = Db::default();
    let a = Gated {
        cache: Cache::builder()
            .redis(relay.url())
            .key_prefix("lost:")
            .redis_timeouts(Duration::from_millis(200), Duration::from_millis(100))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
        read: Arc::default(),
        gate: Arc::default(),
    };
    let b = Instance {
        cache: shared(&server, "lost:"),
        db: db.clone(),
    };
    // Redis already holds an invalidation history.
    b.cache.invalidate("user:2").await;
    // a reads the old name, then b renames user 1 and invalidates "users"; a hears nothing of
    // it (its replies, the broadcast included, are held) before its write reaches Redis.
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    a.read.notified().await;
    relay.hold_replies();
    db.names.lock().unwrap().insert(1, "Ada".to_owned());
    b.cache.invalidate("users").await;
    let errors = a.cache.stats().store_errors;
    a.gate.notify_one();
    assert_eq!(load.await.unwrap().unwrap().name, "user1");
    // The write was sent (its reply, held, timed out) before anything is released.
    eventually(async || a.cache.stats().store_errors > errors).await;
    relay.release_all();
    let mut raw = server.raw().await;
    let kept: bool = redis::cmd("EXISTS")
        .arg("lost:v:user:1")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        !kept,
        "the value loaded before the invalidation was not kept"
    );
    assert_eq!(b.user(1).await.unwrap().name, "Ada");
}

/// On a cluster: instance a (whose first seed, the node it subscribes through, is a relay, so
/// that the test can hold what it hears) loads user 1 and reads the old name; then b renames
/// the user and invalidates `name`; only then does a's loader return. Redis must not keep the
/// value loaded before the invalidation.
async fn a_cluster_load_across_another_instances_invalidation_of(name: &str) {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let first_port = urls[0].trim_end_matches('/').rsplit(':').next();
    let relay = Relay::start(first_port.unwrap().parse().unwrap()).await;
    let db = Db::default();
    let build = |seeds: [&String; 3]| {
        Cache::builder()
            .redis_cluster(seeds.map(String::clone))
            .key_prefix("lost:")
            .build()
            .expect("valid configuration")
    };
    let a = Gated {
        cache: build([&relay.url(), &urls[1], &urls[2]]),
        db: db.clone(),
        read: Arc::default(),
        gate: Arc::default(),
    };
    // b subscribes through another node.
    let b = Instance {
        cache: build([&urls[1], &urls[2], &urls[0]]),
        db: db.clone(),
    };
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    a.read.notified().await;
    // a's subscription is up (the only one on the first node); then a hears nothing more.
    let numsub = ["PUBSUB", "NUMSUB", "lost:invalidate"];
    eventually(async || cluster_cli(&urls[0], &numsub).ends_with('1')).await;
    relay.hold_subscribers();
    db.names.lock().unwrap().insert(1, "Ada".to_owned());
    b.cache.invalidate(name).await;
    a.gate.notify_one();
    assert_eq!(load.await.unwrap().unwrap().name, "user1");
    // The write has been made and checked (a heard nothing: its subscription is held).
    eventually(async || a.cache.stats().shared_writes_refused == 1).await;
    relay.release_all();
    assert_eq!(
        cluster_cli(&urls[0], &["EXISTS", "lost:v:user:1"]),
        "0",
        "the value loaded before the invalidation of {name:?} was not kept"
    );
    assert_eq!(b.user(1).await.unwrap().name, "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_load_that_began_before_another_instances_invalidation_of_its_key_is_not_kept(
) {
    a_cluster_load_across_another_instances_invalidation_of("user:1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_load_that_began_before_another_instances_invalidation_of_its_tag_is_not_kept(
) {
    a_cluster_load_across_another_instances_invalidation_of("users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_load_whose_write_cannot_be_checked_is_not_kept() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    // The app user may read and write entries, tag sets and locks, but not the invalidation
    // markers ("ck:i:*"): the check after the write fails.
    let instance = as_app(&cluster, &["~ck:v:*", "~ck:t:*", "~ck:l:*"], "ck:");
    instance.user(1).await.unwrap();
    // The write runs off the caller's path: the value was set, then its check failed.
    eventually(async || instance.cache.stats().store_errors >= 1).await;
    // Its delete was queued, and is replayed (by the background probe) once Redis answers.
    eventually(async || cluster_cli(&urls[0], &["EXISTS", "ck:v:user:1"]) == "0").await;
    assert_eq!(
        cluster_cli(&urls[0], &["SISMEMBER", "ck:t:users", "ck:v:user:1"]),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_redis_refuses_after_another_instances_invalidation_is_counted() {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let db = Db::default();
    let a = Gated {
        cache: Cache::builder()
            .redis(relay.url())
            .key_prefix("count:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
        read: Arc::default(),
        gate: Arc::default(),
    };
    let b = Instance {
        cache: shared(&server, "count:"),
        db: db.clone(),
    };
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    a.read.notified().await;
    // a's subscription is up (b has not used Redis yet); then a hears nothing more, but its
    // writes are answered.
    eventually(async || subscribers(&server.url(), "count:invalidate").await == 1).await;
    relay.hold_subscribers();
    db.names.lock().unwrap().insert(1, "Ada".to_owned());
    b.cache.invalidate("users").await;
    a.gate.notify_one();
    assert_eq!(load.await.unwrap().unwrap().name, "user1");
    eventually(async || a.cache.stats().shared_writes_refused == 1).await;
    assert_eq!(a.cache.stats().store_errors, 0);
    relay.release_all();
    assert_eq!(b.user(1).await.unwrap().name, "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refresh_that_began_before_another_instances_invalidation_is_not_kept() {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let a = Cache::builder()
        .redis(relay.url())
        .key_prefix("batch:")
        .redis_timeouts(Duration::from_millis(200), Duration::from_millis(100))
        .build()
        .expect("valid configuration");
    let b = shared(&server, "batch:");
    let options = LoadOptions::new(Duration::from_millis(50))
        .stale(Duration::from_secs(60))
        .tag("users");
    let key = Key::new("user").part(1);
    a.insert(&key, "old".to_owned(), &options).await;
    b.invalidate("user:2").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The stale value is served; the refresh's loader reads the old value, then waits while b
    // invalidates "users" (a hears nothing of it: its subscription's replies are held).
    let (read, gate) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let loader = {
        let (read, gate) = (Arc::clone(&read), Arc::clone(&gate));
        move |keys: Vec<Key>| {
            let (read, gate) = (Arc::clone(&read), Arc::clone(&gate));
            async move {
                let found: HashMap<Key, String> =
                    keys.into_iter().map(|k| (k, "old".to_owned())).collect();
                read.notify_one();
                gate.notified().await;
                Ok::<_, DbError>(found)
            }
        }
    };
    let served = a.get_or_load_many(&[key], &options, loader).await.unwrap();
    assert_eq!(served, [Some("old".to_owned())]);
    read.notified().await;
    relay.hold_subscribers();
    b.invalidate("users").await;
    let mut raw = server.raw().await;
    let scripts = scripts_run(&mut raw).await;
    gate.notify_one();
    // The refresh's write script has run.
    eventually(async || scripts_run(&mut raw).await > scripts).await;
    relay.release_all();
    assert_eq!(
        exist(&mut raw, &["batch:v:user:1"]).await,
        [false],
        "the value refreshed before the invalidation was not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_written_when_only_other_names_were_invalidated_meanwhile() {
    let server = RedisServer::start();
    let db = Db::default();
    let a = Gated {
        cache: shared(&server, "kept:"),
        db: db.clone(),
        read: Arc::default(),
        gate: Arc::default(),
    };
    let b = shared(&server, "kept:");
    b.invalidate("user:2").await;
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    a.read.notified().await;
    b.invalidate("user:3").await;
    b.invalidate("orders").await;
    a.gate.notify_one();
    load.await.unwrap().unwrap();
    let mut raw = server.raw().await;
    eventually(async || exist(&mut raw, &["kept:v:user:1"]).await == [true]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_not_written_when_the_invalidation_history_cannot_tell() {
    let server = RedisServer::start();
    let a = Gated {
        cache: shared(&server, "gone:"),
        db: Db::default(),
        read: Arc::default(),
        gate: Arc::default(),
    };
    let b = shared(&server, "gone:");
    b.invalidate("user:9").await;
    let mut raw = server.raw().await;
    // While a loads: the history is lost (flushed, evicted) and begins again with another name.
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    a.read.notified().await;
    let _: () = redis::cmd("DEL")
        .arg("gone:invalidated")
        .query_async(&mut raw)
        .await
        .unwrap();
    b.invalidate("orders").await;
    a.gate.notify_one();
    load.await.unwrap().unwrap();
    // While a loads: more names were invalidated than the history keeps (its floor rises).
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(2).await })
    };
    a.read.notified().await;
    let epoch: f64 = redis::cmd("ZINCRBY")
        .arg("gone:invalidated")
        .arg(1)
        .arg(b"\xff")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("gone:invalidated")
        .arg(epoch)
        .arg(b"\xfe")
        .query_async(&mut raw)
        .await
        .unwrap();
    a.gate.notify_one();
    load.await.unwrap().unwrap();
    // A load that spans neither is written (so the two above were refused, not lost).
    a.gate.notify_one();
    a.user(3).await.unwrap();
    eventually(async || exist(&mut raw, &["gone:v:user:3"]).await == [true]).await;
    assert_eq!(
        exist(&mut raw, &["gone:v:user:1", "gone:v:user:2"]).await,
        [false, false],
        "a write the history cannot vouch for is not made"
    );
}

#[tokio::test]
async fn tag_sets_are_pruned_and_bounded() {
    let server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: shared(&server, "tb:"),
        db: db.clone(),
    };
    let mut raw = server.raw().await;
    // Two members whose entries are gone: pruned by the next write to the set.
    let _: () = redis::cmd("SADD")
        .arg("tb:t:users")
        .arg("tb:v:gone:1")
        .arg("tb:v:gone:2")
        .query_async(&mut raw)
        .await
        .unwrap();
    instance.user(1).await.unwrap();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("tb:t:users")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(members, vec!["tb:v:user:1".to_owned()]);

    // A set at its bound of live entries: a write that would add one more is not made, and
    // no entry is deleted to make room, or orphaned.
    const BOUND: usize = 10_000;
    let keys: Vec<String> = (1..BOUND).map(|i| format!("tb:v:filler:{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for key in &keys {
        mset.arg(key).arg("x");
    }
    let _: () = mset.query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("SADD")
        .arg("tb:t:users")
        .arg(&keys)
        .query_async(&mut raw)
        .await
        .unwrap();
    instance.user(2).await.unwrap();
    // The write after a miss runs off the caller's path: wait until it was refused, then read
    // the keys and the set in one transaction, so the read never straddles a write.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while instance.cache.stats().tag_sets_full == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (size, live, members): (usize, Vec<String>, std::collections::HashSet<String>) =
        redis::pipe()
            .atomic()
            .cmd("SCARD")
            .arg("tb:t:users")
            .cmd("KEYS")
            .arg("tb:v:*")
            .cmd("SMEMBERS")
            .arg("tb:t:users")
            .query_async(&mut raw)
            .await
            .unwrap();
    assert!(size <= BOUND, "bounded: {size}");
    assert!(
        !live.contains(&"tb:v:user:2".to_owned()),
        "the set was full"
    );
    assert!(
        keys.iter().all(|key| live.contains(key)),
        "no entry was deleted to make room"
    );
    let orphans = live.iter().filter(|k| !members.contains(*k)).count();
    assert_eq!(orphans, 0, "no entry outlives its tag membership");
    assert_eq!(instance.cache.stats().store_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_about_one_key_is_a_miss_for_that_key_not_an_outage() {
    let server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: tiered(&server, "wt:"),
        db: db.clone(),
    };
    let mut raw = server.raw().await;
    instance.user(1).await.unwrap();
    until_served_from_memory(&instance, 1).await;
    // Another program's lists under our keys: each read of them fails (WRONGTYPE).
    for id in 10..20 {
        let _: () = redis::cmd("RPUSH")
            .arg(format!("wt:v:user:{id}"))
            .arg("not ours")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    // Read at once, so that no success in between resets the breaker's count.
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let reads: Vec<_> = (10..20)
        .map(|id| {
            let (instance, barrier) = (instance.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                instance.user(id).await
            })
        })
        .collect();
    for read in reads {
        assert!(read.await.unwrap().is_ok());
    }
    assert!(instance.cache.stats().store_errors >= 10);
    // Redis was not taken for down: memory (which an outage empties) still serves user 1.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (before, queries) = (instance.cache.stats(), db.queries());
    assert_eq!(instance.user(1).await.unwrap().id, 1);
    let after = instance.cache.stats();
    assert_eq!(
        (after.hits, after.shared_hits, db.queries()),
        (before.hits + 1, before.shared_hits, queries),
        "served from memory"
    );
}

#[tokio::test]
async fn a_miss_on_a_redis_frozen_while_connecting_waits_one_budget_not_one_per_operation() {
    let mut server = RedisServer::start();
    let db = Db::default();
    // One budget: 300 ms to connect + 200 ms for the operation.
    let instance = Instance {
        cache: Cache::builder()
            .redis(server.url())
            .key_prefix("bud:")
            .redis_timeouts(Duration::from_millis(200), Duration::from_millis(300))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    server.pause();
    let started = Instant::now();
    assert_eq!(instance.user(1).await.unwrap().id, 1);
    let took = started.elapsed();
    server.resume();
    println!("a miss while Redis froze during the connection took {took:?}");
    assert!(
        took < Duration::from_millis(800),
        "the read's budget (500 ms), and the write off the caller's path: {took:?}"
    );
    // The write still happens once Redis answers.
    let mut raw = server.raw().await;
    eventually(async || {
        instance.user(2).await.unwrap();
        redis::cmd("EXISTS")
            .arg("bud:v:user:2")
            .query_async::<bool>(&mut raw)
            .await
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_lost_invalidations_than_are_kept_empty_every_instances_memory() {
    let Partition {
        server: _server,
        relay,
        cut: a,
        direct: b,
        ..
    } = partition("of:").await;
    a.user(1).await.unwrap();
    until_served_from_memory(&b, 1).await;

    // a alone is cut off from Redis, long enough for its breaker to open.
    relay.freeze();
    let mut id = 100;
    while a.cache.stats().store_errors < 3 {
        a.user(id).await.unwrap();
        id += 1;
    }
    for i in 0..1_025 {
        a.cache.invalidate(&format!("other:{i}")).await;
    }
    relay.thaw();
    // Names were forgotten: once a reaches Redis again, b empties its memory.
    let took = eventually(async || {
        let before = b.cache.stats().shared_hits;
        b.user(1).await.unwrap();
        b.cache.stats().shared_hits > before
    })
    .await;
    assert!(took < RECOVERY_BOUND, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_waiter_loads_when_redis_stops_answering() {
    let mut server = RedisServer::start();
    let holder = Instance {
        cache: shared(&server, "lz:"),
        db: Db {
            delay: Duration::from_secs(3),
            ..Db::default()
        },
    };
    let waiter = Instance {
        cache: shared(&server, "lz:"),
        db: Db::default(),
    };
    let held = {
        let holder = holder.clone();
        tokio::spawn(async move { holder.locked_user(7).await })
    };
    let mut raw = server.raw().await;
    eventually(async || {
        redis::cmd("EXISTS")
            .arg("lz:l:locked:7")
            .query_async::<bool>(&mut raw)
            .await
            .unwrap()
    })
    .await;
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let user = waiter.locked_user(7).await;
            (user, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.pause();
    let (user, waited) = waiting.await.unwrap();
    server.resume();
    assert_eq!(user.unwrap().id, 7);
    println!("the waiter loaded {waited:?} after it began waiting (lock: 5 s)");
    assert!(
        waited < Duration::from_millis(2_500),
        "fails open when Redis cannot say whether the lock is held: {waited:?}"
    );
    assert_eq!(held.await.unwrap().unwrap().id, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_closes_by_itself_once_redis_answers() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: shared(&server, "br:"),
        db: db.clone(),
    };
    instance.user(1).await.unwrap();
    server.pause();
    let mut id = 100;
    while instance.cache.stats().store_errors < 3 {
        instance.user(id).await.unwrap();
        id += 1;
    }
    server.resume();
    // No call meanwhile, and less than the breaker's 1 s cool-down: only a probe closes it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = instance.cache.stats().shared_hits;
    instance.user(1).await.unwrap();
    assert_eq!(
        instance.cache.stats().shared_hits,
        before + 1,
        "Redis used again without waiting for a caller to probe it"
    );
}

#[tokio::test]
async fn an_oversized_entry_is_a_miss_then_healed() {
    let server = RedisServer::start();
    let db = Db::default();
    // Generous timeouts: what is refused here is the size, not the time it takes.
    let instance = Instance {
        cache: Cache::builder()
            .redis(server.url())
            .key_prefix("big:")
            .redis_timeouts(Duration::from_secs(2), Duration::from_secs(2))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    let mut raw = server.raw().await;
    instance.user(99).await.unwrap();
    let valid: Vec<u8> = redis::cmd("GET")
        .arg("big:v:user:99")
        .query_async(&mut raw)
        .await
        .unwrap();
    // A well-formed entry for user 1 whose name is 17 MiB long, and no tags.
    let name_len: u32 = 17 * 1024 * 1024;
    let mut huge = valid[..33].to_vec();
    huge.extend_from_slice(&[0x00, 0x00, 0x82, 0xa2, b'i', b'd', 0x01, 0xa4]);
    huge.extend_from_slice(b"name");
    huge.push(0xdb);
    huge.extend_from_slice(&name_len.to_be_bytes());
    huge.resize(huge.len() + name_len as usize, b'x');
    let _: () = redis::cmd("SET")
        .arg("big:v:user:1")
        .arg(huge)
        .query_async(&mut raw)
        .await
        .unwrap();
    let before = db.queries();
    let user = instance.user(1).await.unwrap();
    assert!(
        user.name == "user1",
        "not the oversized value ({} bytes)",
        user.name.len()
    );
    assert_eq!(db.queries(), before + 1, "a miss");
    assert_eq!(instance.cache.stats().decode_errors, 1);
    instance.user(1).await.unwrap();
    assert_eq!(db.queries(), before + 1, "and overwritten");
}

/// Reads whether each of `keys` exists, in one transaction.
/// How many Lua scripts (`EVAL`) the server has run.
async fn scripts_run(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_eval:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

async fn exist(raw: &mut redis::aio::MultiplexedConnection, keys: &[&str]) -> Vec<bool> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for key in keys {
        pipe.cmd("EXISTS").arg(*key);
    }
    pipe.query_async(raw).await.unwrap()
}

#[tokio::test]
async fn a_write_whose_tag_membership_fails_leaves_no_value_behind() {
    let server = RedisServer::start();
    let instance = Instance {
        cache: shared(&server, "tf:"),
        db: Db::default(),
    };
    let mut raw = server.raw().await;
    // Another program's string where the tag's set lives: adding to the set fails.
    let _: () = redis::cmd("SET")
        .arg("tf:t:users")
        .arg("not a set")
        .query_async(&mut raw)
        .await
        .unwrap();
    instance.user(1).await.unwrap();
    // The write after the miss runs off the caller's path; it is over once it has failed.
    eventually(async || instance.cache.stats().store_errors >= 1).await;
    assert_eq!(
        exist(&mut raw, &["tf:v:user:1"]).await,
        [false],
        "no value that invalidating \"users\" would not find"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_invalidated_while_in_flight_is_never_written_to_redis() {
    // Instance a's user may not DEL: a write it would have to undo stays in Redis.
    let server =
        RedisServer::start_with(&["--user", "nodel", "on", ">pw", "~*", "&*", "+@all", "-del"]);
    let db = Db {
        delay: Duration::from_millis(500),
        ..Db::default()
    };
    let a = Instance {
        cache: Cache::builder()
            .tiered(server.url_as("nodel", "pw"))
            .key_prefix("fl:")
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    let b = Instance {
        cache: tiered(&server, "fl:"),
        db: db.clone(),
    };
    // a hears invalidations (subscribed) before the load begins.
    a.user(2).await.unwrap();
    until_served_from_memory(&a, 2).await;
    let load = tokio::spawn({
        let a = a.clone();
        async move { a.user(1).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // (What the load read may predate this invalidation: it must not reach Redis.)
    b.cache.invalidate("user:1").await;
    load.await.unwrap().unwrap();
    // a's next write goes out after any write of user 1: once it landed, so did that one.
    a.user(3).await.unwrap();
    let mut raw = server.raw().await;
    eventually(async || exist(&mut raw, &["fl:v:user:3"]).await == [true]).await;
    assert_eq!(
        exist(&mut raw, &["fl:v:user:1"]).await,
        [false],
        "the outdated load is not in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_whose_member_deletes_fail_deletes_them_on_replay() {
    // The app user may not write "ro:*" keys yet: deleting that member of the tag fails.
    let server = RedisServer::start_with(&[
        "--user", "app", "on", ">pw", "~app:*", "%R~ro:*", "&*", "+@all",
    ]);
    let instance = Instance {
        cache: Cache::builder()
            .redis(server.url_as("app", "pw"))
            .key_prefix("app:")
            .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
            .build()
            .expect("valid configuration"),
        db: Db::default(),
    };
    let mut raw = server.raw().await;
    instance.user(1).await.unwrap();
    eventually(async || exist(&mut raw, &["app:v:user:1"]).await == [true]).await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("ro:v:x")
        .arg("x")
        .cmd("SADD")
        .arg("app:t:users")
        .arg("ro:v:x")
        .query_async(&mut raw)
        .await
        .unwrap();
    instance.cache.invalidate("users").await;
    assert!(
        instance.cache.stats().store_errors >= 1,
        "the delete failed"
    );
    // The member can be deleted now; the replay (before the next operation) must do it.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("~ro:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    eventually(async || {
        instance.user(2).await.unwrap();
        exist(&mut raw, &["ro:v:x"]).await == [false]
    })
    .await;
    assert_eq!(
        exist(&mut raw, &["app:v:user:1", "ro:v:x"]).await,
        [false, false]
    );
}

/// An instance on `cluster` (key prefix `prefix`) that logs in as the user `app`, created on
/// every node with the key patterns `keys` (and every command and channel).
fn as_app(cluster: &RedisCluster, keys: &[&str], prefix: &str) -> Instance {
    let urls = cluster.urls();
    for url in &urls {
        let mut acl = vec!["ACL", "SETUSER", "app", "on", ">pw"];
        acl.extend_from_slice(keys);
        acl.extend_from_slice(&["&*", "+@all"]);
        assert_eq!(cluster_cli(url, &acl), "OK");
    }
    let as_app: Vec<String> = urls
        .iter()
        .map(|u| u.replacen("redis://", "redis://app:pw@", 1))
        .collect();
    Instance {
        cache: Cache::builder()
            .redis_cluster(as_app)
            .key_prefix(prefix)
            .build()
            .expect("valid configuration"),
        db: Db::default(),
    }
}

/// `redis-cli -c -p port args...` on a cluster node (follows redirects); its trimmed output.
fn cluster_cli(url: &str, args: &[&str]) -> String {
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("a port in the URL");
    let out = std::process::Command::new("redis-cli")
        .args(["-c", "-p", port])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_members_whose_deletes_fail_are_deleted_on_replay() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    // The app user may not write "ro:*" keys yet: deleting that member of the tag fails.
    let instance = as_app(&cluster, &["~app:*", "%R~ro:*"], "app:");
    let exists = |key: &str| cluster_cli(&urls[0], &["EXISTS", key]) == "1";
    instance.user(1).await.unwrap();
    eventually(async || exists("app:v:user:1")).await;
    assert_eq!(cluster_cli(&urls[0], &["SET", "ro:v:x", "x"]), "OK");
    assert_eq!(
        cluster_cli(&urls[0], &["SADD", "app:t:users", "ro:v:x"]),
        "1"
    );
    instance.cache.invalidate("users").await;
    assert!(
        instance.cache.stats().store_errors >= 1,
        "the delete failed"
    );
    for url in &urls {
        assert_eq!(cluster_cli(url, &["ACL", "SETUSER", "app", "~ro:*"]), "OK");
    }
    // The replay (before the next operation) must delete the member the set no longer names.
    eventually(async || {
        instance.user(2).await.unwrap();
        !exists("ro:v:x")
    })
    .await;
    assert!(!exists("app:v:user:1"));
}

#[tokio::test]
async fn on_a_cluster_a_write_whose_tag_membership_fails_leaves_no_value_behind() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let instance = Instance {
        cache: Cache::builder()
            .redis_cluster(urls.clone())
            .key_prefix("tf:")
            .build()
            .expect("valid configuration"),
        db: Db::default(),
    };
    // Another program's string where the tag's set lives: adding to the set fails.
    assert_eq!(
        cluster_cli(&urls[0], &["SET", "tf:t:users", "not a set"]),
        "OK"
    );
    instance.user(1).await.unwrap();
    // The write after the miss runs off the caller's path; it is over once it has failed.
    eventually(async || instance.cache.stats().store_errors >= 1).await;
    assert_eq!(cluster_cli(&urls[0], &["EXISTS", "tf:v:user:1"]), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_undone_after_an_invalidation_during_it_is_queued_when_the_delete_fails() {
    // a's user may not DEL yet, and reaches Redis through a relay the test can freeze.
    let server =
        RedisServer::start_with(&["--user", "nodel", "on", ">pw", "~*", "&*", "+@all", "-del"]);
    let relay = Relay::start(server.port()).await;
    let db = Db {
        delay: Duration::from_millis(300),
        ..Db::default()
    };
    let a = Instance {
        cache: Cache::builder()
            .tiered(relay.url().replacen("redis://", "redis://nodel:pw@", 1))
            .key_prefix("fd:")
            .redis_timeouts(Duration::from_secs(3), Duration::from_secs(3))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    let b = Instance {
        cache: tiered(&server, "fd:"),
        db: db.clone(),
    };
    a.user(2).await.unwrap();
    until_served_from_memory(&a, 2).await;
    let mut raw = server.raw().await;

    // a's insert of user 1 leaves while nothing was invalidated, and is held on the way (a
    // load's write is refused by Redis instead; an insert is written unchecked).
    relay.freeze();
    let insert = tokio::spawn({
        let a = a.clone();
        async move {
            let user = User {
                id: 1,
                name: "user1".to_owned(),
            };
            let options = LoadOptions::new(Duration::from_secs(60)).tag("users");
            a.cache
                .insert(&Key::new("user").part(1), user, &options)
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Invalidated before the write lands: the write puts the old value back.
    b.cache.invalidate("user:1").await;
    relay.hold_replies();
    relay.thaw();
    eventually(async || exist(&mut raw, &["fd:v:user:1"]).await == [true]).await;
    // a hears the invalidation before the write's reply, so it deletes its write: that fails.
    relay.release_subscribers();
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.release_all();
    insert.await.unwrap();
    eventually(async || a.cache.stats().store_errors >= 1).await;
    // Once a may delete, the queued delete is replayed.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("nodel")
        .arg("+del")
        .query_async(&mut raw)
        .await
        .unwrap();
    eventually(async || {
        a.user(3).await.unwrap();
        exist(&mut raw, &["fd:v:user:1"]).await == [false]
    })
    .await;
}

/// Calls `user(id)` on `instance` until it reaches the database: what memory held is gone.
async fn until_loaded(instance: &Instance, id: u64) {
    let before = instance.db.queries();
    eventually(async || {
        instance.user(id).await.unwrap();
        instance.db.queries() > before
    })
    .await;
}

/// While Redis is down, L1 still stands in front of the database: a value is kept at most the
/// outage bound, so one key asked for again and again is loaded about once per bound, not once
/// per call. No call fails, and Redis is used again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_keeps_l1_for_the_outage_bound() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let instance = Instance {
        cache: tiered_fast(&server, "ob:"),
        db: db.clone(),
    };
    until_served_from_memory(&instance, 1).await;
    server.kill();
    // What L1 held before the outage is dropped once the instance notices.
    until_loaded(&instance, 1).await;

    let before = db.queries();
    let (started, mut calls) = (Instant::now(), 0);
    while started.elapsed() < DEFAULT_OUTAGE_BOUND * 5 / 2 {
        assert!(instance.user(1).await.is_ok(), "no call fails");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let loads = db.queries() - before;
    println!("{loads} loads for {calls} calls while Redis was down");
    assert!(calls >= 50, "{calls} calls");
    assert!(
        (2..=5).contains(&loads),
        "about one load per bound, not one per call: {loads} for {calls}"
    );
    // A write made here during the outage applies to memory at once.
    instance.rename(1, "Ada").await.unwrap();
    assert_eq!(instance.user(1).await.unwrap().name, "Ada");

    server.restart();
    let mut raw = server.raw().await;
    eventually(async || {
        instance.user(4242).await.unwrap();
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg("ob:v:user:4242")
            .query_async(&mut raw)
            .await
            .unwrap();
        stored.is_some()
    })
    .await;
    until_served_from_memory(&instance, 1).await;
}

/// An instance cut off from Redis misses what another instance writes meanwhile: what it
/// stored in memory since it noticed is served at most the outage bound after it was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_instance_serves_a_missed_write_at_most_the_outage_bound() {
    let Partition {
        server: _server,
        relay,
        db,
        cut: a,
        direct: b,
    } = partition("miss:").await;
    until_served_from_memory(&a, 2).await;
    relay.freeze();
    // a notices (heartbeat, breaker): its memory is emptied.
    until_loaded(&a, 2).await;

    let (stored, before) = (Instant::now(), db.queries());
    assert_eq!(a.user(1).await.unwrap().name, "user1");
    assert_eq!(db.queries(), before + 1);
    b.rename(1, "Ada").await.unwrap();
    assert_eq!(
        a.user(1).await.unwrap().name,
        "user1",
        "a cannot hear the write; memory still answers"
    );
    assert_eq!(db.queries(), before + 1, "served from memory");
    eventually(async || a.user(1).await.unwrap().name == "Ada").await;
    let took = stored.elapsed();
    println!("the missed write was served {took:?} after the old value was stored");
    assert!(
        took < DEFAULT_OUTAGE_BOUND + Duration::from_millis(750),
        "the old value outlived the bound: {took:?}"
    );
}

/// A load that began while this instance could not hear invalidations and ends after it hears
/// them again is not kept in memory: it may have read what a missed invalidation replaced.
/// (Emptying memory on resubscription is logged; the load's position in the log is older.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_begun_during_an_outage_and_ended_after_it_is_not_kept_in_memory() {
    let Partition {
        server: _server,
        relay,
        db,
        cut: a,
        direct: b,
    } = partition("span:").await;
    until_served_from_memory(&a, 2).await;
    relay.freeze();
    until_loaded(&a, 2).await;

    let gate = Gate::default();
    let gated = Instance {
        cache: a.cache.clone(),
        db: Db {
            gate: Some(gate.clone()),
            ..db.clone()
        },
    };
    let load = tokio::spawn(async move { gated.user(1).await });
    gate.read.notified().await;
    b.rename(1, "Ada").await.unwrap();
    // Long enough for a's heartbeat to fail: it resubscribes after the thaw.
    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.thaw();
    until_served_from_memory(&a, 2).await;

    gate.open.notify_one();
    assert_eq!(
        load.await.unwrap().unwrap().name,
        "user1",
        "the load read before the write"
    );
    assert_eq!(
        a.user(1).await.unwrap().name,
        "Ada",
        "its value was not kept in memory"
    );
}

/// What L1 kept during an outage (perhaps after a write this instance could not hear) is
/// dropped once it hears invalidations again: with a bound of a minute, the value loaded
/// during the outage is not served on. With a bound of zero, every call during the outage
/// loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_kept_during_an_outage_is_dropped_once_redis_answers_again() {
    let mut server = RedisServer::start();
    let db = Db::default();
    let kept = Instance {
        cache: Cache::builder()
            .tiered(server.url())
            .key_prefix("ok:")
            .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
            .outage_ttl(Duration::from_secs(60))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
    };
    let zero = Instance {
        cache: Cache::builder()
            .tiered(server.url())
            .key_prefix("oz:")
            .outage_ttl(Duration::ZERO)
            .build()
            .expect("valid configuration"),
        db: Db::default(),
    };
    until_served_from_memory(&kept, 1).await;
    until_served_from_memory(&zero, 1).await;
    server.kill();
    until_loaded(&kept, 1).await;
    // Written at the source while this instance cannot hear about it.
    db.names.lock().unwrap().insert(1, "Ada".to_owned());
    assert_eq!(kept.user(1).await.unwrap().name, "user1", "kept in memory");

    until_loaded(&zero, 1).await;
    let before = zero.db.queries();
    for _ in 0..20 {
        zero.user(1).await.unwrap();
    }
    assert_eq!(zero.db.queries() - before, 20, "a zero bound keeps nothing");

    server.restart();
    eventually(async || kept.user(1).await.unwrap().name == "Ada").await;
}

/// A cache can outlive the Tokio runtime its subscriber ran on (a cache in a static, used by
/// one `#[tokio::test]` after another, or by a runtime that is shut down and replaced): once
/// that runtime is gone nothing hears the other instances' invalidations, so memory must not
/// go on serving what it held, and the instance hears them again once used on a new runtime.
#[test]
fn an_instance_whose_subscriber_runtime_ended_does_not_serve_a_missed_write_from_memory() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    let server = RedisServer::start();
    let db = Db::default();
    let a = Instance {
        cache: tiered_fast(&server, "rt:"),
        db: db.clone(),
    };
    runtime().block_on(until_served_from_memory(&a, 1));
    // That runtime, and the subscriber task on it, are gone.
    runtime().block_on(async {
        let b = Instance {
            cache: tiered_fast(&server, "rt:"),
            db: db.clone(),
        };
        b.rename(1, "Ada").await.unwrap();
        eventually(async || a.user(1).await.unwrap().name == "Ada").await;
        until_served_from_memory(&a, 1).await;
        b.rename(1, "Grace").await.unwrap();
        eventually(async || a.user(1).await.unwrap().name == "Grace").await;
    });
}
