//! libFuzzer target `realip`: see `uwgate_fuzz::harness::realip` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::realip(data));
