//! `local` sites: values without serde, in every return shape, with `stale` and on methods.

use std::sync::Arc;

use cache_layer::{cached, Cache};

/// `Clone + Send + Sync + 'static`, and nothing else.
#[derive(Clone)]
struct Compiled(Arc<dyn Fn(&str) -> String + Send + Sync>);

#[cached(ttl = "5m", local)]
async fn plain(name: String) -> Compiled {
    Compiled(Arc::new(move |x| format!("{name}{x}")))
}

#[cached(ttl = "5m", key = "tpl:<name>", invalidate_on = ["templates"], local)]
async fn result(name: &str) -> Result<Compiled, std::io::Error> {
    let name = name.to_owned();
    Ok(Compiled(Arc::new(move |x| format!("{name}{x}"))))
}

#[cached(ttl = "5m", none_ttl = "10s", stale = "1m", local)]
async fn option(id: u64) -> Option<Compiled> {
    (id > 0).then(|| Compiled(Arc::new(|x| x.to_owned())))
}

#[cached(ttl = "5m", none_ttl = "10s", stale_if_error = "1h", local)]
async fn result_option(id: u64) -> Result<Option<Compiled>, String> {
    Ok((id > 0).then(|| Compiled(Arc::new(|x| x.to_owned()))))
}

#[derive(Clone)]
struct Service {
    cache: Cache,
}

impl Service {
    #[cached(ttl = "30s", stale = "30s", key = "svc:<id>", cache = self.cache, ignore_self = true, local)]
    async fn compiled(&self, id: u64) -> Compiled {
        Compiled(Arc::new(move |x| format!("{id}{x}")))
    }
}

fn main() {
    let _ = (plain, result, option, result_option, Service::compiled);
}
