//! Shared harness for the control socket tests: runs `uwgate ctl` (as root, or as another uid
//! through `setpriv`) against a running uwgate, bounded, and loads it with keep-alive clients
//! while it is reloaded or restarted, counting every request that does not come back 200.
//!
//! Include after `common` and `watchdog_support`. Never hangs: every run and every read is
//! bounded; a stuck `ctl` is killed.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;

/// `[uwgate]` lines that give a gate its control socket in its tree.
pub const CONTROL_GLOBAL: &str = "control_socket = {DIR}/ctl.sock\n";

/// What one `uwgate ctl` run gave.
#[derive(Debug)]
pub struct Ctl {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Ctl {
    /// The output's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.out.lines().collect()
    }
}

/// Runs `uwgate ctl -c INI ARGS…` to completion (60 s at most).
pub fn ctl(ini: &Path, args: &[&str]) -> Ctl {
    let mut cmd = Command::new(common::uwgate_bin());
    cmd.arg("ctl").arg("-c").arg(ini).args(args);
    run(cmd, Duration::from_secs(60))
}

/// Runs `uwgate ctl -s SOCKET ARGS…` as `uid`/`gid` with supplementary `groups`
/// (`setpriv --reuid --regid --groups|--clear-groups`).
pub fn ctl_as(uid: u32, gid: u32, groups: &[u32], socket: &Path, args: &[&str]) -> Ctl {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg(common::uwgate_bin())
        .arg("ctl")
        .arg("-s")
        .arg(socket)
        .args(args);
    run(cmd, Duration::from_secs(30))
}

fn run(mut cmd: Command, limit: Duration) -> Ctl {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn uwgate ctl");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("uwgate ctl did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ctl {
        code: status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        err: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// The status line of `name` in `ctl status` output, split into (state, description).
pub fn status_of(out: &str, name: &str) -> Option<(String, String)> {
    out.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        if !rest.starts_with(' ') {
            return None;
        }
        let rest = rest.trim_start();
        let state = rest.split_whitespace().next()?.to_string();
        let desc = rest.get(state.len()..)?.trim().to_string();
        Some((state, desc))
    })
}

/// The pid in a RUNNING description (`pid 19728, uptime 0:00:17`).
pub fn pid_in(desc: &str) -> Option<u32> {
    desc.strip_prefix("pid ")?.split(',').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// Requests sent while something was done to the app, and the ones that failed.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    /// The first few failures, for the assertion message.
    pub samples: Vec<String>,
}

/// A wrk-style load: `clients` threads, each on a keep-alive connection (reconnecting when
/// the server closes it between requests), sending `GET path` until stopped. A request fails
/// when its answer is not a complete 200 (502, 504, reset, timeout, close before the answer).
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    samples: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16, path: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed, samples) =
                    (stop.clone(), ok.clone(), failed.clone(), samples.clone());
                let path = path.to_string();
                std::thread::spawn(move || {
                    client_loop(port, &path, &stop, &ok, &failed, &samples);
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            samples,
            threads,
        }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stops the clients (each finishes its request in flight) and counts.
    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        Tally {
            ok: self.ok.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            samples: self.samples.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }
}

fn client_loop(
    port: u16,
    path: &str,
    stop: &AtomicBool,
    ok: &AtomicU64,
    failed: &AtomicU64,
    samples: &Mutex<Vec<String>>,
) {
    let fail = |what: String| {
        failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut s) = samples.lock() {
            if s.len() < 10 {
                s.push(what);
            }
        }
    };
    let mut conn: Option<TcpStream> = None;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    while !stop.load(Ordering::SeqCst) {
        let mut s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(90)));
                    s
                }
                Err(e) => {
                    fail(format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        if let Err(e) = s.write_all(request.as_bytes()) {
            fail(format!("sending: {e}"));
            continue;
        }
        match read_answer(&mut s) {
            Ok((200, keep)) => {
                ok.fetch_add(1, Ordering::SeqCst);
                if keep {
                    conn = Some(s);
                }
            }
            Ok((status, _)) => fail(format!("status {status}")),
            Err(e) => fail(e),
        }
    }
}

/// Reads one answer: (status, keep-alive). Needs a Content-Length body (Django's answers have
/// one).
fn read_answer(s: &mut TcpStream) -> Result<(u16, bool), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = common::find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("bad status line")?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s
                    .read(&mut chunk)
                    .map_err(|e| format!("reading the body: {e}"))?;
                if n == 0 {
                    return Err("closed in the body".to_string());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let keep = !head.contains("connection: close");
            return Ok((status, keep));
        }
        let n = s.read(&mut chunk).map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "closed before the answer".to_string()
            } else {
                "closed in the head".to_string()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
