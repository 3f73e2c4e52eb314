//! Stale-while-revalidate: a stale response is served at once while one background request,
//! the key's flight leader, refreshes it.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::forward::forward;
use super::plan::Plan;
use crate::engine::entry::RefreshClaim;
use crate::engine::pipeline;
use crate::engine::trace;
use crate::http::config::Config;
use crate::Cache;

/// Refreshes the stale response `plan` names in the background, under `claim`, and stores what
/// the inner service answers.
pub(crate) fn refresh_in_background<S, ReqBody, ResBody>(
    cache: &Cache,
    config: &Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    plan: Plan,
    claim: RefreshClaim,
) where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let config = Arc::clone(config);
    let key = plan.key().to_owned();
    let span = trace::http_refresh(cache, request.method());
    pipeline::refresh(
        cache,
        key,
        Box::default(),
        claim,
        span,
        |refresh| async move {
            let leader = Some(refresh.leader);
            let refreshed = forward(refresh.cache, config, inner, request, plan, leader);
            let failed = |status: StatusCode| status.is_server_error();
            refresh_outcome(&refresh.span, refreshed.await, failed).await
        },
    );
}

/// How a background refresh that got `answer` went: its status recorded on the refresh's
/// `span` and its body read to the end (which is what stores it); `Failed` for an error, or a
/// status that `failed` says is one.
pub(crate) async fn refresh_outcome<B: Body, E>(
    span: &tracing::Span,
    answer: Result<Response<B>, E>,
    failed: impl Fn(StatusCode) -> bool,
) -> trace::Outcome {
    let Ok(response) = answer else {
        return trace::Outcome::Failed;
    };
    trace::status_code(span, response.status());
    let outcome = if failed(response.status()) {
        trace::Outcome::Failed
    } else {
        trace::Outcome::Refreshed
    };
    let _ = response.into_body().collect().await;
    outcome
}
