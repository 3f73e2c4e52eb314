use cache_layer::cached;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Report(String);

// A hard timeout must be able to answer with an error: this fn cannot carry one.
#[cached(ttl = "5m", hard_timeout = "2s")]
async fn report(id: u32) -> Report {
    Report(id.to_string())
}

#[derive(Debug)]
struct DbError;

// Nor this one: `DbError` has no `From<TimeoutError>`.
#[cached(ttl = "5m", hard_timeout = "2s")]
async fn row(id: u32) -> Result<u32, DbError> {
    Ok(id)
}

// A soft timeout alone needs nothing of the return type.
#[cached(ttl = "5m", stale_if_error = "1h", soft_timeout = "200ms")]
async fn fine(id: u32) -> u32 {
    id
}

fn main() {}
