//! The stored-response model: what the layer keeps in the cache and what a stored response may
//! be used for.
//!
//! - `response`: [`CachedResponse`], a stored response with the times its age is computed
//!   from; [`Usability`], what it may be used for; how a `304` selects and updates it.
//! - `served`: [`ServedHeaders`], its headers as hits serve them, with `Age` and
//!   `Cache-Status` slots.
//! - `variants`: [`Variants`], a URL's record of `Vary` variants, and the [`Uncacheable`]
//!   marker.
//! - `compact` and `interned`: a stored response holds only its own bytes, and the values
//!   that repeat across responses once.
//! - `weight`: what a stored response costs the memory budget.
//! - `shared`: its shared form, the bytes written to Redis and read back.

mod compact;
mod interned;
mod response;
mod served;
pub(crate) mod shared;
mod variants;
mod weight;

pub(crate) use response::{lifetime_of, CachedResponse, Usability};
#[cfg(feature = "grpc")]
pub(crate) use served::ServedHeaders;
pub(crate) use variants::{Uncacheable, Variants};
