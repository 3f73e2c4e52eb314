//! The README's examples, compiled as doctests (`cargo test --doc`): the root package's library
//! holds nothing else, so that the published `cache-layer` crate includes no file from outside
//! its own folder.

/// The README's examples.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
