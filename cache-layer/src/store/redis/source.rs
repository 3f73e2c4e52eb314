//! [`RedisSource`]: where the shared tier's Redis is, as a builder was told: URLs (one Redis or
//! a cluster's seed nodes), Sentinels and a master name, or a client the application already
//! has. Shown without credentials.

use std::fmt;

use redis::aio::ConnectionManager;
use redis::sentinel::SentinelNodeConnectionInfo;
use redis::Client;

/// Where a cache's shared tier reaches Redis, for
/// [`CacheBuilder::redis_with`](crate::CacheBuilder::redis_with) and
/// [`CacheBuilder::tiered_with`](crate::CacheBuilder::tiered_with): a client or connection
/// manager the application already has (its TLS, credentials and settings kept), or a Redis
/// Sentinel deployment.
///
/// The types are the `redis` crate's, re-exported as [`cache_layer::redis`](crate::redis) so
/// that the versions match.
///
/// Whatever the source, the cache keeps its own behaviour: the operation and connect
/// timeouts of [`CacheBuilder::redis_timeouts`](crate::CacheBuilder::redis_timeouts) bound
/// each call, failures fall back to the source (fail open) behind the circuit breaker, and a
/// pub/sub connection of its own hears invalidations.
///
/// ```
/// use cache_layer::{redis, Cache, RedisSource};
///
/// let client = redis::Client::open("redis://127.0.0.1:6379/").expect("valid URL");
/// let cache = Cache::builder()
///     .tiered_with(RedisSource::client(client))
///     .build()
///     .expect("valid configuration");
/// # drop(cache);
/// ```
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisSource(pub(super) Source);

/// See [`RedisSource`].
#[derive(Clone)]
pub(super) enum Source {
    /// One Redis, or (`cluster`) a cluster's seed nodes.
    Urls { urls: Vec<String>, cluster: bool },
    /// Sentinels' URLs, the name of the master they watch, how to reach it.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        node: SentinelNodeConnectionInfo,
    },
    /// The application's client: the cache opens its own connection manager with it.
    Client(Client),
    /// The application's connection manager, shared; its client for pub/sub.
    Manager {
        manager: ConnectionManager,
        client: Client,
    },
}

impl RedisSource {
    /// A client the application configured (TLS, credentials, protocol): the cache opens
    /// its connection manager and its pub/sub connection with it.
    pub fn client(client: Client) -> Self {
        RedisSource(Source::Client(client))
    }

    /// A connection manager the application already uses, shared with the cache (one
    /// multiplexed connection for both), and the client it was made from, for the cache's
    /// pub/sub connection (a connection manager cannot make one). The manager keeps the
    /// settings it was made with; the cache's timeouts still bound each of its calls.
    pub fn connection_manager(manager: ConnectionManager, client: Client) -> Self {
        RedisSource(Source::Manager { manager, client })
    }

    /// The master that the Redis Sentinels at `sentinels` (URLs such as
    /// `redis://10.0.0.5:26379`, with the Sentinels' own credentials if they need any) know
    /// as `master`. The master is asked for again whenever its connection breaks or it
    /// refuses a write as a replica, so that calls and invalidations follow a failover.
    ///
    /// Besides, every instance asks a Sentinel which master it names twice a second (on
    /// its invalidation subscription's heartbeat), so that it leaves an old master that
    /// Sentinel has not demoted yet, while the others already use the new one.
    ///
    /// The master is reached without TLS or credentials, on database 0; for those, see
    /// [`sentinel_with`](Self::sentinel_with).
    pub fn sentinel<I, U>(sentinels: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        Self::sentinel_with(sentinels, master, SentinelNodeConnectionInfo::default())
    }

    /// Like [`sentinel`](Self::sentinel), reaching the master (and only the master: the
    /// Sentinels' own credentials go in their URLs) as `node` says: TLS mode, username and
    /// password, database. Its TCP settings are the cache's (no delay, keepalive).
    ///
    /// ```
    /// use cache_layer::redis::sentinel::SentinelNodeConnectionInfo;
    /// use cache_layer::redis::RedisConnectionInfo;
    /// use cache_layer::{Cache, RedisSource};
    ///
    /// let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(
    ///     RedisConnectionInfo::default().set_password("master-password").set_db(1),
    /// );
    /// let source = RedisSource::sentinel_with(["redis://10.0.0.5:26379"], "main", node);
    /// let cache = Cache::builder().tiered_with(source).build().expect("valid configuration");
    /// # drop(cache);
    /// ```
    pub fn sentinel_with<I, U>(
        sentinels: I,
        master: impl Into<String>,
        node: SentinelNodeConnectionInfo,
    ) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        RedisSource(Source::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
            node,
        })
    }

    /// One Redis's URL, or (`cluster`) a cluster's seed nodes.
    pub(crate) fn urls(urls: Vec<String>, cluster: bool) -> Self {
        RedisSource(Source::Urls { urls, cluster })
    }
}

/// Shows URLs without what may be a credential (user and password, and the query, which may
/// carry them too), and the application's clients by kind only.
impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |urls: &[String]| urls.iter().map(|url| redacted(url)).collect::<Vec<_>>();
        match &self.0 {
            Source::Urls { urls, cluster } => f
                .debug_struct("Urls")
                .field("urls", &shown(urls))
                .field("cluster", cluster)
                .finish(),
            Source::Sentinel {
                sentinels, master, ..
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", &shown(sentinels))
                .field("master", master)
                .finish(),
            Source::Client(_) => f.write_str("Client"),
            Source::Manager { .. } => f.write_str("ConnectionManager"),
        }
    }
}

/// `url` with its user information and query replaced by `***`.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, "?***"),
        None => (rest, ""),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_owned(),
    };
    format!("{scheme}://{rest}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cache;

    #[test]
    fn debug_output_shows_no_credential() {
        let builders = [
            Cache::builder().tiered("redis://user:secret@127.0.0.1:6379/0"),
            Cache::builder().redis("rediss://:secret@cache.internal/"),
            Cache::builder().redis("unix:///run/redis.sock?user=u&pass=secret"),
            Cache::builder().tiered_cluster(["redis://a:secret@n1/", "redis://a:secret@n2:7001"]),
            Cache::builder().redis("redis://user:p%40ss%2Fword@host/"),
            Cache::builder().tiered_sentinel(["redis://s:secret@n1:26379"], "main"),
            Cache::builder().redis_with(RedisSource::client(
                Client::open("redis://u:secret@n1/").expect("valid URL"),
            )),
        ];
        for builder in builders {
            let shown = format!("{builder:?}");
            assert!(!shown.contains("secret"), "{shown}");
            assert!(!shown.contains("word"), "{shown}");
        }
        assert_eq!(redacted("redis://u:p@host:1/2"), "redis://***@host:1/2");
        assert_eq!(redacted("redis://host:1/2"), "redis://host:1/2");
    }
}
