//! Fuzz target: the etag parser must never panic on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cache_layer::__fuzz::etag_list(data);
});
