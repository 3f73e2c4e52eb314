//! `CacheLayer` on tonic: a unary call answered from the cache, the same call answered by its
//! handler (uncached), and the handler looking the answer up in a hand-written moka cache;
//! real tonic servers on `127.0.0.1:0` and a real tonic client, one call at a time.
//!
//! `cargo bench --bench grpc` prints criterion's report, then the medians and ratios.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cache_layer::{Cache, CacheLayer};
use criterion::{criterion_group, Criterion};
use support::median;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

mod support;

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod catalog {
    include!("../examples/grpc_catalog/proto/catalog.v1.rs");
}

use catalog::catalog_client::CatalogClient;
use catalog::catalog_server::{Catalog, CatalogServer};
use catalog::{Course, GetCourseRequest, ListCoursesRequest, RenameCourseRequest};

const GET_COURSE: &str = "/catalog.v1.Catalog/GetCourse";

/// A course of about 1 KiB encoded, as a typical read answer.
fn course(id: u64) -> Course {
    Course {
        id,
        title: format!("course {id}"),
        padding: vec![b'x'; 1000],
    }
}

/// The service: builds the answer (`moka: None`), or looks it up in a moka cache first.
#[derive(Clone)]
struct Bench {
    moka: Option<moka::future::Cache<u64, Course>>,
}

#[tonic::async_trait]
impl Catalog for Bench {
    async fn get_course(
        &self,
        request: Request<GetCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let id = request.into_inner().id;
        let answer = match &self.moka {
            Some(moka) => moka.get_with(id, async move { course(id) }).await,
            None => course(id),
        };
        Ok(Response::new(answer))
    }

    async fn rename_course(
        &self,
        _: Request<RenameCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        Err(Status::unimplemented("not benched"))
    }

    type ListCoursesStream = futures_util::stream::Empty<Result<Course, Status>>;

    async fn list_courses(
        &self,
        _: Request<ListCoursesRequest>,
    ) -> Result<Response<Self::ListCoursesStream>, Status> {
        Err(Status::unimplemented("not benched"))
    }
}

/// Serves `service`, behind the cache layer when `cached`, on an ephemeral loopback port.
async fn serve(service: Bench, cached: bool) -> CatalogClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = CatalogServer::new(service);
    if cached {
        let cache = Cache::builder().build().expect("cache");
        let layer = CacheLayer::new(cache)
            .grpc_method(GET_COURSE, Duration::from_secs(3600))
            .expect("a method path");
        let router = Server::builder().layer(layer).add_service(service);
        tokio::spawn(router.serve_with_incoming(incoming));
    } else {
        let router = Server::builder().add_service(service);
        tokio::spawn(router.serve_with_incoming(incoming));
    }
    CatalogClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn loopback(c: &mut Criterion) {
    // Client and servers on one thread: no cross-core wake-ups (see benches/http.rs).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let arms = rt.block_on(async {
        let moka = moka::future::Cache::new(1024);
        [
            ("uncached", serve(Bench { moka: None }, false).await),
            ("cache_layer_hit", serve(Bench { moka: None }, true).await),
            (
                "moka_in_handler",
                serve(Bench { moka: Some(moka) }, false).await,
            ),
        ]
    });
    let mut group = c.benchmark_group("grpc_unary_1k");
    for (name, client) in arms {
        group.bench_function(name, |b| {
            b.iter_custom(|n| {
                let mut client = client.clone();
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..n {
                        let response = client
                            .get_course(GetCourseRequest { id: 42 })
                            .await
                            .expect("a course");
                        black_box(response.into_inner());
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = loopback
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let group = "grpc_unary_1k";
    let Some(uncached) = median(group, "uncached") else {
        return;
    };
    println!("\nmedians per call (throughput relative to the uncached call; higher is better):");
    for arm in ["uncached", "cache_layer_hit", "moka_in_handler"] {
        if let Some(ns) = median(group, arm) {
            println!(
                "  {group}/{arm}: {:.1} µs, {:.2}x",
                ns / 1000.0,
                uncached / ns
            );
        }
    }
}
