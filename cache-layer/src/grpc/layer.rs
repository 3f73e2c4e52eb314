//! The builder methods of [`CacheLayer`] that opt gRPC methods in: each turns the layer into a
//! `CacheLayer<GrpcMethods>` (see [`GrpcMethods`]). The others are `http/layer.rs`'s.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::config::{GrpcConfig, GrpcConfigError, GrpcMethods, LayerMode};
use super::descriptor::{described_methods, DescriptorError};
use crate::CacheLayer;

impl<M: LayerMode> CacheLayer<M> {
    fn with_grpc(self, change: impl FnOnce(&mut GrpcConfig)) -> CacheLayer<GrpcMethods> {
        self.map_mode(|mode| {
            let mut mode = mode.into_grpc();
            change(Arc::make_mut(&mut mode.config));
            mode
        })
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
        Ok(self.with_grpc(|grpc| grpc.cache_method(path, ttl)))
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
        self.with_grpc(|grpc| grpc.cache_methods_where(Arc::new(ttl_for)))
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
            for path in &paths {
                grpc.cache_method(path, ttl);
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
        Ok(self.with_grpc(|grpc| grpc.key_on(name)))
    }
}

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
