//! Clients that read slowly or never: storing a response must not wait for the client that
//! triggered it, a long-lived stream (server-sent events) never holds other clients of its
//! URL, and what is read ahead for clients that never read stays within the memory budget.
//! Mostly driven in process (`tower::ServiceExt::oneshot` on the router), so that a client that
//! "never reads" is exact (over a socket, the kernel's buffers would read for it); the budget
//! test uses a real server and sockets with small buffers. The cache's
//! `max_wait` is an hour: a client that waits for another's flight never finishes, and the
//! `LIVENESS` bound turns that hang into a failure (a bound on waiting, not a speed goal).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cache_layer::{Cache, CacheLayer};
use futures_util::stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

/// Longer than any test runs, so a client that waits for another's flight shows it.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// How long a test waits for what must not wait on another client at all.
const LIVENESS: Duration = Duration::from_secs(60);

/// `future`, or a failure naming `what` if it is still waiting after [`LIVENESS`].
async fn live<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIVENESS, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: still waiting on another client after {LIVENESS:?}"),
    }
}

fn app(calls: &Arc<AtomicUsize>) -> Router {
    let (chunked, events) = (Arc::clone(calls), Arc::clone(calls));
    let router = Router::new()
        .route(
            "/chunked",
            get(move || {
                chunked.fetch_add(1, Ordering::SeqCst);
                async {
                    let chunks =
                        (0..3).map(|i| Ok::<_, Infallible>(Bytes::from(vec![b'a' + i; 1024])));
                    let mut response = Response::new(Body::from_stream(stream::iter(chunks)));
                    response
                        .headers_mut()
                        .insert("cache-control", "max-age=60".parse().unwrap());
                    response
                }
            }),
        )
        .route(
            "/events",
            get(move || {
                events.fetch_add(1, Ordering::SeqCst);
                async {
                    let first = stream::iter([Ok::<_, Infallible>(Bytes::from("data: 1\n\n"))]);
                    let open = futures_util::StreamExt::chain(first, stream::pending());
                    let mut response = Response::new(Body::from_stream(open));
                    let headers = response.headers_mut();
                    headers.insert("content-type", "text/event-stream".parse().unwrap());
                    headers.insert("cache-control", "no-cache".parse().unwrap());
                    response
                }
            }),
        );
    let cache = Cache::builder().max_wait(MAX_WAIT).build().unwrap();
    router.layer(CacheLayer::new(cache))
}

fn get_request(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "example.com")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_stop_the_store_or_hold_others() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&calls);
    // The first client takes the head and never reads the body.
    let stalled = app.clone().oneshot(get_request("/chunked")).await.unwrap();
    let started = tokio::time::Instant::now();
    let second = app.clone().oneshot(get_request("/chunked")).await.unwrap();
    let status = second.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = second.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 3 * 1024);
    assert!(
        started.elapsed() < MAX_WAIT,
        "waited for the stalled client"
    );
    assert!(status.contains("hit"), "{status}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "stored without the first client reading"
    );
    drop(stalled);
}

#[tokio::test]
async fn a_dropped_client_does_not_stop_the_store() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&calls);
    drop(app.clone().oneshot(get_request("/chunked")).await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = app.clone().oneshot(get_request("/chunked")).await.unwrap();
    let status = again.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("hit"), "{status}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_sent_event_stream_never_holds_other_clients() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&calls);
    let mut first = app
        .clone()
        .oneshot(get_request("/events"))
        .await
        .unwrap()
        .into_body();
    let event = first.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(event, "data: 1\n\n");
    let mut second = live(
        "the second client",
        app.clone().oneshot(get_request("/events")),
    )
    .await
    .unwrap()
    .into_body();
    let event = second.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(event, "data: 1\n\n");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// An app whose `/big/{n}` streams two 24 KiB chunks of unknown total length, the second only
/// once `gate` gives a permit, behind a cache of a 256 KiB budget (so 64 KiB in flight).
fn gated_app(calls: &Arc<AtomicUsize>, gate: &Arc<tokio::sync::Semaphore>) -> Router {
    let (calls, gate) = (Arc::clone(calls), Arc::clone(gate));
    let router = Router::new().route(
        "/big/{n}",
        get(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let gate = Arc::clone(&gate);
            async move {
                let first = stream::iter([Ok::<_, Infallible>(Bytes::from(vec![b'a'; 24 * 1024]))]);
                let second = stream::once(async move {
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, Infallible>(Bytes::from(vec![b'b'; 24 * 1024]))
                });
                let body = futures_util::StreamExt::chain(first, second);
                let mut response = Response::new(Body::from_stream(body));
                response
                    .headers_mut()
                    .insert("cache-control", "max-age=60".parse().unwrap());
                response
            }
        }),
    );
    let cache = Cache::builder()
        .memory_budget(256 * 1024)
        .max_wait(MAX_WAIT)
        .build()
        .unwrap();
    router.layer(CacheLayer::new(cache))
}

