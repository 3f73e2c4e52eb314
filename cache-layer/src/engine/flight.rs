//! Per-key single-flight: concurrent misses on one key run the loader once.
//!
//! The leader runs the load in its own task (the loader borrows the caller's arguments, so it
//! cannot be spawned). If the leader is cancelled, panics, or its load fails, its [`Leader`]
//! guard is dropped without a value; every waiter wakes, and one of them becomes the next
//! leader. Waiters never stall behind a leader that is gone (the failure mode of moka's
//! `get_with`, moka issue #240), and they wait at most a bounded time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::entry::Value;
use super::timed_out::TimeoutError;

/// The flights, shared with each [`Leader`] so that a leader can outlive a borrow of the
/// cache (the HTTP layer hands it to a response body that finishes the load).
type Shared = Arc<Mutex<Table>>;

pub(crate) struct Flights {
    table: Shared,
    next_id: AtomicU64,
}

/// The flights by key, and the keys of the flights carrying each tag, so that forgetting a
/// name touches only the flights it names. A tag lists a key exactly while the key's flight
/// carries the tag.
#[derive(Default)]
struct Table {
    slots: HashMap<Box<str>, Slot>,
    tagged: HashMap<Box<str>, HashSet<Box<str>>>,
}

impl Table {
    fn insert(&mut self, key: &str, slot: Slot) {
        self.remove(key, None);
        for tag in slot.tags.iter() {
            self.tagged
                .entry(tag.clone())
                .or_default()
                .insert(key.into());
        }
        self.slots.insert(key.into(), slot);
    }

    /// Ends the flight of `key`, if it is the one numbered `id` (any, when `None`).
    fn remove(&mut self, key: &str, id: Option<u64>) {
        if id.is_some_and(|id| self.slots.get(key).is_none_or(|slot| slot.id != id)) {
            return;
        }
        if let Some(slot) = self.slots.remove(key) {
            self.untag(key, &slot);
        }
    }

    fn untag(&mut self, key: &str, slot: &Slot) {
        for tag in slot.tags.iter() {
            if let Some(keys) = self.tagged.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.tagged.remove(tag);
                }
            }
        }
    }
}

/// What a leader hands its waiters.
#[derive(Clone)]
enum Handed {
    /// Nothing yet: the load runs.
    Pending,
    /// The loaded value.
    Value(Value),
    /// The stale value the leader served instead (its load failed, or took too long).
    Fallback(Value),
    /// The leader's load passed its hard timeout, with no stale value to serve.
    TimedOut(TimeoutError),
}

struct Slot {
    id: u64,
    result: watch::Receiver<Handed>,
    tags: Box<[Box<str>]>,
}

pub(crate) enum Join {
    Lead(Leader),
    Wait(Waiter),
}

/// The one caller loading a key. Dropping it without [`Leader::complete`] hands leadership to a
/// waiter.
pub(crate) struct Leader {
    table: Shared,
    key: Box<str>,
    id: u64,
    result: watch::Sender<Handed>,
}

pub(crate) struct Waiter {
    result: watch::Receiver<Handed>,
}

