//! `CacheLayer` on tonic: a real tonic server on a loopback port and a real tonic client. Calls
//! not opted in pass through untouched; opted-in unary calls are cached by their decoded
//! request message and replayed with their headers, message and trailers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_layer::{Cache, CacheBody, CacheLayer, CacheService, GrpcMethods};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tower::util::MapResponse;
use tower::Service;

mod support;

use support::spans::Spans;

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod catalog {
    include!("../examples/grpc_catalog/proto/catalog.v1.rs");
}

use catalog::catalog_client::CatalogClient;
use catalog::catalog_server::{Catalog, CatalogServer};
use catalog::{Course, GetCourseRequest, ListCoursesRequest, RenameCourseRequest};

const GET_COURSE: &str = "/catalog.v1.Catalog/GetCourse";
const DESCRIPTORS: &[u8] = include_bytes!("../examples/grpc_catalog/proto/catalog_descriptor.bin");

/// What the test service saw.
#[derive(Default)]
struct Seen {
    gets: AtomicUsize,
    lists: AtomicUsize,
    /// Whether some GetCourse request arrived gzip-compressed.
    gzip_requests: AtomicBool,
    /// While set, GetCourse answers UNAVAILABLE.
    failing: AtomicBool,
    /// When set, GetCourse for id 77 waits for a permit (coalescing test).
    gate: Option<Arc<Semaphore>>,
}

#[derive(Clone)]
struct TestCatalog {
    seen: Arc<Seen>,
    cache: Cache,
}

type CourseStream = Pin<Box<dyn Stream<Item = Result<Course, Status>> + Send>>;

#[tonic::async_trait]
impl Catalog for TestCatalog {
    async fn get_course(
        &self,
        request: Request<GetCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let n = self.seen.gets.fetch_add(1, Ordering::SeqCst) + 1;
        let metadata = request.metadata();
        if metadata.get("grpc-encoding").is_some_and(|e| e == "gzip") {
            self.seen.gzip_requests.store(true, Ordering::SeqCst);
        }
        let user = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        let id = request.get_ref().id;
        if id == 77 {
            if let Some(gate) = &self.seen.gate {
                let _permit = gate.acquire().await.expect("gate open");
            }
        }
        if self.seen.failing.load(Ordering::SeqCst) {
            return Err(Status::unavailable("database down"));
        }
        if id == 404 {
            let mut status = Status::not_found("no such course");
            status
                .metadata_mut()
                .insert("x-reason", "deleted".parse().unwrap());
            return Err(status);
        }
        let mut response = Response::new(Course {
            id,
            title: format!("course {id} for {user}, answer {n}"),
            padding: vec![b'x'; 256],
        });
        let metadata = response.metadata_mut();
        metadata.insert("cache-tag", format!("course:{id}").parse().unwrap());
        metadata.insert("x-served-by", "catalog".parse().unwrap());
        Ok(response)
    }

    async fn rename_course(
        &self,
        request: Request<RenameCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let RenameCourseRequest { id, title } = request.into_inner();
        self.cache.invalidate(&format!("course:{id}")).await;
        Ok(Response::new(Course {
            id,
            title,
            padding: Vec::new(),
        }))
    }

    type ListCoursesStream = CourseStream;

