//! No response for one user reaches another: `private`, `no-store`, `Set-Cookie`, requests with
//! credentials, coalesced requests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cache_layer::CacheLayer;

use crate::support::loopback::start;
use crate::{counter, per_user};

#[tokio::test]
async fn no_response_for_one_user_is_served_to_another() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static str)],
    );
    let cases: &[Case] = &[
        (
            "no-store",
            &[("cache-control", "no-store, max-age=60")],
            &[],
        ),
        ("private", &[("cache-control", "private, max-age=60")], &[]),
        (
            "set-cookie",
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
            &[],
        ),
        (
            "authorization",
            &[("cache-control", "max-age=60")],
            &[("authorization", "Bearer secret")],
        ),
        (
            "cookie",
            &[("cache-control", "max-age=60")],
            &[("cookie", "session=abc")],
        ),
    ];
    for (name, response_headers, request_headers) in cases {
        let calls = counter();
        let server = start(per_user(&calls, response_headers), |cache| {
            CacheLayer::new(cache).default_ttl(Duration::from_secs(60))
        })
        .await;
        let mut alice = vec![("x-user", "alice")];
        alice.extend_from_slice(request_headers);
        let mut bob = vec![("x-user", "bob")];
        bob.extend_from_slice(request_headers);
        assert_eq!(server.get("/r", &alice).await.text(), "data of alice");
        let reply = server.get("/r", &bob).await;
        assert_eq!(
            reply.text(),
            "data of bob",
            "{name}: {}",
            reply.cache_status()
        );
        // Nor to an anonymous caller.
        assert_eq!(
            server.get("/r", &[("x-user", "carol")]).await.text(),
            "data of carol",
            "{name}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{name}");
    }
}

#[tokio::test]
async fn explicitly_shared_responses_to_authorized_requests_are_stored() {
    let calls = counter();
    let server = start(
        per_user(&calls, &[("cache-control", "public, max-age=60")]),
        CacheLayer::new,
    )
    .await;
    let auth = [("authorization", "Bearer x"), ("x-user", "alice")];
    server.get("/r", &auth).await;
    assert_eq!(server.get("/r", &auth).await.text(), "data of alice");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cookie_setting_responses_are_never_shared_with_coalesced_requests() {
    let calls = counter();
    let counted_calls = Arc::clone(&calls);
    let app = Router::new().route(
        "/login",
        get(move || {
            let n = counted_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (
                    [
                        ("cache-control", "max-age=60".to_owned()),
                        ("set-cookie", format!("session={n}")),
                    ],
                    format!("session {n}"),
                )
            }
        }),
    );
    let server = Arc::new(start(app, CacheLayer::new).await);
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.get("/login", &[]).await })
        })
        .collect();
    let mut sessions = Vec::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(
            reply.header("set-cookie"),
            format!("session={}", &reply.text()[8..])
        );
        sessions.push(reply.text());
    }
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 10, "every caller got its own session");
}
