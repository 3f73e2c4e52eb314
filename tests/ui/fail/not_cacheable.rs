use cache_layer::cached;

struct Connection;

#[cached(ttl = "5m", key = "conn")]
async fn connect() -> Result<Connection, ()> {
    Ok(Connection)
}

fn main() {}
