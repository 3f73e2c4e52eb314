//! Redis Cluster: keys and tags across slots, a load's write checked after it is made, deletes
//! that fail replayed by key.

use std::sync::Arc;

use cache_layer::Cache;

use crate::support::redis_server::RedisCluster;
use crate::support::relay::Relay;
use crate::support::wait::eventually;
use crate::{Db, Gated, Instance};

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
    eventually("a hears b's rename", async || {
        a.user(7).await.unwrap().name == "Ada"
    })
    .await;
}

/// On a cluster: instance a (whose first seed, the node it subscribes through, is a relay, so
/// that the test can hold what it hears) loads user 1 and reads the old name; then b renames
/// the user and invalidates `name`; only then does a's loader return. Redis must not keep the
/// value loaded before the invalidation.
async fn a_cluster_load_across_another_instances_invalidation_of(name: &str) {
    a_cluster_load_across(name, async |b: &Cache| b.invalidate(name).await).await;
}

/// [`a_cluster_load_across_another_instances_invalidation_of`], b making `what` with
/// `invalidate`.
async fn a_cluster_load_across(what: &str, invalidate: impl AsyncFnOnce(&Cache)) {
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
    eventually("a subscribes through the first node", async || {
        cluster_cli(&urls[0], &numsub).ends_with('1')
    })
    .await;
    relay.hold_subscribers();
    db.names.lock().unwrap().insert(1, "Ada".to_owned());
    invalidate(&b.cache).await;
    a.gate.notify_one();
    assert_eq!(load.await.unwrap().unwrap().name, "user1");
    // The write has been made and checked (a heard nothing: its subscription is held).
    eventually("a's write is checked and refused", async || {
        a.cache.stats().shared_writes_refused == 1
    })
    .await;
    relay.release_all();
    assert_eq!(
        cluster_cli(&urls[0], &["EXISTS", "lost:v:user:1"]),
        "0",
        "the value loaded before {what} was not kept"
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

/// The clear is recorded on the node that holds the cluster's set of clears, which a's write
/// reads after it is made: a's value, written after the clear's scan, is deleted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_load_that_began_before_another_instances_clear_of_its_prefix_is_not_kept() {
    let clear = async |b: &Cache| b.clear_prefix("user:").await;
    a_cluster_load_across("the clear of user:", clear).await;
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
    eventually("the write's check fails", async || {
        instance.cache.stats().store_errors >= 1
    })
    .await;
    // Its delete was queued, and is replayed (by the background probe) once Redis answers.
    eventually("the queued delete is replayed", async || {
        cluster_cli(&urls[0], &["EXISTS", "ck:v:user:1"]) == "0"
    })
    .await;
    assert_eq!(
        cluster_cli(&urls[0], &["SISMEMBER", "ck:t:users", "ck:v:user:1"]),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_members_whose_deletes_fail_are_deleted_on_replay() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    // The app user may not write "ro:*" keys yet: deleting that member of the tag fails.
    let instance = as_app(&cluster, &["~app:*", "%R~ro:*"], "app:");
    let exists = |key: &str| cluster_cli(&urls[0], &["EXISTS", key]) == "1";
    instance.user(1).await.unwrap();
    eventually("user 1 is in Redis", async || exists("app:v:user:1")).await;
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
    eventually("the replay deletes the member", async || {
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
    eventually("the write fails", async || {
        instance.cache.stats().store_errors >= 1
    })
    .await;
    assert_eq!(cluster_cli(&urls[0], &["EXISTS", "tf:v:user:1"]), "0");
}
