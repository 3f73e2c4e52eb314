//! The shared store: Redis, through the `redis` crate's `ConnectionManager` (reconnects by
//! itself), with TCP_NODELAY, tight timeouts and a circuit breaker. Every operation fails
//! open: an error or a timeout is counted and logged, and the caller proceeds as on a miss.
//!
//! The key layout is documented, as a stable contract, in the crate docs ("Redis layout").

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use tokio::sync::OnceCell;

use super::breaker::Breaker;
use super::codec::MAX_ENCODED;
use super::pending::{Part, Pending, Queued};
use crate::error::BuildError;
use crate::stats::{Counter, Counters};

/// How a [`RedisStore`] connects and how long it waits.
#[derive(Clone, Debug)]
pub(crate) struct RedisConfig {
    /// One URL, or a cluster's seed nodes.
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
    /// A PEM CA certificate to trust for `rediss://` instead of the system's roots.
    pub(crate) root_certificate: Option<Vec<u8>>,
}

/// A connection to one Redis or to a cluster; both reconnect by themselves.
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

impl Link {
    /// Runs `commands`: pipelined on one Redis; one by one on a cluster, where a pipeline's
    /// keys would span slots.
    async fn exec(&mut self, commands: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Link::Single(_) => {
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command).ignore();
                }
                pipe.query_async::<()>(self).await
            }
            Link::Cluster(_) => {
                for command in commands {
                    command.query_async::<()>(self).await?;
                }
                Ok(())
            }
        }
    }
}

pub(crate) struct RedisStore {
    /// Per node (one unless a cluster): for the pub/sub subscriber.
    clients: Vec<Client>,
    cluster: Option<ClusterClient>,
    link: OnceCell<Link>,
    prefix: String,
    connect_timeout: Duration,
    op_timeout: Duration,
    breaker: Breaker,
    /// Invalidations that did not reach Redis, replayed before anything else is sent.
    pending: Pending,
    /// How many times the breaker opened, and up to which opening the memory tier has been
    /// emptied since (see [`RedisStore::suspect`]).
    opened: AtomicU64,
    recovered: AtomicU64,
    /// Run each time the breaker opens (see [`RedisStore::when_breaker_opens`]).
    on_open: Option<BreakerOpened>,
    /// Whether the last operation was answered: a load does not wait a second time budget
    /// for [`RedisStore::shared_since`] right after its read went unanswered.
    answering: AtomicBool,
    /// Random, per store: names this instance in its soft purges' messages, so that it does
    /// not apply its own again (see [`SOFT`]).
    instance: u64,
    counters: Arc<Counters>,
}

/// What a [`RedisStore`] runs when its breaker opens.
pub(crate) type BreakerOpened = Box<dyn Fn() + Send + Sync>;

/// The pub/sub payload that tells every instance to empty its memory tier (sent when
/// invalidations were lost to a full [`Pending`] queue). Not UTF-8, so no name can be it.
pub(crate) const EVERYTHING: &[u8] = b"\xff";

/// The first byte of the pub/sub payload sent when a load under the distributed lock ends (its
/// holder released the lock), followed by the key's bounded name (see [`bounded`]): not
/// UTF-8, so no name starts with it, and an instance that does not know it ignores it.
pub(crate) const LOAD_ENDED: &[u8] = b"\xfc";

/// The invalidation history's member that scores its epoch (see [`INVALIDATE`]).
const EPOCH: &[u8] = b"\xff";

/// The first byte of a soft purge's pub/sub payload, followed by the sending instance's id (8
/// bytes) and the name: not UTF-8, so no name (UTF-8) starts with it, and an instance that
/// does not know it ignores the message. The sender has marked its own copies already: hearing
/// its purge again would make a refresh begun in between store its value stale.
pub(crate) const SOFT: &[u8] = b"\xfe";

/// Lua: `soften(key, now, formats)` lowers the wall-clock fresh-until time (8 bytes,
/// big-endian, at byte 9 of the header, see `codec`) of the entry `key` to `now` (ms), where it
/// is later; a value shorter than the header, or whose format byte is not one of `formats`, is
/// left alone. The TTL stays (`SETRANGE`). Shared by [`SOFT_INVALIDATE`] and [`WRITE`].
macro_rules! soften_lua {
    () => {
        r#"
local function soften(key, now, formats)
  local head = redis.pcall("GETRANGE", key, 0, 34)
  if type(head) ~= "string" or #head < 35 then return end
  if not string.find(formats, string.sub(head, 1, 1), 1, true) then return end
  local fresh = 0
  for i = 10, 17 do fresh = fresh * 256 + string.byte(head, i) end
  if fresh <= now then return end
  local bytes, rest = {}, now
  for i = 8, 1, -1 do
    bytes[i] = rest % 256
    rest = math.floor(rest / 256)
  end
  redis.call("SETRANGE", key, 9, string.char(unpack(bytes)))
end
"#
    };
}

/// Lua: `record(history, member, most)` moves the invalidation history's epoch on and scores
/// `member` with it (see [`INVALIDATE`], which describes the history); past `most` names, the
/// oldest are dropped and the floor raised to them. Shared by [`INVALIDATE`] and
/// [`SOFT_INVALIDATE`].
macro_rules! record_lua {
    () => {
        r#"
local function record(history, member, most)
  if not redis.call("ZSCORE", history, "\255") then
    local now = redis.call("TIME")
    local start = tonumber(now[1]) * 1000000 + tonumber(now[2])
    redis.call("DEL", history)
    redis.call("ZADD", history, start, "\254", start, "\255")
  end
  local epoch = redis.call("ZINCRBY", history, 1, "\255")
  redis.call("ZADD", history, epoch, member)
  local over = redis.call("ZCARD", history) - 2 - tonumber(most)
  if over > 0 then
    local last = redis.call("ZRANGE", history, over, over, "WITHSCORES")
    redis.call("ZREMRANGEBYRANK", history, 1, over)
    redis.call("ZADD", history, last[2], "\254")
  end
end
"#
    };
}

