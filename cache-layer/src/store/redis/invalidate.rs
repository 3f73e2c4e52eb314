//! Invalidations and soft purges: on one Redis each in one script, which also records the
//! name in the invalidation history; on a cluster in steps, after the name's marker is set
//! (`scripts/mark.lua`). Each is then published to every instance. Also the delete of one
//! entry. What does not reach Redis is queued for the replay (`replay`).

use redis::RedisResult;

use super::cluster::mark;
use super::connection::Link;
use super::keys::{bounded, invalidated_message, MAX_INVALIDATED_NAMES, SOFT, SOFTENED};
use super::scripts::{eval, soften, INVALIDATE, TAG_TAKE};
use super::RedisStore;
use crate::store::queued::Queued;

impl RedisStore {
    /// Deletes the entry stored under `key` only; a delete that does not reach Redis is
    /// queued for the replay.
    pub(crate) async fn delete(&self, key: &str) {
        let value_key = self.keys.value_key(key);
        let deleted = self
            .run("DEL", |mut c| {
                let value_key = &value_key;
                async move {
                    redis::cmd("DEL")
                        .arg(value_key)
                        .query_async::<()>(&mut c)
                        .await
                }
            })
            .await;
        if deleted.is_none() {
            self.pending.push_key(&value_key);
        }
    }

    /// Deletes `name`'s entry and every entry tagged `name`, then tells every instance.
    /// Returns `None` when that reached Redis; otherwise the invalidation is kept for a replay
    /// (see `store::pending`), and what the queue did with it is returned. On one Redis,
    /// invalidations asked for while one is in flight are sent together next (`coalesce`).
    pub(crate) async fn invalidate(&self, name: &str) -> Option<Queued> {
        if self.connection.is_cluster() {
            let sent = self
                .run("INVALIDATE", |mut c| async move {
                    self.send_invalidation(&mut c, name).await
                })
                .await;
            return self.sent_or_kept(sent, name, "invalidation kept until Redis answers again");
        }
        let send = |names: Vec<Box<str>>| async move {
            let sent = self
                .run("INVALIDATE", |mut c| {
                    let names = &names;
                    async move { self.send_invalidations(&mut c, names).await }
                })
                .await;
            let kept = "invalidation kept until Redis answers again";
            names
                .iter()
                .map(|name| self.sent_or_kept(sent, name, kept))
                .collect()
        };
        self.coalesced.invalidate(&self.pending, name, send).await
    }

    /// Soft-purges `name`'s entry and every entry tagged `name` (see
    /// `scripts/soft_invalidate.lua`), then tells every instance. Returns `None` when that
    /// reached Redis; otherwise it is kept for the replay as a hard invalidation (an entry is
    /// never left fresh anywhere), and what the queue did with it is returned.
    pub(crate) async fn soft_invalidate(&self, name: &str) -> Option<Queued> {
        let sent = self
            .run("SOFT_INVALIDATE", |mut c| async move {
                self.send_soft_invalidation(&mut c, name).await
            })
            .await;
        let kept = "soft purge kept, as an invalidation, until Redis answers again";
        self.sent_or_kept(sent, name, kept)
    }

    /// `None` when `name`'s invalidation or soft purge reached Redis (`sent`); otherwise it is
    /// kept for the replay, as an invalidation, and what the queue did with it is returned.
    fn sent_or_kept(&self, sent: Option<()>, name: &str, kept: &'static str) -> Option<Queued> {
        sent.is_none().then(|| {
            tracing::warn!(cache = self.counters.name(), name, "{kept}");
            self.pending.push(name)
        })
    }

    /// One invalidation: on one Redis in one script (`scripts/invalidate.lua`); on a cluster
    /// the name's invalidation marker is set first (a load's write checks it after it is
    /// made), then the tag's set is taken, then its members deleted one by one (those not
    /// deleted are queued by key, since the set no longer names them), then the entry, then
    /// the broadcast.
    pub(super) async fn send_invalidation(&self, c: &mut Link, name: &str) -> RedisResult<()> {
        if let Link::Single(_) = c {
            return self.send_invalidations(c, &[name]).await;
        }
        let value_key = self.keys.value_key(name);
        let tag_key = self.keys.tag_key(name);
        mark(c, &self.keys.marker_key(name)).await?;
        let tagged: Vec<String> = eval(TAG_TAKE, &[&tag_key]).query_async(c).await?;
        self.delete_or_queue(c, &tagged).await?;
        let mut del = redis::cmd("DEL");
        del.arg(&value_key);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.keys.channel()).arg(name);
        c.exec(vec![del, publish]).await
    }

    /// On one Redis, the invalidations of `names` in one script (`scripts/invalidate.lua`),
    /// published in one message (see `keys::invalidated_message`).
    async fn send_invalidations<S: AsRef<str>>(
        &self,
        c: &mut Link,
        names: &[S],
    ) -> RedisResult<()> {
        let mut keys = vec![self.keys.history_key()];
        for name in names {
            keys.push(self.keys.value_key(name.as_ref()));
            keys.push(self.keys.tag_key(name.as_ref()));
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut invalidate = eval(INVALIDATE, &keys);
        invalidate
            .arg(self.keys.channel())
            .arg(invalidated_message(names));
        invalidate.arg(MAX_INVALIDATED_NAMES);
        for name in names {
            invalidate.arg(&*bounded(name.as_ref()));
        }
        invalidate.query_async(c).await
    }

    /// One soft purge: on one Redis in one script (which also records it in the invalidation
    /// history); on a cluster (where a script may touch only its own key) the name's soft
    /// purge marker is set first (a load's write checks it after it is made), then the tag's
    /// members are read, then they and the entry are each softened by a script of its own
    /// key, then the broadcast.
    async fn send_soft_invalidation(&self, c: &mut Link, name: &str) -> RedisResult<()> {
        let value_key = self.keys.value_key(name);
        let tag_key = self.keys.tag_key(name);
        let mut payload = SOFT.to_vec();
        payload.extend_from_slice(&self.instance.to_be_bytes());
        payload.extend_from_slice(name.as_bytes());
        if let Link::Single(_) = c {
            let mut script = soften(&[&value_key, &tag_key, &self.keys.history_key()]);
            script.arg(self.keys.channel()).arg(&payload);
            let member = [SOFTENED, bounded(name).as_bytes()].concat();
            script.arg(MAX_INVALIDATED_NAMES).arg(member);
            return script.query_async(c).await;
        }
        mark(c, &self.keys.soft_marker_key(name)).await?;
        let tagged: Vec<String> = redis::cmd("SMEMBERS").arg(&tag_key).query_async(c).await?;
        let softened = tagged.iter().chain(std::iter::once(&value_key));
        c.each::<()>(softened.map(|key| soften(&[key]))).await?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.keys.channel()).arg(&payload);
        publish.query_async(c).await
    }
}