    async fn list_courses(
        &self,
        request: Request<ListCoursesRequest>,
    ) -> Result<Response<CourseStream>, Status> {
        let n = self.seen.lists.fetch_add(1, Ordering::SeqCst) + 1;
        let limit = u64::from(request.get_ref().limit);
        let courses = (1..=limit).map(move |id| {
            Ok(Course {
                id,
                title: format!("course {id}, listing {n}"),
                padding: Vec::new(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(courses))))
    }
}

/// Adds `x-trailer: kept` to every response's trailers, as a server sending load reports or
/// checksums in trailing metadata does.
fn add_trailer(response: http::Response<Body>) -> http::Response<Body> {
    response.map(|body| {
        Body::new(body.map_frame(|mut frame| {
            if let Some(trailers) = frame.trailers_mut() {
                trailers.insert("x-trailer", "kept".parse().unwrap());
            }
            frame
        }))
    })
}

type Inner = MapResponse<Routes, fn(http::Response<Body>) -> http::Response<Body>>;

struct Running {
    client: CatalogClient<Channel>,
    addr: SocketAddr,
    seen: Arc<Seen>,
    cache: Cache,
}

impl Running {
    fn gets(&self) -> usize {
        self.seen.gets.load(Ordering::SeqCst)
    }

    async fn client(&self) -> CatalogClient<Channel> {
        CatalogClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }
}

fn cache() -> Cache {
    Cache::builder().jitter(0.0).build().unwrap()
}

/// Serves the test catalog behind `layer(cache)` (gzip accepted and sent) on an ephemeral
/// loopback port.
async fn start<M>(seen: Seen, layer: impl FnOnce(Cache) -> CacheLayer<M>) -> Running
where
    M: Clone + Send + Sync + 'static,
    CacheService<Inner, M>: Service<http::Request<Body>, Response = http::Response<CacheBody<Body>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    <CacheService<Inner, M> as Service<http::Request<Body>>>::Future: Send + 'static,
{
    let cache = cache();
    let seen = Arc::new(seen);
    let catalog = TestCatalog {
        seen: Arc::clone(&seen),
        cache: cache.clone(),
    };
    let service = CatalogServer::new(catalog)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder()
        .layer(layer(cache.clone()))
        .layer(tower::util::MapResponseLayer::new(
            add_trailer as fn(http::Response<Body>) -> http::Response<Body>,
        ))
        .add_service(service);
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))));
    let client = CatalogClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    Running {
        client,
        addr,
        seen,
        cache,
    }
}

fn cached_get(cache: Cache) -> CacheLayer<GrpcMethods> {
    CacheLayer::new(cache)
        .grpc_method(GET_COURSE, Duration::from_secs(60))
        .unwrap()
}

/// `GetCourse` stored already stale, served stale for a minute while one call refreshes it.
fn stale_at_once(cache: Cache) -> CacheLayer<GrpcMethods> {
    CacheLayer::new(cache)
        .stale_while_revalidate(Duration::from_secs(60))
        .grpc_method(GET_COURSE, Duration::ZERO)
        .unwrap()
}

async fn get(client: &mut CatalogClient<Channel>, id: u64) -> Result<Response<Course>, Status> {
    client.get_course(GetCourseRequest { id }).await
}

fn text<'a>(metadata: &'a MetadataMap, name: &str) -> &'a str {
    metadata
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn a_second_identical_call_is_served_from_the_cache() {
    let mut server = start(Seen::default(), |cache| {
        CacheLayer::new(cache)
            .grpc_descriptors(DESCRIPTORS, Duration::from_secs(60))
            .expect("the example's descriptor set")
    })
    .await;
    let first = get(&mut server.client, 7).await.unwrap();
    // A deadline is not part of the key.
    let mut request = Request::new(GetCourseRequest { id: 7 });
    request.set_timeout(Duration::from_secs(30));
    let again = server.client.get_course(request).await.unwrap();
    assert_eq!(
        server.gets(),
        1,
        "the second call never reached the service"
    );
    assert_eq!(again.get_ref(), first.get_ref());
    assert_eq!(again.get_ref().title, "course 7 for anonymous, answer 1");
    assert!(
        text(first.metadata(), "cache-status").contains("fwd=uri-miss"),
        "{:?}",
        first.metadata()
    );
    assert!(text(again.metadata(), "cache-status").starts_with("cache-layer; hit"));
    // Cache-Tag is for the layer, not the client.
    assert!(first.metadata().get("cache-tag").is_none());
    assert!(again.metadata().get("cache-tag").is_none());
    assert_eq!(server.cache.stats().hits, 1);
}

#[tokio::test]
async fn a_different_request_message_misses() {
    let mut server = start(Seen::default(), cached_get).await;
    get(&mut server.client, 7).await.unwrap();
    let other = get(&mut server.client, 8).await.unwrap();
    assert_eq!(server.gets(), 2);
    assert_eq!(other.get_ref().title, "course 8 for anonymous, answer 2");
}

#[tokio::test]
async fn an_error_status_is_never_cached() {
    let mut server = start(Seen::default(), cached_get).await;
    for _ in 0..2 {
        let status = get(&mut server.client, 404).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such course");
        assert_eq!(text(status.metadata(), "x-reason"), "deleted");
    }
    assert_eq!(server.gets(), 2);
    server.seen.failing.store(true, Ordering::SeqCst);
    assert_eq!(
        get(&mut server.client, 7).await.unwrap_err().code(),
        Code::Unavailable
    );
    server.seen.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&mut server.client, 7).await.unwrap().get_ref().title,
        "course 7 for anonymous, answer 4"
    );
    assert_eq!(server.gets(), 4);
}

