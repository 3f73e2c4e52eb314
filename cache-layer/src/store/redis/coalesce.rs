//! Invalidations sent together: on one Redis, one invalidation is in flight at a time per
//! store (one script call, one `PUBLISH`); those asked for meanwhile wait, and the next sender
//! takes them all as one batch (see `scripts/invalidate.lua` and [`BATCH`](super::keys::BATCH)).
//! Nothing waits to fill a batch: an invalidation asked for while none is in flight is sent at
//! once, alone, so a single one costs what it always did.
//!
//! Each caller still returns only once its own name is in Redis's history and published (or
//! queued for the replay): the sender answers every name of its batch with what became of it,
//! then hands the turn to the first of those waiting, whose task sends the next batch. A
//! sender dropped half-way (its runtime shut down) queues what it carried for the replay and
//! hands the turn on in its `Drop`, so no name is lost and nobody waits for ever.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::store::queued::{Queued, QueuedInvalidations};

/// The most names one batch carries, and their most bytes: a script call that holds Redis up
/// for a few milliseconds at most, and a message far below a subscriber's output buffer limit.
const MOST_NAMES: usize = 256;
const MOST_BYTES: usize = 64 * 1024;

/// What a waiting caller is told.
enum Turn {
    /// Its name was sent (`None`) or queued for the replay (what the queue did).
    Done(Option<Queued>),
    /// It sends the next batch.
    Send,
}

type Waiter = (Box<str>, oneshot::Sender<Turn>);

#[derive(Default)]
struct State {
    /// A batch is in flight.
    sending: bool,
    waiting: VecDeque<Waiter>,
}

/// The store's invalidations waiting for the one in flight.
#[derive(Default)]
pub(super) struct Coalesced {
    state: Mutex<State>,
}

impl Coalesced {
    /// Sends `name`'s invalidation with `send` (given a batch of names, it returns for each
    /// `None` when sent, else what the queue did with it), alone if nothing is in flight, else
    /// in the batch sent after the one in flight. `pending` keeps what a dropped sender
    /// carried.
    pub(super) async fn invalidate<F, Fut>(
        &self,
        pending: &QueuedInvalidations,
        name: &str,
        send: F,
    ) -> Option<Queued>
    where
        F: FnOnce(Vec<Box<str>>) -> Fut,
        Fut: std::future::Future<Output = Vec<Option<Queued>>>,
    {
        let turn = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.sending {
                let (tell, told) = oneshot::channel();
                state.waiting.push_back((name.into(), tell));
                Some(told)
            } else {
                state.sending = true;
                None
            }
        };
        if let Some(told) = turn {
            match told.await {
                Ok(Turn::Send) => {}
                Ok(Turn::Done(queued)) => return queued,
                // Only when the store is gone.
                Err(_) => return Some(Queued::Kept),
            }
        }
        let mut batch = Sending {
            coalesced: self,
            pending,
            names: vec![name.into()],
            callers: Vec::new(),
        };
        self.take_waiting(&mut batch);
        let results = send(batch.names.clone()).await;
        batch.finish(results)
    }

    /// Adds to `batch` those waiting, up to the bounds.
    fn take_waiting(&self, batch: &mut Sending<'_>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut bytes = batch.names[0].len();
        let mut count = 0;
        for (name, _) in &state.waiting {
            if batch.names.len() + count >= MOST_NAMES || bytes + name.len() > MOST_BYTES {
                break;
            }
            bytes += name.len() + 1;
            count += 1;
        }
        for (name, tell) in state.waiting.drain(..count) {
            batch.names.push(name);
            batch.callers.push(tell);
        }
    }

    /// The turn passes to the first caller waiting, or ends. A caller that went away is not
    /// waited for: its name is queued for the replay.
    fn hand_on(&self, pending: &QueuedInvalidations) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((name, tell)) = state.waiting.pop_front() {
            if tell.send(Turn::Send).is_ok() {
                return;
            }
            pending.push(&name);
        }
        state.sending = false;
    }
}

/// The batch in flight: its names (the sender's first) and the other callers to answer.
struct Sending<'a> {
    coalesced: &'a Coalesced,
    pending: &'a QueuedInvalidations,
    names: Vec<Box<str>>,
    callers: Vec<oneshot::Sender<Turn>>,
}

impl Sending<'_> {
    /// Answers each caller with its name's result, hands the turn on, and returns the
    /// sender's own result.
    fn finish(mut self, results: Vec<Option<Queued>>) -> Option<Queued> {
        let mut results = results.into_iter();
        let own = results.next().flatten();
        for (tell, result) in self.callers.drain(..).zip(results) {
            let _ = tell.send(Turn::Done(result));
        }
        self.names.clear();
        own
    }
}

impl Drop for Sending<'_> {
    /// Whatever was not answered is queued for the replay (a sender dropped half-way), and the
    /// turn passes on.
    fn drop(&mut self) {
        for (name, tell) in self.names.iter().skip(1).zip(self.callers.drain(..)) {
            let _ = tell.send(Turn::Done(Some(self.pending.push(name))));
        }
        if let Some(name) = self.names.first() {
            self.pending.push(name);
        }
        self.coalesced.hand_on(self.pending);
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use futures_util::FutureExt as _;

    use super::*;
    use crate::store::queued::Part;

    fn queued_names(queue: &QueuedInvalidations) -> Vec<Part> {
        let mut parts: Vec<Part> = queue.snapshot().parts.into_iter().map(|(p, _)| p).collect();
        parts.sort();
        parts
    }

    /// Names asked for while one is in flight go out together in the next batch; a sender
    /// dropped half-way (its runtime shut down) queues its name for the replay and hands the
    /// turn on, so the waiting ones are still sent.
    #[tokio::test]
    async fn waiting_names_go_out_together_and_a_dropped_sender_loses_none() {
        let coalesced = Coalesced::default();
        let queue = QueuedInvalidations::default();
        let stuck = coalesced.invalidate(&queue, "first", |_| pending());
        let mut stuck = Box::pin(stuck);
        assert!((&mut stuck).now_or_never().is_none(), "in flight");
        let sent = Mutex::new(Vec::new());
        let send = |names: Vec<Box<str>>| {
            sent.lock().unwrap().push(names.clone());
            async move { names.iter().map(|_| None).collect() }
        };
        let second = coalesced.invalidate(&queue, "second", send);
        let third = coalesced.invalidate(&queue, "third", |_| async { vec![None] });
        let waiting = async {
            let (second, third) = tokio::join!(second, third);
            (second, third)
        };
        let mut waiting = Box::pin(waiting);
        assert!((&mut waiting).now_or_never().is_none(), "waiting");
        drop(stuck);
        assert_eq!(waiting.await, (None, None));
        assert_eq!(
            *sent.lock().unwrap(),
            [vec![Box::from("second"), Box::from("third")]],
            "one batch"
        );
        assert_eq!(queued_names(&queue), [Part::Name("first".into())]);
        assert!(!coalesced.state.lock().unwrap().sending, "the turn ended");
    }
}
