//! Entries and invalidations shared between instances: one instance's load is another's
//! hit, an invalidation reaches every instance's memory, tags and TTLs live in Redis, a key
//! prefix keeps applications apart.

use std::time::Duration;

use cache_layer::{Cache, Key, LoadOptions};

use crate::support::redis_server::{subscribers, tiered, RedisServer};
use crate::support::relay::Relay;
use crate::support::wait::eventually;
use crate::{shared, until_served_from_memory, Db, Instance};

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
    let took = eventually("b serves the rename", async || {
        b.user(1).await.unwrap().name == "Ada"
    })
    .await;
    println!("invalidation reached the other instance's L1 in {took:?}");
    assert!(took < Duration::from_secs(1));

    b.user(2).await.unwrap();
    let before = db.queries();
    a.cache.invalidate("users").await;
    eventually("b loads again after the tag's invalidation", async || {
        b.user(2).await.unwrap();
        db.queries() > before
    })
    .await;
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

/// Invalidations asked for while one is in flight are published together (one script call,
/// one `PUBLISH` for many names), and each still is in Redis's history when its call returns
/// and reaches every instance's memory.
#[tokio::test]
async fn concurrent_invalidations_are_published_together_and_each_reaches_every_instance() {
    const NAMES: usize = 200;
    let server = RedisServer::start();
    let a = tiered(&server, "batch:");
    let b = tiered(&server, "batch:");
    let options = |i: usize| LoadOptions::new(Duration::from_secs(3600)).tag(format!("item:{i}"));
    let key = |i: usize| Key::new("item").part(i as u64);
    for i in 0..NAMES {
        let (key, options) = (key(i), options(i));
        let load = || async move { Ok::<_, std::io::Error>(i as u64) };
        b.get_or_load(&key, &options, load).await.unwrap();
    }
    a.get::<u64>(&key(0)).await;
    eventually("both instances listen", async || {
        subscribers(&server.url(), "batch:invalidate").await == 2
    })
    .await;
    let mut raw = server.raw().await;
    let published = publishes(&mut raw).await;

    let invalidations = (0..NAMES).map(|i| {
        let a = a.clone();
        tokio::spawn(async move { a.invalidate(&format!("item:{i}")).await })
    });
    for invalidation in invalidations.collect::<Vec<_>>() {
        invalidation.await.unwrap();
    }

    let in_history: Vec<Option<f64>> = {
        let mut pipe = redis::pipe();
        for i in 0..NAMES {
            pipe.cmd("ZSCORE")
                .arg("batch:invalidated")
                .arg(format!("item:{i}"));
        }
        pipe.query_async(&mut raw).await.unwrap()
    };
    assert!(
        in_history.iter().all(Option::is_some),
        "every name is in the history once its call returned"
    );
    let sent = publishes(&mut raw).await - published;
    assert!(
        sent < NAMES as u64 / 2,
        "{sent} PUBLISH for {NAMES} concurrent invalidations: coalesced"
    );
    eventually("b dropped every entry from its memory", async || {
        for i in 0..NAMES {
            // Gone from Redis already: only b's memory could still answer.
            if b.get::<u64>(&key(i)).await.is_some() {
                return false;
            }
        }
        true
    })
    .await;
}

/// How many times Redis ran `PUBLISH` (scripts' calls included).
async fn publishes(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    crate::command_calls(raw, "publish").await
}
