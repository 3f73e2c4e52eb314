//! Clears across instances sharing one `redis-server`: `Cache::clear` and
//! `Cache::clear_prefix` empty Redis and every instance's memory, leave other namespaces
//! alone, and a load that began before a clear never lands in Redis after it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_layer::{Cache, Invalidated, Key, LoadOptions, Origin};

use crate::support::redis_server::{subscribers, RedisServer};
use crate::support::relay::Relay;
use crate::support::wait::eventually;
use crate::{exist, shared, tiered_fast, Db, Gated, Instance};

/// A load of user 1 on `a` (reaching Redis through a relay) reads the database; `b` clears
/// while it is in flight, and `a` hears nothing of it (its replies, the broadcast included,
/// are held) before its write reaches Redis: the script refuses the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_another_instances_clear_is_not_kept_in_redis() {
    let server = RedisServer::start();
    let relay = Relay::start(server.port()).await;
    let db = Db::default();
    let a = Gated {
        cache: Cache::builder()
            .redis(relay.url())
            .key_prefix("clr:")
            .redis_timeouts(Duration::from_millis(200), Duration::from_millis(100))
            .build()
            .expect("valid configuration"),
        db: db.clone(),
        read: Arc::default(),
        gate: Arc::default(),
    };
    let b = Instance {
        cache: shared(&server, "clr:"),
        db: db.clone(),
    };
    // Redis already holds an invalidation history (a load that began before there was one is
    // refused anyway: the history cannot tell).
    b.cache.invalidate("user:3").await;
    b.user(2).await.unwrap();
    let mut raw = server.raw().await;
    eventually("b's write lands", async || {
        exist(&mut raw, &["clr:v:user:2"]).await == [true]
    })
    .await;
    let load = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    a.read.notified().await;
    relay.hold_replies();
    b.cache.clear().await;
    assert_eq!(exist(&mut raw, &["clr:v:user:2"]).await, [false], "deleted");
    let errors = a.cache.stats().store_errors;
    a.gate.notify_one();
    load.await.unwrap().unwrap();
    eventually("a's write is sent", async || {
        a.cache.stats().store_errors > errors
    })
    .await;
    relay.release_all();
    assert_eq!(
        exist(&mut raw, &["clr:v:user:1"]).await,
        [false],
        "the value read before the clear was not written after it"
    );
    b.user(1).await.unwrap();
    eventually("loads after the clear are written", async || {
        exist(&mut raw, &["clr:v:user:1"]).await == [true]
    })
    .await;
}

/// Two tiered instances: a clear on one empties Redis at once and the other's memory when it
/// hears it; the other's invalidation hook hears it as remote, the clearer's as local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_empties_redis_and_every_instances_memory() {
    let server = RedisServer::start();
    let db = Db::default();
    let heard: Arc<Mutex<Vec<(String, Origin)>>> = Arc::default();
    let hook = |who: &'static str| {
        let heard = Arc::clone(&heard);
        move |event: &cache_layer::Invalidation<'_>| {
            let what = match event.what {
                Invalidated::Everything => "everything".to_owned(),
                Invalidated::Name(name) => format!("name {name}"),
                other => format!("{other:?}"),
            };
            heard
                .lock()
                .unwrap()
                .push((format!("{who}: {what}"), event.origin));
        }
    };
    let cache = |who| {
        Cache::builder()
            .tiered(server.url())
            .key_prefix("all:")
            .redis_timeouts(Duration::from_millis(50), Duration::from_millis(100))
            .on_invalidation(hook(who))
            .build()
            .unwrap()
    };
    let a = Instance {
        cache: cache("a"),
        db: db.clone(),
    };
    let b = Instance {
        cache: cache("b"),
        db: db.clone(),
    };
    a.user(1).await.unwrap();
    b.user(1).await.unwrap();
    eventually("both subscribed", async || {
        subscribers(&server.url(), "all:invalidate").await >= 2
    })
    .await;
    b.user(1).await.unwrap();
    let queries = db.queries();
    b.user(1).await.unwrap();
    assert_eq!(db.queries(), queries, "b serves user 1 from memory");

    a.cache.invalidate("user:9").await;
    a.cache.clear().await;
    let mut raw = server.raw().await;
    assert_eq!(exist(&mut raw, &["all:v:user:1"]).await, [false]);
    eventually("b drops its copy", async || {
        b.user(1).await.unwrap();
        db.queries() > queries
    })
    .await;
    eventually("b heard both", async || heard.lock().unwrap().len() >= 4).await;
    let mut heard = heard.lock().unwrap().clone();
    heard.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        heard,
        [
            ("a: everything".to_owned(), Origin::Local),
            ("a: name user:9".to_owned(), Origin::Local),
            ("b: everything".to_owned(), Origin::Remote),
            ("b: name user:9".to_owned(), Origin::Remote),
        ],
        "each once: a's own messages coming back are not another instance's"
    );
}

/// A namespace clear deletes the keys under its prefix in Redis (long ones, stored under
/// their digest, too) and in memory, and leaves every other key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_clear_leaves_other_keys() {
    let server = RedisServer::start();
    let a = tiered_fast(&server, "ns:");
    let b = tiered_fast(&server, "ns:");
    let options = LoadOptions::new(Duration::from_secs(60));
    let long = "x".repeat(300);
    let keys = [
        Key::new("user").part(1),
        Key::new("user").part(&*long),
        Key::new("users").part(1),
        Key::new("org").part(1),
    ];
    for key in &keys {
        a.insert(key, 1u32, &options).await;
    }
    let mut raw = server.raw().await;
    let count = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("ns:v*")
                .query_async(&mut raw)
                .await
                .unwrap();
            keys.len()
        }
    };
    assert_eq!(count(&mut raw).await, 4);
    for key in &keys {
        assert_eq!(b.get::<u32>(key).await, Some(1), "{}", key.as_str());
    }
    eventually("both subscribed", async || {
        subscribers(&server.url(), "ns:invalidate").await >= 2
    })
    .await;

    a.clear_prefix("user:").await;
    assert_eq!(
        exist(&mut raw, &["ns:v:user:1", "ns:v:users:1", "ns:v:org:1"]).await,
        [false, true, true]
    );
    assert_eq!(
        count(&mut raw).await,
        2,
        "the long key's digest form went too"
    );
    for cache in [&a, &b] {
        eventually("memory cleared", async || {
            cache.get::<u32>(&keys[0]).await.is_none()
        })
        .await;
        assert_eq!(cache.get::<u32>(&keys[1]).await, None);
        assert_eq!(cache.get::<u32>(&keys[2]).await, Some(1));
        assert_eq!(cache.get::<u32>(&keys[3]).await, Some(1));
    }
    assert_eq!(a.stats().clears, 1);
}
