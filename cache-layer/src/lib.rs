//! Caching for Rust web back ends: memoised `async fn`s with `#[cached]`, invalidated by
//! writers with `#[invalidates]`, and RFC 9111 HTTP response caching with [`CacheLayer`], on
//! one engine with single-flight, TTL jitter, stale-while-revalidate, stale-if-error and
//! negative caching.
//!
//! ```
//! use cache_layer::{cached, invalidates};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct User { id: u64, name: String }
//!
//! #[derive(Debug)]
//! struct DbError;
//!
//! #[cached(ttl = "5m", key = "user:<id>", invalidate_on = ["users"])]
//! async fn get_user(id: u64) -> Result<User, DbError> {
//!     Ok(User { id, name: "Ada".into() }) // the expensive query
//! }
//!
//! #[invalidates("user:<id>")]
//! async fn rename_user(id: u64, name: &str) -> Result<(), DbError> {
//!     Ok(()) // the write; on Ok, `user:<id>` is invalidated
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), DbError> {
//! let first = get_user(7).await?; // miss: runs the query
//! let again = get_user(7).await?; // hit: served from memory
//! rename_user(7, "Grace").await?; // drops user:7
//! # Ok(()) }
//! ```
//!
//! # What is cached
//! `Result<T, E>` caches `Ok(T)` and never `Err`; `Option<T>` caches `Some(T)`, and `None` only
//! with `none_ttl` (negative caching); other return types are cached as they are. Cached values
//! are `Clone + Send + Sync + Serialize + DeserializeOwned + 'static`: the same code runs on an
//! in-memory or a shared store. A memory hit clones the value; it never serialises it, and a
//! repeated hit on a thread is answered from that thread's copy of the entry (see
//! [`CacheBuilder::memory_budget`]).
//!
//! # Keys
//! A `#[cached]` function's entry is stored under its rendered key: `key = "user:<id>"`
//! renders `user:7`. Without `key`, the default key is the function's module path and name,
//! then each argument after a `:` (`my_app::users::get_user:7:en`). Keys are *injective*:
//! two different argument lists of one function never render the same key, whatever the
//! values contain. Three rules make that true:
//!
//! - Every rendered value writes the ASCII characters other than letters, digits and `-._~`
//!   as `%XX` (`a/b` → `a%2Fb`, `%` → `%25`), so a value never produces the separators around
//!   it; other characters stay as they are.
//! - Sequences, tuples and options are framed: `[a,b]`, `(a,b)`, `None` → `%N`, and
//!   `Some(v)` → `v` (or `%S` then `v` when `v` is itself `%N...` or `%S...`), so nesting and
//!   empty values keep their boundaries (`[[1,2],[3]]` ≠ `[[1],[2,3]]`, `[]` ≠ `[,]`,
//!   `Some(None)` ≠ `None`). See [`KeyArg`] for every type.
//! - In a template, two placeholders must be separated by text that contains one of those
//!   escaped characters other than `%` (`<a>:<b>`, `org/<org>/u/<user>`): `<a><b>` or
//!   `<a>-<b>` is a compile error, since `(1, 23)` and `(12, 3)` would meet at `123`.
//!
//! A key that names several functions' arguments alike (`key = "user:<id>"` on two
//! functions) is one entry on purpose: a value of another type under it is a miss.
//!
//! **Namespaces.** The default key's namespace is the function's module path and name; `name`
//! only labels the site in metrics and traces. Two associated functions of the same name in one
//! module share that path: give them keys. `version = N` bumps a function's entries on every
//! instance, for a deploy that changes what a value means without changing its type: the
//! default key becomes `path::get_user@v2:7`, an explicit key `user:7@v2` (tagged `user:7`, so
//! invalidating `user:7` still drops it). Keys never contain `std::any::type_name`, whose text
//! the compiler does not promise to keep; the shared tier's type fingerprint does (see below),
//! so after a toolchain upgrade an entry may read as a miss, and is overwritten.
//!
//! **Methods.** A method's entries must depend on its receiver, or one receiver answers for
//! another (`TenantRepo { tenant: 1 }.count()` for tenant 2). So a method compiles only when
//! its key names the receiver (`key = "repo:<self.tenant>:count"`), or it says
//! `ignore_self = true` because the receiver does not change the answer (a pool, a client, a
//! service holding the cache). The default key never names `self`, and `cache = self.cache`
//! does not count: receivers usually share one `Cache` handle. The compile error says how to
//! fix it.
//!
//! # `#[cached]` arguments
//!
//! The reference of each argument, with examples: [`cached`](macro@cached) and
//! [`invalidates`](macro@invalidates).
//!
//! | argument | meaning | default |
//! | --- | --- | --- |
//! | `ttl = "5m"` | fresh period, a duration string (`"30s"`, `"1h30m"`), checked at compile time | required |
//! | `key = "user:<id>"` | key template; `<arg>`, `<arg.field>`, `<self.field>` name parameters (see [Keys](#keys)) | `path::to::fn:<arg1>:<arg2>...` |
//! | `invalidate_on = ["users", "org:<org>"]` | tag templates: invalidating any of them drops the entry | none |
//! | `stale = "1m"` | serve a stale value this long while one background task refreshes it | `0` |
//! | `stale_if_error = "1h"` | then serve it when the loader fails | `0` |
//! | `none_ttl = "30s"` | cache `None` / `Ok(None)` this long (negative caching) | not cached |
//! | `jitter = 0.2` or `jitter = false` | TTL spread, a fraction in `[0, 1)` | the cache's, ±10% |
//! | `lock = "5s"` | with Redis, a distributed load lock held at most this long | none |
//! | `cache = expr` | the [`Cache`] to use (`self.cache`, a `static`) | [`Cache::global`] |
//! | `name = "users"` | the site's label in metrics and traces; not part of the key | `path::to::fn` |
//! | `version = 2` | an integer that bumps the function's entries | none |
//! | `ttl_from = path::to::fn` | `fn(&T) -> Duration` or `-> Option<Duration>`: a fresh period decided by the value (`None`: `ttl`) | none |
//! | `cache_if = path::to::fn` | `fn(&T) -> bool`: store this value or not | every value |
//! | `ignore_self = true` | a method whose receiver does not change the answer (see [Keys](#keys)) | `false` |
//!
//! `T` is the value a success holds: `T` of `Result<T, E>`, `Option<T>`, `Result<Option<T>, E>`,
//! or the return type itself. A method's key must name its receiver, unless
//! `ignore_self = true`. The default key and `version`:
//!
//! ```
//! use cache_layer::{cached, Cache};
//! use std::sync::LazyLock;
//!
//! static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::builder().build().unwrap());
//!
//! #[cached(ttl = "5m", name = "users", cache = CACHE)]
//! async fn get_user(id: u64, lang: &str) -> String {
//!     format!("user {id} ({lang})")
//! }
//!
//! #[cached(ttl = "5m", key = "settings:<tenant>", version = 2, cache = CACHE)]
//! async fn settings(tenant: u64) -> u64 {
//!     tenant * 2
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! get_user(7, "en").await;
//! get_user(7, "en").await;
//! assert_eq!(CACHE.stats().loads, 1);
//! // The default key: the function's path, then each argument after a `:`.
//! CACHE.invalidate(concat!(module_path!(), "::get_user:7:en")).await;
//! get_user(7, "en").await;
//! assert_eq!(CACHE.stats().loads, 2);
//! // A versioned key is stored as `settings:7@v2`, and invalidating `settings:7` reaches it.
//! settings(7).await;
//! CACHE.invalidate("settings:7").await;
//! settings(7).await;
//! assert_eq!(CACHE.stats().loads, 4);
//! # }
//! ```
//!
//! Windows, negative caching and the other knobs:
//!
//! ```
//! use cache_layer::{cached, invalidates, Cache};
//!
//! #[derive(Clone)]
//! struct Repo { cache: Cache, tenant: u64 }
//!
//! impl Repo {
//!     // The key names the receiver's tenant: tenants never share an entry.
//!     #[cached(
//!         ttl = "1m", stale = "30s", stale_if_error = "1h", none_ttl = "10s", jitter = 0.2,
//!         lock = "5s", key = "tenant:<self.tenant>:user:<id>",
//!         invalidate_on = ["tenant:<self.tenant>"], cache = self.cache,
//!     )]
//!     async fn user(&self, id: u64) -> Result<Option<String>, std::io::Error> {
//!         Ok((id > 0).then(|| format!("user {id}")))
//!     }
//!
//!     // `#[invalidates]`: key or tag templates, rendered before the body runs and
//!     // invalidated after it succeeds (`Ok`, or any value of a non-`Result` fn).
//!     #[invalidates("tenant:<self.tenant>:user:<id>", cache = self.cache)]
//!     async fn rename(&self, id: u64, name: &str) -> Result<(), std::io::Error> {
//!         let _ = (id, name);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let repo = Repo { cache: Cache::builder().build().unwrap(), tenant: 1 };
//! assert_eq!(repo.user(7).await.unwrap().as_deref(), Some("user 7"));
//! repo.user(7).await.unwrap();
//! assert_eq!(repo.cache.stats().loads, 1);
//! repo.rename(7, "Ada").await.unwrap(); // drops tenant:1:user:7
//! repo.user(7).await.unwrap();
//! assert_eq!(repo.cache.stats().loads, 2);
//! # }
//! ```
//!
//! Policies decided by the value: a token cached as long as it is valid, and a report cached
//! only once it is final. A TTL from the value is an upper bound: jitter only shortens it, and
//! `stale` / `stale_if_error` windows (if any) follow it, so leave them out when the TTL marks
//! the end of the value's validity. `ttl_from` returning a zero duration, or `cache_if`
//! returning `false`, skips storing that value: the caller (and callers waiting on the same
//! load) get it, the next call loads again. Negative entries (`none_ttl`) keep the site's rules.
//!
//! ```
//! use std::time::Duration;
//! use cache_layer::cached;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Token { secret: String, expires_in: u64 }
//!
//! fn token_ttl(token: &Token) -> Duration {
//!     Duration::from_secs(token.expires_in)
//! }
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Report { done: bool }
//!
//! fn is_final(report: &Report) -> bool {
//!     report.done
//! }
//!
//! #[cached(ttl = "1h", key = "token:<client>", ttl_from = token_ttl)]
//! async fn token(client: &str) -> Result<Token, std::io::Error> {
//!     Ok(Token { secret: format!("s3cret-{client}"), expires_in: 60 })
//! }
//!
//! #[cached(ttl = "1h", key = "report:<id>", cache_if = is_final)]
//! async fn report(id: u64) -> Option<Report> {
//!     Some(Report { done: id % 2 == 0 })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(token("app").await.unwrap().expires_in, 60); // stored for at most 60 s
//! assert!(!report(1).await.unwrap().done); // not stored: loaded again next time
//! # }
//! ```
//!
//! # Entry lifetime
//! An entry is *fresh* for `ttl` (±10% jitter by default), then *stale* for `stale`
//! (served at once while one background task refreshes it), then usable only if the loader
//! fails for `stale_if_error`, then gone.
//!
//! # Sharing between instances: Redis
//! [`CacheBuilder::redis`] stores entries in Redis, [`CacheBuilder::tiered`] keeps memory in
//! front of it, and [`CacheBuilder::redis_cluster`] / [`CacheBuilder::tiered_cluster`] run on
//! a Redis Cluster; `rediss://` URLs use TLS. The same `#[cached]` code runs on every
//! configuration. Redis never fails a call: errors and timeouts fall back to the source, and a
//! circuit breaker skips Redis while it is down; a background probe closes it again as soon as
//! Redis answers. A call waits for Redis once, for its read: at most the operation timeout
//! (100 ms by default), plus the connect timeout (250 ms) while a connection is being made;
//! the write after a miss, and the unlock, go on in the background.
//!
//! # Invalidations when Redis is unreachable
//! An invalidation that cannot reach Redis (down, too slow, breaker open) is kept in process
//! and replayed (deleted from Redis, published to every instance) before this instance uses
//! Redis again; a background task retries every 250 ms. It runs on a task of its own, so a
//! writer whose caller goes away after the write still invalidates. A value read from Redis is
//! not copied into memory if its key or tags were invalidated while it was being read.
//!
//! An instance that may miss invalidations (it is not subscribed, its subscription does not
//! answer a heartbeat, a PING every 500 ms; its breaker is open, or has not been followed by
//! emptying memory since; its own invalidations wait for a replay) keeps using its memory tier,
//! so that an outage does not send every call to the source, within a bound:
//! [`CacheBuilder::outage_ttl`] (1 s by default). Memory is emptied when the outage begins
//! (the subscription is lost, the breaker opens), every entry stored meanwhile is dropped at
//! most the bound after its store (all its windows: fresh, stale, stale-if-error, revalidation
//! grace), and memory is emptied again when invalidations can be heard. So a value changed by
//! another instance during the outage is served at most the bound after this instance stored
//! it, and not after the outage ends; one changed before this instance noticed the outage (at
//! once when the subscription's connection closes; within the heartbeat plus the connect and
//! operation timeouts, 850 ms by default, when it goes silent) is served until it noticed. A load that began before an emptying is not kept in
//! memory. `outage_ttl(Duration::ZERO)` bypasses memory for the outage instead.
//!
//! **The bound:** once Redis answers again, no instance serves a value invalidated by a
//! writer that has returned for longer than 2 seconds with the default timeouts (in general:
//! 750 ms plus three times the connect and operation timeouts: the replay's retry and budget,
//! and a silent subscription's heartbeat). Its limits: the kept invalidations live in the
//! writer's process (if it exits first, they are lost), and at most 1,024 distinct names (and
//! keys whose delete failed) are kept; beyond that, every instance empties its memory tier when Redis answers again, but
//! Redis itself keeps the entries of the forgotten names until they expire.
//!
//! # Soft purge
//! [`Cache::soft_invalidate`] names keys and tags like [`Cache::invalidate`], but keeps their
//! entries, stale: the next call (or request, for [`CacheLayer`] responses and gRPC calls) is
//! served the old value at once while one refresh runs in the background, and the refreshed
//! value is served after it (stale-while-revalidate, for a purge). Over HTTP, [`Purge`] does it
//! for requests with `Fastly-Soft-Purge: 1`. A `#[cached]` fn without `stale` cannot run its
//! body after its caller returns: there the caller that claims the refresh runs it and waits,
//! and concurrent callers are served the old value meanwhile.
//!
//! - **How long it stays servable.** A soft-purged entry keeps its windows: the fresh time it
//!   had left becomes stale time, then its `stale` window, then its `stale_if_error` window
//!   (served only if the refresh fails). So an entry with a zero `stale` window is still served
//!   stale for the fresh time it had left; an entry that was no longer fresh is left as it is.
//!   An HTTP response is fresh only when both its RFC 9111 freshness and its entry say so; one
//!   that may never be served stale (`must-revalidate`, `s-maxage`, `no-cache`) is revalidated
//!   before it is served.
//! - **Loads in flight.** A load that began before the soft purge may have read the old data:
//!   its value is stored already stale (its next use refreshes again) and not written to Redis,
//!   where the purged copy stays, stale. A refresh that began after it stores as usual: a
//!   soft purge never refuses a write. A load on another instance that began before the soft
//!   purge and did not hear of it in time is written to Redis stale, never fresh (below).
//! - **With Redis.** One script (per key, on a cluster) lowers the stored fresh-until time
//!   (offset 9 below) of the key's entry and of each member of the tag's set to now, where it
//!   is later, keeping the value and its TTL; values shorter than the header or of another
//!   format are left alone. Then the name is published (after a `0xFE` byte and the sender's
//!   id), and every other instance marks its memory copies stale. A soft purge that cannot
//!   reach Redis never fails the caller: it is kept and replayed as a hard invalidation (see
//!   above), so no instance keeps the entries fresh.
//! - **Loads in flight on other instances.** A soft purge takes part in the check that keeps
//!   a load's write from landing after another instance's invalidation (see "Redis layout"),
//!   with the soft outcome: a load that began before a soft purge of its key or a tag, by any
//!   instance, is written to Redis with its fresh-until time lowered to the time of the write
//!   (stale: the next call refreshes it), however late its instance hears of the purge. On one
//!   Redis the soft purge's script records the name in `P` `invalidated` (as `0xFD` and the
//!   name), and the write script lowers the value it writes when it finds the key or a tag
//!   soft-purged, and not invalidated, since the load's epoch; a hard invalidation still
//!   refuses the write. On Redis Cluster the soft purge first sets the name's soft purge
//!   marker `P` `s:` name, and a load's write, once made, lowers the value's fresh-until
//!   time when a soft purge marker (and no invalidation marker) of its key or tags is younger
//!   than the load. The cost there, as for invalidations: a refresh that begins within about
//!   100 ms after the soft purge is written stale too, so the next call refreshes again.
//!
//! # Redis layout
//! A stable contract: instances running different versions of an application share entries.
//! With the key prefix `P` (default empty; [`CacheBuilder::key_prefix`]):
//!
//! | Redis key / channel | type | holds |
//! | --- | --- | --- |
//! | `P` `v:` key | string | the entry (layout below); `PX` = its whole lifetime |
//! | `P` `t:` tag | set | the value keys (`P` `v:` ...) carrying the tag; expires with its longest-lived entry; at most 10,000 members (past that, the surplus entries are deleted); members whose entry is gone are pruned as the set is written |
//! | `P` `l:` key | string | the distributed load lock (`lock = "5s"`): a random token, `PX` = the lock time |
//! | `P` `i:` name | string | on Redis Cluster only: the name's (key or tag) invalidation marker, the time of the node that holds it when the name was last invalidated, in microseconds since the Unix epoch (decimal digits); `PX` = 10 minutes |
//! | `P` `s:` name | string | on Redis Cluster only: the name's soft purge marker, as `P` `i:` name but set by a [soft purge](#soft-purge) |
//! | `P` `invalidated` | sorted set | the invalidation history (one Redis; not on a cluster), no TTL: member `0xFF` scores the epoch, a counter every invalidation moves on (started at the server's time in microseconds); each recently invalidated name (key or tag, in the bounded form below) scores the epoch of its last invalidation; each recently soft-purged name, after a `0xFD` byte (not UTF-8: no name is one; a reader that does not know it finds no name there), scores the epoch of its last soft purge; member `0xFE` scores the floor, at and above which the history is complete; at most 100,000 names (past that, the oldest are dropped and the floor raised to them) |
//! | `P` `invalidate` | pub/sub channel | each invalidated name (key or tag), for every instance's memory tier; the single byte `0xFF` (not UTF-8) means "empty your memory tier"; the byte `0xFE` (not UTF-8), the sending instance's random id (8 bytes) and a name mean "mark that name's entries stale" (a [soft purge](#soft-purge); the sender ignores its own, an instance that does not know the byte ignores it) |
//!
//! A key or tag longer than 200 bytes is stored as its first 64 bytes, `#`, and the hex SHA-256
//! of the whole, after `#` instead of `:` (`P` `v#` ..., `P` `t#` ..., `P` `l#` ..., `P` `i#` ..., `P` `s#` ...): no short
//! key or tag can reach it. A write adds the value key to its tag sets before it writes the
//! value, so no failure leaves a value that invalidating one of its tags would not find. On
//! one Redis, a write and an invalidation (the tag's members, the entry, the set, the
//! broadcast) each run as one Lua script (`EVAL`). There, the invalidation also records the
//! name in `P` `invalidated`, and a load's write, made in the background after the loader
//! returns, is checked against it: a load reads the epoch before its loader runs (one round
//! trip, on a miss only), and the write is not made when the key or one of its tags was
//! invalidated after that epoch, by any instance, or when the history cannot tell (its floor
//! is above that epoch, or it is gone). So a value loaded before another instance's
//! invalidation never lands in Redis after it, however late this instance hears of it. An
//! explicit [`Cache::insert`] is written unchecked. On Redis Cluster, tag sets are updated and
//! taken by scripts of one key each, so a concurrent write is never lost, and a member whose
//! delete fails is kept for the replay by key. There, where one script cannot reach keys in
//! other slots, a load's write is checked after it is made: an invalidation first sets the
//! name's marker `P` `i:` name (one script: the node's `TIME`), and only then takes the tag's
//! set and deletes; a load notes when it began (this process's monotonic clock, no round trip),
//! and after its tag memberships and value are written, reads the age of the markers of its
//! key and tags, each measured by the node that holds it, and deletes the value again when one
//! is younger than the load (plus 100 ms and 0.1% for clocks that step or drift). Each marker's
//! update and read are ordered on its node: either the read sees the invalidation and the
//! value is deleted, or the invalidation's delete comes after the write and removes it. A load
//! that runs longer than the markers live (10 minutes) is not kept; a write whose check gets no
//! answer has its delete queued for the replay. A soft purge takes part in both checks with
//! the soft outcome: recorded in the history (one Redis) or marked `P` `s:` name before its
//! softening (a cluster), it makes a load's write that began before it stale instead of
//! refusing or deleting it ([soft purge](#soft-purge)). The cost: loads of a name that begin within
//! about 100 ms after its invalidation are not kept in Redis either (a miss for other
//! instances, never a stale value). The check assumes that no node's clock jumps forward by
//! more than 100 ms during a load, and that no marker is evicted before it expires (Redis
//! evicts only at `maxmemory`, under an eviction policy). ACLs
//! must let the application write `P` `i:` and `P` `s:` keys; an invalidation whose marker cannot be set is
//! kept for the replay. The commands used work on Redis 6.2 and later. A command Redis refuses about one key
//! (`WRONGTYPE`, `OOM`) is a miss for that key; it does not count towards the breaker.
//!
//! An entry's bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | format: `1` = MessagePack with field names (`rmp_serde::to_vec_named`) |
//! | 1 | 8 | type fingerprint: FNV-1a 64 of `std::any::type_name` of the value, big-endian (a guard against reading another type; `type_name` may change between compilers, which makes old entries misses) |
//! | 9 | 8 | fresh until, Unix milliseconds, big-endian |
//! | 17 | 8 | stale-while-revalidate until, Unix milliseconds, big-endian |
//! | 25 | 8 | stale-if-error until (the end of the entry's life), Unix milliseconds, big-endian |
//! | 33 | 2 | number of tags N, big-endian |
//! | 35 | | N times: a 2-byte big-endian length, then the tag in UTF-8 |
//! | | | the value, MessagePack |
//!
//! An entry holds at most 16 MiB: a bigger value is not written to Redis, and no more is read
//! back. Bytes that do not decode (garbage, truncated, too long, another format or type,
//! deadlines out of order or more than 100 years ahead) are a miss: counted in
//! [`Stats::decode_errors`], logged, and overwritten by the next store. Nothing read from Redis
//! can panic a caller.
//!
//! **HTTP responses** ([`CacheLayer`] on a cache with Redis, see "Shared responses" below) use
//! the keys they have in memory: `P` `v:GET <scheme>://<authority><path>[?<query>]` holds the
//! URL's response, or, when its responses `Vary`, the URL's `Vary` record; each variant lives
//! under that key, a NUL byte, then the varied request headers (`name=value` lines; `name!`
//! when absent; credentials as a digest). A variant is tagged with the URL's key, so
//! invalidating the URL drops every variant, and every response with its own tags (`Cache-Tag`,
//! [`CacheTags`]). The entry's layout is the one above, with a format version in the
//! fingerprint's place: FNV-1a 64 of `cache-layer http response 1` for a response, of
//! `cache-layer http variants 1` for a `Vary` record; any other version is a miss. Its
//! deadlines are the response's (fresh until its freshness lifetime ends, then its
//! `stale-while-revalidate` window, then `stale-if-error` or, with validators, five minutes in
//! which it can still be revalidated), and readers treat them as caps: once "fresh until" has
//! passed, the response is served as stale (while one refresh runs, until "stale until"; never
//! past `must-revalidate`, `no-cache` or `s-maxage`) whatever its own lifetime says, so a
//! writer may mark an entry stale by rewriting those 8 bytes (`SETRANGE key 9`). The value, a
//! MessagePack array, for a response: status (integer), header fields as `[name, value]` pairs
//! in order (values `bin`), body (`bin`), when the response arrived (Unix ms), its corrected
//! initial age (ms), its freshness lifetime, `stale-while-revalidate` and `stale-if-error`
//! windows (ms), the `Vary` names, the varied request headers it was stored for (as in its
//! key), its tags; for a `Vary` record: `[[names]]`. A response read back passes the reader's
//! storage gate again and must belong under its key; anything refused is a miss, like bytes
//! that do not decode. The load lock `P` `l:` and the key guards a miss while one instance asks
//! the inner service ([`CacheLayer::shared_lock`]).
//!
//! # Concurrent calls on the same key
//! Concurrent misses on one key run the function body once; the other callers wait for its
//! value. A caller that is cancelled or panics while loading hands the load to a waiter. With
//! `lock = "5s"` and Redis, instances also take a distributed lock (`SET NX PX` with a token):
//! the others wait for the holder's value, at most the lock time; when the holder releases
//! the lock without a value (its load failed, or it was cancelled: a dropped holder releases
//! the lock too), they stop waiting and load at once.
//!
//! # Without the macro: get, insert, load by hand
//! The same engine answers calls made by hand (single-flight, jitter, stale-while-revalidate,
//! stale-if-error, negative caching, tags, tiers, codec): [`Cache::get`], [`Cache::insert`],
//! [`Cache::prime`] (warming at start-up), [`Cache::get_or_load`] (what a `#[cached]` function
//! returning `Result<T, E>` does), [`Cache::get_or_load_optional`] (`Result<Option<T>, E>`,
//! with negative caching) and [`Cache::remove`]. What the macro takes as arguments,
//! [`LoadOptions`] holds, built once. Keys are [`Key`]s: a namespace written in code, then
//! parts rendered as a key template renders placeholders, so `Key::new("user").part(7)` is the
//! entry of `#[cached(key = "user:<id>")]` for `id = 7` (warm a function's entries that way),
//! and no part, however hostile, renders another key (see [`Key`] for the namespace rules).
//!
//! ```
//! use std::time::Duration;
//! use cache_layer::{Cache, Key, LoadOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), std::io::Error> {
//! let cache = Cache::builder().build().unwrap();
//! let options = LoadOptions::new(Duration::from_secs(300))
//!     .stale(Duration::from_secs(60))
//!     .tag("users");
//! // Warm at start-up.
//! cache.prime([(Key::new("user").part(1), "Ada".to_owned())], &options).await;
//! // Load by hand: the loader runs on a miss only, once per key across concurrent callers.
//! let name: String = cache
//!     .get_or_load(&Key::new("user").part(2), &options, || async {
//!         Ok::<_, std::io::Error>("Grace".to_owned()) // the query
//!     })
//!     .await?;
//! assert_eq!(name, "Grace");
//! assert_eq!(cache.get::<String>(&Key::new("user").part(1)).await.as_deref(), Some("Ada"));
//! cache.invalidate("users").await; // both entries carry the tag
//! assert_eq!(cache.entry_count(), 0);
//! # Ok(()) }
//! ```
//!
//! **Batches** (N+1 reads): [`Cache::get_or_load_many`] answers what it can from memory, reads
//! the rest from Redis in one round trip, and calls its loader once with only the keys still
//! missing; each key keeps its own single-flight, so overlapping concurrent batches (and single
//! loads) load each key once.
//!
//! # Testing code that caches
//! - **Caching off**: [`CacheBuilder::disabled`] (or [`disabled_if`](CacheBuilder::disabled_if)
//!   for a `--no-cache` flag) builds a cache through which every `#[cached]` call and every
//!   load runs its loader, nothing is stored, and a [`CacheLayer`] passes requests through.
//!   Install it with [`Cache::set_global`] for the functions that use the default cache.
//! - **A paused clock**: with the `test-clock` feature (in `[dev-dependencies]`),
//!   `cache_layer::testing::follow_tokio_time()` measures entry lifetimes on Tokio's clock, so
//!   `tokio::time::pause()` and `advance()` take entries from fresh to stale to expired without
//!   sleeping. Without that feature nothing of it is compiled; with it but not called, a
//!   clock reading costs one more relaxed atomic load.
//!
//! # Traces
//! Every cache decision is a `tracing` span, whatever exports it (an OpenTelemetry layer, a
//! log): `cache.lookup` (level DEBUG, on the hit path: memo, HTTP and gRPC look-ups, each key of a
//! batch), `cache.load` (level INFO: a memo load, entered while it runs) and `cache.refresh`
//! (level INFO: a background refresh of a stale entry, memo, HTTP or gRPC; a root span that
//! [follows from](tracing::Span::follows_from) the request that served the stale value, since
//! it outlives it). Fields follow OpenTelemetry's names where one exists: `cache.name`,
//! `code.function.name` (the `#[cached]` site or [`LoadOptions::name`]),
//! `http.request.method`, `http.response.status_code` (a revalidation's), `cache.outcome`
//! (look-up: `hit`, `stale`, `miss`, `bypass`; load: `miss`, `coalesced`, `stale_if_error`,
//! `bypass`; refresh: `refreshed`, `failed`, `coalesced`), `cache.tier` (`memory` or `redis`,
//! where a look-up's answer came from) and `cache.load.duration_us`; a span's start and end
//! time it. Keys are left out (they may hold user data) unless [`CacheBuilder::trace_keys`]
//! adds them as `cache.key`. Without a subscriber interested in them, a span costs a check of
//! its callsite.
//!
//! To export them as OpenTelemetry spans, install `tracing-opentelemetry`'s layer over the
//! SDK's tracer: `examples/otel_traces.rs` does it with an exporter that prints, and runs
//! without a collector (`cargo run --example otel_traces`).
//!
//! # HTTP response caching
//! [`CacheLayer`] puts the same [`Cache`] in front of any `tower::Service<http::Request<B>>`
//! (an axum `Router`, a hyper service) as an RFC 9111 *shared* cache, and evaluates the
//! RFC 9110 §13 preconditions for it:
//!
//! ```text
//! let app = Router::new()
//!     .route("/users/{id}", get(user).put(update_user))
//!     .layer(CacheLayer::new(cache.clone()));
//! ```
//!
//! A runnable version with a hand-written service:
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::{ready, Ready};
//! use std::task::{Context, Poll};
//!
//! use bytes::Bytes;
//! use cache_layer::{Cache, CacheLayer};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! #[derive(Clone)]
//! struct Hello;
//!
//! impl Service<Request<()>> for Hello {
//!     type Response = Response<Full<Bytes>>;
//!     type Error = Infallible;
//!     type Future = Ready<Result<Self::Response, Infallible>>;
//!
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
//!         Poll::Ready(Ok(()))
//!     }
//!
//!     fn call(&mut self, _: Request<()>) -> Self::Future {
//!         let response = Response::builder()
//!             .header("cache-control", "max-age=60")
//!             .body(Full::new(Bytes::from("hello")))
//!             .unwrap();
//!         ready(Ok(response))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut service = CacheLayer::new(Cache::builder().build().unwrap()).layer(Hello);
//! let request = || Request::get("http://example.com/").body(()).unwrap();
//!
//! let first = service.call(request()).await.unwrap();
//! assert_eq!(
//!     first.headers()["cache-status"],
//!     "cache-layer; fwd=uri-miss; fwd-status=200; stored"
//! );
//! let again = service.call(request()).await.unwrap(); // served from the cache
//! assert!(again.headers()["cache-status"].to_str().unwrap().starts_with("cache-layer; hit"));
//! assert_eq!(again.into_body().collect().await.unwrap().to_bytes(), "hello");
//! # }
//! ```
//!
//! - **What is stored**: responses to GET (HEAD is answered from them) that give freshness
//!   (`s-maxage`, `max-age`, `Expires`, or heuristically `Last-Modified`), or any storable
//!   response once you opt in with [`CacheLayer::default_ttl`]. Never stored: `no-store`,
//!   `private`, `Vary: *`, `Set-Cookie`, status 206/304/1xx, responses to requests with
//!   `Authorization` unless `public`/`s-maxage`/`must-revalidate`, responses to requests with
//!   `Cookie` unless `public`/`s-maxage`/`Vary: Cookie`, bodies over
//!   [`max_body`](CacheLayer::max_body) or with trailers. `no-cache` is stored and revalidated
//!   on every use.
//! - **Targeted fields** (RFC 9213): `CDN-Cache-Control`, and a field of your own
//!   ([`CacheLayer::targeted_cache_control`]), replace `Cache-Control` and `Expires` for this
//!   cache when present and valid; clients do not see them unless
//!   [`forward_targeted_cache_control`](CacheLayer::forward_targeted_cache_control).
//! - **Ranges**: a GET with one byte `Range` is cut from a stored `200` (`206`, or `416`),
//!   honouring `If-Range`; several ranges get the whole response.
//! - **Keys**: `GET <scheme>://<authority><path>?<query>` (or [`CacheLayer::key_fn`]), plus
//!   the request headers the response `Vary`s on (up to
//!   [`max_variants`](CacheLayer::max_variants) variants per URL). The authority comes from the
//!   URI (HTTP/2, absolute-form) or the one `Host` line and must be an RFC 3986
//!   `host[:port]`: a request with an invalid or missing one passes through uncached. The query
//!   is kept as sent ([`CacheLayer::sort_query`] opts in to sorting its pairs). Varied
//!   `Cookie` / `Authorization` values are keyed by a digest, never written into a key.
//! - **Serving**: `Age` per RFC 9111 §4.2.3, `Date` kept as the origin sent it (added once
//!   when missing), an RFC 9211 `Cache-Status` member such as `cache-layer; hit; ttl=42` or
//!   `cache-layer; fwd=uri-miss; fwd-status=200; stored`.
//! - **Request `Cache-Control`**: by default `max-age`, `min-fresh`, `no-cache` (and
//!   `Pragma: no-cache`) force a revalidation, which is coalesced with concurrent ones;
//!   `max-stale` accepts stale responses (never past `must-revalidate`); `only-if-cached` gets
//!   504 on a miss. [`CacheLayer::request_cache_control`]`(false)` stops clients from forcing
//!   revalidations at all.
//! - **Revalidation**: a stale response with an `ETag` or `Last-Modified` is revalidated with
//!   `If-None-Match`/`If-Modified-Since`; a 304 refreshes its headers and freshness.
//!   `stale-while-revalidate` serves it at once and refreshes in the background;
//!   `stale-if-error` serves it when the inner service fails or answers 5xx.
//! - **Conditional requests**: responses without an `ETag` get a strong one from their bytes
//!   ([`EtagMode`]) when they are stored, or small enough to read before sending (bodies of
//!   unknown length stream out without one on their first, storing, pass). `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//!   `If-Modified-Since` are evaluated in RFC 9110 §13.2.2 order, on hits (without calling the
//!   inner service) and on forwarded responses alike: 304 or 412. A write's `If-Match` /
//!   `If-Unmodified-Since` is left to the application: a stored copy may be outdated or
//!   another variant, and deciding from it could refuse a valid write with a false 412.
//! - **Invalidation**: a successful POST/PUT/PATCH/DELETE drops its URL and same-origin
//!   `Location`/`Content-Location`; the [`CacheTags`] extension or a `Cache-Tag` header
//!   (removed before the client sees it) tag a response, and `cache.invalidate(tag)` drops it.
//!   [`CacheLayer::purge`] serves the same over HTTP: `PURGE <path>`, or `Cache-Tag` /
//!   `Surrogate-Key` values, behind a check of your own; with `Fastly-Soft-Purge: 1` the
//!   purge is [soft](#soft-purge): served stale once while one background request
//!   revalidates.
//! - **Load**: concurrent misses on one key make one inner call; a response that may not be
//!   stored is never shared with the waiters, and its URL skips coalescing for a few seconds.
//! - **Shared responses**: on a cache with Redis ([`CacheBuilder::tiered`] or
//!   [`CacheBuilder::redis`]) a stored response and its URL's `Vary` record are written to
//!   Redis too (off the request's path, after the same storage gate, under the same keys; see
//!   "Redis layout"), with memory in front: a response one instance stored is a hit on every
//!   other, with its `Age` counted from when the first instance received it. An instance that
//!   misses in memory reads Redis before it asks the inner service, and, with
//!   [`shared_lock`](CacheLayer::shared_lock) (5 s by default), concurrent misses on several
//!   instances make one inner call. Bodies over [`max_shared_body`](CacheLayer::max_shared_body)
//!   (1 MiB by default) stay in each instance's memory. Invalidation and purge by URL or tag
//!   drop the shared copy and every instance's memory copy. Redis trouble is never a failed
//!   request: reads, writes and the lock fail open, and sharing resumes when Redis answers.
//! - **Bodies**: the decision is made from the headers first. Bodies of known size up to the
//!   cap are read before the head is sent; others are read ahead by a task at the inner
//!   service's pace (up to the cap) and streamed to the client from there, so neither the store
//!   nor the requests coalesced behind it wait for a slow or stalled client; past the cap the
//!   client reads the rest at its own pace. Once its client has left, such a body has the
//!   cache's `max_wait` left to end (as long as coalesced requests wait for it): past that it is
//!   dropped, unstored. Larger or endless bodies and trailers pass through;
//!   server-sent events (`text/event-stream`) are never stored and never coalesced; the inner
//!   service's error type is never changed.
//!
//! # gRPC
//! On a tonic server (`Server::builder().layer(CacheLayer::new(cache))`), gRPC calls pass
//! through the layer untouched: unary and streaming, headers, trailers, `grpc-status` and
//! `grpc-message`, compression and deadlines. They are not treated as HTTP writes.
//!
//! With the `grpc` feature, unary methods are cached once opted in, by path
//! (`grpc_method("/catalog.v1.Catalog/GetCourse", ttl)`), by predicate
//! (`grpc_methods_where`), or from a file descriptor set's `idempotency_level =
//! NO_SIDE_EFFECTS` (`grpc_descriptors`); this makes the layer a `CacheLayer<GrpcMethods>`,
//! whose service hands the inner one a `GrpcRequestBody`.
//!
//! - **Key**: `grpc <authority><path>` (the authority validated as for HTTP; a call without a
//!   valid one passes through) and a SHA-256 of the *decoded* request message (one
//!   frame; `gzip` or `deflate` per `grpc-encoding` decompressed, so compression does not split
//!   keys), the client's `grpc-accept-encoding` (a compressed answer is only replayed to
//!   clients that decode it) and the metadata added with `grpc_key_metadata` (tenant,
//!   `authorization`). A call carrying `authorization` or `cookie` is not cached unless that
//!   field is keyed; `grpc-timeout` never is.
//! - **Stored**: headers, message bytes and trailers, replayed exactly; only when the trailers
//!   say `grpc-status: 0` and the answer is one message (never a Trailers-Only error, never a
//!   stream). Fresh for the method's TTL, or `max-age`/`s-maxage` from a `cache-control`
//!   response metadata entry; `no-store` and `private` are not stored.
//! - **Invalidation**: `cache-tag` response metadata (removed before the client sees it) tags
//!   the entry, and every entry is tagged with its method path.
//! - **Load**: concurrent identical calls make one inner call; stale-while-revalidate and
//!   stale-if-error (the layer's windows, or `cache-control`'s) as for HTTP; UNKNOWN,
//!   DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE and DATA_LOSS count as the service failing.
//! - **Not cached**: a message over [`max_body`](CacheLayer::max_body), several request
//!   frames, an unknown `grpc-encoding`: the call passes through, with a `Cache-Status` detail.

mod batch;
mod cache;
mod clock;
mod entry;
mod error;
mod flight;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(not(feature = "grpc"))]
mod grpc;
pub mod http;
mod imperative;
mod invalidation;
mod key;
mod memo;
mod options;
mod pipeline;
mod shape;
mod stats;
mod store;
mod trace;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "grpc")]
pub use self::grpc::{DescriptorError, GrpcConfigError, GrpcMethods, GrpcRequestBody, LayerMode};
#[cfg(fuzzing)]
#[doc(hidden)]
pub use self::http::__fuzz;
pub use self::http::{
    CacheBody, CacheLayer, CacheService, CacheTags, EtagMode, HttpOnly, Purge, PurgeBody, PurgeOr,
    ResponseFuture,
};
pub use cache::{Cache, CacheBuilder};
#[doc = include_str!("reference/cached.md")]
#[doc(inline)]
pub use cache_macros::cached;
#[doc = include_str!("reference/invalidates.md")]
#[doc(inline)]
pub use cache_macros::invalidates;
pub use error::BuildError;
pub use key::{Key, KeyArg, KeyBuf};
pub use options::LoadOptions;

/// Support for testing code that caches: caching off is
/// [`CacheBuilder::disabled`]; entry lifetimes on Tokio's paused clock are
/// `follow_tokio_time` (feature `test-clock`).
pub mod testing {
    #[cfg(feature = "test-clock")]
    pub use crate::clock::follow_tokio_time;
}
pub use stats::Stats;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
