//! `CacheLayer` keys under hostile requests, end to end over loopback: a `Host` cannot forge
//! another URL's key, invalid authorities are never keyed, both HTTP versions' ways of naming
//! the authority share a key, the query is kept as sent, and the spellings of one URL (its
//! percent-encodings) share an entry, which a purge or a write of any of them drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, Uri};
use axum::Router;
use cache_layer::{Cache, CacheLayer};

mod support;
use support::loopback::{serve, start};

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// An origin answering every path with the path and `Host` it saw, storable for a minute.
fn echo_target(calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        calls.fetch_add(1, Ordering::SeqCst);
        let host = headers
            .get("host")
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        async move {
            let mut response = Response::new(Body::from(format!("{} at {host}", uri.path())));
            response
                .headers_mut()
                .insert("cache-control", HeaderValue::from_static("max-age=60"));
            response
        }
    })
}

#[tokio::test]
async fn a_host_with_a_path_cannot_poison_another_urls_key() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    let (_, forged) = server
        .raw("GET /x HTTP/1.1\r\nHost: example.com/admin")
        .await;
    assert_eq!(forged, "/x at example.com/admin");
    let (status, real) = server
        .raw("GET /admin/x HTTP/1.1\r\nHost: example.com")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        real, "/admin/x at example.com",
        "served the forged response"
    );
}

#[tokio::test]
async fn invalid_hosts_are_never_keyed() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    for host in [
        "example.com/admin",
        "example.com?q",
        "example.com#f",
        "user@example.com",
        "example.com:80:80",
        "example.com:port",
        "exa mple.com",
        "",
    ] {
        let before = calls.load(Ordering::SeqCst);
        let head = format!("GET /y HTTP/1.1\r\nHost: {host}");
        server.raw(&head).await;
        server.raw(&head).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 2,
            "{host:?} was keyed"
        );
    }
    // A valid one still is.
    let before = calls.load(Ordering::SeqCst);
    server
        .raw("GET /y HTTP/1.1\r\nHost: Example.COM:8080")
        .await;
    server
        .raw("GET /y HTTP/1.1\r\nHost: example.com:8080")
        .await;
    server.raw("GET /y HTTP/1.1\r\nHost: [::1]:8080").await;
    server.raw("GET /y HTTP/1.1\r\nHost: [::1]:8080").await;
    assert_eq!(calls.load(Ordering::SeqCst), before + 2);
}

#[tokio::test]
async fn the_authority_form_of_http2_is_keyed_like_the_host_of_http1() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    // HTTP/2 carries the authority in the URI and no Host; hyper hands an absolute-form
    // HTTP/1.1 request line to the service the same way.
    let (_, first) = server.raw("GET http://example.com/z?a=1 HTTP/1.1").await;
    assert!(first.starts_with("/z at"), "{first}");
    let (_, second) = server.raw("GET /z?a=1 HTTP/1.1\r\nHost: example.com").await;
    assert_eq!(second, first);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one key for both forms");
}