/// The first byte of a soft-purged name's member in the invalidation history (see
/// [`SOFT_INVALIDATE`]): not UTF-8, so no name (a hard invalidation's member) is one, and a
/// reader that does not know it finds no name in it. [`WRITE`] spells it `"\253"`.
const SOFTENED: &[u8] = b"\xfd";

/// A soft purge: softens (see [`soften_lua`]) the entry `KEYS[1]` and every member of the
/// tag's set `KEYS[2]` (if given) to `ARGV[1]` (now, in ms), for the formats `ARGV[2]`. On one
/// Redis (`KEYS[3]` given) it also records the name, as [`SOFTENED`] and its bounded form
/// (`ARGV[6]`), in the invalidation history `KEYS[3]` (at most `ARGV[5]` names): a load that
/// began before is then written stale (see [`WRITE`]), while a refresh that begins after is
/// written as usual: a soft purge never refuses a write. Then publishes `ARGV[4]` on
/// `ARGV[3]`, if given.
const SOFT_INVALIDATE: &str = concat!(
    soften_lua!(),
    record_lua!(),
    r#"
local now = tonumber(ARGV[1])
soften(KEYS[1], now, ARGV[2])
if #KEYS > 1 then
  for _, member in ipairs(redis.call("SMEMBERS", KEYS[2])) do soften(member, now, ARGV[2]) end
end
if #KEYS > 2 then record(KEYS[3], ARGV[6], ARGV[5]) end
if ARGV[3] then redis.call("PUBLISH", ARGV[3], ARGV[4]) end
return 0
"#
);

/// [`SOFT_INVALIDATE`] on `keys`, now, for the formats whose header holds a fresh-until time;
/// the caller adds the rest of its arguments.
fn soften(keys: &[&str]) -> Cmd {
    let mut soften = redis::cmd("EVAL");
    soften.arg(SOFT_INVALIDATE).arg(keys.len()).arg(keys);
    soften.arg(super::codec::now_millis());
    soften.arg(super::codec::FORMATS_WITH_DEADLINES);
    soften
}

/// Releases the lock only if it still holds our token (a lock that expired and was taken by
/// another instance is not ours to delete), and then publishes `ARGV[3]` ([`LOAD_ENDED`] and
/// the key's name) on `ARGV[2]`, so that the instances waiting for the load read its value.
const UNLOCK: &str = r#"
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("DEL", KEYS[1])
redis.call("PUBLISH", ARGV[2], ARGV[3])
return 1
"#;

