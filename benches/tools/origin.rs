//! A fast stand-in origin to put behind `reverse_proxy` (benches/soak.sh does): answers every
//! GET with a small text body naming the path, `Cache-Control` as given, and, under `/v/`,
//! a body that depends on `Accept-Language` with `Vary: Accept-Language`.
//!
//! ```text
//! cargo run --release --bin origin -- --listen 127.0.0.1:0 [--cache-control "max-age=3600"]
//! ```

use axum::body::Body;
use axum::http::header::{HeaderValue, ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, Response, Uri};
use axum::Router;

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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = argument("--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let cache_control = argument("--cache-control").unwrap_or_else(|| "max-age=3600".to_owned());
    let Ok(cache_control) = HeaderValue::from_str(&cache_control) else {
        eprintln!("bad --cache-control {cache_control}");
        std::process::exit(2);
    };
    let app = Router::new().fallback(move |uri: Uri, request: HeaderMap| {
        let cache_control = cache_control.clone();
        async move {
            let varies = uri.path().starts_with("/v/");
            let language = request.get(ACCEPT_LANGUAGE).filter(|_| varies);
            let mut response = Response::new(Body::from(body_for(&uri, language)));
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
