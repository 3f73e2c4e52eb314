// `max_variants` takes a `NonZeroUsize`: zero variants cannot be configured.
use cache_layer::{Cache, CacheLayer};

fn main() {
    let _ = CacheLayer::new(Cache::global().clone()).max_variants(0);
}
