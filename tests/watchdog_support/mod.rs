//! Shared harness for the `watchdog_*` integration tests: the real `uwgate` binary supervising
//! real processes, observed from outside through its stderr log and `/proc`.
//!
//! Owns: [`Gate`] (a `common::Server` whose `[program:x]` sections all carry a unique
//! environment marker, so every descendant — grandchildren included — can be found in
//! `/proc/*/environ` and killed by pid if uwgate fails to), an incremental reader of uwgate's
//! stderr ([`LogTail`]) for timing transitions, `/proc` scans (children, zombies, process
//! groups, markers), a tiny non-panicking HTTP/1.0 GET, and the end-of-test check
//! ([`Gate::finish`]: no zombie, SIGTERM, exit 0, no descendant left).
//!
//! Must never hang (every wait is bounded) and never signal a process it cannot tie to the
//! test: only pids found carrying this test's marker, or read from uwgate's own log.
//!
//! Test files include it after `common`:
//! `#[path = "common/mod.rs"] mod common;` then
//! `#[path = "watchdog_support/mod.rs"] mod watchdog_support;`
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{self, Server, TempTree};

/// Name of the environment variable every supervised process carries.
pub const MARK_VAR: &str = "UWGATE_WD_MARK";

/// Bound on uwgate's graceful stop in [`Gate::finish`] (programs here stop in well under it).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A python3 to run test scripts with: the system one (fast start) when present.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

static MARK_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A string no other process on the machine carries: test pid, counter, nanoseconds.
pub fn unique_mark(name: &str) -> String {
    let n = MARK_COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("wd-{}-{}-{}-{}", name, std::process::id(), n, nanos)
}

/// A number-only unique marker (for argv positions that must stay numeric, like `sleep`'s).
pub fn unique_digits() -> String {
    let n = MARK_COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}{:03}{:09}", std::process::id(), n % 1000, nanos)
}

// ---------------------------------------------------------------------------------------------
// ini
// ---------------------------------------------------------------------------------------------

/// A complete ini: `common::ini` (stderr logging, a `[server]` on `127.0.0.1:{PORT}`) with a
/// static `/static/` location (the harness waits for the port, so one must be bound), then
/// `sections` (`[program:x]`, more locations). `{PY}` is replaced by [`python`].
pub fn gate_ini(sections: &str) -> String {
    gate_ini_with("", sections)
}

/// [`gate_ini`] with `global_extra` lines in `[uwgate]`.
pub fn gate_ini_with(global_extra: &str, sections: &str) -> String {
    common::ini(
        global_extra,
        &format!(
            "[location:/static/]\nalias = {{DIR}}/static/\n\n{}",
            sections.replace("{PY}", python())
        ),
    )
}

/// Adds `UWGATE_WD_MARK="mark"` to every `[program:x]` section: prepended to an existing
/// `environment` line, else added as one right after the header.
pub fn mark_programs(ini: &str, mark: &str) -> String {
    let entry = format!("{}=\"{}\"", MARK_VAR, mark);
    let lines: Vec<&str> = ini.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        out.push_str(line);
        out.push('\n');
        i += 1;
        if !line.trim_start().starts_with("[program:") {
            continue;
        }
        // The section's lines, up to the next header.
        let end = (i..lines.len())
            .find(|&j| lines[j].trim_start().starts_with('['))
            .unwrap_or(lines.len());
        let has_env = lines[i..end].iter().any(|l| is_key(l, "environment"));
        if !has_env {
            out.push_str(&format!("environment = {}\n", entry));
        }
        for l in &lines[i..end] {
            if is_key(l, "environment") {
                let value = l.split_once('=').map(|(_, v)| v.trim()).unwrap_or("");
                out.push_str(&format!("environment = {},{}\n", entry, value));
            } else {
                out.push_str(l);
                out.push('\n');
            }
        }
        i = end;
    }
    out
}

fn is_key(line: &str, key: &str) -> bool {
    line.split_once('=')
        .is_some_and(|(k, _)| k.trim() == key && !line.trim_start().starts_with([';', '#']))
}

// ---------------------------------------------------------------------------------------------
// The gate
// ---------------------------------------------------------------------------------------------

