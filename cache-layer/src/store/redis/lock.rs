//! The distributed load lock (`lock = "..."`, `shared_lock`): one loader per key across
//! instances. Taken with `SET NX PX` and a random token, released only by its holder, whose
//! release wakes the instances waiting for the load (`scripts/unlock.lua`).

use std::time::Duration;

use super::keys::{bounded, LOAD_ENDED};
use super::read::exists;
use super::scripts::UNLOCK;
use super::{px, RedisStore};

impl RedisStore {
    /// Tries to take the distributed lock for `key`: `Some(true)` taken, `Some(false)` held
    /// by another instance, `None` Redis unavailable.
    pub(crate) async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Option<bool> {
        let lock_key = self.keys.lock_key(key);
        let millis = px(ttl);
        self.run("LOCK", |mut c| async move {
            let reply: Option<String> = redis::cmd("SET")
                .arg(&lock_key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async(&mut c)
                .await?;
            Ok(reply.is_some())
        })
        .await
    }

    /// Whether the distributed lock for `key` is held (by anyone); `None` when Redis did not
    /// answer.
    pub(crate) async fn lock_held(&self, key: &str) -> Option<bool> {
        let lock_key = self.keys.lock_key(key);
        self.run(
            "EXISTS",
            |mut c| async move { exists(&mut c, &lock_key).await },
        )
        .await
    }

    /// Releases the distributed lock for `key` if it still holds `token`, and tells the
    /// instances waiting for the load (see `scripts/unlock.lua`).
    pub(crate) async fn unlock(&self, key: &str, token: &str) {
        let lock_key = self.keys.lock_key(key);
        let ended = [LOAD_ENDED, bounded(key).as_bytes()].concat();
        self.run("UNLOCK", |mut c| async move {
            redis::Script::new(UNLOCK)
                .key(&lock_key)
                .arg(token)
                .arg(self.keys.channel())
                .arg(ended)
                .invoke_async::<()>(&mut c)
                .await
        })
        .await;
    }
}
