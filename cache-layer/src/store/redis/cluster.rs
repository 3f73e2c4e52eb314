//! The write on a Redis Cluster, where one script cannot reach keys in other slots: each tag's
//! set is updated by a script of its own key, then the value written, and a load's write is
//! checked after it is made, against the invalidation and soft purge markers that
//! invalidations set first (`scripts/mark.lua`) and the clears recorded first
//! (`scripts/cluster_clear.lua`).

use std::time::{Duration, Instant};

use redis::{Cmd, RedisResult};

use super::connection::Link;
use super::keys::{cleared_prefix, Keys, MAX_TAG_MEMBERS};
use super::replay::Undeleted;
use super::scripts::{eval, soften, CLEARED_AGE, MARK, MARK_AGE, TAG_ADD};
use super::{RedisStore, Written};

/// How long an invalidation marker (and a clear's record) lives on a cluster (see
/// `scripts/mark.lua`, `scripts/cluster_clear.lua`): the longest a load may take, from its
/// start to its write's check, and still be written to Redis.
pub(super) const MARKED_FOR: Duration = Duration::from_secs(10 * 60);

/// What a name's marker set since a load began asks of its write (see
/// [`RedisStore::set_on_cluster`]); ordered by strength: the strongest marker found wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Marked {
    /// Nothing: the write stays as it is.
    Not,
    /// A soft purge: the written value is made stale (see `scripts/soften.lua`).
    Softened,
    /// An invalidation (or the check cannot tell): the written value is deleted.
    Invalidated,
}

/// Sets `marker` (see `scripts/mark.lua`), for [`MARKED_FOR`].
pub(super) async fn mark(c: &mut Link, marker: &str) -> RedisResult<()> {
    let mut mark = eval(MARK, &[marker]);
    mark.arg(MARKED_FOR.as_millis().to_string());
    mark.query_async(c).await
}

/// What a load's write of `key`, tagged `tags`, is checked against, each a script that
/// returns how long ago it was set (see `scripts/mark_age.lua`), with what the write must do
/// when it was set since the load began: each name's two markers, and the newest clear
/// covering `key` (`scripts/cleared_age.lua`).
pub(super) fn markers_of(keys: &Keys, key: &str, tags: &[Box<str>]) -> Vec<(Cmd, Marked)> {
    let tags = tags.iter().map(|t| &**t).filter(|t| *t != key);
    let names = std::iter::once(key).chain(tags);
    let age = |marker: String| eval(MARK_AGE, &[&marker]);
    let mut cleared = eval(CLEARED_AGE, &[&keys.cluster_cleared_key()]);
    cleared.arg(cleared_prefix(key));
    names
        .flat_map(|name| {
            [
                (age(keys.marker_key(name)), Marked::Invalidated),
                (age(keys.soft_marker_key(name)), Marked::Softened),
            ]
        })
        .chain(std::iter::once((cleared, Marked::Invalidated)))
        .collect()
}

/// How much more recent than the load's start a marker counts as "set since the load began":
/// 100 ms plus 0.1% of the load's duration, for the node's wall clock (which `TIME` reads)
/// stepping or running faster than this process's monotonic clock.
fn clock_tolerance(elapsed: Duration) -> Duration {
    Duration::from_millis(100).saturating_add(elapsed / 1000)
}

/// Whether a load that began at `began` has run so long that an invalidation marker set since
/// may have expired (see [`MARKED_FOR`]): its write cannot be checked, and is not kept.
fn too_long(began: &Instant) -> bool {
    let elapsed = began.elapsed();
    elapsed.saturating_add(clock_tolerance(elapsed)) >= MARKED_FOR
}

