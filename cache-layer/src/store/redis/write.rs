//! Writes: [`RedisStore::set`] for every entry, made on one Redis in one script
//! (`scripts/write.lua`) and on a cluster in steps (`cluster`), and what became of it counted.

use std::time::Duration;

use redis::Cmd;

use super::cluster::markers_of;
use super::connection::Link;
use super::keys::{bounded, cleared_prefix, MAX_TAG_MEMBERS};
use super::scripts::{eval, WRITE};
use super::{px, RedisStore, SharedSince, Written};
use crate::engine::stats::Counter;
use crate::store::codec::{now_millis, FORMATS_WITH_DEADLINES};
use crate::store::compress::compressed;

impl RedisStore {
    /// Adds `key` to each tag's set, then stores `bytes` under it for `ttl`: a failure on the
    /// way leaves at most a member whose value is missing (harmless), never a value that an
    /// invalidation of one of its tags would not find. A load's write is not made (one Redis)
    /// or not kept (a cluster) when `key` or a tag was invalidated, by any instance, after
    /// `since`; it is made (kept) stale when one was only soft-purged. A write that a full tag
    /// set would not name is not made (see `keys::MAX_TAG_MEMBERS`).
    pub(crate) async fn set(
        &self,
        key: &str,
        bytes: Vec<u8>,
        ttl: Duration,
        tags: &[Box<str>],
        since: SharedSince,
    ) {
        let (since, began) = match since {
            SharedSince::Epoch(epoch) => (epoch.to_string(), None),
            SharedSince::Began(began) => (String::new(), Some(began)),
            SharedSince::Unchecked => (String::new(), None),
            SharedSince::Unknown => return,
        };
        let bytes = match self.compress_above {
            Some(above) => compressed(bytes, above),
            None => bytes,
        };
        let value_key = self.keys.value_key(key);
        let tag_keys: Vec<String> = tags.iter().map(|t| self.keys.tag_key(t)).collect();
        let write = (value_key.as_str(), bytes, px(ttl));
        let written = self
            .run("SET", |mut c| async move {
                if let Link::Single(_) = c {
                    let script = self.write_script(write, &tag_keys, (key, tags), since);
                    return Ok(match script.query_async::<i64>(&mut c).await? {
                        0 => Written::Kept,
                        2 => Written::TagSetFull,
                        _ => Written::Refused,
                    });
                }
                let check = began.map(|began| (began, markers_of(&self.keys, key, tags)));
                self.set_on_cluster(&mut c, write, &tag_keys, check).await
            })
            .await;
        self.count(key, written);
    }

    /// [`RedisStore::set`] on one Redis: `scripts/write.lua` for the value (its key, bytes and
    /// `PX`), its tags' sets, and the names of the key and its tags, checked against the
    /// history's epoch `since` (empty: not checked).
    fn write_script(
        &self,
        (value_key, bytes, millis): (&str, Vec<u8>, u64),
        tag_keys: &[String],
        (key, tags): (&str, &[Box<str>]),
        since: String,
    ) -> Cmd {
        let history_key = self.keys.history_key();
        let cleared_key = self.keys.cleared_key();
        let mut keys = vec![value_key, history_key.as_str(), cleared_key.as_str()];
        keys.extend(tag_keys.iter().map(String::as_str));
        let mut write = eval(WRITE, &keys);
        write.arg(bytes).arg(millis).arg(MAX_TAG_MEMBERS).arg(since);
        write.arg(now_millis()).arg(FORMATS_WITH_DEADLINES);
        write.arg(cleared_prefix(key));
        write.arg(&*bounded(key));
        for tag in tags {
            write.arg(&*bounded(tag));
        }
        write
    }

    /// Counts and logs a write that was not made or not kept (see [`Written`]).
    fn count(&self, key: &str, written: Option<Written>) {
        let (counter, why) = match written {
            Some(Written::Refused) => (
                Counter::SharedWriteRefused,
                "not kept in Redis: invalidated by an instance since the load began",
            ),
            Some(Written::TagSetFull) => (
                Counter::TagSetFull,
                "not written to Redis: one of its tags names the most entries a tag may",
            ),
            Some(Written::Kept) | None => return,
        };
        self.counters.add(counter);
        tracing::debug!(cache = self.counters.name(), key, "{why}");
    }
}
