//! The Lua scripts the store runs, each a file in `scripts/` whose header says what it does
//! and what its `KEYS` and `ARGV` hold. A function two scripts share (`soften.lua`,
//! `record.lua`) is a file of its own, put before each script that calls it.

use redis::Cmd;

use crate::store::codec::{now_millis, FORMATS_WITH_DEADLINES};

/// A soft purge, on one Redis or on one key of a cluster (`soft_invalidate.lua`); run by
/// [`soften`].
const SOFT_INVALIDATE: &str = concat!(
    include_str!("scripts/soften.lua"),
    include_str!("scripts/record.lua"),
    include_str!("scripts/soft_invalidate.lua"),
);

/// Releases the distributed lock if it is still ours, and wakes the load's waiters
/// (`unlock.lua`).
pub(super) const UNLOCK: &str = include_str!("scripts/unlock.lua");

/// On a cluster: adds a value key to a tag's set unless the set is full (`tag_add.lua`).
pub(super) const TAG_ADD: &str = include_str!("scripts/tag_add.lua");

/// On a cluster: empties a tag's set and returns its members (`tag_take.lua`).
pub(super) const TAG_TAKE: &str = include_str!("scripts/tag_take.lua");

/// On one Redis, a whole invalidation, recorded in the invalidation history
/// (`invalidate.lua`, `record.lua`).
pub(super) const INVALIDATE: &str = concat!(
    include_str!("scripts/record.lua"),
    include_str!("scripts/invalidate.lua"),
);

/// On one Redis, a whole write, checked against the invalidation history (`write.lua`).
pub(super) const WRITE: &str = concat!(
    include_str!("scripts/soften.lua"),
    include_str!("scripts/write.lua"),
);

/// On one Redis, a clear's record, before its entries are deleted (`clear.lua`, `record.lua`).
pub(super) const CLEAR: &str = concat!(
    include_str!("scripts/record.lua"),
    include_str!("scripts/clear.lua"),
);

/// On a cluster: sets a name's invalidation or soft purge marker to the node's time
/// (`mark.lua`).
pub(super) const MARK: &str = include_str!("scripts/mark.lua");

/// On a cluster: how long ago a marker was set, on the node's clock (`mark_age.lua`).
pub(super) const MARK_AGE: &str = include_str!("scripts/mark_age.lua");

/// `EVAL script` on `keys`; the caller adds the script's `ARGV`.
pub(super) fn eval(script: &str, keys: &[&str]) -> Cmd {
    let mut eval = redis::cmd("EVAL");
    eval.arg(script).arg(keys.len()).arg(keys);
    eval
}

/// [`SOFT_INVALIDATE`] on `keys`, now, for the formats whose header holds a fresh-until time;
/// the caller adds the rest of its arguments.
pub(super) fn soften(keys: &[&str]) -> Cmd {
    let mut soften = eval(SOFT_INVALIDATE, keys);
    soften.arg(now_millis()).arg(FORMATS_WITH_DEADLINES);
    soften
}
