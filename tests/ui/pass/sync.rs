//! Sync fns: every return shape, methods, generics, `impl Trait`, `?`, handles, and a value
//! without serde (a sync site keeps its values in memory, as a `local` one).

use std::sync::Arc;

use cache_layer::{cached, invalidates, Cache, KeyArg};

#[derive(Clone)]
struct Compiled(Arc<dyn Fn(&str) -> String + Send + Sync>);

#[cached(ttl = "5m", key = "tpl:<name>", invalidate_on = ["templates"], handles)]
fn template(name: &str) -> Result<Compiled, std::num::ParseIntError> {
    let n: u64 = name.parse()?;
    Ok(Compiled(Arc::new(move |x| format!("{n}{x}"))))
}

#[cached(ttl = "5m", none_ttl = "10s", stale_if_error = "1h")]
fn maybe(id: u64) -> Option<u64> {
    (id > 0).then_some(id)
}

#[cached(ttl = "5m", jitter = false, name = "generic", handles)]
fn generic<K: KeyArg>(k: K, extra: impl KeyArg) -> String {
    let _ = extra;
    let mut out = cache_layer::KeyBuf::new();
    k.write_key(&mut out);
    out.into_string()
}

struct Service {
    cache: Cache,
    tenant: u64,
}

impl Service {
    #[cached(ttl = "30s", key = "count:<self.tenant>:<kind>", cache = self.cache, handles)]
    fn count(&self, mut kind: String) -> u64 {
        kind.push('!');
        kind.len() as u64 + self.tenant
    }

    #[invalidates("count:<self.tenant>:<kind>", cache = self.cache)]
    fn reset(&mut self, kind: &str) -> Result<(), String> {
        let _ = kind;
        self.tenant += 0;
        Ok(())
    }
}

fn main() {
    let _ = (template, maybe, Service::count, Service::reset);
    let _ = generic(7u64, "x") + &generic_key(7u64, "x").to_string();
    let _ = (template_key, template_refresh, template_uncached, template_invalidate);
}
