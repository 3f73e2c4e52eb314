//! The names the store gives what it keeps in Redis, and the layout's bounds: value, tag, lock
//! and marker keys, the invalidation history and its members, the channel and the first bytes
//! of its messages. The contract they make is the [Redis layout](crate::docs::redis_layout).

use std::borrow::Cow;

/// The pub/sub payload that tells every instance to empty its memory tier (sent when
/// invalidations were lost to a full queue, see `store::pending`). Not UTF-8, so no name can
/// be it.
pub(crate) const EVERYTHING: &[u8] = b"\xff";

/// The first byte of the pub/sub payload sent when a load under the distributed lock ends (its
/// holder released the lock), followed by the key's bounded name (see [`bounded`]): not
/// UTF-8, so no name starts with it, and an instance that does not know it ignores it.
pub(crate) const LOAD_ENDED: &[u8] = b"\xfc";

/// The first byte of a soft purge's pub/sub payload, followed by the sending instance's id (8
/// bytes) and the name: not UTF-8, so no name (UTF-8) starts with it, and an instance that
/// does not know it ignores the message. The sender has marked its own copies already: hearing
/// its purge again would make a refresh begun in between store its value stale.
pub(crate) const SOFT: &[u8] = b"\xfe";

/// The first byte of a clear's pub/sub payload, followed by the sending instance's id (8
/// bytes) and the cleared key prefix (empty: everything): not UTF-8, so no name starts with
/// it, and an instance that does not know it ignores the message. The sender has cleared its
/// own memory already.
pub(crate) const CLEAR: &[u8] = b"\xfb";

/// The first byte of the pub/sub payload that carries several invalidated names at once (an
/// invalidation batch, see `coalesce`): each name follows, the names separated by
/// [`BATCH_SEPARATOR`]. Neither byte occurs in UTF-8, so no name starts with the first or
/// contains the second, and an instance that does not know the message ignores it. A batch of
/// one name is published as the bare name, as before batches existed.
pub(crate) const BATCH: &[u8] = b"\xfa";

/// What separates the names of a [`BATCH`] message.
pub(crate) const BATCH_SEPARATOR: u8 = 0xff;

/// The message that publishes the invalidation of `names`: the one name itself, or several as
/// a [`BATCH`].
pub(super) fn invalidated_message<S: AsRef<str>>(names: &[S]) -> Vec<u8> {
    if let [name] = names {
        return name.as_ref().as_bytes().to_vec();
    }
    let length: usize = names.iter().map(|name| name.as_ref().len() + 1).sum();
    let mut message = Vec::with_capacity(BATCH.len() + length);
    message.extend_from_slice(BATCH);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            message.push(BATCH_SEPARATOR);
        }
        message.extend_from_slice(name.as_ref().as_bytes());
    }
    message
}

/// The most prefixes the set of clears keeps (see `scripts/clear.lua`).
pub(super) const MAX_CLEARED_PREFIXES: usize = 64;

/// How many entries one `SCAN` of a clear asks Redis to look at (each batch is one round trip
/// and one `UNLINK`).
pub(super) const SCAN_BATCH: usize = 1000;

/// The invalidation history's member that scores its epoch (see `scripts/record.lua`).
pub(super) const EPOCH: &[u8] = b"\xff";

/// The first byte of a soft-purged name's member in the invalidation history: not UTF-8, so
/// no name (a hard invalidation's member) is one, and a reader that does not know it finds no
/// name in it. `scripts/write.lua` spells it `"\253"`.
pub(super) const SOFTENED: &[u8] = b"\xfd";

/// The most names the invalidation history keeps; a load that spans more distinct invalidated
/// names than that is not written to Redis.
pub(super) const MAX_INVALIDATED_NAMES: usize = 100_000;

/// The most value keys one tag's set holds, so that invalidating a tag deletes at most that
/// many entries in one step. A write that would add one more is not made (counted in
/// `Stats::tag_sets_full`; the value stays in memory where that tier holds it): no entry is
/// ever stored in Redis without being named by each of its tags' sets, and none is deleted to
/// make room, so the bound neither leaves an entry that invalidating a tag cannot reach nor
/// drops live entries. Room returns as members' entries end: on one Redis the write drops
/// members whose entry is gone (up to 32 of them when the set is full); on a cluster, where
/// that cannot be done safely (see `scripts/tag_add.lua`), the set expires with its
/// longest-lived entry.
pub(super) const MAX_TAG_MEMBERS: usize = 10_000;

/// Keys and tags longer than this are stored under a digest (see [`bounded`]).
const MAX_NAME: usize = 200;

/// `key` (or a cleared prefix) as the set of clears compares it: its first [`MAX_NAME`] bytes
/// at most, cut at a character boundary. A prefix cut so clears a few more keys than asked
/// in Redis (never fewer).
pub(crate) fn cleared_prefix(key: &str) -> &str {
    let mut cut = key.len().min(MAX_NAME);
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    &key[..cut]
}

/// The `SCAN MATCH` patterns that find every value key of a key starting with `prefix`: the
/// short keys' (`P` `v:` prefix `*`), and the long keys' (`P` `v#`, their first 60 bytes at
/// most: a long key's stored form begins with at least 61 of its bytes, see [`bounded`]),
/// which may find a few more long keys than asked.
pub(super) fn scan_patterns(value_prefix: &str, prefix: &str) -> [String; 2] {
    let mut long = prefix.len().min(60);
    while !prefix.is_char_boundary(long) {
        long -= 1;
    }
    let short = cleared_prefix(prefix);
    [
        format!("{value_prefix}:{}*", glob_escaped(short)),
        format!("{value_prefix}#{}*", glob_escaped(&prefix[..long])),
    ]
}