#[tokio::test]
async fn trailers_and_metadata_arrive_intact_on_every_kind_of_call() {
    let mut server = start(Seen::default(), cached_get).await;
    let uncached = get(&mut server.client, 7).await.unwrap();
    let cached = get(&mut server.client, 7).await.unwrap();
    assert_eq!(server.gets(), 1);
    for response in [&uncached, &cached] {
        // tonic merges a unary call's trailers into its metadata.
        assert_eq!(text(response.metadata(), "x-trailer"), "kept");
        assert_eq!(text(response.metadata(), "x-served-by"), "catalog");
    }
    let renamed = server
        .client
        .rename_course(RenameCourseRequest {
            id: 9,
            title: "Rust".into(),
        })
        .await
        .unwrap();
    assert_eq!(text(renamed.metadata(), "x-trailer"), "kept");
    let mut stream = server
        .client
        .list_courses(ListCoursesRequest { limit: 3 })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(course) = stream.message().await.unwrap() {
        ids.push(course.id);
    }
    assert_eq!(ids, [1, 2, 3]);
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    assert_eq!(text(&trailers, "x-trailer"), "kept");
}

#[tokio::test]
async fn a_streaming_call_is_never_cached() {
    // Even when a predicate opts in every path.
    let mut server = start(Seen::default(), |cache| {
        CacheLayer::new(cache).grpc_methods_where(|_| Some(Duration::from_secs(60)))
    })
    .await;
    for listing in 1..=2 {
        let stream = server
            .client
            .list_courses(ListCoursesRequest { limit: 2 })
            .await
            .unwrap()
            .into_inner();
        let titles: Vec<String> = stream.map(|c| c.unwrap().title).collect().await;
        assert_eq!(
            titles,
            [
                format!("course 1, listing {listing}"),
                format!("course 2, listing {listing}")
            ]
        );
    }
    assert_eq!(server.seen.lists.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn calls_not_opted_in_pass_through_a_plain_layer() {
    let mut server = start(Seen::default(), CacheLayer::new).await;
    let first = get(&mut server.client, 7).await.unwrap();
    let second = get(&mut server.client, 7).await.unwrap();
    assert_eq!(server.gets(), 2);
    assert_eq!(second.get_ref().title, "course 7 for anonymous, answer 2");
    assert_eq!(text(first.metadata(), "x-trailer"), "kept");
    let status = get(&mut server.client, 404).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "no such course")
    );
    let stream = server
        .client
        .list_courses(ListCoursesRequest { limit: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.count().await, 2);
    assert_eq!(server.cache.entry_count(), 0);
}

async fn get_as(client: &mut CatalogClient<Channel>, user: Option<&str>) -> String {
    let mut request = Request::new(GetCourseRequest { id: 7 });
    if let Some(user) = user {
        request
            .metadata_mut()
            .insert("authorization", user.parse().unwrap());
    }
    client.get_course(request).await.unwrap().into_inner().title
}

#[tokio::test]
async fn authorization_keeps_callers_apart() {
    // Not in the key: calls with `authorization` are never cached.
    let mut server = start(Seen::default(), cached_get).await;
    assert_eq!(
        get_as(&mut server.client, Some("ada")).await,
        "course 7 for ada, answer 1"
    );
    assert_eq!(
        get_as(&mut server.client, Some("bob")).await,
        "course 7 for bob, answer 2"
    );
    assert_eq!(
        get_as(&mut server.client, Some("ada")).await,
        "course 7 for ada, answer 3"
    );
    assert_eq!(server.gets(), 3);

    // In the key: each caller has its own entry.
    let mut server = start(Seen::default(), |cache| {
        cached_get(cache)
            .grpc_key_metadata("authorization")
            .unwrap()
    })
    .await;
    let client = &mut server.client;
    assert_eq!(
        get_as(client, Some("ada")).await,
        "course 7 for ada, answer 1"
    );
    assert_eq!(
        get_as(client, Some("bob")).await,
        "course 7 for bob, answer 2"
    );
    assert_eq!(
        get_as(client, Some("ada")).await,
        "course 7 for ada, answer 1"
    );
    assert_eq!(
        get_as(client, Some("bob")).await,
        "course 7 for bob, answer 2"
    );
    assert_eq!(
        get_as(client, None).await,
        "course 7 for anonymous, answer 3"
    );
    assert_eq!(server.gets(), 3);
}

#[tokio::test]
async fn invalidation_by_tag_drops_the_cached_call() {
    let mut server = start(Seen::default(), cached_get).await;
    get(&mut server.client, 7).await.unwrap();
    get(&mut server.client, 8).await.unwrap();
    server
        .client
        .rename_course(RenameCourseRequest {
            id: 7,
            title: "Rust".into(),
        })
        .await
        .unwrap();
    let after = get(&mut server.client, 7).await.unwrap();
    assert_eq!(after.get_ref().title, "course 7 for anonymous, answer 3");
    get(&mut server.client, 8).await.unwrap();
    assert_eq!(server.gets(), 3, "only the renamed course was dropped");
    // Every entry is also tagged with its method path.
    server.cache.invalidate(GET_COURSE).await;
    get(&mut server.client, 8).await.unwrap();
    assert_eq!(server.gets(), 4);
}

#[tokio::test]
async fn a_soft_purged_call_is_replayed_stale_while_one_call_refreshes_it() {
    let mut server = start(Seen::default(), cached_get).await;
    get(&mut server.client, 7).await.unwrap();
    get(&mut server.client, 7).await.unwrap();
    assert_eq!(server.gets(), 1);
    server.cache.soft_invalidate("course:7").await;
    let stale = get(&mut server.client, 7).await.unwrap();
    assert_eq!(stale.get_ref().title, "course 7 for anonymous, answer 1");
    let status = text(stale.metadata(), "cache-status");
    assert!(
        status.contains("ttl=0; detail=stale-while-revalidate"),
        "{status}"
    );
    // One background call stores answer 2.
    for _ in 0..1000 {
        if server.gets() == 2 && server.cache.stats().inserts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refreshed = get(&mut server.client, 7).await.unwrap();
    assert_eq!(
        refreshed.get_ref().title,
        "course 7 for anonymous, answer 2"
    );
    assert!(text(refreshed.metadata(), "cache-status").starts_with("cache-layer; hit"));
    assert_eq!(server.gets(), 2);
}

#[tokio::test]
async fn compressed_and_plain_requests_share_an_entry() {
    let mut server = start(Seen::default(), cached_get).await;
    let mut gzip = server
        .client()
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let first = get(&mut gzip, 7).await.unwrap();
    assert!(
        server.seen.gzip_requests.load(Ordering::SeqCst),
        "sent compressed"
    );
    let plain = get(&mut server.client, 7).await.unwrap();
    assert_eq!(server.gets(), 1);
    assert_eq!(plain.get_ref(), first.get_ref());
}

#[tokio::test]
async fn a_compressed_response_is_replayed_only_to_clients_that_accept_it() {
    let mut server = start(Seen::default(), cached_get).await;
    let mut accepting = server
        .client()
        .await
        .accept_compressed(CompressionEncoding::Gzip);
    let compressed = get(&mut accepting, 7).await.unwrap();
    assert_eq!(text(compressed.metadata(), "grpc-encoding"), "gzip");
    // The plain client cannot decode gzip: it gets its own, uncompressed, answer.
    let plain = get(&mut server.client, 7).await.unwrap();
    assert!(plain.metadata().get("grpc-encoding").is_none());
    assert_eq!(server.gets(), 2);
    let again = get(&mut accepting, 7).await.unwrap();
    assert!(text(again.metadata(), "cache-status").starts_with("cache-layer; hit"));
    assert_eq!(again.get_ref(), compressed.get_ref());
    assert_eq!(server.gets(), 2);
}

#[tokio::test]
async fn concurrent_identical_calls_make_one_inner_call() {
    let gate = Arc::new(Semaphore::new(0));
    let seen = Seen {
        gate: Some(Arc::clone(&gate)),
        ..Seen::default()
    };
    let server = start(seen, cached_get).await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut client = server.client.clone();
            tokio::spawn(async move { get(&mut client, 77).await.unwrap().into_inner() })
        })
        .collect();
    // Wait until one call is in the service and the seven others wait for it.
    while server.gets() < 1 || server.cache.stats().coalesced < 7 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.add_permits(1);
    for call in calls {
        assert_eq!(
            call.await.unwrap().title,
            "course 77 for anonymous, answer 1"
        );
    }
    assert_eq!(server.gets(), 1);
}

