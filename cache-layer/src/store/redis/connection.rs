//! How the store reaches Redis: a client per node (TCP_NODELAY, keepalive, TLS for
//! `rediss://`) or the application's own, and one connection every operation shares, opened
//! on first use: the `redis` crate's `ConnectionManager` on one Redis, its
//! `ClusterConnection` on a cluster, a connection to the master on Sentinel (`sentinel`).
//! Each reconnects by itself.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{
    Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, Value,
};
use tokio::sync::OnceCell;

use super::sentinel::{MasterLink, SentinelMaster};
use super::source::{RedisSource, Source};
use crate::error::BuildError;

/// A connection to one Redis, to a cluster, or to the master the Sentinels named; each
/// reconnects by itself (on Sentinel, to the master named after a failover).
#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MasterLink),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
            Link::Sentinel(c) => c.req_packed_command(cmd),
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
            Link::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
            Link::Sentinel(c) => c.get_db(),
        }
    }
}

impl Link {
    /// Runs `commands`: pipelined on one Redis; one by one on a cluster, where a pipeline's
    /// keys would span slots.
    pub(super) async fn exec(&mut self, commands: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Link::Single(_) | Link::Sentinel(_) => {
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

    /// Sends `commands` together, each on a clone of this connection (on a cluster, each to
    /// its key's node): one round trip for all, not one each. Their replies, in order.
    pub(super) async fn each<T: FromRedisValue>(
        &self,
        commands: impl IntoIterator<Item = Cmd>,
    ) -> RedisResult<Vec<T>> {
        let replies = commands.into_iter().map(|command| {
            let mut c = self.clone();
            async move { command.query_async::<T>(&mut c).await }
        });
        futures_util::future::try_join_all(replies).await
    }
}

/// Where a store reaches Redis, and its one connection (opened on first use, except a
/// connection manager the application handed in).
pub(super) struct Connection {
    target: Target,
    link: OnceCell<Link>,
    pub(super) connect_timeout: Duration,
    pub(super) op_timeout: Duration,
}

/// What a store connects to.
enum Target {
    /// One Redis; its client also opens the subscriber's connection.
    Single(Box<Client>),
    /// A cluster, and a client per seed node for the subscriber.
    Cluster {
        clients: Vec<Client>,
        cluster: Box<ClusterClient>,
    },
    /// The master the Sentinels name.
    Sentinel(Arc<SentinelMaster>),
}

/// Where the subscriber's `attempt`-th connection goes (see [`Connection::subscriber`]).
#[derive(Clone)]
pub(crate) struct Subscriber(Subscribe);

#[derive(Clone)]
enum Subscribe {
    Client(Box<Client>),
    Sentinel(Arc<SentinelMaster>),
}

impl Subscriber {
    /// The client to subscribe with: on Sentinel, one for the master named now.
    pub(crate) async fn client(&self) -> RedisResult<Client> {
        match &self.0 {
            Subscribe::Client(client) => Ok(Client::clone(client)),
            Subscribe::Sentinel(master) => master.master().await,
        }
    }

    /// Whether `client`, made by [`Subscriber::client`], still reaches the master (always,
    /// but on Sentinel): asked on the subscription's heartbeat.
    pub(crate) async fn follows(&self, client: &Client) -> bool {
        match &self.0 {
            Subscribe::Client(_) => true,
            Subscribe::Sentinel(master) => master.follows(client).await,
        }
    }
}

impl Connection {
    /// Validates the source (URLs, trusting `root`, a PEM CA certificate, for `rediss://`
    /// instead of the system's roots) and builds the clients. Connects lazily, on first use
    /// ([`Connection::link`]), so that building a cache never blocks and a Redis that is down
    /// at start-up does not stop the application.
    pub(super) fn new(
        source: &RedisSource,
        root: Option<&[u8]>,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self, BuildError> {
        if root.is_some() && !cfg!(feature = "tls") {
            return Err(BuildError::TlsFeature);
        }
        let mut link = OnceCell::new();
        let target = match &source.0 {
            Source::Urls { urls, cluster } => {
                urls_target(urls, *cluster, Trust(root), connect_timeout, op_timeout)?
            }
            Source::Sentinel {
                sentinels,
                master,
                node,
            } => Target::Sentinel(Arc::new(SentinelMaster::new(
                infos(sentinels)?,
                master,
                node.clone().set_tcp_settings(tcp()),
                connect_timeout,
                op_timeout,
            )?)),
            Source::Client(client) => Target::Single(Box::new(client.clone())),
            Source::Manager { manager, client } => {
                link = OnceCell::new_with(Some(Link::Single(manager.clone())));
                Target::Single(Box::new(client.clone()))
            }
        };
        Ok(Connection {
            target,
            link,
            connect_timeout,
            op_timeout,
        })
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// Where the subscriber's `attempt`-th connection goes: a cluster's nodes in turn (a
    /// classic PUBLISH reaches subscribers on every node); on Sentinel, the master named
    /// when it connects.
    pub(super) fn subscriber(&self, attempt: usize) -> Subscriber {
        match &self.target {
            Target::Single(client) => Subscriber(Subscribe::Client(client.clone())),
            Target::Cluster { clients, .. } => Subscriber(Subscribe::Client(Box::new(
                clients[attempt % clients.len()].clone(),
            ))),
            Target::Sentinel(master) => Subscriber(Subscribe::Sentinel(Arc::clone(master))),
        }
    }

    /// The connection, opened by the first call that needs it; on Sentinel, opened again to
    /// the master named now after it broke.
    pub(super) async fn link(&self) -> RedisResult<Link> {
        let open = async || match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.op_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                let manager = client.get_connection_manager_with_config(config).await?;
                Ok(Link::Single(manager))
            }
            Target::Cluster { cluster, .. } => {
                Ok(Link::Cluster(cluster.get_async_connection().await?))
            }
            Target::Sentinel(master) => Ok(Link::Sentinel(master.link().await?)),
        };
        if matches!(self.target, Target::Sentinel(_)) {
            return open().await;
        }
        self.link.get_or_try_init(open).await.cloned()
    }
}

/// The target of URLs: one Redis, or a cluster's seed nodes.
fn urls_target(
    urls: &[String],
    cluster: bool,
    trust: Trust<'_>,
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<Target, BuildError> {
    if urls.is_empty() {
        return Err(BuildError::NoClusterNodes);
    }
    let infos = infos(urls)?;
    let mut clients = Vec::new();
    for (position, (url, info)) in urls.iter().zip(&infos).enumerate() {
        let client = trust.client(info.clone());
        clients.push(client.map_err(|e| url_error(position, url, &e))?);
    }
    if !cluster {
        return Ok(Target::Single(Box::new(clients.swap_remove(0))));
    }
    let builder = ClusterClient::builder(infos)
        .connection_timeout(connect_timeout)
        .response_timeout(op_timeout)
        .retries(1)
        .tcp_settings(tcp());
    let cluster = trust.cluster(builder)?.build();
    let cluster = cluster.map_err(|e| BuildError::ClusterConfig {
        reason: e.to_string(),
    })?;
    Ok(Target::Cluster {
        clients,
        cluster: Box::new(cluster),
    })
}

/// The connection details of `urls`, with the cache's TCP settings.
fn infos(urls: &[String]) -> Result<Vec<ConnectionInfo>, BuildError> {
    let info = |(position, url): (usize, &String)| {
        let info = url.as_str().into_connection_info();
        let info = info.map_err(|e| url_error(position, url, &e))?;
        Ok(info.set_tcp_settings(tcp()))
    };
    urls.iter().enumerate().map(info).collect()
}

/// TCP_NODELAY, and keepalive: a peer that vanished (NAT timeout, failover) is noticed by the
/// OS too.
fn tcp() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
}

/// What `rediss://` connections trust: a given CA certificate (PEM), or else the system's
/// roots. Without the `tls` feature there is no TLS: a `rediss://` URL (see [`url_error`]) and
/// a certificate (see [`Connection::new`]) are refused.
#[cfg_attr(
    not(feature = "tls"),
    expect(
        dead_code,
        reason = "without TLS a certificate is refused before it is read"
    )
)]
struct Trust<'a>(Option<&'a [u8]>);

impl Trust<'_> {
    /// A client for one node.
    fn client(&self, info: ConnectionInfo) -> RedisResult<Client> {
        #[cfg(feature = "tls")]
        if let Some(certificates) = self.certificates() {
            return Client::build_with_tls(info, certificates);
        }
        Client::open(info)
    }

    /// The cluster client's builder, told to trust the certificate.
    fn cluster(&self, builder: ClusterClientBuilder) -> Result<ClusterClientBuilder, BuildError> {
        #[cfg(feature = "tls")]
        if let Some(certificates) = self.certificates() {
            return Ok(builder.certs(certificates));
        }
        Ok(builder)
    }

    #[cfg(feature = "tls")]
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.0.map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        })
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
