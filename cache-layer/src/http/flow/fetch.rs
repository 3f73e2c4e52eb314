//! Misses: waiting on a concurrent load of the same key or leading one, in this process and,
//! through the key's distributed lock, across the instances sharing a Redis tier; and a
//! request memory had nothing for, answered from what the shared tier holds.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::decide::{decide_stored, only_if_cached, Decision};
use super::forward::forward;
use super::lookup::{
    lookup, lookup_shared, request_directives, response_of, shared_response_of, Found,
};
use super::plan::Plan;
use super::refresh::refresh_in_background;
use super::respond::serve;
use super::timeout::{servable_stale, timed_out_answer, Timed};
use crate::engine::clock;
use crate::engine::entry::{Entry, Value};
use crate::engine::pipeline::{self, Joined, Leader, Locked, Waiting};
use crate::engine::stats::Counter;
use crate::engine::stats::SiteCounter;
use crate::engine::timeout::TimeoutError;
use crate::engine::trace;
use crate::http::body::CacheBody;
use crate::http::config::Config;
use crate::http::rules::freshness::remaining_ttl;
use crate::http::status::{CacheStatus, Forward};
use crate::http::stored::{CachedResponse, Usability};
use crate::Cache;

/// A response stored for `request` that is usable now, served as a hit.
fn fresh_hit<B: Body>(
    cache: &Cache,
    config: &Config,
    plan: &Plan,
    (method, headers): (&Method, &HeaderMap),
) -> Option<Response<CacheBody<B>>> {
    let primary = &plan.primary;
    let now = clock::now();
    let Found::Stored { entry, .. } = lookup(cache, primary, headers, now) else {
        return None;
    };
    let request = (method, headers);
    let served = usable_hit(&entry, response_of(&entry), config, request, now, None)?;
    let counters = cache.inner().counters();
    counters.count(&plan.site(cache), SiteCounter::Hit);
    Some(served)
}

/// `response`, stored in `entry`, served as a hit (with `detail`) when it is usable at `now`
/// without revalidation: fresh, or stale and the request accepts it.
fn usable_hit<B: Body>(
    entry: &Entry,
    response: &CachedResponse,
    config: &Config,
    (method, headers): (&Method, &HeaderMap),
    now: clock::Instant,
    detail: Option<&'static str>,
) -> Option<Response<CacheBody<B>>> {
    let age = response.age(now);
    let directives = request_directives(config, headers);
    if !matches!(
        response.usability_in(entry.age(now), age, &directives),
        Usability::Fresh | Usability::StaleAccepted
    ) {
        return None;
    }
    let mut status = CacheStatus::hit().ttl(remaining_ttl(response.lifetime, age));
    if let Some(detail) = detail {
        status = status.detail(detail);
    }
    Some(serve(response, method, headers, status, age))
}

/// HTTP's side of the pipeline's single-flight: a response handed by a leader is served when
/// it is the variant this request selects; otherwise the URL is looked up again (its variants
/// may have changed, or it may have turned out uncacheable).
struct HttpWaiting<'a, B> {
    cache: &'a Cache,
    config: &'a Config,
    /// The request's method and headers.
    request: (&'a Method, &'a HeaderMap),
    plan: &'a mut Plan,
    body: PhantomData<fn() -> B>,
}

impl<B: Body> Waiting for HttpWaiting<'_, B> {
    type Served = Response<CacheBody<B>>;

    fn key(&self) -> &str {
        self.plan.key()
    }

    fn accept(&mut self, value: Value, fallback: bool) -> Option<Self::Served> {
        let response = value.downcast::<CachedResponse>().ok()?;
        let (method, headers) = self.request;
        if !response.matches(headers) {
            return None;
        }
        let status = if fallback {
            CacheStatus::forward(self.plan.forward).detail("stale-if-error")
        } else {
            CacheStatus::hit().detail("coalesced")
        };
        Some(serve(
            &response,
            method,
            headers,
            status,
            response.age(clock::now()),
        ))
    }

    fn fresh(&mut self) -> Option<Self::Served> {
        fresh_hit(self.cache, self.config, self.plan, self.request)
    }

    fn timed_out(&mut self, _: TimeoutError) -> Option<Self::Served> {
        let (method, headers) = self.request;
        let stale = servable_stale(self.plan);
        Some(timed_out_answer(stale, self.plan.forward, method, headers))
    }

    fn rejoin(&mut self) -> bool {
        let headers = self.request.1;
        match lookup(self.cache, &self.plan.primary, headers, clock::now()) {
            Found::Stored { variant, .. } => self.plan.variant = variant,
            Found::VaryMiss(key) => self.plan.variant = Some(key),
            Found::Uncacheable => return false,
            Found::Nothing => {}
        }
        true
    }
}

