//! The fields recorded on the spans of one name, captured by a `tracing-subscriber` layer:
//! what a test reads to check a cache decision's trace.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's fields, as recorded (later records appended).
pub type SpanFields = Vec<(String, String)>;

/// The spans named `name`, in the order they were opened, with their fields.
#[derive(Clone)]
pub struct Spans {
    name: &'static str,
    spans: Arc<Mutex<Vec<(u64, SpanFields)>>>,
}

struct Fields<'a>(&'a mut SpanFields);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Spans {
    /// Captures the spans named `name`, once installed.
    pub fn named(name: &'static str) -> Self {
        Spans {
            name,
            spans: Arc::default(),
        }
    }

    /// Makes a registry with this capture the current thread's subscriber until the guard
    /// drops.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    /// The last value each captured span recorded for `field`, oldest span first (spans
    /// without it left out).
    pub fn values(&self, field: &str) -> Vec<String> {
        let spans = self.spans.lock().unwrap();
        let last = |fields: &SpanFields| {
            let found = fields.iter().rev().find(|(name, _)| name == field);
            found.map(|(_, value)| value.clone())
        };
        spans
            .iter()
            .filter_map(|(_, fields)| last(fields))
            .collect()
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attributes.metadata().name() == self.name {
            let mut fields = Vec::new();
            attributes.record(&mut Fields(&mut fields));
            self.spans.lock().unwrap().push((id.into_u64(), fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        // Ids are reused once a span closes: the latest span with this id is the open one.
        if let Some((_, fields)) = spans.iter_mut().rev().find(|(at, _)| *at == id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}
