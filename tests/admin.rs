//! The admin service on a real axum server: refused without the token, stats and one key's
//! entry as JSON, clears and invalidations, and its page as a real browser (Debian's
//! `chromium`, headless) renders it.

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_layer::{cached, Admin, Cache, CacheLayer, Key, LoadOptions};
use serde_json::Value;
use support::loopback::{self, Server};

const TOKEN: &str = "s3cret-admin";

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        Cache::builder()
            .name("admin<&>")
            .jitter(0.0)
            .build()
            .unwrap()
    })
}

#[cached(ttl = "1m", cache = cache(), name = "double")]
async fn double(x: u64) -> u64 {
    x * 2
}

/// The app on `cache`: a cached route, the admin service under `/admin`.
async fn start_on(cache: &Cache) -> Server {
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|| async { ([("cache-control", "max-age=60")], "item") }),
        )
        .layer(CacheLayer::new(cache.clone()))
        .nest_service("/admin", Admin::with_token(cache.clone(), TOKEN));
    loopback::serve(app).await
}

/// [`start_on`] a cache of the test's own.
async fn start() -> (Server, Cache) {
    let cache = Cache::builder().jitter(0.0).build().unwrap();
    (start_on(&cache).await, cache)
}

async fn admin(server: &Server, method: Method, path: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {TOKEN}");
    let reply = server
        .send(method, path, &[("authorization", &bearer)])
        .await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

#[tokio::test]
async fn refuses_requests_without_the_token_or_with_a_wrong_one() {
    let (server, _cache) = start().await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer s3cret-admi")],
        vec![("authorization", "Bearer s3cret-admin2")],
        // base64("admin:wrong")
        vec![("authorization", "Basic YWRtaW46d3Jvbmc=")],
    ] {
        for path in ["/admin/", "/admin/stats", "/admin/entry?key=k"] {
            let reply = server.send(Method::GET, path, &headers).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
            assert!(reply.header("www-authenticate").starts_with("Basic"));
            assert!(!reply.text().contains("hits"));
        }
        let reply = server.send(Method::POST, "/admin/clear", &headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // base64("anyone:s3cret-admin"): the token as a browser sends it.
    let reply = server
        .get(
            "/admin/stats",
            &[("authorization", "Basic YW55b25lOnMzY3JldC1hZG1pbg==")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), "no-store");
}

#[tokio::test]
async fn shows_one_keys_entry_as_it_was_stored_and_never_its_value() {
    let (server, cache) = start().await;
    let options = LoadOptions::new(Duration::from_secs(60))
        .stale(Duration::from_secs(10))
        .stale_if_error(Duration::from_secs(100))
        .tag("users");
    let key = Key::new("user").part(7);
    cache.insert(&key, "the value".to_owned(), &options).await;

    let (status, entry) = admin(&server, Method::GET, "/admin/entry?key=user%3A7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entry["key"], "user:7");
    assert_eq!(entry["present"], true);
    assert_eq!(entry["state"], "fresh");
    assert_eq!(entry["stale_window_seconds"], 10.0);
    assert_eq!(entry["stale_if_error_window_seconds"], 100.0);
    let fresh = entry["fresh_seconds_left"].as_f64().unwrap();
    assert!(fresh > 50.0 && fresh <= 60.0, "{entry}");
    assert!(entry["age_seconds"].as_f64().unwrap() < 10.0);
    assert_eq!(entry["tags"], serde_json::json!(["users"]));
    assert_eq!(
        entry["size_bytes"].as_u64().unwrap(),
        cache.entry_info("user:7").unwrap().size
    );
    assert!(!entry.to_string().contains("the value"));

    // A soft purge keeps it, stale; an invalidation by tag drops it.
    let (status, _) = admin(&server, Method::POST, "/admin/invalidate?tag=users&soft=1").await;
    assert_eq!(status, StatusCode::OK);
    let (_, entry) = admin(&server, Method::GET, "/admin/entry?key=user%3A7").await;
    assert_eq!(
        (entry["soft_purged"].clone(), entry["state"].clone()),
        (true.into(), "stale".into())
    );
    admin(&server, Method::POST, "/admin/invalidate?tag=users").await;
    let (_, entry) = admin(&server, Method::GET, "/admin/entry?key=user%3A7").await;
    assert_eq!(entry["present"], false);
}

#[tokio::test]
async fn clears_a_prefix_or_everything() {
    let (server, cache) = start().await;
    let options = LoadOptions::new(Duration::from_secs(60));
    for key in ["a:1", "a:2", "b:1"] {
        cache.insert(&Key::new(key), 1u8, &options).await;
    }
    let (status, answer) = admin(
        &server,
        Method::POST,
        "/admin/clear?prefix=a%3A&scope=local",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["cleared"], "a:");
    assert!(cache.entry_info("a:1").is_none() && cache.entry_info("a:2").is_none());
    assert!(cache.entry_info("b:1").is_some());
    let (status, _) = admin(&server, Method::POST, "/admin/clear?scope=everywhere").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(cache.entry_info("b:1").is_some());
    admin(&server, Method::POST, "/admin/clear").await;
    assert!(cache.entry_info("b:1").is_none());
}

/// Runs Debian's `chromium` headless on `url`; returns the DOM it rendered.
async fn browser_dom(url: String) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--dump-dom",
                &url,
            ])
            .output()
            .expect("chromium installed (scripts/test installs it)")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_page_shows_each_site_and_its_ratio_in_a_real_browser() {
    let server = start_on(cache()).await;
    for x in [1, 1, 1, 2] {
        double(x).await;
    }
    for path in ["/items/1", "/items/1", "/items/2"] {
        server.get(path, &[]).await;
    }
    let (_, stats) = admin(&server, Method::GET, "/admin/stats").await;
    // The browser authenticates as a person would: the token as the password.
    let dom = browser_dom(format!("http://op:{TOKEN}@{}/admin/", server.addr)).await;
    assert!(dom.contains("<svg id=\"chart\""), "{dom}");
    assert!(
        dom.contains("admin&lt;&amp;&gt;"),
        "the cache's name, escaped: {dom}"
    );
    for name in ["double", "/items/{id}"] {
        let site = stats["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {stats}"));
        let ratio = site["ratio"].as_f64().unwrap();
        let row = format!(
            "<td class=\"name\">{name}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"ratio\">{:.1}%</td>",
            site["hits"], site["misses"], site["stale"], ratio * 100.0
        );
        assert!(dom.contains(&row), "{row} not in {dom}");
        assert!(
            dom.contains(&format!("{name} {:.1}%</text>", ratio * 100.0)),
            "{dom}"
        );
    }
}
