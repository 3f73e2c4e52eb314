//! [`GrpcRequestBody`]: the request body the inner service of a `CacheLayer<GrpcMethods>`
//! receives, and reading a request body up to a cap without losing any of it.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

pin_project! {
    /// The request body of calls forwarded by a [`CacheService`](crate::CacheService) whose
    /// layer caches gRPC methods: the client's body as it came, or, for an opted-in method
    /// whose message was read to compute the key, the bytes read followed by whatever was not.
    ///
    /// It yields the frames of the original body (data possibly in fewer, larger chunks), and
    /// its errors. tonic's `Routes` and axum's `Router` accept any such body.
    pub struct GrpcRequestBody<B>
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
        Inner {
            #[pin]
            body: B,
        },
        Read {
            read: ReadBody<B>,
        },
    }
}

/// A request body read up to a cap.
pub(crate) struct ReadBody<B: Body> {
    pub(crate) data: Option<Bytes>,
    /// The unread remainder, when the body went over the cap.
    rest: Option<Pin<Box<B>>>,
    error: Option<B::Error>,
    trailers: Option<HeaderMap>,
}

impl<B: Body<Data = Bytes>> ReadBody<B> {
    /// Reads `body` until it ends, fails, or holds more than `cap` bytes.
    pub(crate) async fn read(body: B, cap: usize) -> Self {
        let mut body = Box::pin(body);
        let mut data = BytesMut::new();
        let mut read = ReadBody {
            data: None,
            rest: None,
            error: None,
            trailers: None,
        };
        while let Some(frame) = body.frame().await {
            match frame.map(Frame::into_data) {
                Ok(Ok(chunk)) => {
                    data.extend_from_slice(&chunk);
                    if data.len() > cap {
                        read.rest = Some(body);
                        break;
                    }
                }
                Ok(Err(frame)) => {
                    read.trailers = frame.into_trailers().ok();
                    break;
                }
                // Not ours to handle: the inner service meets the error where it would have.
                Err(error) => {
                    read.error = Some(error);
                    break;
                }
            }
        }
        read.data = Some(data.freeze());
        read
    }

    /// The whole body, when it was read to its end without error.
    pub(crate) fn complete(&self) -> Option<&Bytes> {
        match (&self.rest, &self.error) {
            (None, None) => self.data.as_ref(),
            _ => None,
        }
    }
}

impl<B: Body> GrpcRequestBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        GrpcRequestBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn read(read: ReadBody<B>) -> Self {
        GrpcRequestBody {
            kind: Kind::Read { read },
        }
    }
}

impl<B> Body for GrpcRequestBody<B>
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
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Read { read } => {
                if let Some(data) = read.data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(rest) = &mut read.rest {
                    match rest.as_mut().poll_frame(cx) {
                        Poll::Ready(None) => read.rest = None,
                        other => return other,
                    }
                }
                if let Some(error) = read.error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(read.trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Read { read } => {
                read.data.as_ref().is_none_or(Bytes::is_empty)
                    && read.rest.is_none()
                    && read.error.is_none()
                    && read.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Read { read } => {
                let held = read.data.as_ref().map_or(0, |d| d.len() as u64);
                match &read.rest {
                    None => SizeHint::with_exact(held),
                    Some(rest) => {
                        let rest = rest.size_hint();
                        let mut hint = SizeHint::new();
                        hint.set_lower(held + rest.lower());
                        if let Some(upper) = rest.upper() {
                            hint.set_upper(held + upper);
                        }
                        hint
                    }
                }
            }
        }
    }
}

impl<B: Body> fmt::Debug for GrpcRequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Read { .. } => "read",
        };
        f.debug_struct("GrpcRequestBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn stream(chunks: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = &'static str> {
        let frames: Vec<Result<Frame<Bytes>, &'static str>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .chain([Ok(Frame::trailers(HeaderMap::new()))])
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_read_body_is_forwarded_whole() {
        let read = ReadBody::read(stream(&[b"ab", b"cd"]), 16).await;
        assert_eq!(read.complete().map(|b| &b[..]), Some(&b"abcd"[..]));
        let collected = GrpcRequestBody::read(read).collect().await.unwrap();
        assert!(collected.trailers().is_some());
        assert_eq!(collected.to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_keeps_its_remainder() {
        let read = ReadBody::read(stream(&[b"ab", b"cd", b"ef"]), 3).await;
        assert!(read.complete().is_none());
        let body = GrpcRequestBody::read(read);
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn an_error_reaches_the_inner_service_after_the_data() {
        let frames: Vec<Result<Frame<Bytes>, &'static str>> =
            vec![Ok(Frame::data(Bytes::from_static(b"ab"))), Err("reset")];
        let read = ReadBody::read(StreamBody::new(futures_util::stream::iter(frames)), 16).await;
        assert!(read.complete().is_none());
        let mut body = std::pin::pin!(GrpcRequestBody::read(read));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "reset");
        let plain = GrpcRequestBody::inner(Full::new(Bytes::from_static(b"x")));
        assert_eq!(plain.collect().await.unwrap().to_bytes(), "x");
    }
}
