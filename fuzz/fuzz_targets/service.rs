//! Fuzz target: the whole `CacheService`, driven with request heads and origin answers decoded
//! from the input; it must never panic, and no reply may break the storage rules (checked by
//! `__fuzz::service`, which panics on a `Cache-Tag` reaching a client, a `Set-Cookie` that
//! answered another request, or one on a hit).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cache_layer::__fuzz::service(data);
});
