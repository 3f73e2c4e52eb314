//! `CacheLayer` in front of a tonic service: `GetCourse` (marked `NO_SIDE_EFFECTS` in
//! `proto/catalog.proto`) is cached, `RenameCourse` is a write that invalidates the course's
//! tag, and `ListCourses` streams through untouched.
//!
//! Run it with `cargo run --example grpc_catalog`. The protobuf code in `proto/` is generated
//! by `codegen/` (pure Rust, no `protoc`) and checked in.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_layer::{Cache, CacheLayer};
use futures_util::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod catalog {
    include!("proto/catalog.v1.rs");
}

use catalog::catalog_client::CatalogClient;
use catalog::catalog_server::{Catalog, CatalogServer};
use catalog::{Course, GetCourseRequest, ListCoursesRequest, RenameCourseRequest};

/// The descriptor set written next to the generated code: which methods have no side effects.
const DESCRIPTORS: &[u8] = include_bytes!("proto/catalog_descriptor.bin");

/// Stands in for a database whose reads take 50 ms.
struct Courses {
    titles: Mutex<HashMap<u64, String>>,
    reads: AtomicUsize,
    cache: Cache,
}

type CourseStream = Pin<Box<dyn Stream<Item = Result<Course, Status>> + Send>>;

#[tonic::async_trait]
impl Catalog for Arc<Courses> {
    async fn get_course(
        &self,
        request: Request<GetCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let id = request.into_inner().id;
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let title = self.titles.lock().unwrap().get(&id).cloned();
        let title = title.ok_or_else(|| Status::not_found(format!("no course {id}")))?;
        let mut response = Response::new(Course {
            id,
            title,
            padding: Vec::new(),
        });
        // The tag the write below invalidates; the layer removes it before the client sees it.
        let tag = format!("course:{id}").parse().expect("ASCII");
        response.metadata_mut().insert("cache-tag", tag);
        Ok(response)
    }

    async fn rename_course(
        &self,
        request: Request<RenameCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let RenameCourseRequest { id, title } = request.into_inner();
        self.titles.lock().unwrap().insert(id, title.clone());
        // After the write: every cached GetCourse answer for this course is dropped.
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
        let limit = usize::try_from(request.into_inner().limit).unwrap_or(usize::MAX);
        let mut courses: Vec<Course> = self
            .titles
            .lock()
            .unwrap()
            .iter()
            .map(|(id, title)| Course {
                id: *id,
                title: title.clone(),
                padding: Vec::new(),
            })
            .collect();
        courses.sort_by_key(|c| c.id);
        courses.truncate(limit);
        Ok(Response::new(Box::pin(futures_util::stream::iter(
            courses.into_iter().map(Ok),
        ))))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::builder().name("grpc").build()?;
    let courses = Arc::new(Courses {
        titles: Mutex::new(HashMap::from([(1, "Rust".into()), (2, "gRPC".into())])),
        reads: AtomicUsize::new(0),
        cache: cache.clone(),
    });
    // Every unary method marked NO_SIDE_EFFECTS, fresh for a minute.
    let layer = CacheLayer::new(cache.clone())
        .grpc_descriptors(DESCRIPTORS, Duration::from_secs(60))?
        .stale_while_revalidate(Duration::from_secs(30));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .layer(layer)
        .add_service(CatalogServer::new(Arc::clone(&courses)))
        // TCP_NODELAY, as `serve` sets it: without it a unary answer waits ~40 ms for an ACK.
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)));
    tokio::spawn(server);
    println!("catalog on http://{addr}");

    let mut client = CatalogClient::connect(format!("http://{addr}")).await?;
    for round in ["miss", "hit"] {
        let started = Instant::now();
        let response = client.get_course(GetCourseRequest { id: 1 }).await?;
        let status = response.metadata().get("cache-status").cloned();
        println!(
            "GetCourse(1) [{round}]: {:?} in {:?} ({status:?})",
            response.into_inner().title,
            started.elapsed()
        );
    }
    let request = RenameCourseRequest {
        id: 1,
        title: "Rust, 2nd edition".into(),
    };
    client.rename_course(request).await?;
    let renamed = client.get_course(GetCourseRequest { id: 1 }).await?;
    println!("after RenameCourse(1): {:?}", renamed.into_inner().title);
    let listed: Vec<String> = client
        .list_courses(ListCoursesRequest { limit: 10 })
        .await?
        .into_inner()
        .map(|course| course.map(|c| c.title).unwrap_or_default())
        .collect()
        .await;
    println!("ListCourses (streamed, never cached): {listed:?}");
    println!(
        "database reads: {} for 3 GetCourse calls",
        courses.reads.load(Ordering::SeqCst)
    );
    Ok(())
}
