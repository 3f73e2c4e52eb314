//! Tag sets in Redis: complete under concurrent writes and invalidations, pruned and bounded,
//! never missing a value's key; deletes that fail are replayed.

use std::time::Duration;

use cache_layer::{Cache, Key, LoadOptions};

use crate::support::redis_server::tiered;
use crate::support::redis_server::RedisServer;
use crate::support::relay::Relay;
use crate::support::wait::eventually;
use crate::{exist, shared, until_served_from_memory, Db, Instance, User};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_sets_stay_complete_under_concurrent_writes_and_invalidations() {
    let server = RedisServer::start();
    let db = Db::default();
    // Redis alone, with time to answer on a loaded machine: the test counts store errors,
    // which an operation timing out would be.
    let patient = || {
        Cache::builder()
            .redis(server.url())
            .key_prefix("cc:")
            .redis_timeouts(Duration::from_secs(2), Duration::from_secs(2))
            .build()
            .expect("valid configuration")
    };
    let writers: Vec<Instance> = (0..4)
        .map(|_| Instance {
            cache: patient(),
            db: db.clone(),
        })
        .collect();
    let invalidator = patient();
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
    eventually("the write fails", async || {
        instance.cache.stats().store_errors >= 1
    })
    .await;
    assert_eq!(
        exist(&mut raw, &["tf:v:user:1"]).await,
        [false],
        "no value that invalidating \"users\" would not find"
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
    eventually("user 1 is in Redis", async || {
        exist(&mut raw, &["app:v:user:1"]).await == [true]
    })
    .await;
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
    eventually("the replay deletes the member", async || {
        instance.user(2).await.unwrap();
        exist(&mut raw, &["ro:v:x"]).await == [false]
    })
    .await;
    assert_eq!(
        exist(&mut raw, &["app:v:user:1", "ro:v:x"]).await,
        [false, false]
    );
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
    eventually("the write lands", async || {
        exist(&mut raw, &["fd:v:user:1"]).await == [true]
    })
    .await;
    // a hears the invalidation before the write's reply, so it deletes its write: that fails.
    relay.release_subscribers();
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.release_all();
    insert.await.unwrap();
    eventually("the undo fails", async || a.cache.stats().store_errors >= 1).await;
    // Once a may delete, the queued delete is replayed.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("nodel")
        .arg("+del")
        .query_async(&mut raw)
        .await
        .unwrap();
    eventually("the queued delete is replayed", async || {
        a.user(3).await.unwrap();
        exist(&mut raw, &["fd:v:user:1"]).await == [false]
    })
    .await;
}
