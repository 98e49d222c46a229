//! libFuzzer target `range`: see `uwgate_fuzz::harness::range` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::range(data));
