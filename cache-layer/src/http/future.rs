//! [`ResponseFuture`]: the future of [`CacheService`](crate::CacheService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

use super::body::CacheBody;
use super::config::Config;
use super::flow::respond::passed_through;
use super::status::CacheStatus;

/// A boxed miss, revalidation or write: they wait on single-flight and the cache, so they
/// are `async` code rather than hand-written states.
pub(crate) type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`CacheService`](crate::CacheService), for an inner service `S`
    /// called with `Request<ReqBody>` that answers `Response<ResBody>`.
    ///
    /// A cache hit is answered without allocating a future; everything else polls a boxed one.
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        ResBody: Body,
    {
        #[pin]
        kind: Kind<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        ResBody: Body,
    {
        Ready {
            response: Option<Response<CacheBody<ResBody>>>,
        },
        // Boxed: the inner future can be hundreds of bytes, and inline it would make every
        // hit's future as large.
        Passthrough {
            future: Pin<Box<Oneshot<S, Request<ReqBody>>>>,
            status: CacheStatus,
            config: Arc<Config>,
        },
        Boxed {
            future: BoxedResponse<ResBody, S::Error>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    ResBody: Body,
{
    pub(crate) fn ready(response: Response<CacheBody<ResBody>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    /// A response the layer does not consider for storage: the tag fields and the targeted
    /// fields (unless forwarded) are removed, `status` added.
    pub(crate) fn passthrough(
        future: Oneshot<S, Request<ReqBody>>,
        status: CacheStatus,
        config: &Arc<Config>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Passthrough {
                future: Box::pin(future),
                status,
                config: Arc::clone(config),
            },
        }
    }

    pub(crate) fn boxed(future: BoxedResponse<ResBody, S::Error>) -> Self {
        ResponseFuture {
            kind: Kind::Boxed { future },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Output = Result<Response<CacheBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Passthrough {
                future,
                status,
                config,
            } => {
                let response = ready!(future.as_mut().poll(cx))?;
                Poll::Ready(Ok(passed_through(response, config, *status)))
            }
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    ResBody: Body,
{
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use tower_layer::Layer;

    use super::*;
    use crate::{Cache, CacheLayer};

    fn future_type<S: Service<R>, R>(_: &S) -> &'static str {
        std::any::type_name::<S::Future>()
    }

    #[test]
    fn the_public_future_names_no_tower_internals() {
        let inner = tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let service = CacheLayer::new(Cache::builder().build().unwrap()).layer(inner);
        let name = future_type(&service);
        assert!(name.contains("ResponseFuture<"), "{name}");
        assert!(!name.contains("Oneshot"), "{name}");
    }
}