/// A miss: waits for a concurrent load of the same key, or leads one.
pub(crate) async fn fetch<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    mut plan: Plan,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let mut leader = None;
    if plan.coalesce {
        let mut waiting = HttpWaiting {
            cache: &cache,
            config: &config,
            request: (request.method(), request.headers()),
            plan: &mut plan,
            body: PhantomData,
        };
        match pipeline::join(&cache, &[], &mut waiting).await {
            Joined::Served(response) => return Ok(response),
            Joined::Lead(lead) => leader = Some(lead),
            Joined::Alone => {}
        }
    }
    if config.timeouts.is_set() {
        let (method, headers) = (request.method(), request.headers());
        let timed = Timed::new(&plan, leader.as_ref(), method, headers);
        let timeouts = config.timeouts;
        let load = load_once(cache.clone(), config, inner, request, plan, leader);
        return timed.race(&cache, timeouts, load).await;
    }
    load_once(cache, config, inner, request, plan, leader).await
}

/// Forwards a miss to the inner service, once across the instances sharing a Redis tier: the
/// one that takes the key's distributed lock (`CacheLayer::shared_lock`) forwards; the others
/// wait for the response it stores. Without a shared tier, or when Redis does not answer,
/// forwards at once.
async fn load_once<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    plan: Plan,
    leader: Option<Leader>,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let ttl = config.shared_lock;
    if ttl.is_zero() || cache.shared_tier().is_none() || !plan.coalesce {
        return forward(cache, config, inner, request, plan, leader).await;
    }
    let key = plan.key().to_owned();
    let asked = (request.method(), request.headers());
    let read = || stored_elsewhere(&cache, &config, &plan, asked);
    match pipeline::lock(&cache, &key, ttl, read).await {
        Locked::LoadedElsewhere((response, served)) => {
            if let Some(leader) = leader {
                leader.complete(response as Value);
            }
            Ok(served)
        }
        Locked::Held(lock) => {
            let answer = forward(cache, config, inner, request, plan, leader).await;
            lock.release().await;
            answer
        }
        Locked::Unlocked => forward(cache, config, inner, request, plan, leader).await,
    }
}

/// A response another instance stored in the shared tier for the request, fresh enough for
/// it: served as a coalesced hit.
async fn stored_elsewhere<B: Body>(
    cache: &Cache,
    config: &Config,
    plan: &Plan,
    (method, headers): (&Method, &HeaderMap),
) -> Option<(Arc<CachedResponse>, Response<CacheBody<B>>)> {
    let variant = plan.variant.as_deref();
    let found = lookup_shared(cache, config, &plan.primary, variant, headers).await;
    let Found::Stored { entry, .. } = found else {
        return None;
    };
    let response = shared_response_of(&entry)?;
    let request = (method, headers);
    let now = clock::now();
    let served = usable_hit(&entry, &response, config, request, now, Some("coalesced"))?;
    Some((response, served))
}

/// Records on a look-up's `span` how the shared tier answered: a hit or a stale hit from
/// Redis, or a miss.
fn traced_shared<B: Body>(span: tracing::Span, decision: Option<&Decision<B>>) {
    let (outcome, tier) = match decision {
        Some(Decision::Respond(_)) => (trace::Outcome::Hit, Some(trace::Tier::Redis)),
        Some(Decision::Refresh { .. }) => (trace::Outcome::Stale, Some(trace::Tier::Redis)),
        _ => (trace::Outcome::Miss, None),
    };
    trace::outcome(&span, outcome, tier);
}

/// A request memory had nothing for, on a cache with a shared tier: answered from what another
/// instance (or this one) stored in Redis as from memory (served, served stale while one
/// refresh runs, or revalidated), else fetched.
pub(crate) async fn fetch_shared<S, ReqBody, ResBody>(
    cache: Cache,
    config: Arc<Config>,
    inner: S,
    request: Request<ReqBody>,
    (mut plan, span): (Plan, tracing::Span),
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send + 'static,
{
    let (method, headers) = (request.method(), request.headers());
    let variant = plan.variant.as_deref();
    let directives = request_directives(&config, headers);
    let decision = match lookup_shared(&cache, &config, &plan.primary, variant, headers).await {
        Found::Stored { variant, entry } => {
            plan.variant = variant;
            let primary = plan.primary.clone();
            let site = plan.site(&cache);
            let request = (method, headers, &directives, clock::now());
            decide_stored(&cache, (&entry, &primary, site.name()), request, &mut plan)
        }
        Found::VaryMiss(key) => {
            plan.variant = Some(key);
            plan.forward = Forward::VaryMiss;
            None
        }
        Found::Uncacheable | Found::Nothing => None,
    };
    traced_shared(span, decision.as_ref());
    let counters = cache.inner().counters();
    match decision {
        Some(Decision::Respond(response)) => {
            counters.add(Counter::SharedHit);
            return Ok(response);
        }
        Some(Decision::Refresh {
            served,
            plan,
            claim,
        }) => {
            refresh_in_background(&cache, &config, inner, request, plan, claim);
            return Ok(served);
        }
        _ => {}
    }
    if directives.only_if_cached {
        return Ok(only_if_cached());
    }
    counters.count(&plan.site(&cache), SiteCounter::Miss);
    fetch(cache, config, inner, request, plan).await
}
