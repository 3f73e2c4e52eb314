//! A real `redis-server` per test, on a free loopback port, that a test can kill, pause
//! (`SIGSTOP`) and restart. Never skipped: without `redis-server` the test fails and says how
//! to install it (`scripts/test` does it for you). Also a cluster ([`RedisCluster`]) and a
//! Sentinel deployment ([`RedisSentinel`], the Sentinel being `redis-server --sentinel`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    paused: bool,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn spawn(port: u16, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(extra)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}). Install it (Debian: `apt-get install -y \
                 redis-server`) or run the test suite with `scripts/test`, which installs it."
            )
        })
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    // A server that requires a password answers -NOAUTH: it is up.
    matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts it with extra `redis-server` arguments (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: Some(spawn(port, &extra)),
                port,
                paused: false,
                extra: extra.clone(),
            };
            if server.wait_ready() {
                return server;
            }
            server.kill();
        }
        panic!("redis-server did not start on a free port after 5 attempts");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if ping(self.port) {
                return true;
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL with ACL credentials.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: it does not persist).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(self.port, &self.extra));
        assert!(
            self.wait_ready(),
            "redis-server restarts on port {}",
            self.port
        );
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill(1)");
            assert!(status.success());
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open, nothing answers.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    pub fn resume(&mut self) {
        if self.paused {
            self.signal("-CONT");
            self.paused = false;
        }
    }

    /// A plain client connection, for writing and reading raw keys.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection")
    }
}

/// How many connections subscribe to `channel` on the Redis at `url` (a cluster node's, say).
pub async fn subscribers(url: &str, channel: &str) -> u64 {
    let client = redis::Client::open(url).expect("url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let (_, count): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut raw)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

/// A tiered cache (memory in front of `server`) whose keys and channels live under `prefix`,
/// with the builder's defaults otherwise.
pub fn tiered(server: &RedisServer, prefix: &str) -> cache_layer::Cache {
    cache_layer::Cache::builder()
        .tiered(server.url())
        .key_prefix(prefix)
        .build()
        .expect("valid configuration")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-master Redis Cluster (no replicas) on free loopback ports, in a temporary directory.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

/// A port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = 20_000 + fastrand_port();
        let both_free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if both_free {
            return port;
        }
    }
}

fn fastrand_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() % 20_000) as u16
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cache-layer-cluster-{}-{}",
            std::process::id(),
            fastrand_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_cluster_port();
            let extra: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "2000",
                "--dir",
                dir.to_str().expect("utf-8 temp dir"),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let mut node = RedisServer {
                child: Some(spawn(port, &extra)),
                port,
                paused: false,
                extra,
            };
            assert!(node.wait_ready(), "cluster node on port {port} starts");
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (installed with redis-server)");
        assert!(status.success(), "redis-cli --cluster create");
        let cluster = RedisCluster { nodes, dir };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ok = self.nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not reach cluster_state:ok");
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// How many keys each node holds.
    pub fn key_counts(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                let out = Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "dbsize"])
                    .output()
                    .expect("redis-cli");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Sentinel deployment on free loopback ports: a master, a replica of it and one
/// Sentinel (`redis-server --sentinel`, quorum 1) watching them under [`RedisSentinel::NAME`],
/// its configuration file in a temporary directory (Sentinel rewrites it).
pub struct RedisSentinel {
    /// The master first; after a failover, the new master first again.
    servers: Vec<RedisServer>,
    sentinel: RedisServer,
    dir: std::path::PathBuf,
}

impl RedisSentinel {
    /// The name the Sentinel knows the master by.
    pub const NAME: &'static str = "main";

    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cache-layer-sentinel-{}-{}",
            std::process::id(),
            fastrand_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // The replica writes the master's snapshot to its directory when it syncs.
        let dir_arg = dir.to_str().expect("utf-8 temp dir");
        let master = RedisServer::start_with(&["--dir", dir_arg]);
        let master_port = master.port.to_string();
        let replica =
            RedisServer::start_with(&["--dir", dir_arg, "--replicaof", "127.0.0.1", &master_port]);
        // The Sentinel finds replicas in the master's INFO: let it list this one first.
        wait_for("the replica is in sync", || {
            cli(replica.port, &["info", "replication"]).contains("master_link_status:up")
                && cli(master.port, &["info", "replication"]).contains("connected_slaves:1")
        });
        let port = free_port();
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 10000\n",
                dir.display(),
                name = Self::NAME,
                master = master.port,
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&config)
            .args(["--sentinel", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let mut sentinel = RedisServer {
            child: Some(child),
            port,
            paused: false,
            extra: Vec::new(),
        };
        assert!(sentinel.wait_ready(), "the Sentinel starts on port {port}");
        let deployment = RedisSentinel {
            servers: vec![master, replica],
            sentinel,
            dir,
        };
        deployment.wait_replica_known();
        deployment
    }

    /// Waits until the Sentinel lists the replica as one it could promote.
    fn wait_replica_known(&self) {
        let replica = self.servers[1].port.to_string();
        wait_for("the Sentinel knows the replica", || {
            let replicas = cli(self.sentinel.port, &["sentinel", "replicas", Self::NAME]);
            let mut lines = replicas.lines();
            lines.any(|line| line == replica)
                && !replicas.contains("s_down")
                && !replicas.contains("disconnected")
        });
    }

    /// The Sentinel's URL.
    pub fn url(&self) -> String {
        self.sentinel.url()
    }

    /// The server that is master now.
    pub fn master(&self) -> &RedisServer {
        &self.servers[0]
    }

    /// The port the Sentinel names for the master.
    pub fn named_master_port(&self) -> Option<u16> {
        let named = cli(
            self.sentinel.port,
            &["sentinel", "get-master-addr-by-name", Self::NAME],
        );
        named.lines().nth(1)?.trim().parse().ok()
    }

    /// Has the Sentinel fail the master over to the replica (`SENTINEL FAILOVER`), and waits
    /// until the Sentinel names the replica and it answers as a master.
    pub fn failover(&mut self) {
        let reply = cli(self.sentinel.port, &["sentinel", "failover", Self::NAME]);
        assert!(reply.starts_with("OK"), "SENTINEL FAILOVER: {reply}");
        self.wait_switched();
    }

    /// Kills the master (the Sentinel fails it over once it has been down for a second) and
    /// waits until the Sentinel names the replica and it answers as a master.
    pub fn kill_master(&mut self) {
        self.servers[0].kill();
        self.wait_switched();
    }

    fn wait_switched(&mut self) {
        let replica = self.servers[1].port;
        wait_for("the Sentinel names the replica as master", || {
            self.named_master_port() == Some(replica)
                && cli(replica, &["role"]).starts_with("master")
        });
        self.servers.swap(0, 1);
    }
}

/// `redis-cli -p port args...`'s output (empty when it fails).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Polls `ready` until it holds; panics naming `what` after 30 s (setting servers up, not an
/// assertion on speed).
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not reached within 30 s: {what}");
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.sentinel.kill();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
