//! Per-key single-flight: concurrent misses on one key run the loader once.
//!
//! The leader runs the load in its own task (the loader borrows the caller's arguments, so it
//! cannot be spawned). If the leader is cancelled, panics, or its load fails, its [`Leader`]
//! guard is dropped without a value; every waiter wakes, and one of them becomes the next
//! leader. Waiters never stall behind a leader that is gone (the failure mode of moka's
//! `get_with`, moka issue #240), and they wait at most a bounded time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::entry::Value;

/// Slots by key, shared with each [`Leader`] so that a leader can outlive a borrow of the
/// cache (the HTTP layer hands it to a response body that finishes the load).
type SlotMap = Arc<Mutex<HashMap<Box<str>, Slot>>>;

pub(crate) struct Flights {
    map: SlotMap,
    next_id: AtomicU64,
}

/// What a leader hands its waiters: the value, and whether it is a stale fallback (the load
/// failed and stale-if-error stood in).
type Handed = Option<(Value, bool)>;

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
    map: SlotMap,
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
    /// The leader went away without a value: look again, and perhaps lead.
    Retry,
    /// The leader took longer than the wait bound.
    TimedOut,
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights {
            map: Arc::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Joins the flight for `key`, or starts one if there is none.
    pub(crate) fn join(&self, key: &str, tags: &[Box<str>]) -> Join {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = map.get(key) {
            return Join::Wait(Waiter {
                result: slot.result.clone(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(
            key.into(),
            Slot {
                id,
                result: rx,
                tags: tags.into(),
            },
        );
        Join::Lead(Leader {
            map: Arc::clone(&self.map),
            key: key.into(),
            id,
            result: tx,
        })
    }

    /// Detaches every flight for `name` (as key or tag): callers arriving after an invalidation
    /// start a new load instead of joining one that may have read the old data.
    pub(crate) fn forget(&self, name: &str) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|key, slot| &**key != name && !slot.tags.iter().any(|t| &**t == name));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Leader {
    /// Hands `value` to every waiter and ends the flight.
    pub(crate) fn complete(self, value: Value) {
        // `send_replace` stores the value even when no waiter is subscribed yet: a caller that
        // joins between now and the drop below still receives it.
        self.result.send_replace(Some((value, false)));
    }

    /// Hands the stale `value` the leader fell back to (its load failed) to every waiter, so
    /// that they serve it too instead of each calling the failing source again.
    pub(crate) fn fall_back(self, value: Value) {
        self.result.send_replace(Some((value, true)));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&self.key).is_some_and(|slot| slot.id == self.id) {
            map.remove(&self.key);
        }
    }
}

impl Waiter {
    pub(crate) async fn wait(mut self, bound: Duration) -> Waited {
        let outcome = tokio::time::timeout(bound, self.result.wait_for(Option::is_some)).await;
        match outcome {
            Ok(Ok(handed)) => match handed.as_ref() {
                Some((value, false)) => Waited::Done(value.clone()),
                Some((value, true)) => Waited::Fallback(value.clone()),
                None => Waited::Retry,
            },
            Ok(Err(_leader_gone)) => Waited::Retry,
            Err(_elapsed) => Waited::TimedOut,
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
}
