//! Test-only code of the HTTP layer: the fuzz targets' entry points (`fuzz`, with the whole
//! service driven by fuzzer bytes in `fuzz_service`), compiled for fuzzing and tests; parsers
//! fed pseudo-random bytes (`smoke`); and storability and freshness compared with the
//! `http-cache-semantics` crate (`differential`).

#[cfg(test)]
mod differential;
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub mod fuzz;
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
mod fuzz_service;
#[cfg(test)]
mod smoke;
