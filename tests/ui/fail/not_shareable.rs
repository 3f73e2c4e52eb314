use std::sync::Arc;

use cache_layer::cached;

/// `Clone`, but no serde: fine in memory, not in the shared tier.
#[derive(Clone)]
struct Connection(Arc<u8>);

#[cached(ttl = "5m", key = "conn")]
async fn connect() -> Result<Connection, ()> {
    Ok(Connection(Arc::new(1)))
}

fn main() {}
