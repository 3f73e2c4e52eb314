//! Reads: one entry, several in one round trip, whether any of some keys holds an entry (a
//! purge's answer), and where the invalidation history stands before a load.

use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::{Cmd, RedisResult};

use super::connection::Link;
use super::keys::EPOCH;
use super::{RedisStore, SharedSince};
use crate::store::codec::MAX_ENCODED;

impl RedisStore {
    /// The bytes stored under `key`; `None` when absent or when Redis did not answer.
    /// At most [`MAX_ENCODED`] + 1 bytes are read (`GETRANGE`): more is refused by the
    /// decoder.
    pub(crate) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.keys.value_key(key);
        let bytes = self
            .run("GET", |mut c| async move {
                read(&key).query_async::<Vec<u8>>(&mut c).await
            })
            .await?;
        found(bytes)
    }

    /// Whether a value is stored under any of `keys` (a purge's answer); `None` when Redis did
    /// not answer.
    pub(crate) async fn holds_any(&self, keys: &[String]) -> Option<bool> {
        for key in keys {
            let key = self.keys.value_key(key);
            let held = self
                .run("EXISTS", |mut c| async move { exists(&mut c, &key).await })
                .await?;
            if held {
                return Some(true);
            }
        }
        Some(false)
    }

    /// The bytes stored under each of `keys`, in order, read in one round trip: one pipeline
    /// of `GETRANGE`s on one Redis; on a cluster, the reads sent together, each to its key's
    /// node (a pipeline's keys would span slots). All `None` when Redis did not answer.
    pub(crate) async fn get_many(&self, keys: &[&str]) -> Vec<Option<Vec<u8>>> {
        let value_keys: Vec<String> = keys.iter().map(|key| self.keys.value_key(key)).collect();
        let found_all = self
            .run("MGET", |mut c| async move {
                if let Link::Single(_) = c {
                    let mut pipe = redis::pipe();
                    for key in &value_keys {
                        pipe.add_command(read(key));
                    }
                    return pipe.query_async::<Vec<Vec<u8>>>(&mut c).await;
                }
                c.each(value_keys.iter().map(|key| read(key))).await
            })
            .await;
        match found_all {
            Some(all) if all.len() == keys.len() => all.into_iter().map(found).collect(),
            _ => vec![None; keys.len()],
        }
    }

    /// Where the invalidation history stands now, for a load about to begin (one round trip,
    /// on a miss only; none when the last operation went unanswered: the write would most
    /// likely fail too). On a cluster, where a write's keys span slots, the instant the load
    /// begins (no round trip): the write is checked after it is made (see `cluster`).
    pub(crate) async fn shared_since(&self) -> SharedSince {
        if !self.answering.load(Ordering::Acquire) {
            return SharedSince::Unknown;
        }
        if self.connection.is_cluster() {
            return SharedSince::Began(Instant::now());
        }
        let history_key = self.keys.history_key();
        let epoch = self
            .run("ZSCORE", |mut c| async move {
                redis::cmd("ZSCORE")
                    .arg(&history_key)
                    .arg(EPOCH)
                    .query_async::<Option<f64>>(&mut c)
                    .await
            })
            .await;
        match epoch {
            // `as` saturates (NaN is 0): a garbage score only makes the write refused.
            Some(epoch) => SharedSince::Epoch(epoch.unwrap_or(0.0) as u64),
            None => SharedSince::Unknown,
        }
    }
}

/// Reads the entry under the Redis key `key`: at most [`MAX_ENCODED`] + 1 bytes.
fn read(key: &str) -> Cmd {
    let mut command = redis::cmd("GETRANGE");
    command.arg(key).arg(0).arg(MAX_ENCODED);
    command
}

/// An entry read: `None` when empty, since an entry is never empty (empty means absent).
fn found(bytes: Vec<u8>) -> Option<Vec<u8>> {
    (!bytes.is_empty()).then_some(bytes)
}

/// Whether the Redis key `key` exists.
pub(super) async fn exists(c: &mut Link, key: &str) -> RedisResult<bool> {
    redis::cmd("EXISTS").arg(key).query_async::<bool>(c).await
}
