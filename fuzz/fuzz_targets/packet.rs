//! libFuzzer target `packet`: see `uwgate_fuzz::harness::packet` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::packet(data));
