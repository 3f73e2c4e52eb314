//! Metrics per site: `#[cached]` functions by name, HTTP by axum route, bounded at a thousand
//! sites per cache (then `other`), and a `metrics` recorder installed after the cache was
//! built receiving them (this binary installs the process's global recorder, once).

mod support;

use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use cache_layer::{cached, Cache, CacheLayer, SiteStats};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::loopback;
use support::wait::eventually;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache::builder().name("sites").build().unwrap())
}

#[cached(ttl = "1m", cache = cache(), name = "square")]
async fn square(x: u64) -> u64 {
    x * x
}

#[cached(ttl = "1m", cache = cache())]
async fn cube(x: u64) -> u64 {
    x * x * x
}

fn site(cache: &Cache, name: &str) -> SiteStats {
    cache
        .site_stats()
        .into_iter()
        .find(|site| site.name == name)
        .unwrap_or_else(|| panic!("no site {name} in {:?}", cache.site_stats()))
}

fn app() -> Router {
    let stored = || async { ([("cache-control", "max-age=60")], "stored") };
    Router::new()
        .route("/users/{id}", get(stored))
        .route("/products/{id}", get(stored))
}

#[tokio::test]
async fn counts_each_cached_function_and_each_route_on_its_own() {
    for x in [1, 2, 1, 1] {
        square(x).await;
    }
    cube(3).await;
    let server = loopback::start_on(cache().clone(), app(), CacheLayer::new).await;
    for path in ["/users/1", "/users/1", "/users/2", "/products/9"] {
        server.get(path, &[]).await;
    }

    let square = site(cache(), "square");
    assert_eq!((square.hits, square.misses, square.loads), (2, 2, 2));
    assert_eq!(square.hit_ratio(), Some(0.5));
    // Without `name`, a site is named by its module path and function.
    let cube = site(cache(), "site_metrics::cube");
    assert_eq!((cube.hits, cube.misses, cube.loads), (0, 1, 1));
    // Routes by their pattern, not by the path sent.
    let users = site(cache(), "/users/{id}");
    assert_eq!((users.hits, users.misses, users.loads), (1, 2, 2));
    let products = site(cache(), "/products/{id}");
    assert_eq!((products.hits, products.misses), (0, 1));
    assert!(cache()
        .site_stats()
        .iter()
        .all(|s| !s.name.contains("/users/1")));
}

#[tokio::test]
async fn ten_thousand_routes_count_as_a_thousand_sites_and_other() {
    let cache = Cache::builder().name("many-routes").build().unwrap();
    let mut app = Router::new();
    for i in 0..10_000 {
        app = app.route(&format!("/r{i}"), get(|| async { "x" }));
    }
    let server = loopback::start_on(cache.clone(), app, CacheLayer::new).await;
    for i in 0..10_000 {
        server.get(&format!("/r{i}"), &[]).await;
    }
    let sites = cache.site_stats();
    assert_eq!(sites.len(), 1001);
    let other = sites.last().unwrap();
    assert_eq!(other.name, "other");
    assert_eq!(other.misses, 9_000);
    let total: u64 = sites.iter().map(|s| s.misses).sum();
    assert_eq!(total, 10_000);

    let handle = recorder();
    cache.export_metrics();
    let rendered = handle.render();
    let labels = rendered
        .lines()
        .filter(|line| line.starts_with("cache_misses_total{cache=\"many-routes\""))
        .count();
    assert_eq!(labels, 1001, "one series per site, then `other`");
}

/// The process's Prometheus recorder, installed on first use (after the caches above were
/// built, in whatever order the tests run).
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

#[tokio::test]
async fn a_recorder_installed_after_build_receives_counters_gauges_and_load_latency() {
    let cache = Cache::builder().name("late").build().unwrap();
    let options = cache_layer::LoadOptions::new(std::time::Duration::from_secs(60)).name("late");
    let load = |x: u64| async move { Ok::<_, std::convert::Infallible>(x) };
    cache
        .get_or_load(&cache_layer::Key::new("a"), &options, || load(1))
        .await
        .unwrap();
    cache
        .get_or_load(&cache_layer::Key::new("a"), &options, || load(1))
        .await
        .unwrap();
    // Only now is a recorder installed: what was counted before reaches it too.
    let handle = recorder();
    cache
        .get_or_load(&cache_layer::Key::new("b"), &options, || load(2))
        .await
        .unwrap();
    // No call to `export_metrics`: the export thread writes every live cache each second.
    eventually("the counters exported", async || {
        let text = handle.render();
        text.contains("cache_hits_total{cache=\"late\",site=\"late\"} 1")
            && text.contains("cache_misses_total{cache=\"late\",site=\"late\"} 2")
            && text.contains("cache_memory_entries{cache=\"late\"} 2")
    })
    .await;
    let text = handle.render();
    assert!(
        text.contains("cache_memory_budget_bytes{cache=\"late\"} 67108864"),
        "{text}"
    );
    assert!(
        text.contains("cache_breaker_open{cache=\"late\"} 0"),
        "{text}"
    );
    // The load made after the recorder was installed is in the latency histogram.
    assert!(
        text.contains("cache_load_seconds_count{cache=\"late\",site=\"late\"} 1"),
        "{text}"
    );
}
