//! Invalidations that did not reach Redis (`store::pending`): the keys an error or the time
//! budget left undeleted are queued, and the queue is replayed before anything else is sent.

use redis::RedisResult;

use super::connection::Link;
use super::keys::EVERYTHING;
use super::RedisStore;
use crate::store::queued::{Part, QueuedInvalidations};

/// Keys still to delete: queued for the replay when dropped before they are all deleted (an
/// error, or the operation's future dropped at its time budget).
pub(super) struct Undeleted<'a> {
    pub(super) pending: &'a QueuedInvalidations,
    pub(super) keys: &'a [String],
}

impl Drop for Undeleted<'_> {
    fn drop(&mut self) {
        for key in self.keys {
            self.pending.push_key(key);
        }
    }
}

impl RedisStore {
    /// Deletes the Redis keys `keys` one by one (a cluster's keys span slots); those not
    /// deleted when an error or the time budget ends it are queued for the replay.
    pub(super) async fn delete_or_queue(&self, c: &mut Link, keys: &[String]) -> RedisResult<()> {
        let mut undeleted = Undeleted {
            pending: &self.pending,
            keys,
        };
        while let Some((key, rest)) = undeleted.keys.split_first() {
            redis::cmd("DEL").arg(key).query_async::<()>(c).await?;
            undeleted.keys = rest;
        }
        Ok(())
    }

    /// Sends the invalidations that did not reach Redis, oldest state first; each is
    /// forgotten once sent, unless queued again meanwhile.
    pub(super) async fn replay(&self, c: &mut Link) -> RedisResult<()> {
        let replay = self.pending.snapshot();
        for (part, push) in &replay.parts {
            match part {
                Part::Name(name) => self.send_invalidation(c, name).await?,
                Part::Key(key) => redis::cmd("DEL").arg(&**key).query_async::<()>(c).await?,
                Part::Prefix(prefix) => self.send_clear(c, prefix).await?,
            }
            self.pending.replayed(part, *push);
        }
        if let Some(push) = replay.everything {
            redis::cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg(EVERYTHING)
                .query_async::<()>(c)
                .await?;
            self.pending.replayed_everything(push);
        }
        tracing::info!(
            cache = self.counters.name(),
            replayed = replay.parts.len(),
            everything = replay.everything.is_some(),
            "replayed invalidations that had not reached Redis"
        );
        Ok(())
    }
}
