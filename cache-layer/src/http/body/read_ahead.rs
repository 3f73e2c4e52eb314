//! A spooled body's read-ahead task: the inner body read at the inner service's pace into its
//! recording, each frame sent on to the client through a queue whose bytes are held in the
//! layer's body budget until the client takes them.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::budget::Queued;
use super::recording::{abandon, record, weight, Recording};

/// What the read-ahead task of a spooled body sends its client.
pub(super) enum Spool<B: Body> {
    Frame(Result<Frame<Bytes>, B::Error>),
    /// The rest of the body, once nothing more is recorded.
    Rest(Pin<Box<B>>),
}

/// Spawns on `runtime` the task reading `body` ahead of its client into `recording` (see
/// [`read_ahead`]); returns the client's side: the frames, and their bytes not taken yet.
pub(super) fn spawn<B>(
    runtime: &tokio::runtime::Handle,
    body: B,
    recording: Recording,
    unattached: Duration,
) -> (UnboundedReceiver<Spool<B>>, Arc<Queued>)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send + 'static,
{
    let (sender, frames) = unbounded_channel();
    let queued = Arc::new(Queued::default());
    let client = Client {
        frames: sender,
        queued: Arc::clone(&queued),
    };
    runtime.spawn(read_ahead(body, recording, client, unattached));
    (frames, queued)
}

/// The sending side of a spooled body: its frames, and their bytes not taken yet.
struct Client<B: Body> {
    frames: UnboundedSender<Spool<B>>,
    queued: Arc<Queued>,
}

/// Reads `body` into `recording` at the inner service's pace, sending each frame on to the
/// client (which may have gone: the store goes on). Once nothing more is recorded (past the
/// cap, or the body budget spent), sends the rest of the body over, read at the client's
/// pace from then on; the frame that ended the recording goes along uncounted, the one frame
/// a body passing through holds too. Once the client has gone, the body has `unattached` left
/// to end: past that, nothing is stored and the body is dropped (an endless stream under the
/// cap would otherwise be read for no one, forever).
async fn read_ahead<B>(body: B, recording: Recording, client: Client<B>, unattached: Duration)
where
    B: Body<Data = Bytes>,
{
    let share = Arc::clone(recording.held.budget());
    let mut body = Box::pin(body);
    let mut recording = Some(Box::new(recording));
    let mut left_at: Option<Instant> = None;
    let ended = loop {
        if recording.is_none() {
            break false;
        }
        // Checked before each read: a spent share stops the reading ahead.
        if share.spent() {
            abandon(&mut recording, "in-flight-full");
            break false;
        }
        let Some(frame) = next_frame(body.as_mut(), &client.frames, &mut left_at, unattached).await
        else {
            abandon(&mut recording, "unattached");
            return;
        };
        record(&mut recording, frame.as_ref());
        let Some(frame) = frame else {
            break true;
        };
        let failed = frame.is_err();
        if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
            if data.is_empty() {
                continue; // Nothing to send: an empty frame would only take room in the queue.
            }
            if recording.is_some() {
                client.queued.sent(weight(data));
            }
        }
        let _ = client.frames.send(Spool::Frame(frame));
        if failed {
            break true;
        }
    };
    // What the client has not taken yet is no longer held by the recording.
    client.queued.hold_in(&share);
    if !ended {
        let _ = client.frames.send(Spool::Rest(body));
    }
}

/// The body's next frame; `None` once the client has gone and the body has not ended within
/// `unattached` after that (`left_at`: when it went).
async fn next_frame<B>(
    mut body: Pin<&mut B>,
    client: &UnboundedSender<Spool<B>>,
    left_at: &mut Option<Instant>,
    unattached: Duration,
) -> Option<Option<Result<Frame<Bytes>, B::Error>>>
where
    B: Body<Data = Bytes>,
{
    if left_at.is_none() {
        if let Some(frame) = attached_frame(body.as_mut(), client).await {
            return Some(frame);
        }
    }
    let left = unattached.saturating_sub(left_at.get_or_insert_with(Instant::now).elapsed());
    tokio::time::timeout(left, body.frame()).await.ok()
}

/// The body's next frame, or `None` as soon as the client has gone (a frame that is ready
/// comes first).
async fn attached_frame<B>(
    mut body: Pin<&mut B>,
    client: &UnboundedSender<Spool<B>>,
) -> Option<Option<Result<Frame<Bytes>, B::Error>>>
where
    B: Body<Data = Bytes>,
{
    let mut gone = std::pin::pin!(client.closed());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
            return Poll::Ready(Some(frame));
        }
        gone.as_mut().poll(cx).map(|()| None)
    })
    .await
}
