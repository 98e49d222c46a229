//! libFuzzer target `config`: see `uwgate_fuzz::harness::config` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| uwgate_fuzz::config(data));
