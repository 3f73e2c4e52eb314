//! [`GrpcMethods`]: which gRPC methods a [`CacheLayer`] caches, for how long, and which
//! metadata is part of the key (the builder methods that opt methods in are in `layer.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderName;

#[cfg(doc)]
use crate::CacheLayer;
use crate::HttpOnly;

/// The user's method predicate; see [`CacheLayer::grpc_methods_where`].
type MethodFn = dyn Fn(&str) -> Option<Duration> + Send + Sync;

/// The [`CacheLayer`] mode that also caches opted-in gRPC unary methods.
///
/// Built by [`CacheLayer::grpc_method`], [`CacheLayer::grpc_methods_where`] or
/// [`CacheLayer::grpc_descriptors`]; [`CacheLayer::grpc_key_metadata`] adds metadata to the
/// key. See the [module documentation](crate#grpc) for what is cached and how.
#[derive(Clone, Default)]
pub struct GrpcMethods {
    pub(crate) config: Arc<GrpcConfig>,
}

#[derive(Clone, Default)]
pub(crate) struct GrpcConfig {
    /// Exact method paths and their TTLs.
    methods: HashMap<Box<str>, Duration>,
    /// Consulted, in order, for paths not listed in `methods`.
    predicates: Vec<Arc<MethodFn>>,
    /// Metadata whose values are part of the key, in the order added.
    pub(crate) key_metadata: Vec<HeaderName>,
}

impl GrpcConfig {
    /// The TTL of the method at `path`, when it is opted in.
    pub(crate) fn ttl_for(&self, path: &str) -> Option<Duration> {
        self.methods
            .get(path)
            .copied()
            .or_else(|| self.predicates.iter().find_map(|p| p(path)))
    }

    /// Caches the method at `path` for `ttl`.
    pub(super) fn cache_method(&mut self, path: &str, ttl: Duration) {
        self.methods.insert(path.into(), ttl);
    }

    /// Caches the methods `ttl_for` gives a TTL, after the exact paths and earlier predicates.
    pub(super) fn cache_methods_where(&mut self, ttl_for: Arc<MethodFn>) {
        self.predicates.push(ttl_for);
    }

    /// Makes the metadata `name` part of the key.
    pub(super) fn key_on(&mut self, name: HeaderName) {
        if !self.key_metadata.contains(&name) {
            self.key_metadata.push(name);
        }
    }

    /// Whether a call carrying `authorization` may be cached: only when it is in the key.
    pub(crate) fn keys_authorization(&self) -> bool {
        self.key_metadata.contains(&AUTHORIZATION)
    }

    /// Whether calls' `cookie` metadata is part of their key (a session cookie identifies
    /// the caller as `authorization` does, e.g. under gRPC-Web).
    pub(crate) fn keys_cookie(&self) -> bool {
        self.key_metadata.contains(&COOKIE)
    }
}

mod sealed {
    pub trait Sealed {
        fn into_grpc(self) -> super::GrpcMethods;
    }
}

/// What a [`CacheLayer`] caches besides HTTP: [`HttpOnly`] (nothing) or [`GrpcMethods`].
/// Sealed: the two are the only modes.
pub trait LayerMode: sealed::Sealed {}

impl sealed::Sealed for HttpOnly {
    fn into_grpc(self) -> GrpcMethods {
        GrpcMethods::default()
    }
}

impl LayerMode for HttpOnly {}

impl sealed::Sealed for GrpcMethods {
    fn into_grpc(self) -> GrpcMethods {
        self
    }
}

impl LayerMode for GrpcMethods {}

/// A method path or metadata name that [`CacheLayer::grpc_method`] or
/// [`CacheLayer::grpc_key_metadata`] refuses.
///
/// The variants name what was refused, so a caller can match on the kind; the
/// [`Display`](fmt::Display) message says why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcConfigError {
    /// A method path not of the form `/package.Service/Method` (given to
    /// [`CacheLayer::grpc_method`]).
    MethodPath(String),
    /// A name that is not a valid metadata (header) name (given to
    /// [`CacheLayer::grpc_key_metadata`]).
    MetadataName(String),
    /// `grpc-timeout` asked to be part of the key: a deadline does not change the answer.
    TimeoutInKey,
}

impl fmt::Display for GrpcConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrpcConfigError::MethodPath(path) => write!(
                f,
                "gRPC method path {path:?} is not of the form \"/package.Service/Method\""
            ),
            GrpcConfigError::MetadataName(name) => {
                write!(f, "{name:?} is not a valid gRPC metadata name")
            }
            GrpcConfigError::TimeoutInKey => f.write_str(
                "grpc-timeout is never part of the key: a deadline does not change the answer",
            ),
        }
    }
}

impl std::error::Error for GrpcConfigError {}

impl fmt::Debug for GrpcMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut methods: Vec<&str> = self.config.methods.keys().map(|k| &**k).collect();
        methods.sort_unstable();
        f.debug_struct("GrpcMethods")
            .field("methods", &methods)
            .field("predicates", &self.config.predicates.len())
            .field("key_metadata", &self.config.key_metadata)
            .finish()
    }
}