#[tokio::test]
async fn the_query_is_kept_as_sent() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    server.get("/q?a=1&a=2", &[]).await;
    server.get("/q?a=2&a=1", &[]).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "reordered repeated parameters"
    );
    server.get("/q?a=1&a=2", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_write_in_either_form_invalidates_what_the_other_form_stored() {
    let calls = counter();
    let c = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/doc",
            axum::routing::get(move || {
                c.fetch_add(1, Ordering::SeqCst);
                async { ([("cache-control", "max-age=60")], "doc") }
            })
            .put(|| async { ([("content-location", "/other")], "") }),
        )
        .route(
            "/other",
            axum::routing::get(|| async { ([("cache-control", "max-age=60")], "other") }),
        );
    let server = start(app, CacheLayer::new).await;
    server.raw("GET /doc HTTP/1.1\r\nHost: example.com").await;
    server.raw("GET /doc HTTP/1.1\r\nHost: example.com").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // HTTP/2-style: the authority in the URI, no Host.
    server
        .raw("PUT http://example.com/doc HTTP/1.1\r\nContent-Length: 0")
        .await;
    server.raw("GET /doc HTTP/1.1\r\nHost: example.com").await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the write dropped the stored GET"
    );
    // And the other way round, with a Content-Location.
    server.raw("GET http://example.com/doc HTTP/1.1").await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one key for both forms");
    server
        .raw("PUT /doc HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0")
        .await;
    server.raw("GET http://example.com/doc HTTP/1.1").await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_host_that_disagrees_with_the_uri_authority_is_never_keyed() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    // Absolute form names victim.com; the application sees (and builds links for) evil.com.
    let forged = "GET http://victim.com/page HTTP/1.1\r\nHost: evil.com";
    let (_, body) = server.raw(forged).await;
    assert_eq!(body, "/page at evil.com");
    let (_, body) = server.raw(forged).await;
    assert_eq!(body, "/page at evil.com");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the forged request was keyed"
    );
    let (_, real) = server
        .raw("GET http://victim.com/page HTTP/1.1\r\nHost: victim.com")
        .await;
    assert_eq!(real, "/page at victim.com", "served the forged response");
    // Agreeing forms, whatever the case, are keyed as usual.
    server
        .raw("GET http://victim.com/page HTTP/1.1\r\nHost: VICTIM.com")
        .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "agreeing authorities share a key"
    );
}

#[tokio::test]
async fn the_spellings_of_one_url_share_an_entry() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    let first = server.get("/products/7", &[]).await.text();
    assert_eq!(server.get("/products/%37", &[]).await.text(), first);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "`%37` and `7` share an entry"
    );
    // An encoded unreserved character, in either hex case, is the character.
    let tilde = server.get("/%7ea?q=%7E", &[]).await.text();
    assert_eq!(server.get("/%7Ea?q=%7e", &[]).await.text(), tilde);
    assert_eq!(server.get("/~a?q=~", &[]).await.text(), tilde);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "`%7e`, `%7E` and `~`");
}

#[tokio::test]
async fn encoded_delimiters_keep_their_own_entries() {
    let calls = counter();
    let server = start(echo_target(&calls), CacheLayer::new).await;
    let seen = |text: String| text.split(" at ").next().unwrap_or_default().to_owned();
    assert_eq!(seen(server.get("/a%2Fb", &[]).await.text()), "/a%2Fb");
    assert_eq!(seen(server.get("/a/b", &[]).await.text()), "/a/b");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "`%2F` and `/` differ");
    // Only the hex case of `%2F` is normalised: served what `%2F` stored.
    assert_eq!(seen(server.get("/a%2fb", &[]).await.text()), "/a%2Fb");
    server.get("/q?a=%26", &[]).await;
    server.get("/q?a=&", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "`%26` and `&` differ");
}

#[tokio::test]
async fn a_purge_or_a_write_of_one_spelling_drops_the_others() {
    let calls = counter();
    let layer = CacheLayer::new(Cache::builder().jitter(0.0).build().unwrap());
    let purge = layer.purge_with_token("t0ken");
    let server = serve(echo_target(&calls).layer(layer).layer(purge)).await;
    let token = [("authorization", "Bearer t0ken")];
    server.get("/products/7", &[]).await;
    let purged = server
        .send(
            Method::from_bytes(b"PURGE").unwrap(),
            "/products/%37",
            &token,
        )
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    server.get("/products/7", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the purge dropped it");
    // And the other way round, spelled another way again.
    server.get("/products/%37", &[]).await;
    server
        .send(Method::from_bytes(b"PURGE").unwrap(), "/products/7", &token)
        .await;
    server.get("/products/%37", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A successful write of one spelling drops what the other stored.
    server.send(Method::PUT, "/products/%37", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    server.get("/products/7", &[]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 5, "the write dropped it");
}
