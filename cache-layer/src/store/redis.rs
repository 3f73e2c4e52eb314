//! The shared store: Redis, through the `redis` crate's `ConnectionManager` (reconnects by
//! itself), with TCP_NODELAY, tight timeouts and a circuit breaker. Every operation fails
//! open: an error or a timeout is counted and logged, and the caller proceeds as on a miss.
//!
//! # Key layout (a stable contract)
//! With the cache's key prefix `P` (default empty):
//!
//! | Redis key / channel | type | holds |
//! | --- | --- | --- |
//! | `P` `v:` key | string | the entry, in the [`codec`](super::codec) layout; `PX` = its whole lifetime |
//! | `P` `t:` tag | set | the value keys (`P v:...`) tagged with the tag; expires with its longest-lived entry |
//! | `P` `l:` key | string | the distributed single-flight lock: a random token, `PX` = the lock time |
//! | `P` `invalidate` | pub/sub channel | names (keys or tags) invalidated by any instance |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{Client, IntoConnectionInfo, RedisError, RedisResult};
use tokio::sync::OnceCell;

use super::breaker::Breaker;
use crate::stats::{Counter, Counters};

/// How a [`RedisStore`] connects and how long it waits.
#[derive(Clone, Debug)]
pub(crate) struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
}

pub(crate) struct RedisStore {
    client: Client,
    manager: OnceCell<ConnectionManager>,
    prefix: String,
    connect_timeout: Duration,
    op_timeout: Duration,
    breaker: Breaker,
    counters: Arc<Counters>,
}

/// Releases the lock only if it still holds our token (a lock that expired and was taken by
/// another instance is not ours to delete).
const UNLOCK: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

impl RedisStore {
    /// Validates the URL; connects lazily, on first use, so that building a cache never
    /// blocks and a Redis that is down at start-up does not stop the application.
    pub(crate) fn new(config: &RedisConfig, counters: Arc<Counters>) -> Result<Self, String> {
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("invalid Redis URL: {e}"))?;
        let info = info.set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = Client::open(info).map_err(|e| format!("invalid Redis URL: {e}"))?;
        Ok(RedisStore {
            client,
            manager: OnceCell::new(),
            prefix: config.prefix.clone(),
            connect_timeout: config.connect_timeout,
            op_timeout: config.op_timeout,
            breaker: Breaker::new(3, Duration::from_secs(1)),
            counters,
        })
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn value_key(&self, key: &str) -> String {
        format!("{}v:{key}", self.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}t:{tag}", self.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}l:{key}", self.prefix)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// Whether the breaker is open (Redis considered down).
    pub(crate) fn is_down(&self) -> bool {
        self.breaker.is_open()
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        self.manager
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
    }

    /// Runs `op` under the breaker and the timeout. `None` means "the store could not
    /// answer": counted, logged, and treated by the caller like a miss.
    async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.breaker.allow() {
            return None;
        }
        let budget = self.connect_timeout + self.op_timeout;
        let attempt = async {
            let connection = self.connection().await?;
            op(connection).await
        };
        let error = match tokio::time::timeout(budget, attempt).await {
            Ok(Ok(value)) => {
                self.breaker.success();
                return Some(value);
            }
            Ok(Err(error)) => error,
            Err(_elapsed) => RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not answer in time",
            )),
        };
        self.counters.add(Counter::StoreError);
        if self.breaker.failure() {
            tracing::warn!(cache = self.counters.name(), %error, "Redis unavailable: serving without it until it answers again");
        } else {
            tracing::debug!(cache = self.counters.name(), op = what, %error, "Redis operation failed");
        }
        None
    }

    /// The bytes stored under `key`; `None` when absent or when Redis did not answer.
    pub(crate) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.value_key(key);
        self.run("GET", |mut c| async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        })
        .await
        .flatten()
    }

    /// Stores `bytes` under `key` for `ttl`, and adds the key to each tag's set.
    pub(crate) async fn set(&self, key: &str, bytes: Vec<u8>, ttl: Duration, tags: &[Box<str>]) {
        let value_key = self.value_key(key);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
        self.run("SET", |mut c| async move {
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(&value_key)
                .arg(bytes)
                .arg("PX")
                .arg(millis)
                .ignore();
            for tag_key in &tag_keys {
                pipe.cmd("SADD").arg(tag_key).arg(&value_key).ignore();
                // A new set has no TTL (NX sets one); an existing one only grows (GT).
                pipe.cmd("PEXPIRE")
                    .arg(tag_key)
                    .arg(millis)
                    .arg("NX")
                    .ignore();
                pipe.cmd("PEXPIRE")
                    .arg(tag_key)
                    .arg(millis)
                    .arg("GT")
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await;
    }

    /// Deletes the entry stored under `key` only.
    pub(crate) async fn delete(&self, key: &str) {
        let key = self.value_key(key);
        self.run("DEL", |mut c| async move {
            redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await
        })
        .await;
    }

    /// Deletes `name`'s entry and every entry tagged `name`, then tells every instance.
    pub(crate) async fn invalidate(&self, name: &str) {
        let value_key = self.value_key(name);
        let tag_key = self.tag_key(name);
        let channel = self.channel();
        self.run("INVALIDATE", |mut c| async move {
            let tagged: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&tag_key)
                .query_async(&mut c)
                .await?;
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(&value_key).ignore();
            for key in &tagged {
                pipe.cmd("DEL").arg(key).ignore();
            }
            pipe.cmd("DEL").arg(&tag_key).ignore();
            pipe.cmd("PUBLISH").arg(&channel).arg(name).ignore();
            pipe.query_async::<()>(&mut c).await
        })
        .await;
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

    pub(crate) async fn unlock(&self, key: &str, token: &str) {
        let lock_key = self.lock_key(key);
        self.run("UNLOCK", |mut c| async move {
            redis::Script::new(UNLOCK)
                .key(&lock_key)
                .arg(token)
                .invoke_async::<()>(&mut c)
                .await
        })
        .await;
    }
}
