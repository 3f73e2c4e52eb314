//! An axum application behind `CacheLayer`: per-route caching policies set by the handlers'
//! own `Cache-Control`, invalidation tags, and a write handler that invalidates what it changed.
//!
//! Run it with `cargo run --example axum_app` (or `-- --listen 127.0.0.1:PORT`); it prints the
//! address it listens on. Then:
//!
//! ```text
//! curl -i http://ADDR/courses/featured        # miss, then hits (Cache-Status, Age)
//! curl -i http://ADDR/users/7                 # cached per user, tagged user:7 and users
//! curl -i -X PUT -d Grace http://ADDR/users/7 # writes; /users/7 and tag users are dropped
//! curl -i http://ADDR/stats
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cache_layer::{Cache, CacheLayer, CacheTags};

#[derive(Clone)]
struct App {
    cache: Cache,
    users: Arc<Mutex<HashMap<u64, String>>>,
}

/// Public and shared by everyone: fresh for a minute, then served stale for up to ten more
/// seconds while one background request refreshes it.
async fn featured() -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(50)).await; // the expensive query
    (
        [(
            header::CACHE_CONTROL,
            "public, max-age=60, stale-while-revalidate=10",
        )],
        "Featured: Rust for web back ends",
    )
}

/// Cached for 30 s and tagged, so writes can drop it by name.
async fn user(State(app): State<App>, Path(id): Path<u64>) -> impl IntoResponse {
    let Some(name) = app.users.lock().unwrap().get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such user").into_response();
    };
    let mut response = (
        [(header::CACHE_CONTROL, "max-age=30, stale-if-error=300")],
        format!("user {id}: {name}"),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(CacheTags::new([format!("user:{id}"), "users".into()]));
    response
}

/// A successful PUT invalidates its own URL by itself (the layer sees the unsafe method);
/// the handler invalidates the `users` tag so that listings drop too.
async fn update_user(State(app): State<App>, Path(id): Path<u64>, name: String) -> StatusCode {
    app.users.lock().unwrap().insert(id, name);
    app.cache.invalidate("users").await;
    StatusCode::NO_CONTENT
}

/// Tagged `users`: dropped by every user update.
async fn user_list(State(app): State<App>) -> impl IntoResponse {
    let users = app.users.lock().unwrap();
    let mut names: Vec<_> = users.values().cloned().collect();
    names.sort();
    (
        [
            (header::CACHE_CONTROL, "max-age=300"),
            (header::HeaderName::from_static("cache-tag"), "users"),
        ],
        names.join("\n"),
    )
}

/// Never cached: says `no-store`.
async fn stats(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        format!("{:#?}\n", app.cache.stats()),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .skip_while(|a| a != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let cache = Cache::builder()
        .name("http")
        .build()
        .expect("valid configuration");
    let app = App {
        cache: cache.clone(),
        users: Arc::new(Mutex::new(HashMap::from([
            (7, "Ada".to_owned()),
            (8, "Grace".to_owned()),
        ]))),
    };
    // Policies the handlers state in their own `Cache-Control` and tags.
    let stated = Router::new()
        .route("/courses/featured", get(featured))
        .route("/users", get(user_list))
        .route("/users/{id}", get(user).put(update_user))
        .route("/stats", get(stats))
        .with_state(app)
        .layer(CacheLayer::new(cache.clone()));
    // A policy the handler does not state: its silent responses are fresh for five seconds.
    let defaulted = Router::new()
        .route(
            "/time",
            get(|| async { format!("{:?}\n", std::time::SystemTime::now()) }),
        )
        .layer(CacheLayer::new(cache).default_ttl(Duration::from_secs(5)));
    let router = stated.merge(defaulted);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await
}
