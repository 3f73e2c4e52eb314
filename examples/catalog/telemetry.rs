//! Metrics: the Prometheus recorder behind `GET /metrics`, and the request-latency histogram.
//!
//! The caches export `cache_hits_total`, `cache_misses_total`, `cache_stale_total`,
//! `cache_loads_total`, `cache_load_errors_total` and the `cache_load_seconds` histogram per
//! site (`cache="catalog"`, `site` the route or the `#[cached]` function), the cache-wide
//! counters (`cache_coalesced_total`, ...) and the memory gauges; this module adds `http_request_duration_seconds`
//! per route, and `db.rs` the `catalog_db_*` series.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{self as http, Method};
use metrics::Histogram;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service};

/// Histogram buckets from 10 µs to 2.5 s: cache hits land in the first few, database reads
/// in the middle.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// A cache exports its metrics to whatever recorder is installed when it exports them (each
/// second, and on `Cache::export_metrics`), so the order does not matter.
pub(crate) fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                // Real histograms (buckets) rather than the default summaries, so that
                // Prometheus can aggregate them across instances.
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            // Histogram samples queue up until they are folded into their buckets, which
            // `render` does, and upkeep does: without it, an unscraped service's queue grows
            // with every request.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("a thread for metrics upkeep");
            handle
        })
        .clone()
}

/// Middleware, as a layer for `Router::layer` (routing has run by then, so the request
/// carries its `MatchedPath`): records each request's latency under its route pattern
/// (`/users/{id}`, not `/users/7`, so the label set stays small).
///
/// Hand-written rather than `axum::middleware::from_fn`, which boxes a clone of the inner
/// service and the whole middleware future for every request: this wraps the inner future in
/// place (about 5% less server CPU time per cache hit on one core; see "Per core" in
/// docs/caching-and-performance.md).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordLatencyLayer;

impl<S> Layer<S> for RecordLatencyLayer {
    type Service = RecordLatency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordLatency { inner }
    }
}

/// The service of [`RecordLatencyLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RecordLatency<S> {
    inner: S,
}

impl<S, B> Service<Request> for RecordLatency<S>
where
    S: Service<Request, Response = http::Response<B>>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = LatencyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        LatencyFuture {
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: method_label(request.method()),
            started: Instant::now(),
            inner: self.inner.call(request),
        }
    }
}

/// The inner service's future, timed: records when the response head is ready.
pub(crate) struct LatencyFuture<F> {
    inner: F,
    route: Option<MatchedPath>,
    method: &'static str,
    started: Instant,
}

impl<F, B, E> Future for LatencyFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(Pin::new(&mut self.inner).poll(cx));
        if let Ok(response) = &result {
            let took = self.started.elapsed().as_secs_f64();
            let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let status = response.status().as_u16();
            latency_histogram(route, self.method, status, |h| h.record(took));
        }
        Poll::Ready(result)
    }
}

/// The method as a label: the client chooses it, so any method HTTP does not define is
/// `other`, or every made-up method would add label sets (and memory) for good.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}

/// Runs `f` on the histogram for one label set. Handles are kept per thread: looking one up in
/// the recorder allocates the labels and hashes them, which cost about a fifth of a cache hit's
/// throughput in `benches/compare.sh`. A thread sees a few label sets, found by a scan that
/// builds nothing per request.
fn latency_histogram(route: &str, method: &str, status: u16, f: impl FnOnce(&Histogram)) {
    thread_local! {
        static HANDLES: RefCell<Vec<(String, u16, String, Histogram)>> = RefCell::default();
    }
    HANDLES.with_borrow_mut(|handles| {
        let known = handles
            .iter()
            .find(|(m, s, r, _)| *s == status && m == method && r == route);
        if let Some((_, _, _, histogram)) = known {
            return f(histogram);
        }
        let histogram = metrics::histogram!(
            "http_request_duration_seconds",
            "method" => method.to_owned(),
            "route" => route.to_owned(),
            "status" => status.to_string()
        );
        f(&histogram);
        handles.push((method.to_owned(), status, route.to_owned(), histogram));
    });
}
