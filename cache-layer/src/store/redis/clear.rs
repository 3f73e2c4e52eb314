//! Clears: every entry whose key starts with a prefix (every entry, for an empty one) removed
//! from Redis, and every instance told to clear its memory.
//!
//! In three steps, each under its own time budget:
//!
//! 1. recorded (`scripts/clear.lua`): the history's epoch moves on and the prefix is kept in
//!    the set of clears, so that a write of a load that began before (by any instance) is
//!    refused (`scripts/write.lua`);
//! 2. the entries deleted: `SCAN MATCH` over the value keys in batches of [`SCAN_BATCH`], each
//!    batch's keys `UNLINK`ed (freed off Redis's main thread); `SCAN` returns every key that
//!    exists for the whole scan, so no entry written before step 1 survives it;
//! 3. published: every other instance clears its memory (and records the clear, so that its
//!    loads in flight are not kept in memory either).
//!
//! Why deleting rather than a generation that entries are checked against: a generation makes
//! a clear O(1) but costs every read of Redis a check, changes the key layout, and leaves the
//! cleared entries' memory in Redis until their TTL. Clears are rare, operators' actions; reads
//! are the hot path. The cost: a clear reads Redis's whole keyspace, `keys / SCAN_BATCH` round
//! trips (about 1,000 for a million keys, of every prefix), whatever it deletes.
//!
//! A clear that does not complete (Redis down, an error, a batch out of time) is queued and
//! replayed whole, like an invalidation. On a Redis Cluster, whose keys span nodes, step 2
//! runs on each primary node in turn.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::RedisResult;

use super::connection::Link;
use super::keys::{
    cleared_prefix, scan_patterns, CLEAR, MAX_CLEARED_PREFIXES, MAX_INVALIDATED_NAMES, SCAN_BATCH,
};
use super::scripts::{eval, CLEAR as CLEAR_SCRIPT};
use super::RedisStore;

impl RedisStore {
    /// Clears every entry whose key starts with `prefix` (every entry, for `""`) from Redis,
    /// and tells every instance. What does not reach Redis is kept for a replay (a clear is
    /// never forgotten: see `store::queued`).
    pub(crate) async fn clear(&self, prefix: &str) {
        let recorded = self
            .run("CLEAR", |mut c| async move {
                self.record_clear(&mut c, prefix).await
            })
            .await;
        let mut done = recorded.is_some();
        for pattern in scan_patterns(&self.keys.value_prefix(), prefix) {
            done = done && self.unlink_matching(&pattern).await.is_some();
        }
        done = done
            && self
                .run("PUBLISH", |mut c| async move {
                    self.publish_clear(&mut c, prefix).await
                })
                .await
                .is_some();
        if done {
            return;
        }
        tracing::warn!(
            cache = self.counters.name(),
            prefix,
            "clear kept until Redis answers again"
        );
        self.pending.push_prefix(prefix);
    }

    /// The whole clear at once, for the replay, in the replay's time budget.
    pub(super) async fn send_clear(&self, c: &mut Link, prefix: &str) -> RedisResult<()> {
        self.record_clear(c, prefix).await?;
        let nodes = primaries(c).await?;
        for pattern in scan_patterns(&self.keys.value_prefix(), prefix) {
            for node in &nodes {
                let mut cursor = 0;
                loop {
                    cursor = scan_and_unlink(c, node.as_ref(), &pattern, cursor).await?;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        self.publish_clear(c, prefix).await
    }

    /// Step 1: the clear recorded, so that loads that began before are not written. On a
    /// cluster, where one script cannot reach the history, nothing (see the module docs).
    async fn record_clear(&self, c: &mut Link, prefix: &str) -> RedisResult<()> {
        if let Link::Cluster(_) = c {
            return Ok(());
        }
        let keys = [self.keys.history_key(), self.keys.cleared_key()];
        let mut record = eval(CLEAR_SCRIPT, &[&keys[0], &keys[1]]);
        record
            .arg(cleared_prefix(prefix))
            .arg(MAX_INVALIDATED_NAMES);
        record.arg(MAX_CLEARED_PREFIXES);
        record.query_async(c).await
    }

    /// Step 2 for one pattern: on each primary node (one Redis: the one), each batch a round
    /// trip of its own, under its own time budget; `None` when one did not complete.
    async fn unlink_matching(&self, pattern: &str) -> Option<()> {
        let nodes = self
            .run(
                "CLUSTER NODES",
                |mut c| async move { primaries(&mut c).await },
            )
            .await?;
        for node in &nodes {
            let mut cursor = 0;
            loop {
                cursor = self
                    .run("SCAN", |mut c| async move {
                        scan_and_unlink(&mut c, node.as_ref(), pattern, cursor).await
                    })
                    .await?;
                if cursor == 0 {
                    break;
                }
            }
        }
        Some(())
    }

    /// Step 3: the broadcast.
    async fn publish_clear(&self, c: &mut Link, prefix: &str) -> RedisResult<()> {
        let mut payload = CLEAR.to_vec();
        payload.extend_from_slice(&self.instance.to_be_bytes());
        payload.extend_from_slice(prefix.as_bytes());
        redis::cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(payload)
            .query_async(c)
            .await
    }
}

/// The nodes a clear scans: on one Redis, `[None]` (the one); on a cluster, each primary's
/// address (`CLUSTER NODES`, those flagged `master` and not `fail`).
async fn primaries(c: &mut Link) -> RedisResult<Vec<Option<(String, u16)>>> {
    if let Link::Single(_) = c {
        return Ok(vec![None]);
    }
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(c).await?;
    Ok(nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let primary = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f.starts_with("fail"));
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            Some(Some((host.to_owned(), port.parse().ok()?))).filter(|_| primary)
        })
        .collect())
}

/// One `SCAN` batch from `cursor` of the keys matching `pattern` (on a cluster, on the node at
/// `node`), and an `UNLINK` of those found; the next cursor (0 when the scan is over).
async fn scan_and_unlink(
    c: &mut Link,
    node: Option<&(String, u16)>,
    pattern: &str,
    cursor: u64,
) -> RedisResult<u64> {
    let mut scan = redis::cmd("SCAN");
    scan.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_BATCH);
    let (next, keys): (u64, Vec<String>) = match (&mut *c, node) {
        (Link::Cluster(cluster), Some((host, port))) => {
            let (host, port) = (host.clone(), *port);
            let to = SingleNodeRoutingInfo::ByAddress { host, port };
            let found = cluster
                .route_command(scan, RoutingInfo::SingleNode(to))
                .await?;
            redis::from_redis_value(found)?
        }
        (c, _) => scan.query_async(c).await?,
    };
    if !keys.is_empty() {
        if let Link::Single(_) = &c {
            redis::cmd("UNLINK").arg(&keys).query_async::<()>(c).await?;
        } else {
            c.each::<()>(keys.iter().map(|key| redis::cmd("UNLINK").arg(key).clone()))
                .await?;
        }
    }
    Ok(next)
}
