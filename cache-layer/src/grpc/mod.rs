//! gRPC over [`CacheLayer`](crate::CacheLayer): every call passes through untouched unless its
//! method is opted in; opted-in unary calls are cached by their decoded request message.
//! Opt methods in with `CacheLayer::grpc_method` and its siblings (see the
//! [crate documentation](crate#grpc)); this module's types are also re-exported at the crate
//! root. Without the `grpc` feature the module is private and only recognises gRPC calls, so
//! that they pass through.
//!
//! - `config`: [`GrpcMethods`], which methods are cached and what else is part of the key.
//! - `lookup`: what the cache holds for a call, and waiting on a concurrent call of it.
//! - `layer`: the builder methods of [`CacheLayer`](crate::CacheLayer) that opt methods in.
//! - `descriptor`: reading `idempotency_level = NO_SIDE_EFFECTS` from a file descriptor set.
//! - `frame`: the request's length-prefixed message, decompressed.
//! - `key`: the cache key of a call.
//! - `request_body`: [`GrpcRequestBody`], the request body the inner service receives.
//! - `stored`: what is kept (headers, message, trailers) and how it is replayed.
//! - `service`: the call path, a front-end of the load pipeline: hit, stale-while-revalidate,
//!   single-flight, stale-if-error.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};

#[cfg(feature = "grpc")]
mod config;
#[cfg(feature = "grpc")]
mod descriptor;
#[cfg(feature = "grpc")]
mod frame;
#[cfg(feature = "grpc")]
mod key;
#[cfg(feature = "grpc")]
mod layer;
#[cfg(feature = "grpc")]
mod lookup;
#[cfg(feature = "grpc")]
mod request_body;
#[cfg(feature = "grpc")]
mod service;
#[cfg(feature = "grpc")]
mod stored;

#[cfg(feature = "grpc")]
pub use config::{GrpcConfigError, GrpcMethods, LayerMode};
#[cfg(feature = "grpc")]
pub use descriptor::DescriptorError;
#[cfg(feature = "grpc")]
pub use request_body::GrpcRequestBody;

/// Whether a request is a gRPC call: a POST (gRPC sends nothing else, so a GET cache hit pays
/// for no header lookup) of `application/grpc`, `application/grpc+proto`, ...; not gRPC-Web,
/// whose status travels in the body.
pub(crate) fn is_grpc(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::POST && is_grpc_content(headers)
}

fn is_grpc_content(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        let prefix = b"application/grpc";
        value.len() >= prefix.len()
            && value[..prefix.len()].eq_ignore_ascii_case(prefix)
            && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn grpc_content_types() {
        let of = |v: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_grpc(&Method::POST, &headers) && !is_grpc(&Method::GET, &headers)
        };
        assert!(of("application/grpc"));
        assert!(of("application/grpc+proto"));
        assert!(of("Application/GRPC; charset=utf-8"));
        assert!(!of("application/grpc-web"));
        assert!(!of("application/grpcx"));
        assert!(!of("application/json"));
        assert!(!is_grpc(&Method::POST, &HeaderMap::new()));
    }
}
