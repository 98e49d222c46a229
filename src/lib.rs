//! uwgate: nginx-grade static files, uwsgi forwarding and a supervisor-style watchdog in one
//! process, one thread, one mio event loop, with memory fixed at start.
//!
//! Layering (dependencies point one way): `sys` ← `event` ← `server` ← `gate`, with `server`
//! using the handlers {`static_files`, `upstream`} and the codecs `http`; `watchdog` beside
//! `server`, driven by the same loop; `config` is read by all and written by none at run time.

// The non-negotiables made mechanical: no panicking shortcut, no unchecked index or slice (a
// bad offset is a `None`, never an abort), and every `unsafe` block says why it is sound. Tests
// may panic: that is how they fail.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod control;
pub mod event;
pub mod gate;
pub mod handoff;
pub mod http;
pub mod logging;
pub mod server;
pub mod sort;
pub mod static_files;
pub mod sys;
pub mod upstream;
pub mod watchdog;

use std::sync::atomic::{AtomicBool, Ordering};

/// uwgate's version as a string literal (for `concat!`): Cargo's, with `+upgrade-test` in a
/// build with the `upgrade-test` feature, the in-place upgrade tests' "next version".
#[cfg(not(feature = "upgrade-test"))]
#[macro_export]
macro_rules! version {
    () => {
        env!("CARGO_PKG_VERSION")
    };
}

/// uwgate's version as a string literal (for `concat!`): Cargo's, with `+upgrade-test` in a
/// build with the `upgrade-test` feature, the in-place upgrade tests' "next version".
#[cfg(feature = "upgrade-test")]
#[macro_export]
macro_rules! version {
    () => {
        concat!(env!("CARGO_PKG_VERSION"), "+upgrade-test")
    };
}

/// uwgate's version: `--version`, `Server:`, the start and upgrade log lines, the status page.
pub const VERSION: &str = version!();

static STDERR_LOGGING: AtomicBool = AtomicBool::new(false);

/// Whether `-f` asked for logs on stderr too (kept for reloads).
pub fn stderr_logging() -> bool {
    STDERR_LOGGING.load(Ordering::Relaxed)
}

/// Records the `-f` choice.
pub fn set_stderr_logging(on: bool) {
    STDERR_LOGGING.store(on, Ordering::Relaxed);
}

/// The logging settings a config asks for.
pub fn log_settings(cfg: &config::Config, stderr: bool) -> logging::LogSettings {
    let g = &cfg.global;
    let target = match &g.syslog {
        config::SyslogTarget::Unix(p) => logging::Target::Unix(p.clone()),
        config::SyslogTarget::Udp(a) => logging::Target::Udp(*a),
        config::SyslogTarget::Stderr => logging::Target::Stderr,
    };
    logging::LogSettings {
        target,
        facility: g.syslog_facility,
        tag: g.syslog_tag.clone(),
        access_tag: g.access_log_tag.clone(),
        level: g.error_log_level,
        stderr,
    }
}
