//! The guide, a chapter per concept. The chapters hold no code: each is a page of prose and
//! examples, kept in a Markdown file beside this one (`cached.md` and `invalidates.md` there
//! are the macros' reference, on [`cached`](macro@crate::cached) and
//! [`invalidates`](macro@crate::invalidates)).

#[doc = include_str!("keys.md")]
pub mod keys {}

#[doc = include_str!("lifetimes.md")]
pub mod lifetimes {}

#[doc = include_str!("by_hand.md")]
pub mod by_hand {}

#[doc = include_str!("sharing.md")]
pub mod sharing {}

#[doc = include_str!("soft_purge.md")]
pub mod soft_purge {}

#[doc = include_str!("redis_layout.md")]
pub mod redis_layout {}

#[doc = include_str!("http.md")]
pub mod http {}

#[doc = include_str!("grpc.md")]
pub mod grpc {}

#[doc = include_str!("traces.md")]
pub mod traces {}

#[doc = include_str!("testing.md")]
pub mod testing {}
