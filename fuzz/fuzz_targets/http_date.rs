//! Fuzz target: the http-date parser must never panic on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cache_layer::__fuzz::http_date(data);
});
