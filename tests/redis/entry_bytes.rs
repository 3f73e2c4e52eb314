//! Bytes in Redis that do not decode (garbage, truncated, another type, absurd deadlines or
//! lengths, oversized): a miss, counted, then overwritten.

use std::time::Duration;

use cache_layer::{cached, Cache};

use crate::support::redis_server::RedisServer;
use crate::{shared, Db, Instance};

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