/// A running uwgate supervising marked programs. Dropping it stops uwgate (the harness's
/// SIGTERM, then SIGKILL), then SIGKILLs by pid anything still carrying the marker, then
/// removes the tree.
pub struct Gate {
    /// The uwgate process (dropped first).
    pub server: Server,
    sweeper: Sweeper,
    /// The tree `{DIR}` stands for (dropped last).
    pub tree: TempTree,
    /// This gate's marker, in every supervised process's environment.
    pub mark: String,
}

impl Gate {
    /// Starts uwgate on `gate_ini(sections)` (marked) in a fresh tree named `name`, after
    /// `setup` wrote whatever the programs need into the tree. `/static/ok.txt` exists.
    pub fn start(name: &str, sections: &str, setup: impl FnOnce(&TempTree)) -> Gate {
        Gate::start_with(name, &gate_ini(sections), |t| {
            setup(t);
            None
        })
    }

    /// [`Gate::start`] with `global_extra` lines in `[uwgate]` (`control_socket = …`).
    pub fn start_with_global(
        name: &str,
        global_extra: &str,
        sections: &str,
        setup: impl FnOnce(&TempTree),
    ) -> Gate {
        Gate::start_with(name, &gate_ini_with(global_extra, sections), |t| {
            setup(t);
            None
        })
    }

    /// [`Gate::start`] on a whole ini template (marked here), whose `setup` may return a binary
    /// to run instead of the one under test (the in-place upgrade tests run a copy they replace).
    pub fn start_with(
        name: &str,
        ini: &str,
        setup: impl FnOnce(&TempTree) -> Option<PathBuf>,
    ) -> Gate {
        let tree = TempTree::new(name);
        tree.write("static/ok.txt", "ok\n");
        let binary = setup(&tree);
        let mark = unique_mark(name);
        let sweeper = Sweeper { mark: mark.clone() };
        let ini = mark_programs(ini, &mark);
        let server = match binary {
            Some(bin) => Server::start_binary_in(&tree, &bin, &ini),
            None => Server::start_in(&tree, &ini),
        };
        Gate {
            server,
            sweeper,
            tree,
            mark,
        }
    }

    /// uwgate's pid.
    pub fn pid(&self) -> i32 {
        self.server.pid()
    }

    /// Everything uwgate wrote so far.
    pub fn log(&self) -> String {
        self.server.stderr()
    }

    /// The stderr capture file (the harness names it after the port).
    pub fn log_path(&self) -> PathBuf {
        self.tree
            .join(&format!("uwgate-{}.stderr", self.server.port))
    }

    /// A reader of the log from its current end.
    pub fn tail(&self) -> LogTail {
        LogTail::open(&self.log_path(), true)
    }

    /// A reader of the log from its beginning.
    pub fn tail_from_start(&self) -> LogTail {
        LogTail::open(&self.log_path(), false)
    }

