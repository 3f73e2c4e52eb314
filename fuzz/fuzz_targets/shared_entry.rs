//! Fuzz target: bytes read from Redis under a response's key (another instance's entry, or
//! anyone's garbage) must decode or be refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cache_layer::__fuzz::shared_entry(data);
});
