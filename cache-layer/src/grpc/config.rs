//! [`GrpcMethods`]: which gRPC methods a [`CacheLayer`] caches, for how long, and which
//! metadata is part of the key; and the builder methods that opt methods in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderName;

use super::descriptor::{described_methods, DescriptorError};
use crate::http::config::HttpOnly;
use crate::CacheLayer;

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

/// Checks a method path: `/` package-qualified service `/` method.
fn check_path(path: &str) -> Result<(), GrpcConfigError> {
    let valid = path.strip_prefix('/').is_some_and(|rest| {
        let mut parts = rest.split('/');
        let (service, method) = (parts.next(), parts.next());
        parts.next().is_none()
            && service.is_some_and(|s| !s.is_empty())
            && method.is_some_and(|m| !m.is_empty())
    });
    if valid {
        Ok(())
    } else {
        Err(GrpcConfigError::MethodPath(path.to_owned()))
    }
}

/// Checks a metadata name for the key: a valid header name, not `grpc-timeout`.
fn key_metadata_name(name: &str) -> Result<HeaderName, GrpcConfigError> {
    let name =
        HeaderName::try_from(name).map_err(|_| GrpcConfigError::MetadataName(name.to_owned()))?;
    if name == "grpc-timeout" {
        return Err(GrpcConfigError::TimeoutInKey);
    }
    Ok(name)
}

impl<M: LayerMode> CacheLayer<M> {
    fn with_grpc(self, change: impl FnOnce(&mut GrpcConfig)) -> CacheLayer<GrpcMethods> {
        let mut mode = self.mode.into_grpc();
        change(Arc::make_mut(&mut mode.config));
        CacheLayer {
            cache: self.cache,
            config: self.config,
            applied: self.applied,
            mode,
        }
    }

    /// Caches successful calls of the unary method at `path` (`/package.Service/Method`, as
    /// tonic routes it) for `ttl`, unless the response's `cache-control` metadata says
    /// otherwise (`max-age`, `s-maxage`, `no-store`, `private`).
    ///
    /// Calls are keyed by authority, path, the decoded request message, the client's
    /// `grpc-accept-encoding` and the [metadata added to the key](Self::grpc_key_metadata). Only
    /// opt in methods without side effects: a cached call does not reach the service.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, CacheLayer};
    ///
    /// # fn main() -> Result<(), cache_layer::GrpcConfigError> {
    /// let layer = CacheLayer::new(Cache::global().clone())
    ///     .grpc_method("/catalog.v1.Catalog/GetCourse", Duration::from_secs(60))?
    ///     .grpc_key_metadata("x-tenant")?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// If `path` is not of the form `/package.Service/Method`.
    pub fn grpc_method(
        self,
        path: &str,
        ttl: Duration,
    ) -> Result<CacheLayer<GrpcMethods>, GrpcConfigError> {
        check_path(path)?;
        Ok(self.with_grpc(|grpc| {
            grpc.methods.insert(path.into(), ttl);
        }))
    }

    /// Caches the unary methods for which `ttl_for(path)` gives a TTL (consulted for paths
    /// not opted in by [`grpc_method`](Self::grpc_method); predicates added earlier first).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, CacheLayer};
    ///
    /// // Every `Get*` method of the catalog service, for 30 seconds.
    /// let layer = CacheLayer::new(Cache::global().clone()).grpc_methods_where(|path| {
    ///     path.starts_with("/catalog.v1.Catalog/Get")
    ///         .then_some(Duration::from_secs(30))
    /// });
    /// # let _ = layer;
    /// ```
    pub fn grpc_methods_where<F>(self, ttl_for: F) -> CacheLayer<GrpcMethods>
    where
        F: Fn(&str) -> Option<Duration> + Send + Sync + 'static,
    {
        self.with_grpc(|grpc| grpc.predicates.push(Arc::new(ttl_for)))
    }

