//! The HTTP layer: a client connection's state machine (`conn`), routing (`router`), answering
//! a parsed head (`dispatch`: static files, stub_status, errors, or forwarding), the status
//! page (`status`) and the access log line (`access_log`).
//!
//! Owns everything about one client connection and its requests. Uses the codecs (`http`), the
//! handlers (`static_files`, the proxy core `upstream` with its `uwsgi` codec) and the loop's
//! machinery (`event`); the loop (`gate`) drives it. Never: polls, handles signals, or reaches
//! into the loop's tables beyond what a call lends it.

pub mod access_log;
pub mod conn;
pub mod dispatch;
pub mod health;
pub mod realip;
pub mod router;
pub mod status;

use crate::config::Config;
use crate::static_files::cache::FileCache;
use crate::static_files::FsPath;
use router::Router;
use std::cell::RefCell;
use std::ffi::CStr;
use std::time::Instant;

/// Connection counters, kept by the loop, read by stub_status.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub accepts: u64,
    pub handled: u64,
    pub requests: u64,
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
    /// Connections closed to free a buffer for another (see `gate`'s eviction).
    pub evicted: u64,
    /// Requests waiting for their location's program (`uwsgi_program`) to be RUNNING; counted
    /// in stub_status's Writing too.
    pub awaiting_program: u64,
}

/// A canonical request path (decoded, dot segments resolved) is at most this long.
pub const URI_MAX: usize = 4096;

/// The loop's buffer for a request's canonical path, reused rather than zeroed per request.
pub type UriBuf = RefCell<[u8; URI_MAX]>;

/// What the loop lends a connection while it runs: the shared, read-only parts.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub router: &'a Router,
    pub date: &'a [u8; 29],
    pub now: Instant,
    pub unix: i64,
    pub stats: Stats,
    /// Input may fill `buf[..head_limit]`; the output region is `buf[head_limit..]`.
    pub head_limit: usize,
    /// Answers close their connection (a graceful stop, or draining before one).
    pub stopping: bool,
    /// `health` locations answer 503: a graceful stop or an upgrade began, and balancers
    /// should take this box out (see `Gate::set_draining`).
    pub draining: bool,
    /// The supervised programs, for the JSON status page.
    pub watchdog: &'a crate::watchdog::Watchdog,
    /// The open-file cache.
    pub files: &'a RefCell<FileCache>,
    /// The loop's buffers for a canonical path and a filesystem path.
    pub uri_buf: &'a UriBuf,
    pub fs_path: &'a FsPath,
    /// `temp_path`, ready for open(2).
    pub temp_dir: &'a CStr,
    /// The preallocated multipart/byteranges states.
    pub multiparts: &'a crate::static_files::body::Multiparts,
}
