//! libFuzzer target `path`: see `uwgate_fuzz::harness::path` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::path(data));
