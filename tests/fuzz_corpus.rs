//! Fuzz corpus replay: every file under `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/`
//! goes through the same harness function the libFuzzer target `TARGET` runs
//! (`fuzz/src/harness.rs`, included here), so every invariant `make fuzz` checked is checked
//! again by `make test`, and an input that once failed (kept, named, in `fuzz/regressions`)
//! stays fixed. Needs no binary, network or Python.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Runs every corpus file of `target` through its harness; fails naming each file that panics.
fn replay(target: &str) {
    let (_, run) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no harness named {target}"));
    let dir = corpus().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    assert!(!files.is_empty(), "{} holds no corpus", dir.display());
    let regressions = corpus().with_file_name("regressions").join(target);
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        files.extend(entries.map(|entry| entry.expect("a directory entry").path()));
    }
    files.sort();
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} corpus files fail:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn request_head_corpus_replays_clean() {
    replay("request_head");
}

#[test]
fn chunked_corpus_replays_clean() {
    replay("chunked");
}

#[test]
fn range_corpus_replays_clean() {
    replay("range");
}

#[test]
fn path_corpus_replays_clean() {
    replay("path");
}

#[test]
fn config_corpus_replays_clean() {
    replay("config");
}

#[test]
fn upstream_response_corpus_replays_clean() {
    replay("upstream_response");
}

#[test]
fn packet_corpus_replays_clean() {
    replay("packet");
}

#[test]
fn proxy_protocol_corpus_replays_clean() {
    replay("proxy_protocol");
}

#[test]
fn realip_corpus_replays_clean() {
    replay("realip");
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let mut dirs: Vec<String> = std::fs::read_dir(corpus())
        .expect("fuzz/corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = harness::TARGETS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    targets.sort();
    assert_eq!(dirs, targets);
    for target in &targets {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        assert!(source.exists(), "{} is missing", source.display());
    }
}
