//! [`BuildError`]: what [`CacheBuilder::build`](crate::CacheBuilder::build) refuses. Its own
//! file, since both the builder and the Redis store (which checks URLs) return it.

use std::fmt;

/// A [`CacheBuilder`](crate::CacheBuilder) setting that [`CacheBuilder::build`](crate::CacheBuilder::build) refuses.
///
/// The variants name the setting, so a caller can match on the kind; the
/// [`Display`](fmt::Display) message says why. No Redis URL is ever kept in the error, in its
/// message or in its `Debug` output: a URL may hold a password.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BuildError {
    /// [`CacheBuilder::jitter`](crate::CacheBuilder::jitter) outside `[0, 1)` (the value given).
    Jitter(f64),
    /// A [`CacheBuilder::memory_budget`](crate::CacheBuilder::memory_budget) of zero bytes.
    MemoryBudget,
    /// A [`CacheBuilder::max_wait`](crate::CacheBuilder::max_wait) of zero.
    MaxWait,
    /// A Redis URL that is not a valid `redis://`, `rediss://` or `unix://` URL.
    RedisUrl {
        /// Which URL: its position among those given (0 for
        /// [`CacheBuilder::redis`](crate::CacheBuilder::redis) and
        /// [`CacheBuilder::tiered`](crate::CacheBuilder::tiered)).
        position: usize,
        /// What the Redis client said was wrong (it never repeats the URL).
        reason: String,
    },
    /// A Redis cluster
    /// ([`CacheBuilder::redis_cluster`](crate::CacheBuilder::redis_cluster),
    /// [`CacheBuilder::tiered_cluster`](crate::CacheBuilder::tiered_cluster)) with no node URL.
    NoClusterNodes,
    /// Redis Sentinel
    /// ([`CacheBuilder::redis_sentinel`](crate::CacheBuilder::redis_sentinel),
    /// [`CacheBuilder::tiered_sentinel`](crate::CacheBuilder::tiered_sentinel),
    /// [`RedisSource::sentinel`](crate::RedisSource::sentinel)) with no Sentinel URL.
    NoSentinels,
    /// Cluster node URLs that the cluster client refuses together (different passwords,
    /// TLS modes or databases among the nodes).
    ClusterConfig {
        /// What the Redis client said was wrong (it never repeats a URL).
        reason: String,
    },
    /// A `rediss://` URL or a Redis root certificate while the `tls` feature is off.
    TlsFeature,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid cache configuration: ")?;
        match self {
            BuildError::Jitter(jitter) => {
                write!(f, "jitter must be a fraction in [0, 1), got {jitter}")
            }
            BuildError::MemoryBudget => f.write_str("memory_budget must be at least 1 byte"),
            BuildError::MaxWait => f.write_str("max_wait must be longer than zero"),
            BuildError::RedisUrl { position, reason } => {
                write!(f, "invalid Redis URL at position {position}: {reason}")
            }
            BuildError::NoClusterNodes => {
                f.write_str("a Redis cluster needs at least one node URL")
            }
            BuildError::NoSentinels => {
                f.write_str("Redis Sentinel needs at least one Sentinel URL")
            }
            BuildError::ClusterConfig { reason } => {
                write!(f, "invalid Redis cluster configuration: {reason}")
            }
            BuildError::TlsFeature => {
                f.write_str("rediss:// URLs and Redis root certificates need the `tls` feature")
            }
        }
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cache;

    fn refused(builder: crate::CacheBuilder) -> BuildError {
        match builder.build() {
            Ok(_) => panic!("the builder accepted a setting it must refuse"),
            Err(error) => error,
        }
    }

    #[test]
    fn each_refused_setting_has_its_own_kind() {
        assert_eq!(
            refused(Cache::builder().jitter(1.5)),
            BuildError::Jitter(1.5)
        );
        assert_eq!(
            refused(Cache::builder().memory_budget(0)),
            BuildError::MemoryBudget
        );
        assert_eq!(
            refused(Cache::builder().max_wait(std::time::Duration::ZERO)),
            BuildError::MaxWait
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_cluster_or_sentinel_without_nodes_has_its_own_kind() {
        let none: [&str; 0] = [];
        assert_eq!(
            refused(Cache::builder().redis_cluster(none)),
            BuildError::NoClusterNodes
        );
        assert_eq!(
            refused(Cache::builder().tiered_sentinel(none, "main")),
            BuildError::NoSentinels
        );
        assert!(matches!(
            refused(Cache::builder().redis_sentinel(["redis://:bad port/"], "main")),
            BuildError::RedisUrl { position: 0, .. }
        ));
    }

    #[cfg(all(feature = "redis", not(feature = "tls")))]
    #[test]
    fn tls_settings_need_the_tls_feature() {
        let pem = b"-----BEGIN CERTIFICATE-----".to_vec();
        for builder in [
            Cache::builder().tiered("rediss://127.0.0.1:6380/"),
            Cache::builder().tiered("redis://127.0.0.1:6379/"),
            Cache::builder().redis_cluster(["redis://127.0.0.1:7000/"]),
        ] {
            let builder = builder.redis_root_certificate(pem.clone());
            assert_eq!(refused(builder), BuildError::TlsFeature);
        }
        assert_eq!(
            refused(Cache::builder().tiered("rediss://127.0.0.1:6380/")),
            BuildError::TlsFeature
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn no_credential_reaches_the_message_or_debug() {
        let urls = [
            "redis://user:secret@127.0.0.1:99999999/",
            "redis://user:secret@/",
            "http://user:secret@127.0.0.1/",
            "redis://user:secret@127.0.0.1/notadb",
        ];
        for url in urls {
            let error = refused(Cache::builder().tiered(url));
            assert!(
                matches!(error, BuildError::RedisUrl { position: 0, .. }),
                "{url}: {error:?}"
            );
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains("secret"), "{shown}");
                assert!(!shown.contains("user"), "{shown}");
            }
        }
        let error = refused(Cache::builder().redis_cluster([
            "redis://127.0.0.1:7000/",
            "redis://user:secret@127.0.0.1:99999999/",
        ]));
        assert!(
            matches!(error, BuildError::RedisUrl { position: 1, .. }),
            "{error:?}"
        );
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("secret"), "{shown}");
        }
    }
}
