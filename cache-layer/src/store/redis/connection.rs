//! How the store reaches Redis: a client per node (TCP_NODELAY, keepalive, TLS for
//! `rediss://`), and one connection every operation shares, opened on first use: the `redis`
//! crate's `ConnectionManager` on one Redis, its `ClusterConnection` on a cluster. Both
//! reconnect by themselves.

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

use crate::error::BuildError;

/// A connection to one Redis or to a cluster; both reconnect by themselves.
#[derive(Clone)]
pub(super) enum Link {
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
    pub(super) async fn exec(&mut self, commands: Vec<Cmd>) -> RedisResult<()> {
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

/// The clients of a store and its one connection, opened on first use.
pub(super) struct Connection {
    /// Per node (one unless a cluster): for the pub/sub subscriber.
    clients: Vec<Client>,
    cluster: Option<ClusterClient>,
    link: OnceCell<Link>,
    pub(super) connect_timeout: Duration,
    pub(super) op_timeout: Duration,
}

impl Connection {
    /// Validates the URLs (a cluster's seed nodes when `cluster`) and builds the clients,
    /// trusting `root` (a PEM CA certificate) for `rediss://` instead of the system's roots.
    /// Connects lazily, on first use ([`Connection::link`]), so that building a cache never
    /// blocks and a Redis that is down at start-up does not stop the application.
    pub(super) fn new(
        urls: &[String],
        cluster: bool,
        root: Option<&[u8]>,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self, BuildError> {
        if urls.is_empty() {
            return Err(BuildError::NoClusterNodes);
        }
        if root.is_some() && !cfg!(feature = "tls") {
            return Err(BuildError::TlsFeature);
        }
        let trust = Trust(root);
        let mut infos = Vec::new();
        let mut clients = Vec::new();
        for (position, url) in urls.iter().enumerate() {
            let url_error = |e: RedisError| url_error(position, url, &e);
            let info = url.as_str().into_connection_info().map_err(url_error)?;
            let info = info.set_tcp_settings(tcp());
            clients.push(trust.client(info.clone()).map_err(url_error)?);
            infos.push(info);
        }
        let cluster = if cluster {
            let builder = ClusterClient::builder(infos)
                .connection_timeout(connect_timeout)
                .response_timeout(op_timeout)
                .retries(1)
                .tcp_settings(tcp());
            let client = trust.cluster(builder)?.build();
            Some(client.map_err(|e| BuildError::ClusterConfig {
                reason: e.to_string(),
            })?)
        } else {
            None
        };
        Ok(Connection {
            clients,
            cluster,
            link: OnceCell::new(),
            connect_timeout,
            op_timeout,
        })
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// A client for the subscriber's `attempt`-th connection: a cluster's nodes in turn (a
    /// classic PUBLISH reaches subscribers on every node).
    pub(super) fn subscribe_client(&self, attempt: usize) -> &Client {
        &self.clients[attempt % self.clients.len()]
    }

    /// The connection, opened by the first call that needs it.
    pub(super) async fn link(&self) -> RedisResult<Link> {
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
