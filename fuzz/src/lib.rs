//! uwgate's fuzz harness as a library for the libFuzzer targets in `fuzz_targets/`. The harness
//! itself is `harness.rs`, which `tests/fuzz_corpus.rs` in the main crate also includes, so the
//! corpus replay in `make test` runs the same checks as `make fuzz`.

pub mod harness;

pub use harness::*;