/// On a cluster (where a script may touch only its own key): adds a value key (`ARGV[1]`) to
/// a tag's set (`KEYS[1]`) in one step, and returns 1: the set then lives at least as long as
/// the entry (`ARGV[2]` ms; no `PEXPIRE NX/GT`, which needs Redis 7). A set that names
/// `ARGV[3]` members already, not this one, is left alone, and 0 returned: the caller does not
/// write the value (see [`MAX_TAG_MEMBERS`]). Members whose entry is gone are not pruned
/// here: on a cluster a member is added before its value is written, by another script, so
/// a member without a value may be about to get one.
const TAG_ADD: &str = r#"
if redis.call("SISMEMBER", KEYS[1], ARGV[1]) == 0 and redis.call("SCARD", KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call("SADD", KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call("PTTL", KEYS[1]) < ttl then redis.call("PEXPIRE", KEYS[1], ttl) end
return 1
"#;

/// On a cluster: empties a tag's set and returns its members in one step, so that a member
/// added concurrently is either returned (and its entry deleted) or stays in the set.
const TAG_TAKE: &str = r#"
local members = redis.call("SMEMBERS", KEYS[1])
redis.call("DEL", KEYS[1])
return members
"#;

/// On one Redis, a whole invalidation in one step: deletes every member of the tag's set
/// (`KEYS[2]`), then the entry (`KEYS[1]`) and the set, records the name (its bounded form,
/// `ARGV[4]`) in the invalidation history (`KEYS[3]`), then publishes the name (`ARGV[2]`) on
/// `ARGV[1]`. If it stops half-way (an error), the set still names every member for the
/// replay.
///
/// The history is a sorted set: member `0xFF` scores the epoch, one counter moved on by every
/// invalidation; each recently invalidated name scores the epoch of its last invalidation;
/// member `0xFE` scores the floor, at and above which the history is complete (past `ARGV[3]`
/// names, the oldest are dropped and the floor raised to them). A missing history starts at
/// the server's time in microseconds, so that its epochs are above any an earlier (flushed,
/// evicted) history gave out. Neither marker is UTF-8, so no name is one.
const INVALIDATE: &str = concat!(
    record_lua!(),
    r#"
for _, member in ipairs(redis.call("SMEMBERS", KEYS[2])) do redis.call("DEL", member) end
redis.call("DEL", KEYS[1], KEYS[2])
record(KEYS[3], ARGV[4], ARGV[3])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 0
"#
);

/// On one Redis, a whole write in one step. First, for a load that began at epoch `ARGV[4]`
/// (empty: not checked), it is refused (returns 1) when the key or a tag (`ARGV[7..]`) was
/// invalidated since, or when the history (`KEYS[2]`, see [`INVALIDATE`]) cannot tell: it no
/// longer reaches back that far, or began after the load. Then, when a tag's set (`KEYS[3..]`)
/// names `ARGV[3]` members but not this one, even after dropping up to 32 members whose entry
/// is gone, it is not made (returns 2), and the key's older value, which it replaces, is
/// deleted (see [`MAX_TAG_MEMBERS`]). Otherwise it adds the value key (`KEYS[1]`) to each
/// tag's set as [`TAG_ADD`] does, also dropping up to three members whose entry is gone, and
/// only then writes the value (`ARGV[1]`, for `ARGV[2]` ms), so that a failure never leaves a
/// value its tags do not name. When the key or a tag was soft-purged (and not invalidated)
/// since the load began, the value is written stale: its fresh-until time lowered to
/// `ARGV[5]` (now, in ms; formats `ARGV[6]`, see [`soften_lua`]).
const WRITE: &str = concat!(
    soften_lua!(),
    r#"
local function prune(set, own, most)
  for _, member in ipairs(redis.call("SRANDMEMBER", set, most)) do
    if member ~= own and redis.call("EXISTS", member) == 0 then redis.call("SREM", set, member) end
  end
end
local function full(set, own, most)
  return redis.call("SISMEMBER", set, own) == 0 and redis.call("SCARD", set) >= most
end"#,
    r#"
local softened = false
if ARGV[4] ~= "" then
  local since = tonumber(ARGV[4])
  local epoch = redis.call("ZSCORE", KEYS[2], "\255")
  if epoch then
    local floor = redis.call("ZSCORE", KEYS[2], "\254")
    if not floor or since < tonumber(floor) or since > tonumber(epoch) then return 1 end
    for i = 7, #ARGV do
      local at = redis.call("ZSCORE", KEYS[2], ARGV[i])
      if at and tonumber(at) > since then return 1 end
      local soft = redis.call("ZSCORE", KEYS[2], "\253" .. ARGV[i])
      if soft and tonumber(soft) > since then softened = true end
    end
  elseif since ~= 0 then
    return 1
  end
end
local ttl = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
for i = 3, #KEYS do
  if full(KEYS[i], KEYS[1], most) then
    prune(KEYS[i], KEYS[1], 32)
    if full(KEYS[i], KEYS[1], most) then
      redis.call("DEL", KEYS[1])
      return 2
    end
  end
end
for i = 3, #KEYS do
  redis.call("SADD", KEYS[i], KEYS[1])
  if redis.call("PTTL", KEYS[i]) < ttl then redis.call("PEXPIRE", KEYS[i], ttl) end
  prune(KEYS[i], KEYS[1], 3)
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ttl)
if softened then soften(KEYS[1], tonumber(ARGV[5]), ARGV[6]) end
return 0
"#
);

/// On a cluster, before an invalidation deletes anything (a soft purge softens anything):
/// marks the name's invalidation marker (soft purge marker) `KEYS[1]` with the time of the
/// node that holds it, in microseconds (as a string of digits: a Lua number would print in
/// exponent form), for `ARGV[1]` ms (see [`MARKED_FOR`]).
const MARK: &str = r#"
local now = redis.call("TIME")
redis.call("SET", KEYS[1], now[1] .. string.format("%06d", tonumber(now[2])), "PX", ARGV[1])
return 0
"#;

/// On a cluster: how long ago, in microseconds of the node that holds it, the marker `KEYS[1]`
/// (see [`MARK`]) was set; nil when there is none. Both times are that one node's, so no two
/// clocks are compared. A marker that is not a plausible time is as recent as can be (0).
const MARK_AGE: &str = r#"
local at = redis.call("GET", KEYS[1])
if not at then return false end
at = tonumber(at)
if not at or not (at >= 0 and at < 1e17) then return 0 end
local now = redis.call("TIME")
return tonumber(now[1]) * 1000000 + tonumber(now[2]) - at
"#;

/// Sets `marker` on a cluster (see [`MARK`]), for [`MARKED_FOR`].
async fn mark(c: &mut Link, marker: &str) -> RedisResult<()> {
    let mut mark = redis::cmd("EVAL");
    mark.arg(MARK).arg(1).arg(marker);
    mark.arg(MARKED_FOR.as_millis().to_string());
    mark.query_async(c).await
}

/// How long an invalidation marker lives on a cluster (see [`MARK`]): the longest a load may
/// take, from its start to its write's check, and still be written to Redis.
const MARKED_FOR: Duration = Duration::from_secs(10 * 60);

/// On a cluster, how much more recent than the load's start a marker counts as "set since the
/// load began": 100 ms plus 0.1% of the load's duration, for the node's wall clock (which
/// `TIME` reads) stepping or running faster than this process's monotonic clock.
fn clock_tolerance(elapsed: Duration) -> Duration {
    Duration::from_millis(100).saturating_add(elapsed / 1000)
}

/// The most names the invalidation history keeps (see [`INVALIDATE`]); a load that spans more
/// distinct invalidated names than that is not written to Redis.
pub(crate) const MAX_INVALIDATED_NAMES: usize = 100_000;

/// What a name's marker set since a load began asks of its write, on a cluster (see
/// [`RedisStore::set_on_cluster`]); ordered by strength: the strongest marker found wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Marked {
    /// Nothing: the write stays as it is.
    Not,
    /// A soft purge: the written value is made stale (see [`soften_lua`]).
    Softened,
    /// An invalidation (or the check cannot tell): the written value is deleted.
    Invalidated,
}

