//! Shared harness for the in-place upgrade tests (`upgrade.rs`, `control_upgrade.rs`): the
//! "next version" (the `upgrade-test` build, `make upgrade-test-bin`, which reports
//! `VERSION+upgrade-test`), and installing a binary over the one a test's uwgate runs from, as
//! a package does.
//!
//! Include after `common`. Never leaves a build half done: a failed build fails the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::common;

/// The version the `upgrade-test` build reports.
pub fn next_version() -> String {
    format!("{}+upgrade-test", common::version())
}

/// The `upgrade-test` build: `$UWGATE_UPGRADE_BIN` (make test passes it), else built here
/// into `out/upgrade-test` (once per test process; a no-op when it is up to date).
pub fn next_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("UWGATE_UPGRADE_BIN").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target_dir = root.join("out").join("upgrade-test");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--locked",
                "--features",
                "upgrade-test",
            ])
            .args(["--target", "x86_64-unknown-linux-musl"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env(
                "RUSTFLAGS",
                "-C target-cpu=x86-64 -C target-feature=+crt-static -C relocation-model=static",
            )
            .current_dir(&root)
            .status()
            .expect("run cargo build --features upgrade-test");
        assert!(status.success(), "building the upgrade-test binary failed");
        target_dir.join("x86_64-unknown-linux-musl/release/uwgate")
    })
    .clone()
}

/// Replaces the binary at `installed` with `new` as a package does: a new file, renamed over.
pub fn install(installed: &Path, new: &Path) {
    let tmp = installed.with_extension("new");
    std::fs::copy(new, &tmp).expect("copy the new binary");
    // A child forked by another test thread while the copy was open for writing holds
    // that descriptor until it execs; executing the file meanwhile fails with ETXTBSY.
    std::thread::sleep(Duration::from_millis(100));
    std::fs::rename(&tmp, installed).expect("rename over the installed binary");
}
