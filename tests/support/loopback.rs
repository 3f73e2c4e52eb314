//! A real axum server on a loopback port and a client for it, for the HTTP tests that send
//! hostile or unusual requests (raw request lines included).

use std::net::SocketAddr;

use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use cache_layer::{Cache, CacheLayer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Server {
    pub addr: SocketAddr,
    pub client: Client<HttpConnector, Full<Bytes>>,
    /// The cache behind the layer, when the server was started with one.
    pub cache: Option<Cache>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    pub fn age(&self) -> u64 {
        self.header("age").parse().expect("an Age header")
    }
}

/// Serves `app` behind `layer(cache)` on an ephemeral loopback port.
pub async fn start(app: Router, layer: impl FnOnce(Cache) -> CacheLayer) -> Server {
    let cache = Cache::builder().jitter(0.0).build().unwrap();
    start_on(cache, app, layer).await
}

/// Serves `app` behind `layer(cache)`, on a cache the test built, on an ephemeral loopback port.
pub async fn start_on(
    cache: Cache,
    app: Router,
    layer: impl FnOnce(Cache) -> CacheLayer,
) -> Server {
    let mut server = serve(app.layer(layer(cache.clone()))).await;
    server.cache = Some(cache);
    server
}

/// Serves `app` as it is (its layers already in place) on an ephemeral loopback port.
pub async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server::at(addr, None)
}

impl Server {
    /// A client for the server listening on `addr`, in front of `cache`.
    pub fn at(addr: SocketAddr, cache: Option<Cache>) -> Server {
        Server {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            cache,
        }
    }

    /// The cache behind the layer ([`start`], [`start_on`]).
    pub fn cache(&self) -> &Cache {
        self.cache.as_ref().expect("a server started with a cache")
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers).await
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// Sends `head` (a request line and header lines, no blank line) as written, on a new
    /// connection that closes after the response; returns the status and the body.
    pub async fn raw(&self, head: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let request = format!("{head}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}