    /// Polls the log until it contains `needle`; panics with the log after `timeout`.
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        if !self.server.wait_stderr_contains(needle, timeout) {
            panic!(
                "no {:?} in uwgate's log within {:?}; log:\n{}",
                needle,
                timeout,
                self.log()
            );
        }
    }

    /// Polls until `name` has been spawned `n` times; returns the pids of its spawns, in order.
    pub fn expect_spawns(&self, name: &str, n: usize, timeout: Duration) -> Vec<u32> {
        let ok = common::wait_until(timeout, || spawned_pids(&self.log(), name).len() >= n);
        let log = self.log();
        assert!(
            ok,
            "'{}' spawned {} time(s), expected {} within {:?}; log:\n{}",
            name,
            spawned_pids(&log, name).len(),
            n,
            timeout,
            log
        );
        spawned_pids(&log, name)
    }

    /// The pid of the latest spawn of `name` (panics if there was none).
    pub fn last_pid(&self, name: &str) -> u32 {
        let log = self.log();
        *spawned_pids(&log, name)
            .last()
            .unwrap_or_else(|| panic!("'{}' never spawned; log:\n{}", name, log))
    }

    /// Rewrites the ini with new sections (marked the same way) and sends SIGHUP.
    pub fn reload(&self, sections: &str) {
        self.server
            .rewrite_ini(&mark_programs(&gate_ini(sections), &self.mark));
        self.server.signal(libc::SIGHUP);
    }

    /// Live (non-zombie) processes carrying this gate's marker.
    pub fn marked(&self) -> Vec<Proc> {
        marked_processes(&self.mark)
    }

    /// Panics if a child of uwgate stays a zombie: a zombie seen now must be gone 300 ms later
    /// (a child that just died is a zombie for the instant before uwgate reaps it).
    pub fn assert_no_zombies(&self) {
        let first = zombies_of(self.pid());
        if first.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
        let second = zombies_of(self.pid());
        let stuck: Vec<&Proc> = second.iter().filter(|z| first.contains(z)).collect();
        assert!(
            stuck.is_empty(),
            "zombie children of uwgate (pid {}) not reaped after 300 ms: {:?}; log:\n{}",
            self.pid(),
            stuck,
            self.log()
        );
    }

    /// The end of every test: no zombie; SIGTERM; uwgate exits 0 within [`STOP_TIMEOUT`];
    /// no process carrying the marker is left. Returns the whole log.
    pub fn finish(mut self) -> String {
        self.assert_no_zombies();
        assert!(
            self.server.is_running(),
            "uwgate died during the test; log:\n{}",
            self.log()
        );
        self.server.signal(libc::SIGTERM);
        let status = self.server.wait_exit(STOP_TIMEOUT);
        let log = self.log();
        let Some(status) = status else {
            panic!(
                "uwgate did not exit within {:?} of SIGTERM; live marked processes: {:?}; log:\n{}",
                STOP_TIMEOUT,
                self.marked(),
                log
            );
        };
        assert_eq!(
            status.code(),
            Some(0),
            "uwgate's exit after SIGTERM: {}; log:\n{}",
            status,
            log
        );
        let left = self.marked();
        assert!(
            left.is_empty(),
            "processes left behind after uwgate exited: {:?}; log:\n{}",
            left,
            log
        );
        log
    }
}

