//! The smallest useful program: a slow read path memoised with `#[cached]`, invalidated by a
//! writer with `#[invalidates]`, on the in-memory default cache (no set-up at all).
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_layer::{cached, invalidates, Cache};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct DbError;

/// Stands in for a database: every query takes 80 ms.
static QUERIES: AtomicUsize = AtomicUsize::new(0);
static NAMES: std::sync::Mutex<Vec<(u64, String)>> = std::sync::Mutex::new(Vec::new());

async fn query_user(id: u64) -> Result<User, DbError> {
    QUERIES.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let names = NAMES.lock().unwrap();
    let name = names
        .iter()
        .rev()
        .find(|(uid, _)| *uid == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| format!("user{id}"));
    Ok(User { id, name })
}

#[cached(ttl = "5m", key = "user:<id>", invalidate_on = ["users"])]
async fn get_user(id: u64) -> Result<User, DbError> {
    query_user(id).await
}

#[invalidates("user:<id>")]
async fn rename_user(id: u64, name: &str) -> Result<(), DbError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    NAMES.lock().unwrap().push((id, name.to_owned()));
    Ok(())
}

async fn timed(label: &str, id: u64) -> User {
    let before = QUERIES.load(Ordering::SeqCst);
    let started = Instant::now();
    let user = get_user(id).await.expect("the fake database does not fail");
    let queries = QUERIES.load(Ordering::SeqCst) - before;
    println!(
        "{label:<34} {:>9.3} ms   db queries: {queries}   -> {} ({})",
        started.elapsed().as_secs_f64() * 1e3,
        user.name,
        user.id
    );
    user
}

#[tokio::main]
async fn main() {
    println!("cache-layer quickstart: get_user(id) takes 80 ms in the database\n");
    timed("1. first call (miss)", 7).await;
    timed("2. same id again (hit)", 7).await;
    timed("3. another id (miss)", 8).await;

    let before = QUERIES.load(Ordering::SeqCst);
    let started = Instant::now();
    let calls: Vec<_> = (0..100).map(|_| tokio::spawn(get_user(42))).collect();
    for call in calls {
        call.await.expect("task").expect("query");
    }
    println!(
        "{:<34} {:>9.3} ms   db queries: {}",
        "4. 100 concurrent calls, cold key",
        started.elapsed().as_secs_f64() * 1e3,
        QUERIES.load(Ordering::SeqCst) - before
    );

    rename_user(7, "Grace").await.expect("write");
    println!(
        "{:<34} (#[invalidates(\"user:<id>\")] dropped user:7)",
        "5. rename_user(7, \"Grace\")"
    );
    timed("6. get_user(7) after the write", 7).await;
    timed("7. and again (hit)", 7).await;

    Cache::global().invalidate("users").await;
    println!(
        "{:<34} (every entry tagged \"users\" dropped)",
        "8. invalidate(\"users\")"
    );
    timed("9. get_user(8) after the tag", 8).await;

    let stats = Cache::global().stats();
    println!(
        "\nstats: {} hits, {} misses, {} coalesced, {} loads, {} invalidations",
        stats.hits, stats.misses, stats.coalesced, stats.loads, stats.invalidations
    );
}