#[tokio::test]
async fn a_stale_call_stands_in_when_the_service_fails() {
    // Stale at once, usable for a minute if the service fails.
    let mut server = start(Seen::default(), |cache| {
        CacheLayer::new(cache)
            .stale_if_error(Duration::from_secs(60))
            .grpc_method(GET_COURSE, Duration::ZERO)
            .unwrap()
    })
    .await;
    get(&mut server.client, 7).await.unwrap();
    server.seen.failing.store(true, Ordering::SeqCst);
    let served = get(&mut server.client, 7).await.unwrap();
    assert_eq!(served.get_ref().title, "course 7 for anonymous, answer 1");
    assert!(text(served.metadata(), "cache-status").contains("detail=stale-if-error"));
    assert_eq!(text(served.metadata(), "x-trailer"), "kept");
    assert_eq!(server.gets(), 2);
    assert_eq!(server.cache.stats().stale_if_error, 1);
}

#[tokio::test]
async fn a_stale_call_is_served_while_one_call_refreshes_it() {
    let mut server = start(Seen::default(), stale_at_once).await;
    get(&mut server.client, 7).await.unwrap();
    let stale = get(&mut server.client, 7).await.unwrap();
    assert_eq!(stale.get_ref().title, "course 7 for anonymous, answer 1");
    assert!(text(stale.metadata(), "cache-status").contains("detail=stale-while-revalidate"));
    // The background call stores answer 2.
    while server.cache.stats().inserts < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refreshed = get(&mut server.client, 7).await.unwrap();
    assert_eq!(
        refreshed.get_ref().title,
        "course 7 for anonymous, answer 2"
    );
    assert!(text(refreshed.metadata(), "cache-status").starts_with("cache-layer; hit"));
}

