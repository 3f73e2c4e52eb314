//! The cache's `tracing` spans as OpenTelemetry spans, without a collector.
//!
//! `tracing-opentelemetry` turns each span into an OpenTelemetry span; the SDK hands finished
//! spans to an exporter. Here the exporter prints them and keeps them in memory; in production
//! use `opentelemetry-otlp`'s exporter (to a collector) in its place, with a batch processor.
//! Nothing else changes: the cache emits the same spans to whatever subscriber is installed.
//!
//! ```text
//! cargo run --example otel_traces
//! ```
//!
//! It loads a product (a miss, then a load), reads it again (a hit), lets it go stale and reads
//! it once more: the stale value is served and a background refresh runs in a `cache.refresh`
//! span of its own, linked to the request that started it. `tests/otel_traces.rs` runs it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_layer::{Cache, Key, LoadOptions};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Prints each finished span on one line and keeps it: a stand-in for a network exporter.
#[derive(Clone, Debug, Default)]
struct PrintExporter {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl SpanExporter for PrintExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &batch {
            println!("{}", line(span));
        }
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(batch);
        Ok(())
    }
}

/// `name key=value ...` for the span's `cache.*`, `code.*` and `http.*` attributes, and how
/// many spans it links to.
fn line(span: &SpanData) -> String {
    let mut line = format!("{:<14}", span.name);
    for attribute in &span.attributes {
        let key = attribute.key.as_str();
        if ["cache.", "code.", "http."]
            .iter()
            .any(|p| key.starts_with(p))
        {
            line.push_str(&format!(" {key}={}", attribute.value));
        }
    }
    if !span.links.is_empty() {
        line.push_str(&format!(" links={}", span.links.len()));
    }
    line
}

/// Runs the demo with the cache's spans exported through OpenTelemetry; returns the spans.
pub(crate) fn run() -> Vec<SpanData> {
    let exporter = PrintExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // Without the layer's own `code.*` attributes (where in the cache's source the span was
    // opened): `code.function.name` is the cached function's name.
    let layer = tracing_opentelemetry::OpenTelemetryLayer::new(provider.tracer("otel_traces"))
        .with_location(false)
        .with_threads(false);
    let subscriber = tracing_subscriber::registry().with(layer);
    // One thread: the background refresh runs where the subscriber is installed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a Tokio runtime");
    tracing::subscriber::with_default(subscriber, || runtime.block_on(demo(&exporter)));
    if let Err(error) = provider.shutdown() {
        eprintln!("exporter shutdown: {error}");
    }
    let spans = exporter.spans.lock().map(|s| s.clone());
    spans.unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

/// A product lookup through the cache, inside a request span as a web framework would open.
async fn product(cache: &Cache, options: &LoadOptions, id: u64, version: u32) -> String {
    let request = tracing::info_span!(
        "GET /products/:id",
        http.request.method = "GET",
        http.route = "/products/:id"
    );
    let loaded = cache
        .get_or_load(&Key::new("product").part(id), options, move || async move {
            tokio::time::sleep(Duration::from_millis(5)).await; // the database
            Ok::<_, Infallible>(format!("product {id} v{version}"))
        })
        .instrument(request)
        .await;
    loaded.unwrap_or_else(|never| match never {})
}

async fn demo(exporter: &PrintExporter) {
    let cache = Cache::builder().name("catalog").build().expect("a cache");
    let options = LoadOptions::new(Duration::from_millis(50))
        .stale(Duration::from_secs(60))
        .jitter(0.0)
        .name("product");
    assert_eq!(product(&cache, &options, 7, 1).await, "product 7 v1"); // miss, load
    assert_eq!(product(&cache, &options, 7, 2).await, "product 7 v1"); // hit
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(product(&cache, &options, 7, 3).await, "product 7 v1"); // stale: refresh
                                                                       // The refresh runs in the background: wait until its span is exported (at most 5 s).
    for _ in 0..500 {
        let spans = exporter.spans.lock();
        if spans.map_or(true, |spans| {
            spans.iter().any(|s| s.name == "cache.refresh")
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[allow(dead_code)] // `tests/otel_traces.rs` includes this file and calls `run`.
fn main() {
    let spans = run();
    println!("{} spans exported", spans.len());
}
