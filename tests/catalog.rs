//! The catalog example (`examples/catalog/`) end to end: its own router on a loopback port, a
//! real HTTP client, and the database's query counter as the witness of what was cached.

// The example's service, compiled in as it is, not copied. The command line and the demo are
// not part of it, so some items the binary uses are unused here.
#[allow(dead_code)]
#[path = "../examples/catalog/app.rs"]
mod app;
mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use app::{Options, Running};

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().expect("an ASCII header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Service {
    running: Running,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Service {
    async fn start(options: Options) -> Service {
        let running = app::start("127.0.0.1:0", &options)
            .await
            .expect("the catalog starts");
        Service {
            running,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn cached() -> Service {
        Service::start(Options::default()).await
    }

    fn queries(&self) -> u64 {
        self.running.catalog.db.queries()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.running.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("a valid request");
        let response = self.client.request(request).await.expect("a response");
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("a body").to_bytes(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], "").await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, path, headers, "").await
    }
}

#[tokio::test]
async fn starts_on_a_free_loopback_port_and_serves_every_endpoint() {
    let service = Service::cached().await;
    let addr = service.running.addr;
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    for path in [
        "/courses/featured",
        "/users/1",
        "/products/1",
        "/tenants/acme-1/settings",
        "/metrics",
    ] {
        let reply = service.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let me = service
        .get_with("/me", &[("authorization", "Bearer user-1")])
        .await;
    assert_eq!(me.status, StatusCode::OK);
    let health = service.get("/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok")
    );
    assert_eq!(health.header("cache-control"), "no-store");
    let featured = service.get("/courses/featured").await.json();
    let courses = featured.as_array().expect("a list of courses");
    assert_eq!(courses.len(), 12);
    assert!(courses[0]["students"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_latency_histograms_label_sets() {
    let service = Service::cached().await;
    for n in 0..3 {
        let method = Method::from_bytes(format!("MADEUP{n}").as_bytes()).expect("a token");
        service.send(method, "/courses/featured", &[], "").await;
    }
    let metrics = service.get("/metrics").await.text();
    assert!(!metrics.contains("MADEUP"), "{metrics}");
    assert!(
        metrics.contains("method=\"other\""),
        "made-up methods share one label: {metrics}"
    );
}

#[tokio::test]
async fn featured_courses_are_served_from_the_http_cache_with_etag_and_304() {
    let service = Service::cached().await;
    let first = service.get("/courses/featured").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("cache-control"), "public, s-maxage=30");
    assert!(first.header("cache-status").contains("stored"));
    let queries = service.queries();
    assert_eq!(queries, 1);

    let again = service.get("/courses/featured").await;
    assert!(again.header("cache-status").contains("hit"));
    assert_eq!(again.body, first.body);
    assert_eq!(service.queries(), queries, "a hit does not query");

    let etag = first.header("etag");
    assert!(!etag.is_empty(), "the layer gives the response an ETag");
    let revalidated = service
        .get_with("/courses/featured", &[("if-none-match", etag)])
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert!(revalidated.body.is_empty());
    assert_eq!(
        service.queries(),
        queries,
        "a 304 from the cache does not query"
    );
}

#[tokio::test]
async fn user_profiles_are_cached_and_a_put_invalidates_them() {
    let service = Service::cached().await;
    let first = service.get("/users/7").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json()["name"], "user7");
    assert_eq!(first.header("cache-tag"), "", "the layer strips Cache-Tag");
    let queries = service.queries();

    let again = service.get("/users/7").await;
    assert!(again.header("cache-status").contains("hit"));
    assert_eq!(service.queries(), queries);

    let put = service.send(Method::PUT, "/users/7", &[], "Grace").await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_eq!(service.queries(), queries + 1, "the write itself");

    let after = service.get("/users/7").await;
    assert_eq!(
        after.json()["name"],
        "Grace",
        "neither cache served the old name"
    );
    assert_eq!(
        service.queries(),
        queries + 2,
        "the memoised profile was dropped too"
    );
}

#[tokio::test]
async fn one_invalidation_of_the_tag_drops_the_memoised_profile_and_the_http_response() {
    let service = Service::cached().await;
    service.get("/users/9").await;
    assert!(service
        .get("/users/9")
        .await
        .header("cache-status")
        .contains("hit"));
    let queries = service.queries();

    // What `#[invalidates("user:<id>")]` does after a write, here without a write: the HTTP
    // response (tagged by its `Cache-Tag`) and the `#[cached]` value (keyed `user:9`) go.
    service.running.catalog.cache.invalidate("user:9").await;
    let after = service.get("/users/9").await;
    assert!(!after.header("cache-status").contains("hit"));
    assert_eq!(service.queries(), queries + 1);
}

#[tokio::test]
async fn me_shares_the_memoised_profile_but_not_the_response() {
    let service = Service::cached().await;
    service.get("/users/12").await;
    let queries = service.queries();
    let me = service
        .get_with("/me", &[("authorization", "Bearer user-12")])
        .await;
    assert_eq!(me.json()["id"], 12);
    assert_eq!(
        service.queries(),
        queries,
        "served from the memoised user:12"
    );
}

#[tokio::test]
async fn unknown_products_are_a_404_cached_negatively() {
    let service = Service::cached().await;
    let known = service.get("/products/5").await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(known.json()["sku"], "SKU-00005");

    let before = service.queries();
    for _ in 0..3 {
        let missing = service.get("/products/999999").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(service.queries(), before + 1, "one query for three lookups");

    // The memoised lookup on its own, without the HTTP layer: `none_ttl` caches the `None`.
    let catalog = &service.running.catalog;
    assert_eq!(catalog.product(888_888).await, None);
    assert_eq!(catalog.product(888_888).await, None);
    assert_eq!(service.queries(), before + 2);
}

#[tokio::test]
async fn tenant_settings_never_cross_tenants() {
    let service = Service::cached().await;
    let one = service.get("/tenants/acme-1/settings").await.json();
    let two = service.get("/tenants/acme-2/settings").await.json();
    assert_eq!(one["support_email"], "help@acme-1.example");
    assert_eq!(two["support_email"], "help@acme-2.example");
    let queries = service.queries();
    assert_eq!(queries, 2, "one query per tenant");

    for _ in 0..2 {
        let one_again = service.get("/tenants/acme-1/settings").await;
        let two_again = service.get("/tenants/acme-2/settings").await;
        assert_eq!(one_again.json(), one);
        assert_eq!(two_again.json(), two);
        assert!(one_again.header("cache-control").starts_with("private"));
    }
    assert_eq!(
        service.queries(),
        queries,
        "each tenant's settings are memoised"
    );

    // A tenant with no settings is an error, and errors are never cached.
    for _ in 0..2 {
        let unknown = service.get("/tenants/nobody/settings").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(service.queries(), queries + 2);
}

#[tokio::test]
async fn me_is_private_and_never_shared_between_users() {
    let service = Service::cached().await;
    for _ in 0..2 {
        for id in [3, 4] {
            let token = format!("Bearer user-{id}");
            let me = service
                .get_with("/me", &[("authorization", token.as_str())])
                .await;
            assert_eq!(me.status, StatusCode::OK);
            assert_eq!(me.json()["id"], id);
            assert!(me.header("cache-control").starts_with("private"));
            let status = me.header("cache-status");
            assert!(
                !status.contains("hit") && !status.contains("stored"),
                "a shared cache neither stores nor serves /me: {status}"
            );
        }
    }
    let anonymous = service.get("/me").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metrics_show_cache_counters_and_latency_histograms() {
    let service = Service::cached().await;
    service.get("/courses/featured").await;
    service.get("/courses/featured").await;
    service.get("/users/1").await;
    let metrics = service.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(metrics.header("cache-control"), "no-store");
    let text = metrics.text();
    for series in [
        "cache_hits_total{cache=\"catalog\",site=\"/courses/featured\"} 1",
        "cache_misses_total{cache=\"catalog\",site=\"/users/{id}\"} 1",
        "cache_stale_total{cache=\"catalog\",site=",
        "cache_coalesced_total{cache=\"catalog\"}",
        "cache_load_errors_total{cache=\"catalog\",site=",
        "cache_load_seconds_bucket{cache=\"catalog\",site=",
        "cache_memory_entries{cache=\"catalog\"}",
        "http_request_duration_seconds_bucket{",
        "route=\"/courses/featured\"",
        "catalog_db_queries_total{query=\"featured_courses\"}",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

#[tokio::test]
async fn without_caching_every_request_reaches_the_database() {
    let service = Service::start(Options {
        no_cache: true,
        redis: None,
    })
    .await;
    for _ in 0..2 {
        let reply = service.get("/courses/featured").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("cache-status"),
            "cache-layer; fwd=bypass",
            "a disabled cache: the layer passes through"
        );
        service.get("/users/3").await;
        service.get("/products/999999").await;
    }
    assert_eq!(service.queries(), 6);
}

#[tokio::test]
async fn with_redis_memoised_reads_are_shared_through_redis() {
    let redis = support::redis_server::RedisServer::start();
    let service = Service::start(Options {
        redis: Some(redis.url()),
        ..Options::default()
    })
    .await;
    assert_eq!(service.get("/users/1").await.status, StatusCode::OK);
    let before = service.queries();
    let mut raw = redis.raw().await;
    let stored: Option<Vec<u8>> = redis::cmd("GET")
        .arg("catalog:v:user:1")
        .query_async(&mut raw)
        .await
        .expect("raw GET");
    assert!(stored.is_some(), "the profile is stored in Redis");
    assert_eq!(service.get("/users/1").await.status, StatusCode::OK);
    assert_eq!(service.queries(), before, "the second read is a hit");
    assert!(
        app::build_cache(Some("not a url"), false).is_err(),
        "a bad URL is a clear error"
    );
}

// The demo (`--demo`, the README's first command), shortened: both phases run, requests
// succeed, the caching phase hits its caches, and the table and the chart are produced.
#[allow(dead_code)]
#[path = "../examples/catalog/chart.rs"]
mod chart;
#[allow(dead_code)]
#[path = "../examples/catalog/demo.rs"]
mod demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_both_phases_and_draws_the_table_and_chart() {
    let load = demo::Load {
        duration: std::time::Duration::from_millis(500),
        concurrency: 4,
    };
    let phases = demo::measure(&load, None).await.expect("the demo runs");
    let (off, on) = (&phases[0], &phases[1]);
    for phase in [off, on] {
        assert!(phase.requests > 0, "{} made no requests", phase.label);
        assert_eq!(phase.failures, 0, "{} had failures", phase.label);
    }
    assert_eq!(
        off.db_queries, off.requests,
        "without caching, one query per request"
    );
    assert_eq!(off.hit_ratio, None);
    assert!(on.hit_ratio.expect("caching on has a hit ratio") > 0.0);
    assert!(on.db_queries < on.requests, "caching saved queries");

    let table = demo::table(off, on);
    for row in [
        "requests/s",
        "p99 latency",
        "queries per request",
        "cache hit ratio",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let svg = chart::latency_cdf(&phases);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2);
}

/// Every metric name the Grafana dashboard (docs/grafana/cache-layer.json) queries: the
/// `cache_*` names in its panels' and variables' queries (a histogram's `_bucket` series
/// included).
fn dashboard_metric_names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/cache-layer.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            queries.push(query.to_owned());
        }
    }
    let mut names: Vec<String> = queries
        .iter()
        .flat_map(|q| q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')))
        .filter(|token| token.starts_with("cache_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_in_the_metrics_output() {
    let names = dashboard_metric_names();
    assert!(names.len() >= 15, "{names:?}");
    let service = Service::cached().await;
    for path in [
        "/courses/featured",
        "/courses/featured",
        "/users/1",
        "/users/1",
        "/products/2",
    ] {
        assert_eq!(service.get(path).await.status, StatusCode::OK);
    }
    let text = service.get("/metrics").await.text();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            !text.lines().any(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard, not exported: {missing:?}\n{text}"
    );
}
