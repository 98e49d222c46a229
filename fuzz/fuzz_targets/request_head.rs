//! libFuzzer target `request_head`: see `uwgate_fuzz::harness::request_head` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::request_head(data));
