//! Memory while an instance may miss invalidations (Redis down, a silent or lost
//! subscription, a partition): what it stores is served at most the outage bound, and memory
//! is emptied once it hears invalidations again.

use std::time::{Duration, Instant};

use cache_layer::Cache;

use crate::support::redis_server::RedisServer;
use crate::support::wait::eventually;
use crate::{
    partition, tiered_fast, until_served_from_memory, Db, Gate, Instance, Partition,
    DEFAULT_OUTAGE_BOUND, RECOVERY_BOUND,
};

/// Calls `user(id)` on `instance` until it reaches the database: what memory held is gone.
async fn until_loaded(instance: &Instance, id: u64) {
    let before = instance.db.queries();
    eventually("a load reaches the database", async || {
        instance.user(id).await.unwrap();
        instance.db.queries() > before
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
    eventually("b stops serving its memory copy", async || {
        b.user(1).await.unwrap();
        db.queries() > before
    })
    .await;
    server.restart();
    // Resubscribed (and L1 emptied): memory hits again.
    until_served_from_memory(&b, 1).await;
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
    let took = eventually("b serves the rename", async || {
        b.user(1).await.unwrap().name == "Ada"
    })
    .await;
    println!("the silent instance stopped serving its memory copy after {took:?}");
    assert!(took < RECOVERY_BOUND, "{took:?}");

    relay.thaw();
    until_served_from_memory(&b, 1).await;
    assert_eq!(b.user(1).await.unwrap().name, "Ada");
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
    eventually("Redis is written again", async || {
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
    eventually("a serves the missed write", async || {
        a.user(1).await.unwrap().name == "Ada"
    })
    .await;
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
    eventually("the instance serves the write it missed", async || {
        kept.user(1).await.unwrap().name == "Ada"
    })
    .await;
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
        eventually("a serves the rename to Ada", async || {
            a.user(1).await.unwrap().name == "Ada"
        })
        .await;
        until_served_from_memory(&a, 1).await;
        b.rename(1, "Grace").await.unwrap();
        eventually("a serves the rename to Grace", async || {
            a.user(1).await.unwrap().name == "Grace"
        })
        .await;
    });
}
