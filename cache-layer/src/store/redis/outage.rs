//! What the store does while Redis does not answer: every operation runs under the circuit
//! breaker and one time budget, and fails open (counted, logged, a miss for the caller); the
//! signals the tiered set-up reads to bound what memory keeps meanwhile; the probe that ends an
//! outage.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use redis::{RedisError, RedisResult};

use super::connection::Link;
use super::{BreakerOpened, RedisStore};
use crate::engine::stats::Counter;

impl RedisStore {
    /// Runs `hook` each time the breaker opens, right after it opened (the tiered set-up
    /// empties memory then: see `tiered`).
    pub(crate) fn when_breaker_opens(&mut self, hook: BreakerOpened) {
        self.on_open = Some(hook);
    }

    /// Whether this instance may have missed invalidations or holds some that did not reach
    /// Redis: the breaker is open, has opened since the memory tier was last emptied, or
    /// invalidations wait for a replay. What memory stores meanwhile is kept at most the
    /// outage bound (see `tiered`).
    #[inline]
    pub(crate) fn suspect(&self) -> bool {
        self.breaker.is_open()
            || self.pending.any()
            || self.opened.load(Ordering::Acquire) != self.recovered.load(Ordering::Acquire)
    }

    /// Whether the circuit breaker is open: calls skip Redis for now.
    pub(crate) fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether [`RedisStore::suspect`] holds for a reason a [`RedisStore::probe`] can end.
    pub(crate) fn needs_probe(&self) -> bool {
        self.breaker.is_open() || self.pending.any()
    }

    /// After the memory tier was emptied: the breaker openings up to `opened` are dealt
    /// with. Returns the current count first with [`RedisStore::openings`].
    pub(crate) fn recovered_up_to(&self, opened: u64) {
        self.recovered.store(opened, Ordering::Release);
    }

    /// How many times the breaker has opened.
    pub(crate) fn openings(&self) -> u64 {
        self.opened.load(Ordering::Acquire)
    }

    /// Asks Redis whether it answers (bypassing the breaker) and replays pending
    /// invalidations; a success closes the breaker. Run in the background, so that the
    /// breaker closes and invalidations are replayed without waiting for a caller.
    pub(crate) async fn probe(&self) -> bool {
        self.attempt("PING", |mut c| async move {
            redis::cmd("PING").query_async::<()>(&mut c).await
        })
        .await
        .is_some()
    }

    /// Runs `op` under the breaker and the timeout. `None` means "the store could not
    /// answer": counted, logged, and treated by the caller like a miss.
    ///
    /// The operation is boxed: Redis futures are large, and every future that might await one
    /// (including a memory hit's) would otherwise carry their size.
    pub(super) async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(Link) -> Fut + Send,
        Fut: Future<Output = RedisResult<T>> + Send,
        T: Send,
    {
        if !self.breaker.allow() {
            return None;
        }
        self.attempt(what, op).await
    }

    /// [`RedisStore::run`] without the breaker's permission: first replays pending
    /// invalidations (Redis is not trusted before they are through), then runs `op`, all in
    /// one time budget.
    async fn attempt<T, F, Fut>(&self, what: &'static str, op: F) -> Option<T>
    where
        F: FnOnce(Link) -> Fut + Send,
        Fut: Future<Output = RedisResult<T>> + Send,
        T: Send,
    {
        let budget = self.connection.connect_timeout + self.connection.op_timeout;
        let attempt: Pin<Box<dyn Future<Output = RedisResult<T>> + Send + '_>> = Box::pin(async {
            let mut connection = self.connection.link().await?;
            if self.pending.any() {
                self.replay(&mut connection).await?;
            }
            op(connection).await
        });
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(budget, attempt).await;
        self.counters.record_redis(started.elapsed());
        let error = match answer {
            Ok(Ok(value)) => {
                self.breaker.success();
                self.answering.store(true, Ordering::Release);
                return Some(value);
            }
            Ok(Err(error)) if about_one_key(&error) => {
                self.counters.add(Counter::StoreError);
                tracing::debug!(cache = self.counters.name(), op = what, %error, "Redis refused one key's command: a miss for that key");
                return None;
            }
            Ok(Err(error)) => error,
            Err(_elapsed) => RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not answer in time",
            )),
        };
        self.failed(what, &error);
        None
    }

    /// Counts and logs an operation Redis did not answer, and tells the breaker; when that
    /// opens it, runs the hook (see [`RedisStore::when_breaker_opens`]).
    fn failed(&self, what: &'static str, error: &RedisError) {
        self.counters.add(Counter::StoreError);
        self.answering.store(false, Ordering::Release);
        if self.breaker.failure() {
            // Invalidations published from now on may not reach this instance.
            self.opened.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(cache = self.counters.name(), %error, "Redis unavailable: serving without it until it answers again");
            if let Some(hook) = &self.on_open {
                hook();
            }
        } else {
            tracing::debug!(cache = self.counters.name(), op = what, %error, "Redis operation failed");
        }
    }
}

/// Whether `error` is Redis refusing one command about one key (another program's value of
/// another type under our key, a full memory): a miss for that key, not an outage.
fn about_one_key(error: &RedisError) -> bool {
    matches!(error.code(), Some("WRONGTYPE" | "OOM"))
}
