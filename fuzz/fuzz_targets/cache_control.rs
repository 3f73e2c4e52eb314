//! Fuzz target: the cache-control parser must never panic on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cache_layer::__fuzz::cache_control(data);
});
