//! [`CacheBody`]: the response body of [`CacheService`](crate::CacheService).

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use pin_project_lite::pin_project;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::in_flight::{Held, Queued};

pin_project! {
    /// The body of a response from [`CacheService`](crate::CacheService): stored bytes, the
    /// inner service's body passed through untouched, or the inner body teed into the cache
    /// while it streams to the client.
    pub struct CacheBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        // Bytes in hand: a stored response, or a small body read before the head was sent.
        // Trailers boxed: they are rare, and a smaller body is cheaper to move on every hit.
        Buffered {
            data: Option<Bytes>,
            trailers: Option<Box<HeaderMap>>,
            error: Option<B::Error>,
        },
        Inner {
            #[pin]
            body: B,
        },
        // Streams `body` to the client and copies it until the cap; stores it if it ends
        // under the cap without trailers.
        // The recording is boxed: inline, it would make every response body (hits included)
        // hundreds of bytes to move.
        Tee {
            #[pin]
            body: B,
            recording: Option<Box<Recording>>,
        },
        // The inner body read ahead by a task at the inner service's pace, into the cache up
        // to the cap (so neither the store nor coalesced waiters depend on how fast this client
        // reads); past the cap, or once the in-flight share is spent, the task hands the rest
        // of the body over, read at the client's pace. The frames queued for this client are
        // held in the share (`queued`) until it takes them.
        Spooled {
            frames: UnboundedReceiver<Spool<B>>,
            queued: Arc<Queued>,
            rest: Option<Pin<Box<B>>>,
            hint: SizeHint,
        },
    }
}

/// What the read-ahead task of a spooled body sends its client.
enum Spool<B: Body> {
    Frame(Result<Frame<Bytes>, B::Error>),
    /// The rest of the body, once nothing more is recorded.
    Rest(Pin<Box<B>>),
}

/// Records `frame` (a poll's result) into `recording`: data up to the cap, then the recording
/// is abandoned; the end or trailers finish it; an error drops it (waiters load for themselves).
fn record<E>(recording: &mut Option<Box<Recording>>, frame: Option<&Result<Frame<Bytes>, E>>) {
    match frame {
        Some(Ok(frame)) => match frame.data_ref() {
            Some(data) => {
                if let Some(rec) = recording.as_mut() {
                    let refused = if rec.len + data.len() > rec.cap {
                        Some("too-large")
                    } else if !rec.held.grow(weight(data)) {
                        Some("in-flight-full")
                    } else {
                        None
                    };
                    match refused {
                        Some(reason) => abandon(recording, reason),
                        None => rec.keep(data),
                    }
                }
            }
            // Trailers end the body (HTTP/2 servers may not poll past them).
            None => {
                if let Some(rec) = recording.take() {
                    rec.finish(frame.trailers_ref());
                }
            }
        },
        Some(Err(_)) => *recording = None,
        None => {
            if let Some(rec) = recording.take() {
                rec.finish(None);
            }
        }
    }
}

/// What a frame is held as in the in-flight share: its bytes and, unless it is empty (it is then
/// neither kept nor queued), its place in a recording and in a client's queue, so that a body
/// of many tiny frames is weighed for what it costs.
fn weight(data: &Bytes) -> usize {
    if data.is_empty() {
        return 0;
    }
    data.len().saturating_add(FRAME_OVERHEAD)
}

/// A frame's place in a recording (a `Bytes`) and in a client's queue (a message), rounded up.
const FRAME_OVERHEAD: usize = 128;

fn abandon(recording: &mut Option<Box<Recording>>, reason: &'static str) {
    if let Some(rec) = recording.take() {
        rec.store.abandon(reason);
    }
}

/// The sending side of a spooled body: its frames, and their bytes not taken yet.
struct Client<B: Body> {
    frames: UnboundedSender<Spool<B>>,
    queued: Arc<Queued>,
}

