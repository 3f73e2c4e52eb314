//! Runs `examples/otel_traces.rs` (so the example keeps working) and checks what reached the
//! OpenTelemetry exporter: every cache decision of the demo, as spans with their attributes.

#[path = "../examples/otel_traces.rs"]
mod example;

use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::SpanData;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key.as_str() == key)
        .map(|a| a.value.to_string())
}

fn outcomes(spans: &[SpanData], name: &str) -> Vec<String> {
    spans
        .iter()
        .filter(|s| s.name == name)
        .map(|s| attribute(s, "cache.outcome").unwrap_or_default())
        .collect()
}

#[test]
fn the_example_exports_every_cache_decision_as_an_opentelemetry_span() {
    let spans = example::run();
    assert_eq!(outcomes(&spans, "cache.lookup"), ["miss", "hit", "stale"]);
    assert_eq!(outcomes(&spans, "cache.load"), ["miss"]);
    assert_eq!(outcomes(&spans, "cache.refresh"), ["refreshed"]);

    let requests: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "GET /products/:id")
        .collect();
    assert_eq!(requests.len(), 3);
    let lookup = spans.iter().find(|s| s.name == "cache.lookup").unwrap();
    assert_eq!(
        lookup.parent_span_id,
        requests[0].span_context.span_id(),
        "a look-up is a child of the request that made it"
    );
    assert_eq!(attribute(lookup, "cache.name").as_deref(), Some("catalog"));
    assert_eq!(
        attribute(lookup, "code.function.name").as_deref(),
        Some("product")
    );
    assert_eq!(attribute(lookup, "cache.key"), None, "keys only when asked");

    let refresh = spans.iter().find(|s| s.name == "cache.refresh").unwrap();
    assert_eq!(
        refresh.parent_span_id,
        SpanId::INVALID,
        "a refresh is a root"
    );
    let linked: Vec<SpanId> = refresh
        .links
        .iter()
        .map(|l| l.span_context.span_id())
        .collect();
    assert_eq!(
        linked,
        [requests[2].span_context.span_id()],
        "linked to the request that served the stale value"
    );
    assert!(attribute(refresh, "cache.load.duration_us").is_some());
}