/// Kills, by pid, whatever still carries the marker when a test ends (passed or failed).
struct Sweeper {
    mark: String,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        for _ in 0..3 {
            let left = marked_processes(&self.mark);
            if left.is_empty() {
                return;
            }
            for p in left {
                kill(p.pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

/// Pids of `spawned: 'NAME' with pid N` lines, in log order.
pub fn spawned_pids(log: &str, name: &str) -> Vec<u32> {
    let needle = format!("spawned: '{}' with pid ", name);
    log.lines()
        .filter_map(|l| l.split_once(&needle))
        .filter_map(|(_, rest)| rest.trim().parse().ok())
        .collect()
}

/// Lines of `log` containing `needle`.
pub fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// Index of the first line containing `needle`.
pub fn line_index(log: &str, needle: &str) -> Option<usize> {
    log.lines().position(|l| l.contains(needle))
}

/// Reads complete lines appended to a file, each with the instant it was first seen: the
/// time base for transitions (stderr timestamps have whole seconds only).
pub struct LogTail {
    file: fs::File,
    partial: Vec<u8>,
    /// Lines read from the file but not yet handed out.
    queued: std::collections::VecDeque<(Instant, String)>,
}

impl LogTail {
    /// Opens `path`, positioned at its end when `from_end`.
    pub fn open(path: &Path, from_end: bool) -> LogTail {
        let mut file = fs::File::open(path).expect("open uwgate's stderr file");
        if from_end {
            file.seek(SeekFrom::End(0)).expect("seek");
        }
        LogTail {
            file,
            partial: Vec::new(),
            queued: std::collections::VecDeque::new(),
        }
    }

    /// Reads what was appended, queueing complete lines stamped now.
    fn fill(&mut self) {
        let now = Instant::now();
        let mut buf = Vec::new();
        let _ = self.file.read_to_end(&mut buf);
        self.partial.extend_from_slice(&buf);
        let mut start = 0;
        while let Some(off) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.partial[start..start + off]).into_owned();
            self.queued.push_back((now, line));
            start += off + 1;
        }
        self.partial.drain(..start);
    }

    /// Complete lines appended since the last call (and any still queued).
    pub fn poll(&mut self) -> Vec<String> {
        self.fill();
        self.queued.drain(..).map(|(_, l)| l).collect()
    }

    /// Polls every `every` for `window`, returning every line with the instant it was seen.
    pub fn collect_for(&mut self, window: Duration, every: Duration) -> Vec<(Instant, String)> {
        let end = Instant::now() + window;
        loop {
            self.fill();
            if Instant::now() >= end {
                return self.queued.drain(..).collect();
            }
            std::thread::sleep(every);
        }
    }

    /// Polls every `every` until a line contains `needle` (returned with when it was seen; the
    /// lines before it are appended to `seen`, the lines after it stay queued for the next
    /// call) or `timeout` passes.
    pub fn wait_for(
        &mut self,
        needle: &str,
        timeout: Duration,
        every: Duration,
        seen: &mut Vec<(Instant, String)>,
    ) -> Option<(Instant, String)> {
        let end = Instant::now() + timeout;
        loop {
            while let Some((at, line)) = self.queued.pop_front() {
                if line.contains(needle) {
                    return Some((at, line));
                }
                seen.push((at, line));
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(every);
            self.fill();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// What `/proc/PID/stat` says of a process (pid and start time identify it across pid reuse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub starttime: u64,
}

/// `/proc/PID/stat`, or `None` when the process is gone.
pub fn stat(pid: i32) -> Option<Proc> {
    let text = fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] = state (field 3), rest[1] = ppid, rest[2] = pgrp, rest[19] = starttime (22).
    Some(Proc {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every process whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<Proc> {
    all_pids()
        .into_iter()
        .filter_map(stat)
        .filter(|p| p.ppid == ppid)
        .collect()
}

/// Children of `ppid` through `/proc/PID/task/PID/children` (cheap: for tight polling),
/// falling back to a scan.
pub fn child_pids(ppid: i32) -> Vec<i32> {
    match fs::read_to_string(format!("/proc/{0}/task/{0}/children", ppid)) {
        Ok(text) => text
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect(),
        Err(_) => children_of(ppid).into_iter().map(|p| p.pid).collect(),
    }
}

/// Zombie children of `ppid`.
pub fn zombies_of(ppid: i32) -> Vec<Proc> {
    children_of(ppid)
        .into_iter()
        .filter(|p| p.state == 'Z')
        .collect()
}

/// Live (non-zombie) members of process group `pgrp`.
pub fn group_members(pgrp: i32) -> Vec<Proc> {
    all_pids()
        .into_iter()
        .filter_map(stat)
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|p| p.state != 'Z')
}

/// Live processes with `UWGATE_WD_MARK=mark` in their environment (a zombie has none left).
pub fn marked_processes(mark: &str) -> Vec<Proc> {
    let needle = format!("{}={}", MARK_VAR, mark).into_bytes();
    all_pids()
        .into_iter()
        .filter(|&pid| {
            fs::read(format!("/proc/{}/environ", pid))
                .map(|env| env.split(|&b| b == 0).any(|v| v == &needle[..]))
                .unwrap_or(false)
        })
        .filter_map(stat)
        .filter(|p| p.state != 'Z')
        .collect()
}

/// Live processes whose command line contains `marker`.
pub fn with_argv(marker: &str) -> Vec<Proc> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            fs::read(format!("/proc/{}/cmdline", pid))
                .map(|c| common::find(&c, marker.as_bytes()).is_some())
                .unwrap_or(false)
        })
        .filter_map(stat)
        .filter(|p| p.state != 'Z')
        .collect()
}

/// `kill(pid, sig)`; refuses pids below 2 (never the whole system, never init).
pub fn kill(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill(2) on a single positive pid the test tied to itself.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// `GET path HTTP/1.0` to 127.0.0.1:port: `Some((status, body))`, or `None` on any failure
/// (refused, reset, timeout, garbage). Never panics: for polling a server that may be down.
pub fn try_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, Vec<u8>)> {
    let addr = format!("127.0.0.1:{}", port).parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {} HTTP/1.0\r\nHost: localhost\r\n\r\n", path).as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let head_end = common::find(&out, b"\r\n\r\n")?;
    let status_line = std::str::from_utf8(&out[..head_end]).ok()?.lines().next()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out[head_end + 4..].to_vec()))
}

// ---------------------------------------------------------------------------------------------
// Scripts the programs run
// ---------------------------------------------------------------------------------------------

/// `pid_server.py PORT`: an HTTP server on 127.0.0.1:PORT answering every GET with its pid.
pub const PID_SERVER_PY: &str = r#"import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

/// The median of `xs` (sorted copy; mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