/// `text` with the glob's special characters escaped, matching itself only.
fn glob_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `name` itself, or when longer than [`MAX_NAME`] bytes, its first 64 bytes (for humans
/// reading `redis-cli`), `#`, and the hex SHA-256 of the whole name (for uniqueness).
pub(crate) fn bounded(name: &str) -> Cow<'_, str> {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    if name.len() <= MAX_NAME {
        return Cow::Borrowed(name);
    }
    let mut cut = 64;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut out = String::with_capacity(cut + 1 + 64);
    out.push_str(&name[..cut]);
    out.push('#');
    let _ = write!(out, "{digest:x}");
    Cow::Owned(out)
}

/// The Redis keys and channel of one store, under its key prefix `P`.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// An entry's value (`P` `v:` key).
    pub(super) fn value_key(&self, key: &str) -> String {
        self.name_key('v', key)
    }

    /// A tag's set of value keys (`P` `t:` tag).
    pub(super) fn tag_key(&self, tag: &str) -> String {
        self.name_key('t', tag)
    }

    /// A key's distributed load lock (`P` `l:` key).
    pub(super) fn lock_key(&self, key: &str) -> String {
        self.name_key('l', key)
    }

    /// A name's invalidation marker, on a cluster (`P` `i:` name, see `scripts/mark.lua`).
    pub(super) fn marker_key(&self, name: &str) -> String {
        self.name_key('i', name)
    }

    /// A name's soft purge marker, on a cluster (`P` `s:` name, see `scripts/mark.lua`).
    pub(super) fn soft_marker_key(&self, name: &str) -> String {
        self.name_key('s', name)
    }

    /// `P` `kind` `:` name, or for a name longer than [`MAX_NAME`], `P` `kind` `#` and its
    /// digest form: no short name can reach a long one's key.
    fn name_key(&self, kind: char, name: &str) -> String {
        let marker = if name.len() > MAX_NAME { '#' } else { ':' };
        format!("{}{kind}{marker}{}", self.prefix, bounded(name))
    }

    /// The invalidation history, on one Redis (see `scripts/record.lua`).
    pub(super) fn history_key(&self) -> String {
        format!("{}invalidated", self.prefix)
    }

    /// The set of clears, on one Redis (see `scripts/clear.lua`).
    pub(super) fn cleared_key(&self) -> String {
        format!("{}cleared", self.prefix)
    }

    /// The set of clears, on a cluster (`P` `cleared-at`, see `scripts/cluster_clear.lua`).
    pub(super) fn cluster_cleared_key(&self) -> String {
        format!("{}cleared-at", self.prefix)
    }

    /// What every value key starts with: `P` `v`.
    pub(super) fn value_prefix(&self) -> String {
        format!("{}v", self.prefix)
    }

    /// The pub/sub channel every instance listens on for invalidations.
    pub(super) fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::{RedisConfig, RedisSource, RedisStore};
    use super::*;
    use crate::engine::counters::Counters;

    #[test]
    fn long_names_are_bounded_and_stay_distinct() {
        assert_eq!(bounded("user:7"), "user:7");
        let a = format!("search:{}", "x".repeat(300));
        let b = format!("search:{}y", "x".repeat(299));
        assert_eq!(bounded(&a).len(), 64 + 1 + 64);
        assert_ne!(bounded(&a), bounded(&b));
        assert!(bounded(&a).starts_with("search:xxx"));
        let multibyte = "é".repeat(150);
        assert!(bounded(&multibyte).len() <= 129);
    }

    #[test]
    fn scan_patterns_find_short_and_long_keys_and_nothing_else() {
        let [short, long] = scan_patterns("p:v", "user:*[1]");
        assert_eq!(short, "p:v:user:\\*\\[1\\]*");
        assert_eq!(long, "p:v#user:\\*\\[1\\]*");
        let prefix = "é".repeat(40);
        let [short, long] = scan_patterns("p:v", &prefix);
        assert_eq!(short, format!("p:v:{prefix}*"));
        assert_eq!(long, format!("p:v#{}*", "é".repeat(30)));
        let key = format!("{prefix}{}", "x".repeat(300));
        assert!(bounded(&key).starts_with(&"é".repeat(30)));
        assert_eq!(cleared_prefix(&"é".repeat(150)).len(), 200);
    }

    #[test]
    fn no_short_name_reaches_the_hashed_form_of_a_long_one() {
        let config = RedisConfig {
            source: RedisSource::urls(vec!["redis://127.0.0.1:1/".into()], false),
            prefix: "p:".into(),
            connect_timeout: Duration::from_millis(1),
            op_timeout: Duration::from_millis(1),
            root_certificate: None,
            compress_above: None,
        };
        let store = RedisStore::new(&config, Arc::new(Counters::new("t"))).unwrap();
        let keys = &store.keys;
        let long = "x".repeat(300);
        let hashed = bounded(&long).into_owned();
        assert_ne!(keys.value_key(&long), keys.value_key(&hashed));
        assert_ne!(keys.tag_key(&long), keys.tag_key(&hashed));
        assert_ne!(keys.lock_key(&long), keys.lock_key(&hashed));
        assert_eq!(keys.value_key("user:7"), "p:v:user:7");
    }
}
