//! libFuzzer target `proxy_protocol`: see `uwgate_fuzz::harness::proxy_protocol` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::proxy_protocol(data));
