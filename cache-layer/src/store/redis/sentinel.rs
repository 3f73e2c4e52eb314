//! Redis Sentinel: the master that the Sentinels name, asked for again after a failover.
//!
//! The `redis` crate's connection manager reconnects to the address it was made with, which
//! after a failover is a replica (Sentinel demotes the old master and closes its clients'
//! connections) or nothing at all. So on Sentinel the store holds a multiplexed connection to
//! the master the Sentinels named, and drops it when it breaks, the server refuses a write as
//! a replica (`READONLY`), or the Sentinels name another master (asked on the subscriber's
//! heartbeat: an old master stays one for some seconds after the switch, until Sentinel
//! demotes it). The next operation asks the Sentinels again; so does the subscriber each time
//! it connects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, Value,
};
use tokio::sync::Mutex;

use crate::error::BuildError;

/// The master of a Sentinel deployment, and the store's connection to it while it lasts.
pub(super) struct SentinelMaster {
    /// Asks the Sentinels for the master; one question at a time (the client needs `&mut`).
    client: Mutex<SentinelClient>,
    name: String,
    current: SyncMutex<Option<MasterLink>>,
    /// Numbers each connection, so that a failure on an old one does not drop a newer one.
    opened: AtomicU64,
    /// A connection to a Sentinel, for [`SentinelMaster::follows`].
    sentinel: SyncMutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

/// A connection to the master the Sentinels named; reports its own breakage.
#[derive(Clone)]
pub(super) struct MasterLink {
    connection: MultiplexedConnection,
    number: u64,
    address: Option<(String, u16)>,
    master: Arc<SentinelMaster>,
}

impl SentinelMaster {
    /// From the Sentinels' addresses, the master's name, and how to reach it.
    pub(super) fn new(
        sentinels: Vec<ConnectionInfo>,
        name: &str,
        node: SentinelNodeConnectionInfo,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self, BuildError> {
        if sentinels.is_empty() {
            return Err(BuildError::NoSentinels);
        }
        let client = SentinelClient::build(
            sentinels,
            String::from(name),
            Some(node),
            SentinelServerType::Master,
        );
        let client = client.map_err(|e| BuildError::RedisUrl {
            position: 0,
            reason: e.to_string(),
        })?;
        Ok(SentinelMaster {
            client: Mutex::new(client),
            name: name.to_owned(),
            current: SyncMutex::new(None),
            opened: AtomicU64::new(0),
            sentinel: SyncMutex::new(None),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(op_timeout)),
        })
    }

    /// A client for the master the Sentinels name now.
    pub(super) async fn master(&self) -> RedisResult<Client> {
        self.client.lock().await.async_get_client().await
    }

    /// The connection to the master: the current one, or a new one to the master the
    /// Sentinels name now.
    pub(super) async fn link(self: &Arc<Self>) -> RedisResult<MasterLink> {
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let mut client = self.client.lock().await;
        // Another caller may have connected while this one waited for the client.
        if let Some(link) = self.current() {
            return Ok(link);
        }
        // The lock is held until the connection is current, so that callers waiting for it
        // use this one instead of opening their own.
        let master = client.async_get_client().await?;
        let connection = master
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let link = MasterLink {
            connection,
            number: self.opened.fetch_add(1, Ordering::Relaxed),
            address: address(&master),
            master: Arc::clone(self),
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(link.clone());
        drop(client);
        Ok(link)
    }

    fn current(&self) -> Option<MasterLink> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the current connection if `lost` says it is the one to drop.
    fn drop_current(&self, lost: impl FnOnce(&MasterLink) -> bool) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(lost) {
            *current = None;
        }
    }

    /// Whether `client` (the subscriber's) still reaches the master the Sentinels name. When
    /// they name another, the store's connection to the old one is dropped too. `true` when
    /// no Sentinel answers: no news is not a failover.
    pub(super) async fn follows(&self, client: &Client) -> bool {
        let Some(named) = self.named().await else {
            return true;
        };
        let Some(subscribed) = address(client) else {
            return true;
        };
        if named == subscribed {
            return true;
        }
        self.drop_current(|link| link.address.as_ref() == Some(&subscribed));
        false
    }

    /// The master's address as a Sentinel names it, `None` when none answers.
    async fn named(&self) -> Option<(String, u16)> {
        let cached = self
            .sentinel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut sentinel = match cached {
            Some(connection) => connection,
            None => {
                let client = self.client.lock().await.async_get_sentinel_client().await;
                let connection = client
                    .ok()?
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
                    .ok()?;
                *self.sentinel.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(connection.clone());
                connection
            }
        };
        let named = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.name)
            .query_async::<Option<(String, u16)>>(&mut sentinel)
            .await;
        if named.is_err() {
            *self.sentinel.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        named.ok().flatten()
    }
}

/// The host and port `client` connects to (over TCP, with or without TLS).
fn address(client: &Client) -> Option<(String, u16)> {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}

impl MasterLink {
    /// Drops this connection when `reply` says it no longer reaches the master.
    fn check<T>(&self, reply: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &reply {
            if not_the_master(error) {
                self.lost();
            }
        }
        reply
    }

    fn lost(&self) {
        self.master.drop_current(|link| link.number == self.number);
    }
}

/// Whether `error` says the connection no longer reaches a master: broken, refused, timed out
/// (the process may be gone without a word), or a replica's refusal to write.
fn not_the_master(error: &RedisError) -> bool {
    error.code() == Some("READONLY")
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

fn is_readonly(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(error) if error.code() == "READONLY")
}

impl ConnectionLike for MasterLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let reply = self.connection.req_packed_command(cmd).await;
            self.check(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let replies = self
                .connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            // A pipeline's commands fail one by one, inside its replies.
            if replies.as_ref().is_ok_and(|r| r.iter().any(is_readonly)) {
                self.lost();
            }
            self.check(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
}
