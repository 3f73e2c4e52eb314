//! A fast stand-in origin to put behind `reverse_proxy` (benches/soak.sh does): answers every
//! GET with a small text body naming the path, `Cache-Control` as given, and, under `/v/`,
//! a body that depends on `Accept-Language` with `Vary: Accept-Language`.
//!
//! ```text
//! cargo run --release --bin origin -- --listen 127.0.0.1:0 [--cache-control "max-age=3600"] \
//!     [--chunked-bytes BYTES]
//! ```
//!
//! `--chunked-bytes BYTES` answers every GET with a body of that many bytes instead, sent in
//! 16 KiB chunks without `Content-Length` (chunked), as a large generated page or a file
//! streamed from disk is.

use axum::body::Body;
use axum::http::header::{HeaderValue, ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, Response, Uri};
use axum::Router;
use bytes::Bytes;

/// The size of each chunk of a `--chunked-bytes` body.
const CHUNK: usize = 16 * 1024;

fn argument(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// About 600 bytes of text naming the resource.
fn body_for(uri: &Uri, language: Option<&HeaderValue>) -> String {
    let mut line = uri.to_string();
    if let Some(language) = language.and_then(|v| v.to_str().ok()) {
        line.push_str(" in ");
        line.push_str(language);
    }
    line.push('\n');
    line.repeat((600 / line.len()).max(1))
}

/// `total` bytes of `chunk`'s content, in chunks of its length, as a stream of unknown length.
fn chunked(chunk: Bytes, total: usize) -> Body {
    let chunks = (0..total.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(total - i * CHUNK);
        Ok::<_, std::convert::Infallible>(chunk.slice(..len))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = argument("--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let cache_control = argument("--cache-control").unwrap_or_else(|| "max-age=3600".to_owned());
    let Ok(cache_control) = HeaderValue::from_str(&cache_control) else {
        eprintln!("bad --cache-control {cache_control}");
        std::process::exit(2);
    };
    let chunked_bytes = match argument("--chunked-bytes").map(|n| n.parse::<usize>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            eprintln!("bad --chunked-bytes: a number of bytes");
            std::process::exit(2);
        }
    };
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let app = Router::new().fallback(move |uri: Uri, request: HeaderMap| {
        let (cache_control, chunk) = (cache_control.clone(), chunk.clone());
        async move {
            let varies = uri.path().starts_with("/v/");
            let language = request.get(ACCEPT_LANGUAGE).filter(|_| varies);
            let body = match chunked_bytes {
                Some(total) => chunked(chunk, total),
                None => Body::from(body_for(&uri, language)),
            };
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(CACHE_CONTROL, cache_control);
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if varies {
                headers.insert(VARY, HeaderValue::from_static("accept-language"));
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("origin listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
