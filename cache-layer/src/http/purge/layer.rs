//! [`Purge`] as a [`Layer`]: [`PurgeOr`] answers `PURGE` requests itself and sends every
//! other request to the service it wraps.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::Either;
use tower::util::Oneshot;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::{Purge, PurgeBody};

impl<S> Layer<S> for Purge {
    type Service = PurgeOr<S>;

    fn layer(&self, inner: S) -> PurgeOr<S> {
        PurgeOr {
            purge: self.clone(),
            inner,
        }
    }
}

/// [`Purge`] as a [`Layer`]: `PURGE` requests are purges, every other request goes to `S`.
#[derive(Clone, Debug)]
pub struct PurgeOr<S> {
    purge: Purge,
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for PurgeOr<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Either<PurgeBody, ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readied per request below, as `CacheService` does: a purge never waits for `S`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method().as_str() == "PURGE" {
            let mut purge = self.purge.clone();
            return Box::pin(async move {
                let Ok(response) = purge.call(request).await;
                Ok(response.map(Either::Left))
            });
        }
        let call: Oneshot<S, Request<B>> = self.inner.clone().oneshot(request);
        Box::pin(async move { Ok(call.await?.map(Either::Right)) })
    }
}
