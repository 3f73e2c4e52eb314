//! Where entries live: [`MemoryStore`] in process, [`RedisStore`] shared between instances,
//! and the tiered set-up of both ([`Remote`]).

mod breaker;
pub(crate) mod codec;
mod front;
mod memory;
mod pending;
mod redis;
mod tiered;

pub(crate) use self::redis::{RedisConfig, RedisStore, SharedSince};
pub(crate) use memory::{MemoryStore, ENTRY_OVERHEAD};
pub(crate) use pending::Queued;
pub(crate) use tiered::Remote;
