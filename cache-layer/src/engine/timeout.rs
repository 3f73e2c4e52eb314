//! Loader timeouts, once for every front-end: a load raced against a soft timeout (past it,
//! a caller holding a stale value serves that value) and a hard one (past it, the caller gets
//! [`TimeoutError`](crate::TimeoutError), or its stale value when it holds one). Either way the load itself runs on
//! a task of its own, so that it can finish and store after its caller has been answered.
//!
//! The leader of a single-flight tells its waiters at the timeout what it answered (the stale
//! value it served, or that it timed out; `flight.rs`'s [`Herald`]), so they follow it instead
//! of waiting on. Both timeouts are counted (`soft_timeouts`, `hard_timeouts`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::counters::Counters;
use super::entry::Value;
use super::flight::Herald;
use super::stats::Counter;
pub(crate) use super::timed_out::TimeoutError;

/// A site's timeouts (what `#[cached(soft_timeout = ..., hard_timeout = ...)]`,
/// [`LoadOptions::soft_timeout`](crate::LoadOptions::soft_timeout) with a
/// [`HardTimeout`](crate::HardTimeout), and [`CacheLayer`](crate::http::CacheLayer) set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Past this, a caller holding a stale value serves it; the load goes on and stores.
    pub soft: Option<Duration>,
    /// Past this, the caller gets a [`TimeoutError`] (or its stale value).
    pub hard: Option<Duration>,
    /// Whether a load past its hard timeout goes on and stores (`true`), or is cancelled.
    pub finish_on_hard: bool,
}

impl Timeouts {
    /// No timeout: a caller waits for its load.
    pub const NONE: Timeouts = Timeouts {
        soft: None,
        hard: None,
        finish_on_hard: true,
    };

    /// Whether any timeout is set (a load without one runs in its caller's task).
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.soft.is_some() || self.hard.is_some()
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::NONE
    }
}

/// How a load raced against its timeouts ended for its caller.
pub(crate) enum Within<T> {
    /// The load answered in time (also: there was nothing to race, outside a Tokio runtime).
    Done(T),
    /// A timeout passed and the caller serves its stale value; the load goes on and stores.
    Stale,
    /// The hard timeout passed and there is no stale value: the caller answers with this.
    TimedOut(TimeoutError),
}

/// Runs `work` (a load and its store) on a task of its own and waits for it within
/// `timeouts`. `stale`: the value the caller serves if a timeout passes (an entry in its
/// stale or stale-if-error window), handed to the flight's waiters too through `herald`. A
/// load that ends after its caller was answered hands its output to `orphan` (a response's
/// body is read to its end there, which is what stores it); past the hard timeout it is
/// cancelled instead unless `finish_on_hard`. A load that panics panics its caller, as when it
/// runs in the caller's task; a caller dropped meanwhile leaves the load running (cancelled,
/// without `finish_on_hard`).
pub(crate) async fn within<T, W, O, OF>(
    counters: &Counters,
    timeouts: Timeouts,
    stale: Option<Value>,
    herald: Option<Herald>,
    work: W,
    orphan: O,
) -> Within<T>
where
    T: Send + 'static,
    W: Future<Output = T> + Send + 'static,
    O: FnOnce(T) -> OF + Send + 'static,
    OF: Future<Output = ()> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Within::Done(work.await);
    };
    let (answer, mut answered) = oneshot::channel();
    let task = runtime.spawn(async move {
        if let Err(output) = answer.send(work.await) {
            orphan(output).await;
        }
    });
    let mut guard = Guard {
        task: Some(task),
        cancel: !timeouts.finish_on_hard,
    };
    let started = tokio::time::Instant::now();
    let hard_at = timeouts.hard.map(|hard| started + hard);
    if let (Some(soft), Some(_)) = (timeouts.soft, &stale) {
        let soft_at = started + soft;
        if hard_at.is_none_or(|hard_at| soft_at < hard_at) {
            if let Ok(output) = tokio::time::timeout_at(soft_at, &mut answered).await {
                return Within::Done(guard.settle(output).await);
            }
            counters.add(Counter::SoftTimeout);
            guard.cancel = false;
            return timed_out(counters, "soft", stale, herald, None);
        }
    }
    let Some(hard_at) = hard_at else {
        return Within::Done(guard.settle(answered.await).await);
    };
    if let Ok(output) = tokio::time::timeout_at(hard_at, &mut answered).await {
        return Within::Done(guard.settle(output).await);
    }
    counters.add(Counter::HardTimeout);
    let after = timeouts.hard.unwrap_or_default();
    timed_out(
        counters,
        "hard",
        stale,
        herald,
        Some(TimeoutError::new(after)),
    )
}

/// A timeout passed: the caller's answer, told to the flight's waiters.
fn timed_out<T>(
    counters: &Counters,
    which: &'static str,
    stale: Option<Value>,
    herald: Option<Herald>,
    error: Option<TimeoutError>,
) -> Within<T> {
    let name = counters.name();
    match (stale, error) {
        (Some(stale), _) => {
            tracing::warn!(
                cache = name,
                which,
                "load past its timeout; serving the stale value"
            );
            if let Some(herald) = herald {
                herald.fall_back(stale);
            }
            Within::Stale
        }
        (None, Some(error)) => {
            tracing::warn!(cache = name, which, "load past its hard timeout; giving up");
            if let Some(herald) = herald {
                herald.timed_out(error);
            }
            Within::TimedOut(error)
        }
        (None, None) => unreachable!("a soft timeout is raced only with a stale value"),
    }
}

/// The load's task: cancelled when its caller goes away (or gives up at the hard timeout)
/// while `cancel` holds, left running otherwise.
struct Guard {
    task: Option<JoinHandle<()>>,
    cancel: bool,
}

impl Guard {
    /// The load's output; when the task ended without one, its panic resumed here.
    async fn settle<T>(&mut self, output: Result<T, oneshot::error::RecvError>) -> T {
        if let Ok(output) = output {
            return output;
        }
        let ended = match self.task.take() {
            Some(task) => task.await,
            None => unreachable!("settled once"),
        };
        match ended {
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            _ => panic!("a load's task ended without an answer"),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take().filter(|_| self.cancel) {
            task.abort();
        }
    }
}
