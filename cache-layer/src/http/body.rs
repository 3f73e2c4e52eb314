//! [`CacheBody`]: the response body of [`CacheService`](crate::CacheService).

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use pin_project_lite::pin_project;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::in_flight::Held;

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
        // reads); past the cap the task hands the rest of the body over, read at the client's
        // pace.
        Spooled {
            frames: UnboundedReceiver<Spool<B>>,
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
                    let refused = if rec.buffer.len() + data.len() > rec.cap {
                        Some("too-large")
                    } else if !rec.held.grow(data.len()) {
                        Some("in-flight-full")
                    } else {
                        None
                    };
                    match refused {
                        Some(reason) => {
                            if let Some(rec) = recording.take() {
                                rec.abandon(reason);
                            }
                        }
                        None => rec.buffer.extend_from_slice(data),
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

/// Reads `body` into `recording` at the inner service's pace, sending each frame on to the
/// client (which may have gone: the store goes on); once nothing more is recorded, sends the
/// rest of the body over. Once the client has gone, the body has `unattached` left to end:
/// past that, nothing is stored and the body is dropped (an endless stream under the cap would
/// otherwise be read for no one, forever).
async fn read_ahead<B>(
    body: B,
    recording: Recording,
    client: UnboundedSender<Spool<B>>,
    unattached: Duration,
) where
    B: Body<Data = Bytes>,
{
    let mut body = Box::pin(body);
    let mut recording = Some(Box::new(recording));
    let mut left_at: Option<Instant> = None;
    while recording.is_some() {
        let frame = match left_at {
            None => match attached_frame(body.as_mut(), &client).await {
                Some(frame) => frame,
                None => {
                    left_at = Some(Instant::now());
                    continue;
                }
            },
            Some(at) => {
                let left = unattached.saturating_sub(at.elapsed());
                match tokio::time::timeout(left, body.as_mut().frame()).await {
                    Ok(frame) => frame,
                    Err(_elapsed) => {
                        if let Some(rec) = recording.take() {
                            rec.abandon("unattached");
                        }
                        return;
                    }
                }
            }
        };
        record(&mut recording, frame.as_ref());
        let Some(frame) = frame else {
            return; // The end: dropping the sender ends the client's body.
        };
        let failed = frame.is_err();
        let _ = client.send(Spool::Frame(frame));
        if failed {
            return;
        }
    }
    let _ = client.send(Spool::Rest(body));
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

/// A body being copied for the cache.
pub(crate) struct Recording {
    buffer: BytesMut,
    cap: usize,
    /// The buffer's bytes, held in the layer's in-flight share until stored or abandoned.
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
            buffer: BytesMut::new(),
            cap,
            held,
            store,
        }
    }

    fn abandon(self, reason: &'static str) {
        self.store.abandon(reason);
    }

    /// The body ended, with `trailers` or without.
    fn finish(self, trailers: Option<&HeaderMap>) {
        self.store.finish(self.buffer.freeze(), trailers);
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
        let (client, frames) = unbounded_channel();
        runtime.spawn(read_ahead(body, recording, client, unattached));
        CacheBody {
            kind: Kind::Spooled {
                frames,
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
            KindProj::Spooled { frames, rest, .. } => loop {
                if let Some(body) = rest {
                    return body.as_mut().poll_frame(cx);
                }
                match ready!(frames.poll_recv(cx)) {
                    Some(Spool::Frame(frame)) => return Poll::Ready(Some(frame)),
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