impl RedisStore {
    /// [`RedisStore::set`] on a cluster: each tag's set updated by a script of its own key,
    /// then the value written, unless a tag's set is full (then the key's older value is
    /// deleted, as on one Redis). For a load (`check`: when it began, and the invalidation and
    /// soft purge markers of its key and tags, the clears covering its key), the value is then
    /// deleted again if an invalidation marker was set (or a clear covering it recorded) since
    /// the load began (see [`marked_since`]), or
    /// made stale if only a soft purge marker was.
    ///
    /// Why that suffices: an invalidation (a soft purge) on a cluster sets its name's marker
    /// before it deletes (softens) the value or takes (reads) the tag's set (see
    /// `invalidate`), and this write reads the markers after its `SET` (and tag memberships)
    /// succeeded. Each marker lives on one node, so its update and this read are ordered: if
    /// the update comes first, the read sees it and the value is deleted (softened) here;
    /// otherwise the invalidation's delete (the soft purge's softening) of the value, or its
    /// taking (reading) of the tag's set, which then names this value, follows this write, and
    /// removes (softens) it.
    pub(super) async fn set_on_cluster(
        &self,
        c: &mut Link,
        (value_key, bytes, millis): (&str, Vec<u8>, u64),
        tag_keys: &[String],
        check: Option<(Instant, Vec<(Cmd, Marked)>)>,
    ) -> RedisResult<Written> {
        if check.as_ref().is_some_and(|(began, _)| too_long(began)) {
            return Ok(Written::Refused);
        }
        for tag_key in tag_keys {
            let mut add = eval(TAG_ADD, &[tag_key.as_str()]);
            add.arg(value_key).arg(millis).arg(MAX_TAG_MEMBERS);
            if add.query_async::<i64>(c).await? == 0 {
                self.delete_or_queue(c, &[value_key.to_owned()]).await?;
                return Ok(Written::TagSetFull);
            }
        }
        let mut set = redis::cmd("SET");
        set.arg(value_key).arg(bytes).arg("PX").arg(millis);
        let Some((began, markers)) = check else {
            return set.query_async::<()>(c).await.map(|()| Written::Kept);
        };
        // From before the SET is sent until the check has cleared it, the value may be stale:
        // an error or the time budget ending in between queues its delete for the replay.
        let written = [value_key.to_owned()];
        let mut undo = Undeleted {
            pending: &self.pending,
            keys: &written,
        };
        set.query_async::<()>(c).await?;
        let marked = marked_since(c, began, &markers).await?;
        match marked {
            Marked::Invalidated => redis::cmd("DEL").arg(value_key).query_async(c).await?,
            Marked::Softened => soften(&[value_key]).query_async(c).await?,
            Marked::Not => (),
        }
        undo.keys = &[];
        Ok(match marked {
            Marked::Invalidated => Written::Refused,
            Marked::Softened | Marked::Not => Written::Kept,
        })
    }
}

/// The strongest of the `markers` (see `scripts/mark.lua`) set since `began`: [`Marked::Not`]
/// when none was, [`Marked::Invalidated`] when it cannot tell (the load took so long that a
/// marker set since may have expired already). Each marker's age is measured on the node that
/// holds it; the load's duration on this process's monotonic clock, up to after the replies: a
/// marker set after the load began is younger than that duration (plus [`clock_tolerance`]).
async fn marked_since(
    c: &mut Link,
    began: Instant,
    markers: &[(Cmd, Marked)],
) -> RedisResult<Marked> {
    let ages = markers.iter().map(|(age, _)| age.clone());
    let ages = c.each::<Option<i64>>(ages).await?;
    if too_long(&began) {
        return Ok(Marked::Invalidated);
    }
    let elapsed = began.elapsed();
    let bound = elapsed.saturating_add(clock_tolerance(elapsed));
    let bound = i64::try_from(bound.as_micros()).unwrap_or(i64::MAX);
    let young = ages.into_iter().zip(markers);
    let young = young.filter(|(age, _)| age.is_some_and(|age| age <= bound));
    Ok(young
        .map(|(_, (_, marked))| *marked)
        .max()
        .unwrap_or(Marked::Not))
}