/// Where the shared tier's invalidation history stood when a load began: what its write is
/// checked against, so that it is not made (or, on a cluster, not kept) if the key or a tag was
/// invalidated since, by any instance (see [`INVALIDATE`], [`MARK`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SharedSince {
    /// One Redis: at this epoch of the history (0: Redis held no history yet).
    Epoch(u64),
    /// Redis Cluster: the load began at this instant (real time, on this process's monotonic
    /// clock); the write is checked against the names' invalidation markers afterwards.
    Began(Instant),
    /// Redis did not answer: the write is not made (it only costs a miss).
    Unknown,
    /// Not a load (an explicit insert): written unchecked.
    Unchecked,
}

/// Whether a load that began at `began` has run so long that an invalidation marker set since
/// may have expired (see [`MARKED_FOR`]): its write cannot be checked, and is not kept.
fn too_long(began: &Instant) -> bool {
    let elapsed = began.elapsed();
    elapsed.saturating_add(clock_tolerance(elapsed)) >= MARKED_FOR
}

/// What became of a write (see [`RedisStore::set`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// Made (perhaps stale, after a soft purge).
    Kept,
    /// Not made, or deleted again: the key or a tag was invalidated since the load began.
    Refused,
    /// Not made: a tag's set is full (see [`MAX_TAG_MEMBERS`]).
    TagSetFull,
}

/// Keys still to delete: queued for the replay when dropped before they are all deleted (an
/// error, or the operation's future dropped at its time budget).
struct Undeleted<'a> {
    pending: &'a Pending,
    keys: &'a [String],
}

impl Drop for Undeleted<'_> {
    fn drop(&mut self) {
        for key in self.keys {
            self.pending.push_key(key);
        }
    }
}

/// The most value keys one tag's set holds, so that invalidating a tag deletes at most that
/// many entries in one step. A write that would add one more is not made (counted in
/// `Stats::tag_sets_full`; the value stays in memory where that tier holds it): no entry is
/// ever stored in Redis without being named by each of its tags' sets, and none is deleted to
/// make room, so the bound neither leaves an entry that invalidating a tag cannot reach nor
/// drops live entries. Room returns as members' entries end: on one Redis the write drops
/// members whose entry is gone (up to 32 of them when the set is full); on a cluster, where
/// that cannot be done safely (see [`TAG_ADD`]), the set expires with its longest-lived
/// entry.
pub(crate) const MAX_TAG_MEMBERS: usize = 10_000;

/// Whether `error` is Redis refusing one command about one key (another program's value of
/// another type under our key, a full memory): a miss for that key, not an outage.
fn about_one_key(error: &RedisError) -> bool {
    matches!(error.code(), Some("WRONGTYPE" | "OOM"))
}

/// Keys and tags longer than this are stored under a digest (see [`bounded`]).
const MAX_NAME: usize = 200;

/// `name` itself, or when longer than [`MAX_NAME`] bytes, its first 64 bytes (for humans
/// reading `redis-cli`), `#`, and the hex SHA-256 of the whole name (for uniqueness).
pub(crate) fn bounded(name: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    if name.len() <= MAX_NAME {
        return std::borrow::Cow::Borrowed(name);
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
    std::borrow::Cow::Owned(out)
}

#[cfg(feature = "tls")]
fn open(info: redis::ConnectionInfo, root: Option<&[u8]>) -> RedisResult<Client> {
    match root {
        Some(pem) => Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => Client::open(info),
    }
}

#[cfg(not(feature = "tls"))]
fn open(info: redis::ConnectionInfo, _root: Option<&[u8]>) -> RedisResult<Client> {
    Client::open(info)
}

#[cfg(feature = "tls")]
fn with_root_certificate(
    builder: redis::cluster::ClusterClientBuilder,
    root: Option<&[u8]>,
) -> Result<redis::cluster::ClusterClientBuilder, BuildError> {
    Ok(match root {
        Some(pem) => builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        }),
        None => builder,
    })
}

#[cfg(not(feature = "tls"))]
fn with_root_certificate(
    builder: redis::cluster::ClusterClientBuilder,
    root: Option<&[u8]>,
) -> Result<redis::cluster::ClusterClientBuilder, BuildError> {
    match root {
        Some(_) => Err(BuildError::TlsFeature),
        None => Ok(builder),
    }
}

/// The error for a Redis URL the client refuses. The client's messages are fixed texts that
/// never repeat the URL (which may hold a password); `rediss://` without TLS gets its own kind.
fn url_error(position: usize, url: &str, error: &RedisError) -> BuildError {
    let tls = url.starts_with("rediss:") || url.starts_with("valkeys:");
    if tls && !cfg!(feature = "tls") {
        return BuildError::TlsFeature;
    }
    BuildError::RedisUrl {
        position,
        reason: error.to_string(),
    }
}

