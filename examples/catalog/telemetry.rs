//! Metrics: the Prometheus recorder behind `GET /metrics`, and the request-latency histogram.
//!
//! The caches export `cache_hits_total`, `cache_misses_total`, `cache_stale_total`,
//! `cache_coalesced_total`, `cache_load_errors_total`, ... and the `cache_load_seconds`
//! histogram, labelled `cache="catalog"`; this module adds `http_request_duration_seconds`
//! per route, and `db.rs` the `catalog_db_*` series.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets from 10 µs to 2.5 s: cache hits land in the first few, database reads
/// in the middle.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// Call it before building any `Cache`: a cache registers its counters when it is built, and
/// counters registered before a recorder exists go nowhere.
pub(crate) fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // Real histograms (buckets) rather than the default summaries, so that
                // Prometheus can aggregate them across instances.
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process")
        })
        .clone()
}

/// Middleware: records each request's latency under its route pattern (`/users/{id}`, not
/// `/users/7`, so the label set stays small).
pub(crate) async fn record_latency(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}
