//! The whole `CacheService` under arbitrary traffic (proptest): sequences of requests from
//! anonymous and credentialed clients, with arbitrary request headers, against an origin whose
//! every answer (status, `Cache-Control`, `Vary`, validators, `Set-Cookie`, `Cache-Tag`,
//! connection fields, dates, `Age`) is drawn at random. Whatever happens:
//!
//! - nothing panics;
//! - no client receives a header or body the origin produced for another client's credentialed
//!   request, unless the origin explicitly shared it (`public`, `s-maxage`, or
//!   `must-revalidate` for `Authorization`: RFC 9111 §3.5);
//! - a `Set-Cookie` only ever reaches the client whose request it answered;
//! - what the cache serves passed the storage gate: no `Set-Cookie` on a hit, no connection
//!   field, never a `Cache-Tag`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cache_layer::{Cache, CacheLayer};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum User {
    Anonymous,
    Alice,
    Bob,
    Carol,
}

impl User {
    fn name(self) -> &'static str {
        match self {
            User::Anonymous => "anon",
            User::Alice => "alice",
            User::Bob => "bob",
            User::Carol => "carol",
        }
    }

    fn from_name(name: &str) -> Option<User> {
        [User::Anonymous, User::Alice, User::Bob, User::Carol]
            .into_iter()
            .find(|u| u.name() == name)
    }
}

/// One client request.
#[derive(Clone, Debug)]
struct Ask {
    user: User,
    path: &'static str,
    host: &'static str,
    extra: Vec<(&'static str, &'static str)>,
}

/// One origin answer, consumed in call order.
#[derive(Clone, Debug)]
struct Answer {
    /// Answer a conditional request with 304 (else the status below).
    not_modified: bool,
    status: u16,
    cache_control: &'static str,
    extra: Vec<(&'static str, &'static str)>,
    set_cookie: bool,
}

/// What the origin produced, by request number: for whom, and whether it said it may be shared.
type Produced = Arc<Mutex<HashMap<u64, (User, bool)>>>;

fn ask() -> impl Strategy<Value = Ask> {
    let user = prop_oneof![
        Just(User::Anonymous),
        Just(User::Alice),
        Just(User::Bob),
        Just(User::Carol)
    ];
    let path = prop_oneof![Just("/a"), Just("/b?x=1&x=2")];
    let host = prop_oneof![
        4 => Just("example.com"),
        1 => Just("EXAMPLE.com:80"),
        1 => Just("example.com/a"),
        1 => Just("user@example.com"),
    ];
    let field = prop_oneof![
        Just(("cache-control", "no-cache")),
        Just(("cache-control", "max-age=0")),
        Just(("cache-control", "max-stale")),
        Just(("cache-control", "only-if-cached")),
        Just(("cache-control", "no-store")),
        Just(("if-none-match", "\"e1\"")),
        Just(("if-none-match", "W/\"e2\", \"e1\"")),
        Just(("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")),
        Just(("if-match", "\"e1\"")),
        Just(("accept", "text/a")),
        Just(("accept", "text/b")),
        Just(("range", "bytes=0-1")),
        Just(("if-range", "\"e1\"")),
        Just(("pragma", "no-cache")),
    ];
    (user, path, host, prop::collection::vec(field, 0..3)).prop_map(|(user, path, host, extra)| {
        Ask {
            user,
            path,
            host,
            extra,
        }
    })
}