impl RedisStore {
    /// Validates the URL; connects lazily, on first use, so that building a cache never
    /// blocks and a Redis that is down at start-up does not stop the application.
    pub(crate) fn new(config: &RedisConfig, counters: Arc<Counters>) -> Result<Self, BuildError> {
        if config.urls.is_empty() {
            return Err(BuildError::NoClusterNodes);
        }
        // Keepalive: a peer that vanished (NAT timeout, failover) is noticed by the OS too.
        let tcp = || {
            let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(10))
                .with_interval(Duration::from_secs(5));
            TcpSettings::default()
                .set_nodelay(true)
                .set_keepalive(keepalive)
        };
        let mut infos = Vec::new();
        let mut clients = Vec::new();
        for (position, url) in config.urls.iter().enumerate() {
            let url_error = |e: RedisError| url_error(position, url, &e);
            let info = url.as_str().into_connection_info().map_err(url_error)?;
            let info = info.set_tcp_settings(tcp());
            clients
                .push(open(info.clone(), config.root_certificate.as_deref()).map_err(url_error)?);
            infos.push(info);
        }
        let cluster = if config.cluster {
            let builder = ClusterClient::builder(infos)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.op_timeout)
                .retries(1)
                .tcp_settings(tcp());
            let builder = with_root_certificate(builder, config.root_certificate.as_deref())?;
            let client = builder.build().map_err(|e| BuildError::ClusterConfig {
                reason: e.to_string(),
            })?;
            Some(client)
        } else {
            None
        };
        Ok(RedisStore {
            clients,
            cluster,
            link: OnceCell::new(),
            prefix: config.prefix.clone(),
            connect_timeout: config.connect_timeout,
            op_timeout: config.op_timeout,
            breaker: Breaker::new(3, Duration::from_secs(1)),
            pending: Pending::default(),
            opened: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            on_open: None,
            answering: AtomicBool::new(true),
            instance: fastrand::u64(..),
            counters,
        })
    }

    /// Runs `hook` each time the breaker opens, right after it opened (the tiered set-up
    /// empties memory then: see `tiered`).
    pub(crate) fn when_breaker_opens(&mut self, hook: BreakerOpened) {
        self.on_open = Some(hook);
    }

    /// The id this instance's soft purges carry (see [`SOFT`]).
    pub(crate) fn instance(&self) -> u64 {
        self.instance
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A client for the subscriber's `attempt`-th connection: a cluster's nodes in turn (a
    /// classic PUBLISH reaches subscribers on every node).
    pub(crate) fn subscribe_client(&self, attempt: usize) -> &Client {
        &self.clients[attempt % self.clients.len()]
    }

    pub(crate) fn value_key(&self, key: &str) -> String {
        self.name_key('v', key)
    }

    fn tag_key(&self, tag: &str) -> String {
        self.name_key('t', tag)
    }

    fn lock_key(&self, key: &str) -> String {
        self.name_key('l', key)
    }

    /// A name's invalidation marker, on a cluster (see [`MARK`]).
    fn marker_key(&self, name: &str) -> String {
        self.name_key('i', name)
    }

    /// A name's soft purge marker, on a cluster (see [`MARK`]).
    fn soft_marker_key(&self, name: &str) -> String {
        self.name_key('s', name)
    }

    /// A name's two markers on a cluster, each with what a write must do when it was set since
    /// the load began.
    fn markers(&self, name: &str) -> [(String, Marked); 2] {
        [
            (self.marker_key(name), Marked::Invalidated),
            (self.soft_marker_key(name), Marked::Softened),
        ]
    }

    /// `P` `kind` `:` name, or for a name longer than [`MAX_NAME`], `P` `kind` `#` and its
    /// digest form: no short name can reach a long one's key.
    fn name_key(&self, kind: char, name: &str) -> String {
        let marker = if name.len() > MAX_NAME { '#' } else { ':' };
        format!("{}{kind}{marker}{}", self.prefix, bounded(name))
    }

    /// The invalidation history (see [`INVALIDATE`]).
    fn history_key(&self) -> String {
        format!("{}invalidated", self.prefix)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Whether this instance may have missed invalidations or holds some that did not reach
    /// Redis: the breaker is open, has opened since the memory tier was last emptied, or
    /// invalidations wait for a replay. What memory stores meanwhile is kept at most the
    /// outage bound (see `tiered`).
    #[inline]
    pub(crate) fn suspect(&self) -> bool {
        self.breaker.is_open()
            || self.pending.any()
            || self.opened.load(Ordering::Acquire) != self.recovered.load(Ordering::Acquire)
    }

    /// Whether [`RedisStore::suspect`] holds for a reason a [`RedisStore::probe`] can end.
    pub(crate) fn needs_probe(&self) -> bool {
        self.breaker.is_open() || self.pending.any()
    }

    /// After the memory tier was emptied: the breaker openings up to `opened` are dealt
    /// with. Returns the current count first with [`RedisStore::openings`].
    pub(crate) fn recovered_up_to(&self, opened: u64) {
        self.recovered.store(opened, Ordering::Release);
    }

    /// How many times the breaker has opened.
    pub(crate) fn openings(&self) -> u64 {
        self.opened.load(Ordering::Acquire)
    }

    /// Asks Redis whether it answers (bypassing the breaker) and replays pending
    /// invalidations; a success closes the breaker. Run in the background, so that the
    /// breaker closes and invalidations are replayed without waiting for a caller.
    pub(crate) async fn probe(&self) -> bool {
        self.attempt("PING", |mut c| async move {
            redis::cmd("PING").query_async::<()>(&mut c).await
        })
        .await
        .is_some()
    }

    async fn connection(&self) -> RedisResult<Link> {
        self.link
            .get_or_try_init(|| async {
                if let Some(cluster) = &self.cluster {
                    return Ok(Link::Cluster(cluster.get_async_connection().await?));
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.op_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                let manager = self.clients[0]
                    .get_connection_manager_with_config(config)
                    .await?;
                Ok(Link::Single(manager))
            })
            .await
            .cloned()
    }

    /// Runs `op` under the breaker and the timeout. `None` means "the store could not
    /// answer": counted, logged, and treated by the caller like a miss.
    ///
    /// The operation is boxed: Redis futures are large, and every future that might await one
    /// (including a memory hit's) would otherwise carry their size.
    async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(Link) -> Fut + Send,
        Fut: Future<Output = RedisResult<T>> + Send,
        T: Send,
    {
        if !self.breaker.allow() {
            return None;
        }
        self.attempt(what, op).await
    }

    /// [`RedisStore::run`] without the breaker's permission: first replays pending
    /// invalidations (Redis is not trusted before they are through), then runs `op`, all in
    /// one time budget.
    async fn attempt<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(Link) -> Fut + Send,
        Fut: Future<Output = RedisResult<T>> + Send,
        T: Send,
    {
        let budget = self.connect_timeout + self.op_timeout;
        let attempt: std::pin::Pin<Box<dyn Future<Output = RedisResult<T>> + Send + '_>> =
            Box::pin(async {
                let mut connection = self.connection().await?;
                if self.pending.any() {
                    self.replay(&mut connection).await?;
                }
                op(connection).await
            });
        let error = match tokio::time::timeout(budget, attempt).await {
            Ok(Ok(value)) => {
                self.breaker.success();
                self.answering.store(true, Ordering::Release);
                return Some(value);
            }
            Ok(Err(error)) if about_one_key(&error) => {
                self.counters.add(Counter::StoreError);
                tracing::debug!(cache = self.counters.name(), op = what, %error, "Redis refused one key's command: a miss for that key");
                return None;
            }
            Ok(Err(error)) => error,
            Err(_elapsed) => RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not answer in time",
            )),
        };
        self.counters.add(Counter::StoreError);
        self.answering.store(false, Ordering::Release);
        if self.breaker.failure() {
            // Invalidations published from now on may not reach this instance.
            self.opened.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(cache = self.counters.name(), %error, "Redis unavailable: serving without it until it answers again");
            if let Some(hook) = &self.on_open {
                hook();
            }
        } else {
            tracing::debug!(cache = self.counters.name(), op = what, %error, "Redis operation failed");
        }
        None
    }

    /// The bytes stored under `key`; `None` when absent or when Redis did not answer.
    /// At most [`MAX_ENCODED`] + 1 bytes are read (`GETRANGE`): more is refused by the
    /// decoder. An entry is never empty, so empty means absent.
    pub(crate) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.value_key(key);
        let bytes = self
            .run("GET", |mut c| async move {
                redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(MAX_ENCODED)
                    .query_async::<Vec<u8>>(&mut c)
                    .await
            })
            .await?;
        (!bytes.is_empty()).then_some(bytes)
    }

    /// Whether a value is stored under any of `keys` (a purge's answer); `None` when Redis did
    /// not answer.
    pub(crate) async fn holds_any(&self, keys: &[String]) -> Option<bool> {
        for key in keys {
            let key = self.value_key(key);
            let held = self
                .run("EXISTS", |mut c| async move {
                    redis::cmd("EXISTS")
                        .arg(&key)
                        .query_async::<bool>(&mut c)
                        .await
                })
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
        let value_keys: Vec<String> = keys.iter().map(|key| self.value_key(key)).collect();
        let read = |key: &String| {
            let mut command = redis::cmd("GETRANGE");
            command.arg(key).arg(0).arg(MAX_ENCODED);
            command
        };
        let found = self
            .run("MGET", |mut c| async move {
                if let Link::Single(_) = c {
                    let mut pipe = redis::pipe();
                    for key in &value_keys {
                        pipe.add_command(read(key));
                    }
                    return pipe.query_async::<Vec<Vec<u8>>>(&mut c).await;
                }
                let reads = value_keys.iter().map(|key| {
                    let mut c = c.clone();
                    async move { read(key).query_async::<Vec<u8>>(&mut c).await }
                });
                futures_util::future::try_join_all(reads).await
            })
            .await;
        match found {
            Some(found) if found.len() == keys.len() => found
                .into_iter()
                .map(|bytes| (!bytes.is_empty()).then_some(bytes))
                .collect(),
            _ => vec![None; keys.len()],
        }
    }

    /// Where the invalidation history stands now, for a load about to begin (one round trip,
    /// on a miss only; none when the last operation went unanswered: the write would most
    /// likely fail too). On a cluster, where a write's keys span slots, the instant the load
    /// begins (no round trip): the write is checked after it is made (see [`MARK`]).
    pub(crate) async fn shared_since(&self) -> SharedSince {
        if !self.answering.load(Ordering::Acquire) {
            return SharedSince::Unknown;
        }
        if self.cluster.is_some() {
            return SharedSince::Began(Instant::now());
        }
        let history_key = self.history_key();
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

    /// Adds `key` to each tag's set, then stores `bytes` under it for `ttl`: a failure on the
    /// way leaves at most a member whose value is missing (harmless), never a value that an
    /// invalidation of one of its tags would not find. A load's write is not made (one Redis)
    /// or not kept (a cluster) when `key` or a tag was invalidated, by any instance, after
    /// `since`; it is made (kept) stale when one was only soft-purged. A write that a full tag
    /// set would not name is not made (see [`MAX_TAG_MEMBERS`]).
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
        let value_key = self.value_key(key);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
        let written = self
            .run("SET", |mut c| async move {
                if let Link::Single(_) = c {
                    let mut write = redis::cmd("EVAL");
                    write.arg(WRITE).arg(2 + tag_keys.len()).arg(&value_key);
                    write.arg(self.history_key()).arg(&tag_keys);
                    write.arg(bytes).arg(millis).arg(MAX_TAG_MEMBERS).arg(since);
                    write.arg(super::codec::now_millis());
                    write.arg(super::codec::FORMATS_WITH_DEADLINES);
                    write.arg(&*bounded(key));
                    for tag in tags {
                        write.arg(&*bounded(tag));
                    }
                    let reply = write.query_async::<i64>(&mut c).await?;
                    return Ok(match reply {
                        0 => Written::Kept,
                        2 => Written::TagSetFull,
                        _ => Written::Refused,
                    });
                }
                let check = began.map(|began| {
                    let tags = tags.iter().map(|t| &**t).filter(|t| *t != key);
                    let names = std::iter::once(key).chain(tags);
                    (began, names.flat_map(|name| self.markers(name)).collect())
                });
                let write = (value_key.as_str(), bytes, millis);
                self.set_on_cluster(&mut c, write, &tag_keys, check).await
            })
            .await;
        self.count(key, written);
    }

    /// Counts and logs a write that was not made or not kept (see [`Written`]).
    fn count(&self, key: &str, written: Option<Written>) {
        match written {
            Some(Written::Refused) => {
                self.counters.add(Counter::SharedWriteRefused);
                tracing::debug!(
                    cache = self.counters.name(),
                    key,
                    "not kept in Redis: invalidated by an instance since the load began"
                );
            }
            Some(Written::TagSetFull) => {
                self.counters.add(Counter::TagSetFull);
                tracing::debug!(
                    cache = self.counters.name(),
                    key,
                    "not written to Redis: one of its tags names the most entries a tag may"
                );
            }
            Some(Written::Kept) | None => {}
        }
    }

    /// [`RedisStore::set`] on a cluster: each tag's set updated by a script of its own key,
    /// then the value written, unless a tag's set is full (then the key's older value is
    /// deleted, as on one Redis). For a load (`check`: when it began, and the invalidation and
    /// soft purge markers of its key and tags), the value is then deleted again if an
    /// invalidation marker was set since the load began (see [`RedisStore::marked_since`]), or
    /// made stale if only a soft purge marker was.
    ///
    /// Why that suffices: an invalidation (a soft purge) on a cluster sets its name's marker
    /// before it deletes (softens) the value or takes (reads) the tag's set (see
    /// [`RedisStore::send_invalidation`], [`RedisStore::send_soft_invalidation`]), and this
    /// write reads the markers after its `SET` (and tag memberships) succeeded. Each marker
    /// lives on one node, so its update and this read are ordered: if the update comes first,
    /// the read sees it and the value is deleted (softened) here; otherwise the invalidation's
    /// delete (the soft purge's softening) of the value, or its taking (reading) of the tag's
    /// set, which then names this value, follows this write, and removes (softens) it.
    async fn set_on_cluster(
        &self,
        c: &mut Link,
        (value_key, bytes, millis): (&str, Vec<u8>, u64),
        tag_keys: &[String],
        check: Option<(Instant, Vec<(String, Marked)>)>,
    ) -> RedisResult<Written> {
        if check.as_ref().is_some_and(|(began, _)| too_long(began)) {
            return Ok(Written::Refused);
        }
        for tag_key in tag_keys {
            let mut add = redis::cmd("EVAL");
            add.arg(TAG_ADD).arg(1).arg(tag_key).arg(value_key);
            add.arg(millis).arg(MAX_TAG_MEMBERS);
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
        let marked = self.marked_since(c, began, &markers).await?;
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

    /// The strongest of the `markers` (see [`MARK`]) set since `began`: [`Marked::Not`] when
    /// none was, [`Marked::Invalidated`] when it cannot tell (the load took so long that a
    /// marker set since may have expired already). Each marker's age is measured on the node
    /// that holds it; the load's duration on this process's monotonic clock, up to after the
    /// replies: a marker set after the load began is younger than that duration (plus
    /// [`clock_tolerance`]).
    async fn marked_since(
        &self,
        c: &mut Link,
        began: Instant,
        markers: &[(String, Marked)],
    ) -> RedisResult<Marked> {
        let ages = markers.iter().map(|(marker, _)| {
            let mut c = c.clone();
            async move {
                let mut age = redis::cmd("EVAL");
                age.arg(MARK_AGE).arg(1).arg(marker);
                age.query_async::<Option<i64>>(&mut c).await
            }
        });
        let ages = futures_util::future::try_join_all(ages).await?;
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

    /// Deletes the Redis keys `keys` one by one (a cluster's keys span slots); those not
    /// deleted when an error or the time budget ends it are queued for the replay.
    async fn delete_or_queue(&self, c: &mut Link, keys: &[String]) -> RedisResult<()> {
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

    /// Deletes the entry stored under `key` only; a delete that does not reach Redis is
    /// queued for the replay.
    pub(crate) async fn delete(&self, key: &str) {
        let value_key = self.value_key(key);
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
    /// (see [`Pending`]), and what the queue did with it is returned.
    pub(crate) async fn invalidate(&self, name: &str) -> Option<Queued> {
        let sent = self
            .run("INVALIDATE", |mut c| async move {
                self.send_invalidation(&mut c, name).await
            })
            .await;
        self.sent_or_kept(sent, name, "invalidation kept until Redis answers again")
    }

    /// `None` when `name`'s invalidation or soft purge reached Redis (`sent`); otherwise it is
    /// kept for the replay, as an invalidation, and what the queue did with it is returned.
    fn sent_or_kept(&self, sent: Option<()>, name: &str, kept: &'static str) -> Option<Queued> {
        sent.is_none().then(|| {
            tracing::warn!(cache = self.counters.name(), name, "{kept}");
            self.pending.push(name)
        })
    }

    /// One invalidation: on one Redis in one script; on a cluster the name's invalidation
    /// marker is set first (see [`MARK`]; a load's write checks it after it is made), then the
    /// tag's set is taken, then its members deleted one by one (those not deleted are queued
    /// by key, since the set no longer names them), then the entry, then the broadcast.
    async fn send_invalidation(&self, c: &mut Link, name: &str) -> RedisResult<()> {
        let value_key = self.value_key(name);
        let tag_key = self.tag_key(name);
        if let Link::Single(_) = c {
            let mut invalidate = redis::cmd("EVAL");
            invalidate
                .arg(INVALIDATE)
                .arg(3)
                .arg(&value_key)
                .arg(&tag_key)
                .arg(self.history_key());
            invalidate.arg(self.channel()).arg(name);
            invalidate.arg(MAX_INVALIDATED_NAMES).arg(&*bounded(name));
            return invalidate.query_async(c).await;
        }
        mark(c, &self.marker_key(name)).await?;
        let tagged: Vec<String> = redis::cmd("EVAL")
            .arg(TAG_TAKE)
            .arg(1)
            .arg(&tag_key)
            .query_async(c)
            .await?;
        self.delete_or_queue(c, &tagged).await?;
        let mut del = redis::cmd("DEL");
        del.arg(&value_key);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel()).arg(name);
        c.exec(vec![del, publish]).await
    }

    /// Soft-purges `name`'s entry and every entry tagged `name` (see [`SOFT_INVALIDATE`]),
    /// then tells every instance. Returns `None` when that reached Redis; otherwise it is kept
    /// for the replay as a hard invalidation (an entry is never left fresh anywhere), and what
    /// the queue did with it is returned.
    pub(crate) async fn soft_invalidate(&self, name: &str) -> Option<Queued> {
        let sent = self
            .run("SOFT_INVALIDATE", |mut c| async move {
                self.send_soft_invalidation(&mut c, name).await
            })
            .await;
        let kept = "soft purge kept, as an invalidation, until Redis answers again";
        self.sent_or_kept(sent, name, kept)
    }

    /// One soft purge: on one Redis in one script (which also records it in the invalidation
    /// history); on a cluster (where a script may touch only its own key) the name's soft
    /// purge marker is set first (see [`MARK`]; a load's write checks it after it is made),
    /// then the tag's members are read, then they and the entry are each softened by a script
    /// of its own key, then the broadcast.
    async fn send_soft_invalidation(&self, c: &mut Link, name: &str) -> RedisResult<()> {
        let value_key = self.value_key(name);
        let tag_key = self.tag_key(name);
        let mut payload = SOFT.to_vec();
        payload.extend_from_slice(&self.instance.to_be_bytes());
        payload.extend_from_slice(name.as_bytes());
        if let Link::Single(_) = c {
            let mut script = soften(&[&value_key, &tag_key, &self.history_key()]);
            script.arg(self.channel()).arg(&payload);
            let member = [SOFTENED, bounded(name).as_bytes()].concat();
            script.arg(MAX_INVALIDATED_NAMES).arg(member);
            return script.query_async(c).await;
        }
        mark(c, &self.soft_marker_key(name)).await?;
        let tagged: Vec<String> = redis::cmd("SMEMBERS").arg(&tag_key).query_async(c).await?;
        // Sent together, each to its key's node: a big tag takes one round trip, not one each.
        let softened = tagged.iter().chain(std::iter::once(&value_key)).map(|key| {
            let (mut c, script) = (c.clone(), soften(&[key]));
            async move { script.query_async::<()>(&mut c).await }
        });
        futures_util::future::try_join_all(softened).await?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel()).arg(&payload);
        publish.query_async(c).await
    }

    /// Sends the invalidations that did not reach Redis, oldest state first; each is
    /// forgotten once sent, unless queued again meanwhile.
    async fn replay(&self, c: &mut Link) -> RedisResult<()> {
        let replay = self.pending.snapshot();
        for (part, push) in &replay.parts {
            match part {
                Part::Name(name) => self.send_invalidation(c, name).await?,
                Part::Key(key) => redis::cmd("DEL").arg(&**key).query_async::<()>(c).await?,
            }
            self.pending.replayed(part, *push);
        }
        if let Some(push) = replay.everything {
            redis::cmd("PUBLISH")
                .arg(self.channel())
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

    /// Tries to take the distributed lock for `key`: `Some(true)` taken, `Some(false)` held
    /// by another instance, `None` Redis unavailable.
    pub(crate) async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Option<bool> {
        let lock_key = self.lock_key(key);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
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
        let lock_key = self.lock_key(key);
        self.run("EXISTS", |mut c| async move {
            redis::cmd("EXISTS")
                .arg(&lock_key)
                .query_async::<bool>(&mut c)
                .await
        })
        .await
    }

    /// Releases the distributed lock for `key` if it still holds `token`, and tells the
    /// instances waiting for the load (see [`UNLOCK`]).
    pub(crate) async fn unlock(&self, key: &str, token: &str) {
        let lock_key = self.lock_key(key);
        let ended = [LOAD_ENDED, bounded(key).as_bytes()].concat();
        self.run("UNLOCK", |mut c| async move {
            redis::Script::new(UNLOCK)
                .key(&lock_key)
                .arg(token)
                .arg(self.channel())
                .arg(ended)
                .invoke_async::<()>(&mut c)
                .await
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn no_short_name_reaches_the_hashed_form_of_a_long_one() {
        let config = RedisConfig {
            urls: vec!["redis://127.0.0.1:1/".into()],
            cluster: false,
            prefix: "p:".into(),
            connect_timeout: Duration::from_millis(1),
            op_timeout: Duration::from_millis(1),
            root_certificate: None,
        };
        let store = RedisStore::new(&config, Arc::new(Counters::new("t"))).unwrap();
        let long = "x".repeat(300);
        let hashed = bounded(&long).into_owned();
        assert_ne!(store.value_key(&long), store.value_key(&hashed));
        assert_ne!(store.tag_key(&long), store.tag_key(&hashed));
        assert_ne!(store.lock_key(&long), store.lock_key(&hashed));
        assert_eq!(store.value_key("user:7"), "p:v:user:7");
    }
}
