//! libFuzzer target `upstream_response`: see `uwgate_fuzz::harness::upstream_response` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::upstream_response(data));