/// Reads `body` into `recording` at the inner service's pace, sending each frame on to the
/// client (which may have gone: the store goes on). Once nothing more is recorded (past the
/// cap, or the in-flight share spent), sends the rest of the body over, read at the client's
/// pace from then on; the frame that ended the recording goes along uncounted, the one frame
/// a body passing through holds too. Once the client has gone, the body has `unattached` left
/// to end: past that, nothing is stored and the body is dropped (an endless stream under the
/// cap would otherwise be read for no one, forever).
async fn read_ahead<B>(body: B, recording: Recording, client: Client<B>, unattached: Duration)
where
    B: Body<Data = Bytes>,
{
    let share = Arc::clone(recording.held.share());
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

/// A body being copied for the cache: the frames themselves (a client's queue shares their
/// buffers), joined when the body ends.
pub(crate) struct Recording {
    frames: Vec<Bytes>,
    len: usize,
    cap: usize,
    /// The frames' bytes, held in the layer's in-flight share until stored or abandoned.
    held: Held,
    /// Boxed behind a trait: the body stores a copy without knowing what it is a copy of.
    store: Box<dyn RecordedStore>,
}

/// What a finished copy is stored as (an HTTP response, a gRPC call): implemented where that
/// store is built. Dropped unfinished (the body failed), it stores nothing.
pub(crate) trait RecordedStore: Send + Sync {
    /// The body ended, with `trailers` or without, after `body`.
    fn finish(self: Box<Self>, body: Bytes, trailers: Option<&HeaderMap>);

    /// The copy was given up (`reason`: it grew too large, the in-flight share is spent, the
    /// client left and the body did not end in time).
    fn abandon(self: Box<Self>, reason: &'static str);
}

impl Recording {
    /// A copy of up to `cap` bytes, held in the in-flight share, finished into `store`.
    pub(crate) fn new(cap: usize, held: Held, store: Box<dyn RecordedStore>) -> Self {
        Recording {
            frames: Vec::new(),
            len: 0,
            cap,
            held,
            store,
        }
    }

    fn keep(&mut self, data: &Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.frames.push(data.clone());
        }
    }

    /// The body ended, with `trailers` or without.
    fn finish(self, trailers: Option<&HeaderMap>) {
        let body = match <[Bytes; 1]>::try_from(self.frames) {
            Ok([one]) => one,
            Err(frames) => {
                let mut body = BytesMut::with_capacity(self.len);
                frames
                    .iter()
                    .for_each(|frame| body.extend_from_slice(frame));
                body.freeze()
            }
        };
        self.store.finish(body, trailers);
    }
}

impl<B: Body> CacheBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        Self::buffered(Some(data), None, None)
    }

    pub(crate) fn empty() -> Self {
        Self::buffered(None, None, None)
    }

    pub(crate) fn buffered(
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
        error: Option<B::Error>,
    ) -> Self {
        CacheBody {
            kind: Kind::Buffered {
                data: data.filter(|d| !d.is_empty()),
                trailers: trailers.map(Box::new),
                error,
            },
        }
    }

    pub(crate) fn inner(body: B) -> Self {
        CacheBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn tee(body: B, recording: Recording) -> Self {
        CacheBody {
            kind: Kind::Tee {
                body,
                recording: Some(Box::new(recording)),
            },
        }
    }

    /// `body` read ahead into `recording` by a task of the current runtime, so that the store
    /// does not wait for this client's reads; teed (read at the client's pace) without one.
    /// Once this client has gone, the body has `unattached` left to end before it is dropped
    /// unstored.
    pub(crate) fn spooled(body: B, recording: Recording, unattached: Duration) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::tee(body, recording);
        };
        let hint = body.size_hint();
        let (sender, frames) = unbounded_channel();
        let queued = Arc::new(Queued::default());
        let client = Client {
            frames: sender,
            queued: Arc::clone(&queued),
        };
        runtime.spawn(read_ahead(body, recording, client, unattached));
        CacheBody {
            kind: Kind::Spooled {
                frames,
                queued,
                rest: None,
                hint,
            },
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Buffered {
                data,
                trailers,
                error,
            } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(error) = error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Tee { body, recording } => {
                let frame = ready!(body.poll_frame(cx));
                record(recording, frame.as_ref());
                Poll::Ready(frame)
            }
            KindProj::Spooled {
                frames,
                queued,
                rest,
                ..
            } => loop {
                if let Some(body) = rest {
                    return body.as_mut().poll_frame(cx);
                }
                match ready!(frames.poll_recv(cx)) {
                    Some(Spool::Frame(frame)) => {
                        if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
                            queued.taken(weight(data));
                        }
                        return Poll::Ready(Some(frame));
                    }
                    Some(Spool::Rest(body)) => *rest = Some(body),
                    None => return Poll::Ready(None),
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered {
                data,
                trailers,
                error,
            } => data.is_none() && trailers.is_none() && error.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
            // Reported as unfinished until `poll_frame` has seen the end and stored the copy.
            Kind::Tee { body, recording } => recording.is_none() && body.is_end_stream(),
            Kind::Spooled { rest, .. } => rest.as_ref().is_some_and(|b| b.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Inner { body } | Kind::Tee { body, .. } => body.size_hint(),
            Kind::Spooled { hint, .. } => *hint,
        }
    }
}

impl<B: Body> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Buffered { .. } => "buffered",
            Kind::Inner { .. } => "inner",
            Kind::Tee { .. } => "tee",
            Kind::Spooled { .. } => "spooled",
        };
        f.debug_struct("CacheBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures_util::stream;
    use http_body_util::StreamBody;
    use tokio::sync::oneshot;

    use super::*;
    use crate::http::in_flight::InFlight;

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
    fn all_free(share: &Arc<InFlight>) -> bool {
        share.hold(share.limit()).is_some()
    }

    #[tokio::test]
    async fn an_idle_client_stops_the_reading_ahead_once_the_share_is_spent() {
        let share = InFlight::new(SHARE);
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
        let share = InFlight::new(SHARE);
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
        let share = InFlight::new(SHARE);
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
}
