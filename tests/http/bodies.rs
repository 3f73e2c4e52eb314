//! Bodies: over the cap, streamed, endless, with trailers, and a stream whose client has left.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cache_layer::{Cache, CacheLayer};
use http_body_util::{BodyExt, Full};

use crate::counter;
use crate::support::loopback::{start, start_on};

/// Counts its drops: held by a response body's stream, it tells when the body was let go.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A cacheable stream that never ends (and stays under `max_body`) is read ahead for the cache
/// only while someone may still get it: once its client has left, for at most the cache's
/// `max_wait` (how long coalesced waiters wait for it); then the inner body is dropped and
/// nothing is stored. The liveness bound turns "read forever" into a failure.
#[tokio::test]
async fn an_endless_stream_is_let_go_once_its_client_has_left() {
    let calls = counter();
    let released = counter();
    let (counted_calls, counted_releases) = (Arc::clone(&calls), Arc::clone(&released));
    let app = Router::new().route(
        "/forever",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            let guard = DropCount(Arc::clone(&counted_releases));
            async move {
                let first = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from("tick"))]);
                let endless = futures_util::StreamExt::map(
                    futures_util::StreamExt::chain(first, futures_util::stream::pending()),
                    move |chunk| {
                        let _held = &guard;
                        chunk
                    },
                );
                (
                    [("cache-control", "max-age=60")],
                    Body::from_stream(endless),
                )
            }
        }),
    );
    let cache = Cache::builder()
        .max_wait(Duration::from_millis(200))
        .build()
        .unwrap();
    let server = start_on(cache, app, CacheLayer::new).await;
    let mut client = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let get = format!("GET /forever HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tokio::io::AsyncWriteExt::write_all(&mut client, get.as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let mut chunk = [0; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut chunk)
            .await
            .unwrap();
        assert!(n > 0, "the stream's first chunk");
        seen.extend_from_slice(&chunk[..n]);
    }
    drop(client);
    let mut let_go = false;
    for _ in 0..3000 {
        if released.load(Ordering::SeqCst) == 1 {
            let_go = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        let_go,
        "the endless body is still read 30 s after its client left"
    );
    // Nothing was stored: the next client is forwarded (its endless body is not read here).
    let next = server
        .client
        .get(format!("http://{}/forever", server.addr).parse().unwrap())
        .await
        .unwrap();
    let status = next.headers()["cache-status"].to_str().unwrap();
    assert!(!status.contains("hit"), "{status}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bodies_over_the_cap_reach_the_client_and_are_not_stored() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/big",
            get(move || {
                counted_calls.fetch_add(1, Ordering::SeqCst);
                async { ([("cache-control", "max-age=60")], vec![7u8; 64 * 1024]) }
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks = (0..64).map(|_| Ok::<_, Infallible>(Bytes::from(vec![1u8; 1024])));
                (
                    [("cache-control", "max-age=60")],
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        );
    let server = start(app, |cache| CacheLayer::new(cache).max_body(16 * 1024)).await;
    for _ in 0..2 {
        let reply = server.get("/big", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 64 * 1024);
        assert!(reply.cache_status().contains("detail=too-large"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    for _ in 0..2 {
        let reply = server.get("/stream", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 64 * 1024);
        assert!(!reply.cache_status().contains("hit"));
    }
}

#[tokio::test]
async fn an_endless_stream_passes_through() {
    let app = Router::new().route(
        "/events",
        get(|| async {
            let ticks = futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((
                    Ok::<_, Infallible>(Bytes::from(format!("data: {n}\n\n"))),
                    n + 1,
                ))
            });
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(ticks),
            )
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let request = Request::get(format!("http://{}/events", server.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = server.client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut seen = String::new();
    for _ in 0..3 {
        let frame = body.frame().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    assert!(seen.starts_with("data: 0\n\ndata: 1\n\n"), "{seen}");
    drop(body);
}

#[tokio::test]
async fn trailers_pass_through_on_uncached_responses() {
    let app = Router::new().route(
        "/t",
        get(|| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("abc"));
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"payload"))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            (
                [("cache-control", "max-age=60"), ("trailer", "x-checksum")],
                Body::new(body),
            )
        }),
    );
    let server = start(app, CacheLayer::new).await;
    for _ in 0..2 {
        let request = Request::get(format!("http://{}/t", server.addr))
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = server.client.request(request).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers arrive");
        assert_eq!(trailers["x-checksum"], "abc");
        assert_eq!(collected.to_bytes(), "payload");
    }
}

#[tokio::test]
async fn streamed_bodies_under_the_cap_are_stored_once_complete() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/stream",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            async {
                let chunks = (0..4).map(|i| Ok::<_, Infallible>(Bytes::from(format!("part {i};"))));
                (
                    [("cache-control", "max-age=60")],
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }
        }),
    );
    let server = start(app, CacheLayer::new).await;
    let first = server.get("/stream", &[]).await;
    assert_eq!(first.text(), "part 0;part 1;part 2;part 3;");
    assert!(first.cache_status().contains("fwd=uri-miss"));
    let second = server.get("/stream", &[]).await;
    assert_eq!(second.text(), first.text());
    assert!(
        second.cache_status().contains("hit"),
        "{}",
        second.cache_status()
    );
    assert_eq!(second.header("content-length"), "28");
    assert!(second.headers.contains_key(header::ETAG));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn waiters_receive_a_streamed_response_once_it_is_complete() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/stream",
        get(move || {
            counted_calls.fetch_add(1, Ordering::SeqCst);
            async {
                let chunks = futures_util::stream::unfold(0u8, |i| async move {
                    if i == 5 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    Some((
                        Ok::<_, Infallible>(Bytes::from(format!("chunk {i};"))),
                        i + 1,
                    ))
                });
                ([("cache-control", "max-age=60")], Body::from_stream(chunks))
            }
        }),
    );
    let server = Arc::new(start(app, CacheLayer::new).await);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.get("/stream", &[]).await })
        })
        .collect();
    for request in requests {
        assert_eq!(
            request.await.unwrap().text(),
            "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
