//! Where entries live: [`MemoryStore`] in process, [`RedisStore`] shared between instances,
//! and the tiered set-up of both ([`SharedTier`]). Without the `redis` feature,
//! `no_shared_tier` stands in for the shared tier's types: none of them has a value.

#[cfg(feature = "redis")]
mod breaker;
pub(crate) mod codec;
#[cfg(feature = "redis")]
mod compress;
mod memory;
#[cfg(not(feature = "redis"))]
mod no_shared_tier;
#[cfg(feature = "redis")]
mod queued;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod shared_tier;
mod thread_copies;

pub(crate) use memory::{MemoryStore, ENTRY_OVERHEAD};
#[cfg(not(feature = "redis"))]
pub(crate) use no_shared_tier::{Queued, SharedSince, SharedTier};
#[cfg(feature = "redis")]
pub(crate) use queued::Queued;
#[cfg(feature = "redis")]
pub use redis::RedisSource;
#[cfg(feature = "redis")]
pub(crate) use redis::{RedisConfig, RedisStore, SharedSince};
#[cfg(feature = "redis")]
pub(crate) use shared_tier::SharedTier;
