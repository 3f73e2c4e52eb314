//! `CacheBuilder::compress_above`: large values are written to Redis compressed, and every
//! instance reads both forms whatever its own setting (instances turn it on one at a time).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cache_layer::{cached, Cache};

use crate::support::redis_server::RedisServer;

/// An instance whose `report` loads a large JSON-like text.
#[derive(Clone)]
struct Reports {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

impl Reports {
    fn new(server: &RedisServer, compress_above: Option<usize>) -> Self {
        let mut builder = Cache::builder().tiered(server.url()).key_prefix("z:");
        if let Some(bytes) = compress_above {
            builder = builder.compress_above(bytes);
        }
        Reports {
            cache: builder.build().expect("valid configuration"),
            loads: Arc::default(),
        }
    }

    #[cached(ttl = "1m", key = "report:<id>", cache = self.cache, ignore_self = true)]
    async fn report(&self, id: u64) -> Result<String, String> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(report_text(id))
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

/// About 100 KiB of JSON.
fn report_text(id: u64) -> String {
    (0..2_000)
        .map(|i| {
            format!(
                "{{\"report\":{id},\"row\":{i},\"status\":\"ok\",\"total\":{}}},",
                i * 7
            )
        })
        .collect()
}

/// The entry Redis holds for `key`, once the write (off the caller's path) has landed.
async fn stored(server: &RedisServer, key: &str) -> Vec<u8> {
    let mut raw = server.raw().await;
    for _ in 0..200 {
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        if let Some(bytes) = bytes {
            return bytes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{key} never written");
}

#[tokio::test]
async fn compressed_and_plain_entries_are_read_by_every_instance() {
    let server = RedisServer::start();
    let compressing = Reports::new(&server, Some(4096));
    let plain = Reports::new(&server, None);
    let text = report_text(1);

    // Written compressed, read by an instance that does not compress.
    assert_eq!(compressing.report(1).await.unwrap(), text);
    let bytes = stored(&server, "z:v:report:1").await;
    assert_eq!(bytes[0], 2, "format byte: compressed");
    assert!(
        bytes.len() * 4 < text.len(),
        "{} bytes in Redis for {} of text",
        bytes.len(),
        text.len()
    );
    assert_eq!(plain.report(1).await.unwrap(), text);
    assert_eq!(plain.loads(), 0, "read from Redis, not loaded again");

    // Written plain, read by the compressing instance.
    assert_eq!(plain.report(2).await.unwrap(), report_text(2));
    let bytes = stored(&server, "z:v:report:2").await;
    assert_eq!(bytes[0], 1, "format byte: plain");
    assert!(bytes.len() > report_text(2).len());
    assert_eq!(compressing.report(2).await.unwrap(), report_text(2));
    assert_eq!(compressing.loads(), 1, "read from Redis, not loaded again");
    assert_eq!(plain.cache.stats().decode_errors, 0);
    assert_eq!(compressing.cache.stats().decode_errors, 0);
}
