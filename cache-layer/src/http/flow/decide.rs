//! How a GET or HEAD is answered from what memory holds: served (fresh, or stale while one
//! background refresh runs), revalidated, looked up in the shared tier, fetched, or passed
//! through when it has no key.

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;

use super::lookup::{lookup, request_directives, response_of, shared_response_of, Found};
use super::plan::Plan;
use super::respond::{empty_response, serve};
use crate::engine::clock;
use crate::engine::entry::{Entry, RefreshClaim};
use crate::engine::stats::SiteCounter;
use crate::engine::trace;
use crate::http::body::CacheBody;
use crate::http::config::Config;
use crate::http::route::route_of;
use crate::http::rules::cache_control::RequestDirectives;
use crate::http::rules::freshness::remaining_ttl;
use crate::http::rules::key::write_primary_key;
use crate::http::status::{CacheStatus, Forward};
use crate::http::stored::Usability;
use crate::Cache;

/// How [`decide`] answers a GET or HEAD.
pub(crate) enum Decision<B: Body> {
    /// From the cache (or a 504 for `only-if-cached`), without the inner service.
    Respond(Response<CacheBody<B>>),
    /// Stale-while-revalidate: `served` now, `plan` refreshes in the background.
    Refresh {
        served: Response<CacheBody<B>>,
        plan: Plan,
        claim: RefreshClaim,
    },
    /// Forward to the inner service (under single-flight).
    Fetch(Plan),
    /// Nothing in memory: look in the shared tier (Redis), then as `Fetch`; the look-up's
    /// span, whose outcome the shared tier decides.
    Shared(Plan, tracing::Span),
    /// The key function declined the request.
    Bypass,
}

/// Looks a GET or HEAD request up and decides how to answer it.
pub(crate) fn decide<B: Body, ReqBody>(
    cache: &Cache,
    config: &Config,
    request: Request<ReqBody>,
) -> (Decision<B>, Request<ReqBody>) {
    let span = trace::http_lookup(cache, request.method());
    let (mut decision, request) = decide_untraced(cache, config, request);
    if let Decision::Shared(_, lookup) = &mut decision {
        // Recorded once the shared tier has answered (`fetch_shared`).
        *lookup = span;
        return (decision, request);
    }
    let (outcome, tier) = match &decision {
        Decision::Respond(_) => (trace::Outcome::Hit, Some(trace::Tier::Memory)),
        Decision::Refresh { .. } => (trace::Outcome::Stale, Some(trace::Tier::Memory)),
        Decision::Fetch(_) | Decision::Shared(..) => (trace::Outcome::Miss, None),
        Decision::Bypass => (trace::Outcome::Bypass, None),
    };
    trace::outcome(&span, outcome, tier);
    (decision, request)
}

/// [`decide`] without its span.
fn decide_untraced<B: Body, ReqBody>(
    cache: &Cache,
    config: &Config,
    request: Request<ReqBody>,
) -> (Decision<B>, Request<ReqBody>) {
    thread_local! {
        static KEY: RefCell<String> = const { RefCell::new(String::new()) };
    }
    if cache.inner().disabled() {
        return (Decision::Bypass, request);
    }
    match &config.key_fn {
        Some(key_fn) => {
            let (parts, body) = request.into_parts();
            let route = route_of(&parts.extensions);
            let request = (&parts.method, &parts.headers, route);
            let decision = match key_fn(&parts) {
                Some(key) => decide_for(cache, config, &key, request),
                None => Decision::Bypass,
            };
            (decision, Request::from_parts(parts, body))
        }
        // Rendered into a per-thread buffer: a hit allocates no key. The request is read in
        // place, not taken apart and put back together.
        None => {
            let sort_query = config.sort_query;
            let decision = KEY.with_borrow_mut(|key| {
                key.clear();
                // An invalid authority is never keyed: the request passes through.
                if write_primary_key(key, request.uri(), request.headers(), sort_query) {
                    let route = route_of(request.extensions());
                    let on = (request.method(), request.headers(), route);
                    decide_for(cache, config, key, on)
                } else {
                    Decision::Bypass
                }
            });
            (decision, request)
        }
    }
}

