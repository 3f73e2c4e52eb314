//! The distributed load lock: one instance loads; waiters stop waiting when the holder
//! releases the lock without a value or Redis stops answering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::redis_server::RedisServer;
use crate::support::wait::eventually;
use crate::{shared, Db, DbError, Instance};

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
    eventually("the holder takes the lock", async || {
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
    eventually("the holder takes the lock", async || {
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
