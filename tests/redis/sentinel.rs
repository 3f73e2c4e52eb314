//! The shared tier on Redis Sentinel, and on a client or connection manager the application
//! already has: entries shared and invalidations heard, before and after the master fails over.

use cache_layer::{redis, Cache, RedisSource};

use crate::support::redis_server::{RedisSentinel, RedisServer};
use crate::support::wait::eventually;
use crate::{exist, until_served_from_memory, Db, Instance};

fn on_sentinel(deployment: &RedisSentinel, db: &Db) -> Instance {
    let cache = Cache::builder()
        .tiered_sentinel([deployment.url()], RedisSentinel::NAME)
        .key_prefix("s:")
        .build()
        .expect("valid configuration");
    Instance {
        cache,
        db: db.clone(),
    }
}

/// One instance's rename reaches the other's memory, and its entries land on the master.
async fn shared_on_master(deployment: &RedisSentinel, a: &Instance, b: &Instance, id: u64) {
    let mut raw = deployment.master().raw().await;
    let key = format!("s:v:user:{id}");
    eventually("an entry stored by a lands on the master", async || {
        a.user(id).await.unwrap();
        exist(&mut raw, &[key.as_str()]).await == [true]
    })
    .await;
    // b keeps the entry in memory, subscribed to invalidations (on the master).
    until_served_from_memory(b, id).await;
    let name = format!("renamed{id}");
    a.rename(id, &name).await.unwrap();
    eventually("b serves a's rename", async || {
        b.user(id).await.unwrap().name == name
    })
    .await;
}

async fn failover_keeps_the_tier_shared(switch: impl FnOnce(&mut RedisSentinel)) {
    let mut deployment = RedisSentinel::start();
    let db = Db::default();
    let a = on_sentinel(&deployment, &db);
    let b = on_sentinel(&deployment, &db);
    shared_on_master(&deployment, &a, &b, 1).await;

    let old_master = deployment.master().port();
    switch(&mut deployment);
    assert_ne!(deployment.master().port(), old_master);

    // Calls go on meanwhile (failing open to the database), and both instances move to the
    // new master: its entries and invalidations are theirs.
    for id in 10..20 {
        a.user(id).await.unwrap();
        b.user(id).await.unwrap();
    }
    shared_on_master(&deployment, &a, &b, 2).await;
    shared_on_master(&deployment, &b, &a, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_keeps_entries_shared_and_invalidations_heard() {
    failover_keeps_the_tier_shared(RedisSentinel::failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_for_entries_and_invalidations() {
    failover_keeps_the_tier_shared(RedisSentinel::kill_master).await;
}

#[tokio::test]
async fn the_applications_client_and_connection_manager_serve_the_shared_tier() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let manager = client.get_connection_manager().await.unwrap();
    let db = Db::default();
    let a = Instance {
        cache: Cache::builder()
            .tiered_with(RedisSource::client(client.clone()))
            .key_prefix("own:")
            .build()
            .unwrap(),
        db: db.clone(),
    };
    let b = Instance {
        cache: Cache::builder()
            .tiered_with(RedisSource::connection_manager(manager.clone(), client))
            .key_prefix("own:")
            .build()
            .unwrap(),
        db: db.clone(),
    };
    let mut raw = server.raw().await;
    eventually("an entry stored by a is in Redis", async || {
        a.user(1).await.unwrap();
        exist(&mut raw, &["own:v:user:1"]).await == [true]
    })
    .await;
    assert_eq!(b.user(1).await.unwrap().name, "user1");
    assert_eq!(db.queries(), 1, "b read a's entry from Redis");

    // Invalidations reach the instance on the application's connection manager, and its own
    // reach the other.
    until_served_from_memory(&b, 1).await;
    a.rename(1, "Ada").await.unwrap();
    eventually("b serves a's rename", async || {
        b.user(1).await.unwrap().name == "Ada"
    })
    .await;
    until_served_from_memory(&a, 1).await;
    b.rename(1, "Grace").await.unwrap();
    eventually("a serves b's rename", async || {
        a.user(1).await.unwrap().name == "Grace"
    })
    .await;

    // The application keeps using its connection manager alongside the cache.
    let mut manager = manager;
    let reply: String = redis::cmd("PING").query_async(&mut manager).await.unwrap();
    assert_eq!(reply, "PONG");
}
