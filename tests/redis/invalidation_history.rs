//! A load's write checked against the invalidation history on one Redis: a value loaded
//! before another instance's invalidation never lands in Redis after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cache_layer::{Cache, Key, LoadOptions};

use crate::support::redis_server::{subscribers, tiered, RedisServer};
use crate::support::relay::Relay;
use crate::support::wait::eventually;
use crate::{exist, scripts_run, shared, until_served_from_memory, Db, DbError, Gated, Instance};

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
    eventually("a's write is sent", async || {
        a.cache.stats().store_errors > errors
    })
    .await;
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
    eventually("a subscribes", async || {
        subscribers(&server.url(), "count:invalidate").await == 1
    })
    .await;
    relay.hold_subscribers();
    db.names.lock().unwrap().insert(1, "Ada".to_owned());
    b.cache.invalidate("users").await;
    a.gate.notify_one();
    assert_eq!(load.await.unwrap().unwrap().name, "user1");
    eventually("Redis refuses a's write", async || {
        a.cache.stats().shared_writes_refused == 1
    })
    .await;
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
    eventually("the refresh's write script runs", async || {
        scripts_run(&mut raw).await > scripts
    })
    .await;
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
    eventually("user 1 is written", async || {
        exist(&mut raw, &["kept:v:user:1"]).await == [true]
    })
    .await;
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
    eventually("user 3 is written", async || {
        exist(&mut raw, &["gone:v:user:3"]).await == [true]
    })
    .await;
    assert_eq!(
        exist(&mut raw, &["gone:v:user:1", "gone:v:user:2"]).await,
        [false, false],
        "a write the history cannot vouch for is not made"
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
    eventually("user 3 is written", async || {
        exist(&mut raw, &["fl:v:user:3"]).await == [true]
    })
    .await;
    assert_eq!(
        exist(&mut raw, &["fl:v:user:1"]).await,
        [false],
        "the outdated load is not in Redis"
    );
}
