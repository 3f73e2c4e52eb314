//! A TCP relay on a free loopback port in front of a server, that a test can freeze: frozen,
//! it keeps every connection open and forwards nothing (a half-open path, as after a NAT
//! timeout or a failover). It can also hold the server's replies, and release those of the
//! subscriber connections (the ones that sent `SUBSCRIBE`) before the others, to order what a
//! client hears on two connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    port: u16,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    frozen: AtomicBool,
    holding_replies: AtomicBool,
    connections: Mutex<Vec<Arc<Connection>>>,
}

#[derive(Default)]
struct Connection {
    subscriber: AtomicBool,
    released: AtomicBool,
}

impl State {
    fn blocks(&self, connection: &Connection, to_server: bool) -> bool {
        self.frozen.load(Ordering::SeqCst)
            || (!to_server
                && self.holding_replies.load(Ordering::SeqCst)
                && !connection.released.load(Ordering::SeqCst))
    }
}

impl Relay {
    /// Relays 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let connection = Arc::new(Connection::default());
                shared
                    .connections
                    .lock()
                    .unwrap()
                    .push(Arc::clone(&connection));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let (up, down) = (Arc::clone(&shared), Arc::clone(&shared));
                let conn = Arc::clone(&connection);
                tokio::spawn(pump(client_read, server_write, up, conn, true));
                tokio::spawn(pump(server_read, client_write, down, connection, false));
            }
        });
        Relay {
            port,
            state,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops forwarding in both directions; connections stay open.
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.state.frozen.store(false, Ordering::SeqCst);
    }

    /// Holds what the server sends on every connection (requests still pass).
    pub fn hold_replies(&self) {
        for connection in self.state.connections.lock().unwrap().iter() {
            connection.released.store(false, Ordering::SeqCst);
        }
        self.state.holding_replies.store(true, Ordering::SeqCst);
    }

    /// Holds what the server sends on the subscriber connections only (the others answer).
    pub fn hold_subscribers(&self) {
        for connection in self.state.connections.lock().unwrap().iter() {
            let subscriber = connection.subscriber.load(Ordering::SeqCst);
            connection.released.store(!subscriber, Ordering::SeqCst);
        }
        self.state.holding_replies.store(true, Ordering::SeqCst);
    }

    /// Lets the held replies through on the subscriber connections only.
    pub fn release_subscribers(&self) {
        for connection in self.state.connections.lock().unwrap().iter() {
            if connection.subscriber.load(Ordering::SeqCst) {
                connection.released.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Lets every held reply through.
    pub fn release_all(&self) {
        self.state.holding_replies.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: Arc<State>,
    connection: Arc<Connection>,
    to_server: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let subscribes = buf[..n]
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"));
        if to_server && subscribes {
            connection.subscriber.store(true, Ordering::SeqCst);
        }
        while state.blocks(&connection, to_server) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
