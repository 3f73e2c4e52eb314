//! [`CacheBody`]: the response body of [`CacheService`](crate::CacheService): stored bytes,
//! the inner body passed through, or the inner body copied for the cache while it streams.
//!
//! - `recording`: [`Recording`], the copy of a body being stored, and [`RecordedStore`], what
//!   a finished copy is stored as.
//! - `read_ahead`: the task that reads a spooled body ahead of its client.
//! - `budget`: [`BodyBudget`], the bytes of bodies being copied or read ahead, bounded per
//!   layer (what the layer's documentation calls the in-flight share).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::mpsc::UnboundedReceiver;

mod budget;
mod read_ahead;
mod recording;

use budget::Queued;
pub(crate) use budget::{BodyBudget, Held};
use read_ahead::Spool;
use recording::{record, weight};
pub(crate) use recording::{RecordedStore, Recording};

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
        // reads); past the cap, or once the body budget is spent, the task hands the rest
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
        let (frames, queued) = read_ahead::spawn(&runtime, body, recording, unattached);
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
mod tests;
