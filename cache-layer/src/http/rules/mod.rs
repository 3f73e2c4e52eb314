//! The HTTP caching rules as pure functions: header parsing (`cache_control`, `etag`,
//! `freshness`, `targeted` for RFC 9213 fields, `vary`, `field`), what may be stored
//! (`storable`, and `gate`, the one storage gate), precondition evaluation (`conditional`),
//! byte ranges (`range`) and keys (`key`).

pub(crate) mod cache_control;
pub(crate) mod conditional;
pub(crate) mod etag;
pub(crate) mod field;
pub(crate) mod freshness;
pub(crate) mod gate;
pub(crate) mod key;
pub(crate) mod range;
pub(crate) mod storable;
pub(crate) mod targeted;
pub(crate) mod vary;
