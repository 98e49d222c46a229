//! libFuzzer target `chunked`: see `uwgate_fuzz::harness::chunked` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::chunked(data));
