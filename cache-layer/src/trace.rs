//! The `tracing` spans of cache decisions: one `cache.lookup` span per look-up (memo and HTTP,
//! level DEBUG: it is on the hit path) and one `cache.load` span per memo load (level INFO).
//!
//! Fields, named after OpenTelemetry's conventions where one exists (`code.function.name`,
//! `http.request.method`), else under `cache.`:
//!
//! | field | on | value |
//! | --- | --- | --- |
//! | `cache.name` | both | the cache's [name](crate::CacheBuilder::name) |
//! | `code.function.name` | memo | the `#[cached]` site's `name` (or [`LoadOptions::name`](crate::LoadOptions::name)) |
//! | `http.request.method` | HTTP | the request's method |
//! | `cache.outcome` | both | lookup: `hit`, `stale`, `miss`, `bypass`; load: `miss` (this caller loaded), `coalesced` (served by another caller's load), `stale_if_error`, `bypass` (caching off) |
//! | `cache.tier` | lookup | where the answer came from: `memory` or `redis` (none on a miss) |
//! | `cache.load.duration_us` | load | the load's time (the source call, storing its value), in microseconds |
//! | `cache.key` | both | the key, only with [`CacheBuilder::trace_keys`](crate::CacheBuilder::trace_keys) (keys may hold user data) |
//!
//! A span's own start and end time it as a whole (waiting included).

use tracing::field::Empty;
use tracing::Span;

use crate::cache::Cache;

/// What a look-up or load ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Stale,
    Miss,
    Coalesced,
    StaleIfError,
    Bypass,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::StaleIfError => "stale_if_error",
            Outcome::Bypass => "bypass",
        }
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Memory,
    Redis,
}

/// A memo look-up's span.
#[inline]
pub(crate) fn memo_lookup(cache: &Cache, site: &'static str, key: &str) -> Span {
    let span = tracing::debug_span!(
        "cache.lookup",
        cache.name = Empty,
        code.function.name = site,
        cache.outcome = Empty,
        cache.tier = Empty,
        cache.key = Empty,
    );
    name_and_key(&span, cache, key);
    span
}

/// An HTTP look-up's span.
#[inline]
pub(crate) fn http_lookup(cache: &Cache, method: &http::Method) -> Span {
    let span = tracing::debug_span!(
        "cache.lookup",
        cache.name = Empty,
        http.request.method = method.as_str(),
        cache.outcome = Empty,
        cache.tier = Empty,
    );
    name_and_key(&span, cache, "");
    span
}

/// A memo load's span.
pub(crate) fn memo_load(cache: &Cache, site: &'static str, key: &str) -> Span {
    let span = tracing::info_span!(
        "cache.load",
        cache.name = Empty,
        code.function.name = site,
        cache.outcome = Empty,
        cache.load.duration_us = Empty,
        cache.key = Empty,
    );
    name_and_key(&span, cache, key);
    span
}

#[inline]
fn name_and_key(span: &Span, cache: &Cache, key: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("cache.name", cache.name());
    if cache.inner().trace_keys() && !key.is_empty() {
        span.record("cache.key", key);
    }
}

/// Records how a look-up or load ended.
#[inline]
pub(crate) fn outcome(span: &Span, outcome: Outcome, tier: Option<Tier>) {
    if span.is_disabled() {
        return;
    }
    span.record("cache.outcome", outcome.as_str());
    if let Some(tier) = tier {
        let tier = match tier {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
        };
        span.record("cache.tier", tier);
    }
}

/// Records a load's time (the source call and storing its value) on its span.
pub(crate) fn load_time(span: &Span, elapsed: std::time::Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    span.record("cache.load.duration_us", micros);
}

#[cfg(test)]
mod tests {
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
}