fn answer() -> impl Strategy<Value = Answer> {
    let cache_control = prop_oneof![
        Just("max-age=60"),
        Just("public, max-age=60"),
        Just("s-maxage=60"),
        Just("max-age=60, must-revalidate"),
        Just("max-age=0, stale-while-revalidate=60"),
        Just("max-age=0, stale-if-error=60"),
        Just("no-cache"),
        Just("no-store"),
        Just("private, max-age=60"),
        Just("max-age=99999999999999999999, stale-while-revalidate=99999999999999"),
        Just("max-age=x, public"),
        Just("public"),
    ];
    let field = prop_oneof![
        Just(("etag", "\"e1\"")),
        Just(("etag", "\"e2\"")),
        Just(("etag", "W/\"e1\"")),
        Just(("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")),
        Just(("vary", "accept")),
        Just(("vary", "cookie")),
        Just(("vary", "authorization")),
        Just(("vary", "*")),
        Just(("vary", "a b")),
        Just(("cache-tag", "t1")),
        // With the field it names (see `origin`).
        Just(("connection", "x-hop")),
        Just(("keep-alive", "timeout=5")),
        Just(("age", "100")),
        Just(("age", "99999999999999999999999")),
        Just(("expires", "Fri, 31 Dec 9999 23:59:59 GMT")),
        Just(("expires", "0")),
        Just(("date", "Thu, 01 Jan 1970 00:00:00 GMT")),
    ];
    let status = prop_oneof![6 => Just(200u16), 1 => Just(404), 1 => Just(500), 1 => Just(206)];
    (
        any::<bool>(),
        status,
        cache_control,
        prop::collection::vec(field, 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(not_modified, status, cache_control, extra, set_cookie)| Answer {
                not_modified,
                status,
                cache_control,
                extra,
                set_cookie,
            },
        )
}

/// Whether the origin's answer with `cache_control` to `user` explicitly allows a shared cache
/// to give it to others (RFC 9111 §3.5 for `Authorization`; the layer's cookie policy).
fn explicitly_shared(user: User, cache_control: &str) -> bool {
    let directives: Vec<&str> = cache_control.split(',').map(str::trim).collect();
    let public = directives.contains(&"public") || directives.contains(&"s-maxage=60");
    match user {
        User::Carol => public || directives.contains(&"must-revalidate"),
        _ => public,
    }
}

/// The origin: answers in `script` order (cycling), names the request number and user in a
/// header and the body, and records what it produced.
fn origin(
    script: Vec<Answer>,
    produced: Produced,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let calls = Arc::new(Mutex::new(0usize));
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let answer = {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            script[(*calls - 1) % script.len()].clone()
        };
        let number: u64 = request.headers()["x-req"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let user = User::from_name(request.headers()["x-user"].to_str().unwrap()).unwrap();
        produced.lock().unwrap().insert(
            number,
            (user, explicitly_shared(user, answer.cache_control)),
        );
        let conditional = request.headers().contains_key("if-none-match")
            || request.headers().contains_key("if-modified-since");
        let status = if conditional && answer.not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::from_u16(answer.status).unwrap()
        };
        let body = if status == StatusCode::NOT_MODIFIED {
            Bytes::new()
        } else {
            Bytes::from(format!("for:{};req:{number}", user.name()))
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let out = response.headers_mut();
        out.insert(
            "cache-control",
            HeaderValue::from_static(answer.cache_control),
        );
        out.insert("x-req", HeaderValue::from(number));
        out.insert("x-for", HeaderValue::from_static(user.name()));
        for (name, value) in &answer.extra {
            out.append(*name, HeaderValue::from_static(value));
            if *name == "connection" {
                out.append("x-hop", HeaderValue::from_static("hop"));
            }
        }
        if answer.set_cookie {
            let cookie = format!("r={number}");
            out.append("set-cookie", HeaderValue::from_str(&cookie).unwrap());
        }
        async move { Ok::<_, Infallible>(response) }
    })
}

/// Checks one reply to request `number` from `user` against everything the origin produced.
fn check_reply(
    user: User,
    number: u64,
    response: &Response<Bytes>,
    produced: &Produced,
) -> Result<(), TestCaseError> {
    let headers = response.headers();
    let status = headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    prop_assert!(
        !headers.contains_key("cache-tag"),
        "Cache-Tag reached a client"
    );
    for cookie in headers.get_all("set-cookie") {
        prop_assert_eq!(
            cookie.to_str().unwrap(),
            format!("r={number}"),
            "{}",
            status
        );
    }
    if status.contains("hit") {
        prop_assert!(
            !headers.contains_key("set-cookie"),
            "a hit replays Set-Cookie"
        );
        prop_assert!(
            !headers.contains_key("x-hop"),
            "a hit replays a connection field"
        );
        prop_assert!(
            !headers.contains_key("keep-alive"),
            "a hit replays Keep-Alive"
        );
    }
    let body = String::from_utf8_lossy(response.body()).into_owned();
    let from_body = body
        .rsplit_once(";req:")
        .and_then(|(_, n)| n.parse::<u64>().ok());
    let from_header = headers
        .get("x-req")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let produced = produced.lock().unwrap();
    for made in [from_body, from_header].into_iter().flatten() {
        let Some(&(owner, shared)) = produced.get(&made) else {
            return Err(TestCaseError::fail(format!("unknown response {made}")));
        };
        let leak = owner != User::Anonymous && owner != user && !shared;
        prop_assert!(
            !leak,
            "{user:?} got what request {made} of {owner:?} produced ({status}): {headers:?} {body}"
        );
    }
    Ok(())
}

/// Sends `ask` as request `number`.
fn request(ask: &Ask, number: u64) -> Request<Full<Bytes>> {
    let mut builder = Request::get(ask.path)
        .header("host", ask.host)
        .header("x-req", number)
        .header("x-user", ask.user.name());
    builder = match ask.user {
        User::Anonymous => builder,
        User::Alice => builder.header("cookie", "sid=alice"),
        User::Bob => builder.header("cookie", "sid=bob"),
        User::Carol => builder.header("authorization", "Bearer carol"),
    };
    for (name, value) in &ask.extra {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

fn run(asks: Vec<Ask>, script: Vec<Answer>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let produced: Produced = Arc::default();
        let cache = Cache::builder().jitter(0.0).build().unwrap();
        let layer = CacheLayer::new(cache).max_body(64);
        let service = layer.layer(origin(script, Arc::clone(&produced)));
        for (number, ask) in asks.iter().enumerate() {
            let number = number as u64;
            let response = service.clone().oneshot(request(ask, number)).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            check_reply(
                ask.user,
                number,
                &Response::from_parts(parts, body),
                &produced,
            )?;
            // Lets background refreshes run between requests.
            tokio::task::yield_now().await;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_client_gets_another_clients_response_and_everything_stored_passed_the_gate(
        asks in prop::collection::vec(ask(), 1..14),
        script in prop::collection::vec(answer(), 1..8),
    ) {
        run(asks, script)?;
    }
}