#[tokio::test]
async fn bodies_being_copied_hold_at_most_a_quarter_of_the_memory_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let app = gated_app(&calls, &gate);
    // Two copies in flight at once, 24 KiB each: within the 64 KiB share.
    let mut bodies = Vec::new();
    for path in ["/big/1", "/big/2"] {
        let mut body = app
            .clone()
            .oneshot(get_request(path))
            .await
            .unwrap()
            .into_body();
        let first = live("the first chunk", body.frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.into_data().unwrap().len(), 24 * 1024);
        bodies.push(body);
    }
    // Both grow to 48 KiB: together they would pass the share, so one is not stored.
    gate.add_permits(2);
    for body in bodies {
        let rest = live("the rest", body.collect()).await.unwrap().to_bytes();
        assert_eq!(rest.len(), 24 * 1024, "every client gets its whole body");
    }
    // The one not stored is fetched again: let its second chunk through at once.
    gate.add_permits(2);
    let mut hits = 0;
    for path in ["/big/1", "/big/2"] {
        let again = app.clone().oneshot(get_request(path)).await.unwrap();
        let status = again.headers()["cache-status"].to_str().unwrap().to_owned();
        hits += usize::from(status.contains("hit"));
        let body = live("the body", again.into_body().collect()).await.unwrap();
        assert_eq!(body.to_bytes().len(), 48 * 1024);
    }
    assert_eq!(
        hits, 1,
        "one copy fitted the in-flight share, the other streamed through"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// What the origin bodies of [`counted_app`] yielded, and how many of them are done (ended and
/// dropped, or dropped unfinished).
#[derive(Default)]
struct Pulled {
    bytes: AtomicUsize,
    done: AtomicUsize,
}

/// Counts a body done when the stream holding it is dropped.
struct Done(Arc<Pulled>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// Chunk size and length of a `/big/{n}` body of [`counted_app`].
const CHUNK: usize = 4 * 1024;
const BIG: usize = 512 * 1024;

/// A 4 MiB cache, so a 1 MiB in-flight share, in front of an app whose `/big/{n}` streams
/// [`BIG`] cacheable bytes of unknown length, counting what is pulled from it, and whose
/// `/whole` answers exactly the share's size, with its length.
fn counted_app(pulled: &Arc<Pulled>) -> (Router, Cache, usize) {
    let pulled = Arc::clone(pulled);
    let budget = 4 * 1024 * 1024;
    let share = budget / 4;
    let router = Router::new()
        .route(
            "/big/{n}",
            get(move || {
                let done = Done(Arc::clone(&pulled));
                let chunks = (0..BIG / CHUNK).map(move |_| {
                    done.0.bytes.fetch_add(CHUNK, Ordering::SeqCst);
                    Ok::<_, Infallible>(Bytes::from(vec![b'x'; CHUNK]))
                });
                let mut response = Response::new(Body::from_stream(stream::iter(chunks)));
                response
                    .headers_mut()
                    .insert("cache-control", "max-age=60".parse().unwrap());
                async { response }
            }),
        )
        .route(
            "/whole",
            get(move || async move {
                let mut response = Response::new(Body::from(vec![b'w'; share]));
                response
                    .headers_mut()
                    .insert("cache-control", "max-age=60".parse().unwrap());
                response
            }),
        );
    let cache = Cache::builder()
        .memory_budget(budget as u64)
        .max_wait(MAX_WAIT)
        .build()
        .unwrap();
    (router.layer(CacheLayer::new(cache.clone())), cache, share)
}

/// Serves `app` on a loopback port, with small buffers (hyper's write buffer, the sockets' send
/// buffers), so that what a client does not read stays in the layer, not in the server or the
/// kernel.
async fn serve_with_small_buffers(app: Router) -> std::net::SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let app = app.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                app.clone().oneshot(request.map(Body::new))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .writev(false)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(connection);
        }
    });
    addr
}

/// A connection with a small receive buffer that sends `GET path` and never reads.
async fn idle_client(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// `GET path` on a new connection, read to the end; the response's `Cache-Status`.
async fn read_whole(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    live("the response", stream.read_to_end(&mut response))
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&response[..response.len().min(4096)]).into_owned();
    let status = head
        .lines()
        .find_map(|line| line.strip_prefix("cache-status: "))
        .unwrap_or_default();
    status.to_owned()
}

/// Waits (at most [`LIVENESS`]) until `done` is true.
async fn until(what: &str, done: impl Fn() -> bool) {
    live(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_hold_no_more_than_the_in_flight_share() {
    const CLIENTS: usize = 16;
    /// What one connection may take beyond the share: the kernel's small socket buffers,
    /// hyper's write buffer and the one frame handed over when reading ahead stops.
    const PER_CONNECTION: usize = 64 * 1024;
    let pulled = Arc::new(Pulled::default());
    let (app, cache, share) = counted_app(&pulled);
    let addr = serve_with_small_buffers(app).await;
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        clients.push(idle_client(addr, &format!("/big/{n}")).await);
    }
    // Every recording has ended, stored or abandoned (each leaves one entry: the response or
    // the URL's "not stored" mark), while the clients are still there, reading nothing.
    until("every recording ended", || {
        cache.stats().inserts >= CLIENTS as u64
    })
    .await;
    let bytes = pulled.bytes.load(Ordering::SeqCst);
    assert!(
        bytes <= share + CLIENTS * PER_CONNECTION,
        "{bytes} bytes pulled for {CLIENTS} clients that never read, with a {share}-byte share"
    );
    // The clients go away, and with them what was read ahead for them: a body of the whole
    // share's size is stored again.
    drop(clients);
    until("every body dropped", || {
        pulled.done.load(Ordering::SeqCst) == CLIENTS
    })
    .await;
    read_whole(addr, "/whole").await;
    let again = read_whole(addr, "/whole").await;
    assert!(again.contains("hit"), "{again}");
}
