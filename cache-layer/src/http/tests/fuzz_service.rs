//! The whole [`CacheService`](crate::CacheService) driven by fuzzer bytes: request heads and
//! origin answers decoded from the input, every reply checked against the storage rules. Behind
//! `__fuzz::service` (the `fuzz/` target `service` and a unit test use it).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;

use crate::{Cache, CacheLayer};

/// One request or answer head: `<first line>\n<name>: <value>\n...`; lines that are not a
/// valid field are skipped.
fn fields(head: &[u8]) -> (&[u8], Vec<(HeaderName, HeaderValue)>) {
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let fields = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
            Some((name, value))
        })
        .collect();
    (first, fields)
}

/// What the fuzzed origin answers with.
type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// An origin answering in `answers` order (cycling), with the status on each head's first
/// line (200 when it is not one) and the request's `x-req` echoed in a `Set-Cookie`.
fn origin(
    answers: Vec<Vec<u8>>,
) -> impl tower_service::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answer,
> + Clone
       + Send
       + 'static {
    let next = Arc::new(Mutex::new(0usize));
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let mut next = next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let head = answers.get(*next % answers.len().max(1)).cloned();
        *next += 1;
        let (first, fields) = fields(head.as_deref().unwrap_or_default());
        let status = std::str::from_utf8(first)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(|s| !s.is_informational())
            .unwrap_or(StatusCode::OK);
        let mut response = Response::new(Full::new(Bytes::from(first.to_vec())));
        *response.status_mut() = status;
        for (name, value) in fields {
            response.headers_mut().append(name, value);
        }
        if let Some(number) = request.headers().get("x-req") {
            let cookie = [b"r=".as_slice(), number.as_bytes()].concat();
            if let Ok(cookie) = HeaderValue::from_bytes(&cookie) {
                response
                    .headers_mut()
                    .append(http::header::SET_COOKIE, cookie);
            }
        }
        std::future::ready(Ok(response))
    })
}

/// Runs the requests and answers `data` encodes (heads separated by NUL bytes, alternately a
/// request's and an answer's), and panics if a reply breaks the storage rules: a `Cache-Tag`
/// reaching a client, a `Set-Cookie` that answered another request, or one on a hit. Returns
/// how many replies were checked.
pub fn service(data: &[u8]) -> usize {
    let heads: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let requests: Vec<&[u8]> = heads.iter().step_by(2).copied().take(16).collect();
    let answers: Vec<Vec<u8>> = heads
        .iter()
        .skip(1)
        .step_by(2)
        .map(|h| h.to_vec())
        .collect();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return 0;
    };
    runtime.block_on(async move {
        let cache = Cache::builder()
            .name("fuzz")
            .build()
            .expect("a memory cache");
        let service = CacheLayer::new(cache).max_body(256).layer(origin(answers));
        let mut checked = 0;
        for (number, head) in requests.iter().enumerate() {
            let (path, fields) = fields(head);
            let uri = std::str::from_utf8(path)
                .ok()
                .and_then(|p| p.trim().parse::<http::Uri>().ok())
                .unwrap_or_else(|| http::Uri::from_static("/"));
            let mut request = Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = uri;
            for (name, value) in fields {
                request.headers_mut().append(name, value);
            }
            request
                .headers_mut()
                .insert("x-req", HeaderValue::from(number));
            let Ok(response) = service.clone().oneshot(request).await;
            let (parts, body) = response.into_parts();
            let _ = body.collect().await;
            check(&parts.headers, number);
            checked += 1;
            tokio::task::yield_now().await;
        }
        checked
    })
}

/// Panics if `headers`, the reply to request `number`, break the storage rules.
fn check(headers: &http::HeaderMap, number: usize) {
    assert!(
        !headers.contains_key("cache-tag"),
        "Cache-Tag reached a client"
    );
    let own = format!("r={number}");
    for cookie in headers.get_all(http::header::SET_COOKIE) {
        assert_eq!(
            cookie.as_bytes(),
            own.as_bytes(),
            "another request's Set-Cookie"
        );
    }
    let hit = headers
        .get("cache-status")
        .is_some_and(|s| s.as_bytes().windows(5).any(|w| w == b"; hit"));
    assert!(
        !(hit && headers.contains_key(http::header::SET_COOKIE)),
        "a hit carries a Set-Cookie"
    );
}
