//! [`Recording`]: a body being copied for the cache while it streams, frame by frame, held in
//! the layer's [`BodyBudget`](super::budget::BodyBudget), and handed whole to what stores it
//! ([`RecordedStore`]: an HTTP response or a gRPC call being recorded).

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Frame;

use super::budget::Held;

/// Records `frame` (a poll's result) into `recording`: data up to the cap, then the recording
/// is abandoned; the end or trailers finish it; an error drops it (waiters load for themselves).
pub(super) fn record<E>(
    recording: &mut Option<Box<Recording>>,
    frame: Option<&Result<Frame<Bytes>, E>>,
) {
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

/// What a frame is held as in the body budget: its bytes and, unless it is empty (it is then
/// neither kept nor queued), its place in a recording and in a client's queue, so that a body
/// of many tiny frames is weighed for what it costs.
pub(super) fn weight(data: &Bytes) -> usize {
    if data.is_empty() {
        return 0;
    }
    data.len().saturating_add(FRAME_OVERHEAD)
}

/// A frame's place in a recording (a `Bytes`) and in a client's queue (a message), rounded up.
pub(super) const FRAME_OVERHEAD: usize = 128;

pub(super) fn abandon(recording: &mut Option<Box<Recording>>, reason: &'static str) {
    if let Some(rec) = recording.take() {
        rec.store.abandon(reason);
    }
}

/// A body being copied for the cache: the frames themselves (a client's queue shares their
/// buffers), joined when the body ends.
pub(crate) struct Recording {
    frames: Vec<Bytes>,
    len: usize,
    cap: usize,
    /// The frames' bytes, held in the layer's body budget until stored or abandoned.
    pub(super) held: Held,
    /// Boxed behind a trait: the body stores a copy without knowing what it is a copy of.
    store: Box<dyn RecordedStore>,
}

/// What a finished copy is stored as (an HTTP response, a gRPC call): implemented where that
/// store is built. Dropped unfinished (the body failed), it stores nothing.
pub(crate) trait RecordedStore: Send + Sync {
    /// The body ended, with `trailers` or without, after `body`.
    fn finish(self: Box<Self>, body: Bytes, trailers: Option<&HeaderMap>);

    /// The copy was given up (`reason`: it grew too large, the body budget is spent, the
    /// client left and the body did not end in time).
    fn abandon(self: Box<Self>, reason: &'static str);
}

impl Recording {
    /// A copy of up to `cap` bytes, held in the body budget, finished into `store`.
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
