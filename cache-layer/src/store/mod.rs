//! Where entries live. Today: [`MemoryStore`], in process.

mod memory;

pub(crate) use memory::{MemoryStore, ENTRY_OVERHEAD};
