//! Spooled bodies against the body budget: reading ahead stops once it is spent, and what was
//! read ahead is held until the client takes it or goes.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream;
use http_body_util::{BodyExt as _, StreamBody};
use tokio::sync::oneshot;

use super::recording::FRAME_OVERHEAD;
use super::*;

const SHARE: usize = 64 * 1024;
const FRAME: usize = 1024;

/// Tells the test whether the copy was stored (its length) or abandoned.
struct Outcome(std::sync::Mutex<Option<oneshot::Sender<Option<usize>>>>);

impl Outcome {
    fn new() -> (Box<Self>, oneshot::Receiver<Option<usize>>) {
        let (tell, told) = oneshot::channel();
        (Box::new(Outcome(std::sync::Mutex::new(Some(tell)))), told)
    }

    fn tell(&self, outcome: Option<usize>) {
        if let Some(tell) = self.0.lock().unwrap().take() {
            let _ = tell.send(outcome);
        }
    }
}

impl RecordedStore for Outcome {
    fn finish(self: Box<Self>, body: Bytes, _: Option<&HeaderMap>) {
        self.tell(Some(body.len()));
    }

    fn abandon(self: Box<Self>, _: &'static str) {
        self.tell(None);
    }
}

/// `frames` frames of `size` bytes (endless for `None`), counting the bytes polled by a
/// task other than the one that built it (the read-ahead task, not the client).
fn counted(
    (frames, size): (Option<usize>, usize),
    ahead: &Arc<AtomicUsize>,
) -> impl Body<Data = Bytes, Error = Infallible> {
    let (ahead, client) = (Arc::clone(ahead), tokio::task::try_id());
    let frames = stream::iter((0..frames.unwrap_or(usize::MAX)).map(move |_| {
        if tokio::task::try_id() != client {
            ahead.fetch_add(size, Ordering::SeqCst);
        }
        Ok(Frame::data(Bytes::from(vec![b'x'; size])))
    }));
    StreamBody::new(frames)
}

/// Whether nothing at all is held in `share`.
fn all_free(share: &Arc<BodyBudget>) -> bool {
    share.hold(share.limit()).is_some()
}

#[tokio::test]
async fn an_idle_client_stops_the_reading_ahead_once_the_share_is_spent() {
    let share = BodyBudget::new(SHARE);
    let ahead = Arc::new(AtomicUsize::new(0));
    let (store, outcome) = Outcome::new();
    let recording = Recording::new(4 * SHARE, share.start(), store);
    let endless = counted((None, FRAME), &ahead);
    let mut body = CacheBody::spooled(endless, recording, Duration::MAX);
    assert_eq!(outcome.await.unwrap(), None, "abandoned, not stored");
    let read_ahead = ahead.load(Ordering::SeqCst);
    assert!(read_ahead <= SHARE + FRAME, "{read_ahead} bytes read ahead");
    assert!(
        !all_free(&share),
        "the frames read ahead are held until taken"
    );
    // The client reads on: past what was read ahead, at its own pace (the body is endless).
    let mut read = 0;
    while read < 4 * SHARE {
        read += body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap()
            .len();
    }
    assert_eq!(ahead.load(Ordering::SeqCst), read_ahead);
    assert!(all_free(&share), "nothing held once taken");
}

#[tokio::test]
async fn a_client_that_goes_away_gives_back_what_was_read_ahead_for_it() {
    let share = BodyBudget::new(SHARE);
    let ahead = Arc::new(AtomicUsize::new(0));
    let (store, outcome) = Outcome::new();
    let recording = Recording::new(SHARE, share.start(), store);
    let sixteen = counted((Some(16), FRAME), &ahead);
    let body = CacheBody::spooled(sixteen, recording, Duration::MAX);
    assert_eq!(outcome.await.unwrap(), Some(16 * FRAME), "stored unread");
    // Stored: the frames queued for the client are held in the share until it takes them.
    let queued = 16 * weight(&Bytes::from(vec![0; FRAME]));
    assert!(share.hold(SHARE - queued).is_some());
    assert!(share.hold(SHARE - queued + 1).is_none());
    drop(body);
    assert!(all_free(&share));
}

#[tokio::test]
async fn a_body_of_tiny_frames_is_weighed_for_what_it_holds() {
    let share = BodyBudget::new(SHARE);
    let ahead = Arc::new(AtomicUsize::new(0));
    let (store, outcome) = Outcome::new();
    let recording = Recording::new(SHARE, share.start(), store);
    let _body = CacheBody::spooled(counted((None, 1), &ahead), recording, Duration::MAX);
    assert_eq!(outcome.await.unwrap(), None, "abandoned, not stored");
    let frames = ahead.load(Ordering::SeqCst);
    assert!(
        frames <= SHARE / FRAME_OVERHEAD + 1,
        "{frames} frames read ahead"
    );
}