/// How a GET or HEAD request keyed `primary` (with its method, headers and route) is
/// answered, from what memory holds for it.
fn decide_for<B: Body>(
    cache: &Cache,
    config: &Config,
    primary: &str,
    (method, headers, route): (&Method, &HeaderMap, &str),
) -> Decision<B> {
    let directives = request_directives(config, headers);
    // Its primary key is filled only when the plan leaves this function.
    let mut plan = Plan::empty();
    // One clock reading serves the entry's deadlines and the response's age.
    let now = clock::now();
    let request = (method, headers, &directives, now);
    match lookup(cache, primary, headers, now) {
        Found::Stored { variant, entry } => {
            plan.variant = variant;
            let stored = (&entry, primary, route);
            if let Some(decision) = decide_stored(cache, stored, request, &mut plan) {
                return decision;
            }
        }
        Found::VaryMiss(key) => {
            plan.variant = Some(key);
            plan.forward = Forward::VaryMiss;
        }
        Found::Uncacheable => {
            plan.coalesce = false;
            plan.forward = Forward::Miss;
        }
        Found::Nothing => {}
    }
    // Nothing usable in memory: the shared tier may hold the URL or its variant.
    let shared = cache.shared_tier().is_some()
        && matches!(plan.forward, Forward::UriMiss | Forward::VaryMiss);
    if directives.only_if_cached && !shared {
        return Decision::Respond(only_if_cached());
    }
    // A HEAD response has no body to store: it must not make GETs queue behind it.
    if method == Method::HEAD {
        plan.coalesce = false;
    }
    plan.primary = primary.to_owned();
    let counters = cache.inner().counters();
    let site = counters.sites().get(route);
    if shared {
        plan.site = Some(site);
        return Decision::Shared(plan, tracing::Span::none());
    }
    counters.count(&site, SiteCounter::Miss);
    plan.site = Some(site);
    Decision::Fetch(plan)
}

/// How a stored response (its entry, primary key and the request's route) answers the
/// request: served (fresh, or stale while it is refreshed in the background), or `None` with
/// `plan` set to revalidate it.
// Inlined: the hit path's one call.
#[inline(always)]
pub(crate) fn decide_stored<B: Body>(
    cache: &Cache,
    (entry, primary, route): (&Arc<Entry>, &str, &str),
    request: (&Method, &HeaderMap, &RequestDirectives, clock::Instant),
    plan: &mut Plan,
) -> Option<Decision<B>> {
    let (method, headers, directives, now) = request;
    let counters = &cache.inner().counters();
    let response = response_of(entry);
    let age = response.age(now);
    let entry_age = entry.age(now);
    match response.usability_in(entry_age, age, directives) {
        Usability::Fresh | Usability::StaleAccepted => {
            counters.count_named(route, SiteCounter::Hit);
            let status = CacheStatus::hit().ttl(remaining_ttl(response.lifetime, age));
            Some(Decision::Respond(serve(
                response, method, headers, status, age,
            )))
        }
        Usability::StaleWhileRevalidate => {
            counters.count_named(route, SiteCounter::Stale);
            // Stale, if only by its entry (a soft purge): no freshness left to report.
            let status = CacheStatus::hit()
                .ttl(remaining_ttl(response.lifetime, age).min(0))
                .detail("stale-while-revalidate");
            let served = serve(response, method, headers, status, age);
            // HEAD gets no body to store: the next GET refreshes.
            let claim = (method == Method::GET)
                .then(|| entry.claim_refresh())
                .flatten();
            let Some(claim) = claim else {
                return Some(Decision::Respond(served));
            };
            plan.primary = primary.to_owned();
            plan.site = Some(counters.sites().get(route));
            plan.stale = shared_response_of(entry).map(|r| (r, false));
            plan.forward = Forward::Stale;
            Some(Decision::Refresh {
                served,
                plan: std::mem::replace(plan, Plan::empty()),
                claim,
            })
        }
        Usability::Revalidate { stale_if_error } => {
            let fresh_for_anyone =
                response.usability_in(entry_age, age, &RequestDirectives::default())
                    == Usability::Fresh;
            plan.forward = if fresh_for_anyone {
                Forward::Request
            } else {
                Forward::Stale
            };
            plan.stale = shared_response_of(entry).map(|r| (r, stale_if_error));
            None
        }
    }
}

/// The answer to `only-if-cached` when nothing usable is stored.
pub(crate) fn only_if_cached<B: Body>() -> Response<CacheBody<B>> {
    empty_response(
        StatusCode::GATEWAY_TIMEOUT,
        CacheStatus::default().detail("only-if-cached"),
    )
}