#[tokio::test]
async fn a_background_refresh_of_a_call_is_traced() {
    let refreshes = Spans::named("cache.refresh");
    let _guard = refreshes.install();
    let mut server = start(Seen::default(), stale_at_once).await;
    get(&mut server.client, 7).await.unwrap();
    get(&mut server.client, 7).await.unwrap(); // stale: refreshed in the background
    for _ in 0..500 {
        if !refreshes.values("cache.outcome").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(refreshes.values("cache.outcome"), ["refreshed"]);
}

#[tokio::test]
async fn a_call_lookup_is_traced_with_its_outcome_and_tier() {
    let lookups = Spans::named("cache.lookup");
    let _guard = lookups.install();
    let mut server = start(Seen::default(), stale_at_once).await;
    get(&mut server.client, 7).await.unwrap(); // stored, already stale
    get(&mut server.client, 7).await.unwrap(); // served stale
    let mut fresh = start(Seen::default(), cached_get).await;
    get(&mut fresh.client, 8).await.unwrap();
    get(&mut fresh.client, 8).await.unwrap(); // a hit
    assert_eq!(
        lookups.values("cache.outcome"),
        ["miss", "stale", "miss", "hit"]
    );
    assert_eq!(lookups.values("cache.tier"), ["memory", "memory"]);
    assert!(lookups
        .values("http.request.method")
        .iter()
        .all(|method| method == "POST"));
}

#[tokio::test]
async fn calls_with_a_session_cookie_are_not_shared() {
    // gRPC-Web clients authenticate with the browser's cookie: like `authorization`, it keeps
    // callers apart unless it is part of the key.
    let mut server = start(Seen::default(), cached_get).await;
    for sid in ["sid=ada", "sid=bob"] {
        let mut request = Request::new(GetCourseRequest { id: 7 });
        request
            .metadata_mut()
            .insert("cookie", sid.parse().unwrap());
        server.client.get_course(request).await.unwrap();
    }
    assert_eq!(server.gets(), 2, "bob was served ada's call");
    assert_eq!(server.cache.entry_count(), 0);
}

#[tokio::test]
async fn each_cached_method_is_counted_as_its_own_site() {
    let mut server = start(Seen::default(), cached_get).await;
    for id in [7, 7, 7, 8] {
        get(&mut server.client, id).await.unwrap();
    }
    let sites = server.cache.site_stats();
    let method = sites
        .iter()
        .find(|site| site.name == GET_COURSE)
        .unwrap_or_else(|| panic!("no site {GET_COURSE} in {sites:?}"));
    assert_eq!(
        (method.hits, method.misses, method.loads),
        (2, 2, 2),
        "{method:?}"
    );
    assert_eq!(method.hit_ratio(), Some(0.5));
}