    /// Caches, for `ttl`, every unary method that an encoded `FileDescriptorSet` (as written
    /// by `protoc --descriptor_set_out`, `protox` or `tonic-prost-build`) marks
    /// `option idempotency_level = NO_SIDE_EFFECTS;`.
    ///
    /// # Errors
    /// If the bytes are not a valid encoded `FileDescriptorSet`, or no unary method in it is
    /// marked `NO_SIDE_EFFECTS` (most likely the wrong file).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_layer::{Cache, CacheLayer};
    ///
    /// let error = CacheLayer::new(Cache::global().clone())
    ///     .grpc_descriptors(b"\x0a\x05\x12", Duration::from_secs(60))
    ///     .unwrap_err();
    /// assert!(error.to_string().starts_with("invalid file descriptor set"));
    /// ```
    pub fn grpc_descriptors(
        self,
        file_descriptor_set: &[u8],
        ttl: Duration,
    ) -> Result<CacheLayer<GrpcMethods>, DescriptorError> {
        let paths: Vec<String> = described_methods(file_descriptor_set)?
            .into_iter()
            .filter(|m| m.unary && m.no_side_effects)
            .map(|m| m.path)
            .collect();
        if paths.is_empty() {
            return Err(DescriptorError(
                "no unary method is marked idempotency_level = NO_SIDE_EFFECTS".into(),
            ));
        }
        Ok(self.with_grpc(|grpc| {
            for path in paths {
                grpc.methods.insert(path.into(), ttl);
            }
        }))
    }

    /// Makes the request metadata `name` part of the key of cached calls, so that callers
    /// with different values (tenants, users) never share an entry.
    ///
    /// A call carrying `authorization` or `cookie` is not cached unless that field is added here.
    /// `grpc-timeout` is never part of the key: a deadline does not change the answer.
    ///
    /// # Errors
    /// If `name` is not a valid metadata name, or is `grpc-timeout`.
    pub fn grpc_key_metadata(self, name: &str) -> Result<CacheLayer<GrpcMethods>, GrpcConfigError> {
        let name = key_metadata_name(name)?;
        Ok(self.with_grpc(|grpc| {
            if !grpc.key_metadata.contains(&name) {
                grpc.key_metadata.push(name);
            }
        }))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cache;

    fn layer() -> CacheLayer {
        CacheLayer::new(Cache::builder().build().unwrap())
    }

    #[test]
    fn exact_paths_before_predicates() {
        let layer = layer()
            .grpc_methods_where(|p| p.ends_with("/Get").then_some(Duration::from_secs(2)))
            .grpc_method("/a.S/Get", Duration::from_secs(1))
            .unwrap();
        let grpc = &layer.mode.config;
        assert_eq!(grpc.ttl_for("/a.S/Get"), Some(Duration::from_secs(1)));
        assert_eq!(grpc.ttl_for("/b.S/Get"), Some(Duration::from_secs(2)));
        assert_eq!(grpc.ttl_for("/a.S/Put"), None);
    }

    #[test]
    fn a_path_that_names_no_method_is_an_error() {
        for path in ["/a.S", "a.S/Get", "/a.S/Get/x", "//Get", "/a.S/", "", "/"] {
            let error = layer()
                .grpc_method(path, Duration::from_secs(1))
                .unwrap_err();
            assert!(
                error.to_string().contains("is not of the form"),
                "{path:?}: {error}"
            );
            assert_eq!(error, GrpcConfigError::MethodPath(path.to_owned()));
        }
        let layer = layer()
            .grpc_method("/a.S/Get", Duration::from_secs(1))
            .unwrap();
        assert!(layer.grpc_method("/S/Get", Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn an_invalid_metadata_name_is_an_error() {
        for name in ["x tenant", "", "x\ntenant", "ünïcode"] {
            let error = layer().grpc_key_metadata(name).unwrap_err();
            assert!(
                error.to_string().contains("not a valid gRPC metadata name"),
                "{error}"
            );
            assert_eq!(error, GrpcConfigError::MetadataName(name.to_owned()));
        }
    }

    #[test]
    fn the_deadline_cannot_be_keyed() {
        for name in ["grpc-timeout", "GRPC-Timeout"] {
            let error = layer().grpc_key_metadata(name).unwrap_err();
            assert!(error
                .to_string()
                .starts_with("grpc-timeout is never part of the key"));
            assert_eq!(error, GrpcConfigError::TimeoutInKey);
        }
    }

    #[test]
    fn authorization_is_cached_only_when_keyed() {
        let layer = layer()
            .grpc_method("/a.S/Get", Duration::from_secs(1))
            .unwrap();
        assert!(!layer.mode.config.keys_authorization());
        let layer = layer.grpc_key_metadata("Authorization").unwrap();
        assert!(layer.mode.config.keys_authorization());
    }
}
