//! Where entries live: [`MemoryStore`] in process, [`RedisStore`] shared between instances,
//! and the tiered set-up of both ([`SharedTier`]).

mod breaker;
pub(crate) mod codec;
mod memory;
mod queued;
mod redis;
mod shared_tier;
mod thread_copies;

pub(crate) use self::redis::{RedisConfig, RedisStore, SharedSince};
pub(crate) use memory::{MemoryStore, ENTRY_OVERHEAD};
pub(crate) use queued::Queued;
pub(crate) use shared_tier::SharedTier;
