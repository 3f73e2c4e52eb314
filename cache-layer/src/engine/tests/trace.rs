//! The spans `trace` opens, as a `tracing` subscriber records them, through the public API.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::{Cache, CacheLayer, Key, LoadOptions};

type Fields = HashMap<String, String>;

/// A subscriber that keeps every span's name and fields.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(String, Fields)>>>);

struct Fill<'a>(&'a mut Fields);

impl Visit for Fill<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Captured {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        attributes.record(&mut Fill(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((attributes.metadata().name().to_owned(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        let index = usize::try_from(id.into_u64()).unwrap() - 1;
        values.record(&mut Fill(&mut spans[index].1));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    /// The spans named `name`, oldest first, and forgets them.
    fn take(&self, name: &str) -> Vec<Fields> {
        let mut spans = self.0.lock().unwrap();
        let taken = spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect();
        // Ids stay valid: taken spans are renamed, not removed.
        for (n, _) in spans.iter_mut().filter(|(n, _)| n == name) {
            n.clear();
        }
        taken
    }
}

fn get(fields: &Fields, name: &str) -> Option<String> {
    fields.get(name).cloned()
}

async fn load(cache: &Cache, key: &Key) -> u32 {
    let options = LoadOptions::new(Duration::from_secs(60)).name("users");
    let loaded = cache
        .get_or_load(key, &options, || async { Ok::<_, Infallible>(7u32) })
        .await;
    loaded.unwrap_or_else(|never| match never {})
}

#[tokio::test]
async fn memo_lookups_and_loads_are_spans_with_outcome_tier_and_no_key() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().name("users-cache").build().unwrap();
    let key = Key::new("user").part(7);
    load(&cache, &key).await;
    let lookups = captured.take("cache.lookup");
    let loads = captured.take("cache.load");
    assert_eq!(lookups.len(), 1);
    assert_eq!(get(&lookups[0], "cache.outcome").as_deref(), Some("miss"));
    assert_eq!(get(&lookups[0], "cache.tier"), None);
    assert_eq!(
        get(&lookups[0], "cache.name").as_deref(),
        Some("users-cache")
    );
    assert_eq!(
        get(&lookups[0], "code.function.name").as_deref(),
        Some("users")
    );
    assert_eq!(loads.len(), 1);
    assert_eq!(get(&loads[0], "cache.outcome").as_deref(), Some("miss"));
    assert!(get(&loads[0], "cache.load.duration_us").is_some());
    assert!(lookups
        .iter()
        .chain(&loads)
        .all(|f| !f.contains_key("cache.key")));

    load(&cache, &key).await;
    let lookups = captured.take("cache.lookup");
    assert_eq!(get(&lookups[0], "cache.outcome").as_deref(), Some("hit"));
    assert_eq!(get(&lookups[0], "cache.tier").as_deref(), Some("memory"));
    assert!(
        captured.take("cache.load").is_empty(),
        "a hit loads nothing"
    );
}

#[tokio::test]
async fn a_waiter_is_coalesced_and_keys_are_recorded_only_when_asked() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().trace_keys(true).build().unwrap();
    let key = Key::new("slow");
    let options = LoadOptions::new(Duration::from_secs(60));
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Infallible>(1u8)
    };
    let (a, b) = tokio::join!(
        cache.get_or_load(&key, &options, slow),
        cache.get_or_load(&key, &options, slow)
    );
    assert_eq!((a.ok(), b.ok()), (Some(1), Some(1)));
    let mut outcomes: Vec<String> = captured
        .take("cache.load")
        .iter()
        .map(|f| {
            assert_eq!(get(f, "cache.key").as_deref(), Some("slow"));
            get(f, "cache.outcome").unwrap()
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["coalesced", "miss"]);
}

#[tokio::test]
async fn a_disabled_cache_traces_bypass() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().disabled().build().unwrap();
    load(&cache, &Key::new("k")).await;
    let lookups = captured.take("cache.lookup");
    let loads = captured.take("cache.load");
    assert_eq!(get(&lookups[0], "cache.outcome").as_deref(), Some("bypass"));
    assert_eq!(get(&loads[0], "cache.outcome").as_deref(), Some("bypass"));
}

#[tokio::test]
async fn a_batch_traces_each_keys_lookup() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().build().unwrap();
    let options = LoadOptions::new(Duration::from_secs(60)).name("batch");
    cache.insert(&Key::new("k").part(1), 1u8, &options).await;
    let keys = [Key::new("k").part(1), Key::new("k").part(2)];
    let load = |missing: Vec<Key>| async move {
        Ok::<_, Infallible>(
            missing
                .into_iter()
                .map(|k| (k, 2u8))
                .collect::<HashMap<_, _>>(),
        )
    };
    let values = cache.get_or_load_many(&keys, &options, load).await;
    assert_eq!(values.ok(), Some(vec![Some(1), Some(2)]));
    let outcomes: Vec<Option<String>> = captured
        .take("cache.lookup")
        .iter()
        .map(|f| get(f, "cache.outcome"))
        .collect();
    assert_eq!(outcomes, [Some("hit".to_owned()), Some("miss".to_owned())]);
    let loads = captured.take("cache.load");
    assert_eq!(
        get(&loads[0], "code.function.name").as_deref(),
        Some("batch")
    );
}

/// Waits (bounded) until `captured` holds a `name` span with an outcome; takes them.
async fn outcome_of(captured: &Captured, name: &str) -> Vec<Fields> {
    for _ in 0..500 {
        let spans = captured.0.lock().unwrap().clone();
        let done: Vec<Fields> = spans
            .into_iter()
            .filter(|(n, f)| n == name && f.contains_key("cache.outcome"))
            .map(|(_, f)| f)
            .collect();
        if !done.is_empty() {
            return captured.take(name);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    captured.take(name)
}

#[tokio::test]
async fn a_background_refresh_is_a_span_with_its_outcome_and_time() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().name("refreshing").build().unwrap();
    let key = Key::new("user").part(7);
    let options = LoadOptions::new(Duration::from_millis(20))
        .stale(Duration::from_secs(60))
        .jitter(0.0)
        .name("users");
    let loaded = cache.get_or_load(&key, &options, || async { Ok::<_, Infallible>(1u8) });
    assert_eq!(loaded.await.ok(), Some(1));
    tokio::time::sleep(Duration::from_millis(40)).await;
    let stale = cache.get_or_load(&key, &options, || async { Ok::<_, Infallible>(2u8) });
    assert_eq!(stale.await.ok(), Some(1), "the stale value is served");
    let refreshes = outcome_of(&captured, "cache.refresh").await;
    assert_eq!(refreshes.len(), 1);
    let refresh = &refreshes[0];
    assert_eq!(get(refresh, "cache.outcome").as_deref(), Some("refreshed"));
    assert_eq!(get(refresh, "cache.name").as_deref(), Some("refreshing"));
    assert_eq!(get(refresh, "code.function.name").as_deref(), Some("users"));
    assert!(get(refresh, "cache.load.duration_us").is_some());
    assert!(!refresh.contains_key("cache.key"), "keys only when asked");
    assert_eq!(cache.get::<u8>(&key).await, Some(2));

    // A failing refresh keeps the stale value, and its span says so.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let failing = cache.get_or_load(&key, &options, || async { Err::<u8, _>("down") });
    assert_eq!(failing.await.ok(), Some(2));
    let refreshes = outcome_of(&captured, "cache.refresh").await;
    assert_eq!(
        get(&refreshes[0], "cache.outcome").as_deref(),
        Some("failed")
    );
}

#[tokio::test]
async fn a_refresh_records_its_key_only_when_asked() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().trace_keys(true).build().unwrap();
    let key = Key::new("k");
    let options = LoadOptions::new(Duration::from_millis(20))
        .stale(Duration::from_secs(60))
        .jitter(0.0);
    let _ = cache
        .get_or_load(&key, &options, || async { Ok::<_, Infallible>(1u8) })
        .await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    let _ = cache
        .get_or_load(&key, &options, || async { Ok::<_, Infallible>(2u8) })
        .await;
    let refreshes = outcome_of(&captured, "cache.refresh").await;
    assert_eq!(get(&refreshes[0], "cache.key").as_deref(), Some("k"));
}

#[tokio::test]
async fn an_http_background_revalidation_is_a_span_with_its_outcome() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().name("http").build().unwrap();
    let service = CacheLayer::new(cache).layer(tower::service_fn(|_: Request<()>| async {
        let response = Response::builder()
            .header("cache-control", "max-age=0, stale-while-revalidate=60")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        Ok::<_, Infallible>(response)
    }));
    for _ in 0..2 {
        let request = Request::get("http://example.com/a").body(()).unwrap();
        service.clone().oneshot(request).await.unwrap();
    }
    let lookups = captured.take("cache.lookup");
    assert_eq!(get(&lookups[1], "cache.outcome").as_deref(), Some("stale"));
    let refreshes = outcome_of(&captured, "cache.refresh").await;
    assert_eq!(refreshes.len(), 1);
    let refresh = &refreshes[0];
    assert_eq!(get(refresh, "cache.outcome").as_deref(), Some("refreshed"));
    assert_eq!(get(refresh, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        get(refresh, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(get(refresh, "cache.name").as_deref(), Some("http"));
    assert!(get(refresh, "cache.load.duration_us").is_some());
}

#[tokio::test]
async fn a_failing_http_revalidation_is_traced_as_failed_with_its_status() {
    let captured = Captured::default();
    let _guard = captured.install();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let service = CacheLayer::new(Cache::builder().build().unwrap()).layer(tower::service_fn(
        move |_: Request<()>| {
            let first = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            async move {
                let status = if first { 200 } else { 503 };
                let response = Response::builder()
                    .status(status)
                    .header("cache-control", "max-age=0, stale-while-revalidate=60")
                    .body(Full::new(Bytes::from_static(b"hello")))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        },
    ));
    for _ in 0..2 {
        let request = Request::get("http://example.com/a").body(()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "the stored response is served");
    }
    let refreshes = outcome_of(&captured, "cache.refresh").await;
    assert_eq!(refreshes.len(), 1);
    assert_eq!(
        get(&refreshes[0], "cache.outcome").as_deref(),
        Some("failed")
    );
    assert_eq!(
        get(&refreshes[0], "http.response.status_code").as_deref(),
        Some("503")
    );
}

#[tokio::test]
async fn http_lookups_are_spans_with_method_outcome_and_tier() {
    let captured = Captured::default();
    let _guard = captured.install();
    let cache = Cache::builder().name("http").build().unwrap();
    let service = CacheLayer::new(cache).layer(tower::service_fn(|_: Request<()>| async {
        let response = Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        Ok::<_, Infallible>(response)
    }));
    for _ in 0..2 {
        let request = Request::get("http://example.com/a").body(()).unwrap();
        service.clone().oneshot(request).await.unwrap();
    }
    let lookups = captured.take("cache.lookup");
    assert_eq!(lookups.len(), 2);
    assert_eq!(get(&lookups[0], "cache.outcome").as_deref(), Some("miss"));
    assert_eq!(get(&lookups[1], "cache.outcome").as_deref(), Some("hit"));
    assert_eq!(get(&lookups[1], "cache.tier").as_deref(), Some("memory"));
    assert_eq!(
        get(&lookups[1], "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(get(&lookups[1], "cache.name").as_deref(), Some("http"));
    assert!(lookups.iter().all(|f| !f.contains_key("cache.key")));
}
