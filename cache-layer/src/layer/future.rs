//! [`ResponseFuture`]: the future of [`CacheService`](crate::CacheService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::CacheBody;
use super::status::CacheStatus;
use super::tags::take_tags;
use super::targeted::TargetedFields;

/// A boxed miss, revalidation or write: they wait on single-flight and the cache, so they
/// are `async` code rather than hand-written states.
pub(crate) type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`CacheService`](crate::CacheService).
    ///
    /// A cache hit is answered without allocating a future; everything else polls a boxed one.
    pub struct ResponseFuture<F, B, E>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E>
    where
        B: Body,
    {
        Ready {
            response: Option<Response<CacheBody<B>>>,
        },
        // Boxed: the inner future can be hundreds of bytes, and inline it would make every
        // hit's future as large.
        Passthrough {
            future: Pin<Box<F>>,
            status: CacheStatus,
            targeted: TargetedFields,
        },
        Boxed {
            future: BoxedResponse<B, E>,
        },
    }
}

impl<F, B: Body, E> ResponseFuture<F, B, E> {
    pub(crate) fn ready(response: Response<CacheBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    /// A response the layer does not consider for storage: `Cache-Tag` and the targeted
    /// fields (unless forwarded) are removed, `status` added.
    pub(crate) fn passthrough(future: F, status: CacheStatus, targeted: &TargetedFields) -> Self {
        ResponseFuture {
            kind: Kind::Passthrough {
                future: Box::pin(future),
                status,
                targeted: targeted.clone(),
            },
        }
    }

    pub(crate) fn boxed(future: BoxedResponse<B, E>) -> Self {
        ResponseFuture {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Passthrough {
                future,
                status,
                targeted,
            } => {
                let (mut parts, body) = ready!(future.as_mut().poll(cx))?.into_parts();
                take_tags(&mut parts.headers, &mut parts.extensions);
                targeted.hide(&mut parts.headers);
                status.append_to(&mut parts.headers);
                Poll::Ready(Ok(Response::from_parts(parts, CacheBody::inner(body))))
            }
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B: Body, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Ready { .. } => "ready",
            Kind::Passthrough { .. } => "passthrough",
            Kind::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
