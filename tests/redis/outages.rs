//! A Redis that is killed, paused or refuses a key: no call fails, each waits at most its
//! budget, the breaker opens and closes by itself, and invalidations made meanwhile are
//! replayed once Redis answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_layer::Cache;

use crate::support::redis_server::{tiered, RedisServer};
use crate::support::wait::eventually;
use crate::{
    partition, shared, tiered_fast, until_served_from_memory, Db, Instance, Partition,
    RECOVERY_BOUND,
};

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
    eventually("Redis is written again", async || {
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
    eventually("the write lands once Redis answers", async || {
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

    let took = eventually("both instances serve the rename", async || {
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

    let took = eventually("both instances serve the rename", async || {
        a.user(1).await.unwrap().name == "Ada" && b.user(1).await.unwrap().name == "Ada"
    })
    .await;
    assert!(took < RECOVERY_BOUND, "{took:?}");
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
    let took = eventually("b reads Redis instead of its memory", async || {
        let before = b.cache.stats().shared_hits;
        b.user(1).await.unwrap();
        b.cache.stats().shared_hits > before
    })
    .await;
    assert!(took < RECOVERY_BOUND, "{took:?}");
}
