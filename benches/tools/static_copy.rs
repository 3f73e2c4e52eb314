//! A measuring tool, not a pattern to copy: serves one recorded response (status line, header
//! lines and body, as `curl -D HEAD -o BODY` saves them) from static memory through
//! `axum::serve`, served the way the catalog example serves (`TCP_NODELAY`; a current-thread
//! runtime when the process may use one CPU). No cache, no database, no latency histogram.
//!
//! `benches/compare.sh` records the catalog's cached `GET /courses/featured` and serves it with
//! this: the same bytes at the cheapest an axum server can send them, so the ceiling of any cache
//! inside that server for that response.
//!
//! ```text
//! cargo run --release --bin static_copy -- --head HEAD --body BODY [--listen ADDR]
//! ```

use std::process::ExitCode;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

const USAGE: &str = "usage: static_copy --head FILE --body FILE [--listen ADDR]

  --head FILE     the response's status line and header lines (curl -D FILE)
  --body FILE     the response's body (curl -o FILE)
  --listen ADDR   address to serve on (default 127.0.0.1:0: a free port, printed)";

/// The recorded response: every value leaked once, so that each answer clones only static
/// references.
struct Recorded {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

fn leak(bytes: Vec<u8>) -> &'static [u8] {
    Box::leak(bytes.into_boxed_slice())
}

/// Reads `curl -D` output: `HTTP/1.1 200 OK`, then `name: value` lines up to a blank line.
fn parse_head(text: &str) -> Result<(StatusCode, Vec<(HeaderName, HeaderValue)>), String> {
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
    let status_line = lines.next().ok_or("the head file is empty")?;
    let code = status_line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
    let status = StatusCode::from_bytes(code.as_bytes()).map_err(|e| format!("{code:?}: {e}"))?;
    let mut headers = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let value = value.trim();
        // What `HeaderValue::from_static` accepts (it panics on anything else).
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(format!("{name}: not a visible ASCII value: {value:?}"));
        }
        let value: &'static str = Box::leak(value.to_owned().into_boxed_str());
        headers.push((name, HeaderValue::from_static(value)));
    }
    Ok((status, headers))
}

fn recorded(head: &str, body: &str) -> Result<Recorded, String> {
    let text = std::fs::read_to_string(head).map_err(|e| format!("{head}: {e}"))?;
    let (status, headers) = parse_head(&text)?;
    let body = std::fs::read(body).map_err(|e| format!("{body}: {e}"))?;
    Ok(Recorded {
        status,
        headers,
        body: Bytes::from_static(leak(body)),
    })
}

fn router(recorded: &'static Recorded) -> Router {
    let answer = move || async move {
        let mut response = Response::new(Body::from(recorded.body.clone()));
        *response.status_mut() = recorded.status;
        response
            .headers_mut()
            .extend(recorded.headers.iter().cloned());
        response
    };
    Router::new().fallback(get(answer))
}

async fn serve(listen: &str, recorded: &'static Recorded) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("static_copy listening on http://{addr}");
    axum::serve(listener, router(recorded))
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut head, mut body, mut listen) = (None, None, "127.0.0.1:0".to_owned());
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--head", Some(value)) => head = Some(value),
            ("--body", Some(value)) => body = Some(value),
            ("--listen", Some(value)) => listen = value,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(head), Some(body)) = (head, body) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let recorded: &'static Recorded = match recorded(&head, &body) {
        Ok(recorded) => Box::leak(Box::new(recorded)),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let one_cpu = std::thread::available_parallelism().map_or(true, |n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let result = match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(&listen, recorded)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
