//! The flagship example: a course catalogue over SQLite, with every caching pattern a back end
//! needs, and a demo that measures what caching does to it.
//!
//! ```text
//! cargo run --release --example catalog -- --demo   # before/after table and a latency chart
//! cargo run --example catalog                       # serve on 127.0.0.1:<free port>
//! cargo run --example catalog -- --listen 127.0.0.1:8080 --no-cache
//! ```
//!
//! | endpoint | pattern |
//! | --- | --- |
//! | `GET /courses/featured` | `CacheLayer`: `public, s-maxage=30` (never served stale), ETag/304 |
//! | `GET`/`PUT /users/{id}` | `#[cached(key = "user:<id>")]`, `#[invalidates("user:<id>")]`, `Cache-Tag: user:<id>` |
//! | `GET /products/{id}` | negative caching (`none_ttl`) of unknown ids |
//! | `GET /tenants/{tenant}/settings` | `key = "tenant:<tenant>:settings"`, never shared across tenants |
//! | `GET /me` | per user (`Authorization: Bearer user-<id>`), `Cache-Control: private` |
//! | `GET /metrics` | Prometheus text: cache counters per site, memory gauges, latency histograms |
//! | `GET /admin/` | the cache's admin page (and `/admin/stats`, `/admin/entry?key=...`, `POST /admin/clear`, `POST /admin/invalidate?tag=...`): with `CATALOG_ADMIN_TOKEN` set, any user name and the token as the password, or `Authorization: Bearer <token>` |
//!
//! Files: `app.rs` (read/write paths, router), `routes.rs` (handlers and their policies),
//! `db.rs` (SQLite), `telemetry.rs` (metrics), `demo.rs` and `chart.rs` (`--demo`).

mod app;
mod chart;
mod demo;

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: catalog [--listen ADDR] [--no-cache] [--redis URL] [--threads N]
       catalog --demo [--duration SECS] [--concurrency N] [--redis URL] [--threads N]

  --listen ADDR      address to serve on (default 127.0.0.1:0: a free port, printed)
  --no-cache         caching off (Cache::builder().disabled()): every request reaches SQLite
  --redis URL        tiered cache: memory in front of Redis
  --threads N        runtime worker threads (default: the CPUs this process may use;
                     1: a current-thread runtime)
  --demo             run the service twice (caching off, then on) under load; print a table
  --duration SECS    length of each demo phase (default 5)
  --concurrency N    demo requests in flight (default 32)";

/// The command line.
struct Args {
    listen: String,
    options: app::Options,
    demo: Option<demo::Load>,
    threads: Option<NonZeroUsize>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut options = app::Options::default();
    let mut demo = false;
    let mut threads = None;
    let mut load = demo::Load {
        duration: Duration::from_secs(5),
        concurrency: 32,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value("--listen")?,
            "--no-cache" => options.no_cache = true,
            "--redis" => options.redis = Some(value("--redis")?),
            "--demo" => demo = true,
            "--threads" => {
                let n = value("--threads")?;
                threads = Some(n.parse().map_err(|_| {
                    format!("--threads: expected a whole number from 1, got {n:?}")
                })?);
            }
            "--duration" => {
                let secs: f64 = value("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?;
                load.duration =
                    Duration::try_from_secs_f64(secs).map_err(|e| format!("--duration: {e}"))?;
            }
            "--concurrency" => {
                load.concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        listen,
        options,
        demo: demo.then_some(load),
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(args.threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

/// The tokio runtime: `threads` workers, by default one per CPU this process may use
/// (`available_parallelism` honours `taskset` and container CPU limits). With one, a
/// current-thread runtime: every task on the thread that also polls the sockets, with no
/// work-stealing queues, cross-thread wake-ups or atomics to pay for a second worker that
/// cannot run anyway. SQLite calls still go to tokio's blocking threads either way.
fn runtime(threads: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}

async fn run(args: Args) -> ExitCode {
    let result = match args.demo {
        Some(load) => demo::run(&load, args.options.redis).await,
        None => serve(&args.listen, &args.options).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, options: &app::Options) -> Result<(), String> {
    let running = app::start(listen, options).await?;
    let mode = if options.no_cache {
        "caching off"
    } else {
        "caching on"
    };
    println!("catalog listening on http://{} ({mode})", running.addr);
    println!("try: curl -i http://{}/courses/featured", running.addr);
    if std::env::var_os("CATALOG_ADMIN_TOKEN").is_some() {
        println!(
            "admin: http://{}/admin/ (the token as the password)",
            running.addr
        );
    }
    tokio::select! {
        served = running.wait() => served.map_err(|e| e.to_string()),
        // Returning drops the service, and with it the temporary database files.
        () = shutdown_signal() => Ok(()),
    }
}

/// Ctrl-C, or SIGTERM (what `kill` and service managers send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