pub(crate) enum Waited {
    /// The leader's value.
    Done(Value),
    /// The stale value the leader fell back to when its load failed (stale-if-error).
    Fallback(Value),
    /// The leader's load passed its hard timeout, with no stale value to serve.
    HardTimeout(TimeoutError),
    /// The leader went away without a value: look again, and perhaps lead.
    Retry,
    /// The leader took longer than the wait bound.
    TimedOut,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights {
            table: Arc::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Joins the flight for `key`, or starts one if there is none.
    pub(crate) fn join(&self, key: &str, tags: &[Box<str>]) -> Join {
        let mut table = lock(&self.table);
        if let Some(slot) = table.slots.get(key) {
            return Join::Wait(Waiter {
                result: slot.result.clone(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Handed::Pending);
        table.insert(
            key,
            Slot {
                id,
                result: rx,
                tags: tags.into(),
            },
        );
        Join::Lead(Leader {
            table: Arc::clone(&self.table),
            key: key.into(),
            id,
            result: tx,
        })
    }

    /// Detaches every flight for `name` (as key or tag): callers arriving after an invalidation
    /// start a new load instead of joining one that may have read the old data. Touches only
    /// those flights.
    pub(crate) fn forget(&self, name: &str) {
        let mut table = lock(&self.table);
        table.remove(name, None);
        for key in table.tagged.remove(name).into_iter().flatten() {
            table.remove(&key, None);
        }
    }

    /// Detaches every flight whose key starts with `prefix` (every flight, when it is empty):
    /// callers arriving after a clear start a new load.
    pub(crate) fn forget_prefix(&self, prefix: &str) {
        let mut table = lock(&self.table);
        let keys: Vec<Box<str>> = table
            .slots
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        for key in keys {
            table.remove(&key, None);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys().len()
    }

    /// The keys in flight, sorted; checks that the tag index lists exactly each flight's tags.
    #[cfg(test)]
    fn keys(&self) -> Vec<String> {
        let table = lock(&self.table);
        let mut listed: Vec<(&str, &str)> = table
            .tagged
            .iter()
            .flat_map(|(tag, keys)| keys.iter().map(move |key| (&**tag, &**key)))
            .collect();
        let mut carried: Vec<(&str, &str)> = table
            .slots
            .iter()
            .flat_map(|(key, slot)| slot.tags.iter().map(move |tag| (&**tag, &**key)))
            .collect();
        listed.sort_unstable();
        carried.sort_unstable();
        carried.dedup();
        assert_eq!(listed, carried, "the tag index lists each flight's tags");
        let mut keys: Vec<String> = table.slots.keys().map(|key| key.to_string()).collect();
        keys.sort_unstable();
        keys
    }
}

impl Leader {
    /// Hands `value` to every waiter and ends the flight.
    pub(crate) fn complete(self, value: Value) {
        // `send_replace` stores the value even when no waiter is subscribed yet: a caller that
        // joins between now and the drop below still receives it.
        self.result.send_replace(Handed::Value(value));
    }

    /// Hands the stale `value` the leader fell back to (its load failed) to every waiter, so
    /// that they serve it too instead of each calling the failing source again.
    pub(crate) fn fall_back(self, value: Value) {
        self.result.send_replace(Handed::Fallback(value));
    }

    /// A handle that tells the waiters what the leader answered while its load goes on (a
    /// timeout passed: `timeout.rs`).
    pub(crate) fn herald(&self) -> Herald {
        Herald(self.result.clone())
    }
}

/// Tells a flight's waiters what its leader answered at a timeout, while the load goes on
/// (its [`Leader`] completes the flight when it ends). Tells nothing once the leader has
/// handed anything: a value loaded meanwhile is not overwritten.
pub(crate) struct Herald(watch::Sender<Handed>);

impl Herald {
    /// The leader served the stale `value`.
    pub(crate) fn fall_back(self, value: Value) {
        self.hand(Handed::Fallback(value));
    }

    /// The leader gave up at the hard timeout.
    pub(crate) fn timed_out(self, error: TimeoutError) {
        self.hand(Handed::TimedOut(error));
    }

    fn hand(self, handed: Handed) {
        self.0.send_if_modified(|current| {
            let pending = matches!(current, Handed::Pending);
            if pending {
                *current = handed;
            }
            pending
        });
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        lock(&self.table).remove(&self.key, Some(self.id));
    }
}

impl Waiter {
    pub(crate) async fn wait(mut self, bound: Duration) -> Waited {
        let outcome = tokio::time::timeout(bound, self.result.wait_for(Handed::is_handed)).await;
        match outcome {
            Ok(Ok(handed)) => handed.waited(),
            Ok(Err(_leader_gone)) => Waited::Retry,
            Err(_elapsed) => Waited::TimedOut,
        }
    }

    /// [`Waiter::wait`] for a caller that cannot await (a sync `#[cached]` fn): blocks this
    /// thread until the leader hands its value or leaves, at most `bound`. Needs no runtime.
    pub(crate) fn wait_blocking(mut self, bound: Duration) -> Waited {
        let deadline = std::time::Instant::now().checked_add(bound);
        match block_on_until(self.result.wait_for(Handed::is_handed), deadline) {
            Some(Ok(handed)) => handed.waited(),
            Some(Err(_leader_gone)) => Waited::Retry,
            None => Waited::TimedOut,
        }
    }
}

impl Handed {
    /// Whether the leader has handed something (a value, a fallback, a timeout).
    fn is_handed(&self) -> bool {
        !matches!(self, Handed::Pending)
    }

    /// What a waiter makes of it.
    fn waited(&self) -> Waited {
        match self {
            Handed::Value(value) => Waited::Done(value.clone()),
            Handed::Fallback(value) => Waited::Fallback(value.clone()),
            Handed::TimedOut(error) => Waited::HardTimeout(*error),
            Handed::Pending => Waited::Retry,
        }
    }
}

/// Wakes the thread parked in [`block_on_until`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread, parking it between wake-ups, until it completes or
/// `deadline` passes (`None`: never); `None` then. For futures that need no runtime (a
/// `watch` receiver's): what wakes them is another thread's send or drop.
fn block_on_until<F: std::future::Future>(
    future: F,
    deadline: Option<std::time::Instant>,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_leaders_value() {
        let flights = Flights::new();
        let Join::Lead(leader) = flights.join("k", &[]) else {
            panic!("first caller leads")
        };
        let Join::Wait(waiter) = flights.join("k", &[]) else {
            panic!("second caller waits")
        };
        leader.complete(Arc::new(7u32));
        let Waited::Done(value) = waiter.wait(Duration::from_secs(1)).await else {
            panic!("waiter gets the value")
        };
        assert_eq!(value.downcast_ref::<u32>(), Some(&7));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_blocked_waiter_gets_the_leaders_value_or_retries_without_a_runtime() {
        let flights = Flights::new();
        let Join::Lead(leader) = flights.join("k", &[]) else {
            panic!("first caller leads")
        };
        let Join::Wait(waiter) = flights.join("k", &[]) else {
            panic!("second caller waits")
        };
        let waiting = std::thread::spawn(move || waiter.wait_blocking(Duration::from_secs(600)));
        leader.complete(Arc::new(7u32));
        let Waited::Done(value) = waiting.join().unwrap() else {
            panic!("waiter gets the value")
        };
        assert_eq!(value.downcast_ref::<u32>(), Some(&7));

        let leader = flights.join("k", &[]);
        let Join::Wait(waiter) = flights.join("k", &[]) else {
            panic!("second caller waits")
        };
        let waiting = std::thread::spawn(move || waiter.wait_blocking(Duration::from_secs(600)));
        drop(leader);
        assert!(matches!(waiting.join().unwrap(), Waited::Retry));
        let _leader = flights.join("k", &[]);
        let Join::Wait(waiter) = flights.join("k", &[]) else {
            panic!("second caller waits")
        };
        assert!(matches!(
            waiter.wait_blocking(Duration::ZERO),
            Waited::TimedOut
        ));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters() {
        let flights = Flights::new();
        let leader = flights.join("k", &[]);
        let Join::Wait(waiter) = flights.join("k", &[]) else {
            panic!("second caller waits")
        };
        drop(leader);
        assert!(matches!(
            waiter.wait(Duration::from_secs(5)).await,
            Waited::Retry
        ));
        assert!(matches!(flights.join("k", &[]), Join::Lead(_)));
    }

    #[tokio::test]
    async fn forget_detaches_flights_by_key_and_tag() {
        let flights = Flights::new();
        let _a = flights.join("a", &["t".into()]);
        let _b = flights.join("b", &[]);
        flights.forget("t");
        assert!(matches!(flights.join("a", &[]), Join::Lead(_)));
        assert!(matches!(flights.join("b", &[]), Join::Wait(_)));
    }

    #[tokio::test]
    async fn forgetting_a_name_detaches_exactly_the_flights_it_names() {
        let flights = Flights::new();
        let tags = |names: &[&str]| {
            names
                .iter()
                .map(|t| Box::<str>::from(*t))
                .collect::<Vec<_>>()
        };
        let a = flights.join("a", &tags(&["t", "u", "t"]));
        let _b = flights.join("b", &tags(&["t"]));
        let _c = flights.join("c", &tags(&["u"]));
        let _d = flights.join("d", &[]);
        let _t = flights.join("t", &tags(&["x"]));
        flights.forget("t");
        assert_eq!(
            flights.keys(),
            ["c", "d"],
            "by key and by tag; others untouched"
        );
        // A new flight of a forgotten key is not ended by the old leader, nor indexed by its tags.
        let Join::Lead(_a) = flights.join("a", &tags(&["v"])) else {
            panic!("a forgotten key is led anew")
        };
        drop(a);
        assert_eq!(flights.keys(), ["a", "c", "d"]);
        flights.forget("u");
        assert_eq!(flights.keys(), ["a", "d"]);
        flights.forget("v");
        assert_eq!(flights.keys(), ["d"]);
        flights.forget("nothing");
        assert_eq!(flights.keys(), ["d"]);
    }
}
