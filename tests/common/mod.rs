//! Shared harness for the integration tests: spawns the real `uwgate` binary with a temporary ini
//! and directory tree, and speaks HTTP/1.1 to it over real sockets on 127.0.0.1.
//!
//! Owns: temp trees, the spawned server's lifetime (SIGTERM on drop, SIGKILL after a bound), a
//! small independent HTTP response reader, date helpers and a UDP syslog sink. It must never hang:
//! every wait here has a bound, so a hung server fails the test instead of stalling the suite.
//! It deliberately does not share code with the server (its own response parser, its own date
//! formatting) so a bug in the server cannot hide behind the same bug in the test.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::FromRawFd;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Read timeout of one socket read; a server silent for longer is considered hung.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on how long the server may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The binary under test: `$UWGATE_BIN` if set, else the one cargo built for this package.
pub fn uwgate_bin() -> PathBuf {
    match std::env::var_os("UWGATE_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_uwgate")),
    }
}

/// The crate version, which `Server:` and `--version` must report.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Whether process `pid` holds a TCP socket listening on `port` (from /proc/PID/net/tcp{,6}
/// and the socket inodes among /proc/PID/fd); `None` when /proc cannot tell.
pub fn listens_on(pid: i32, port: u16) -> Option<bool> {
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{}/net/{}", pid, table)) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let fds = fs::read_dir(format!("/proc/{}/fd", pid)).ok()?;
    let held = fds.flatten().any(|e| {
        fs::read_link(e.path())
            .map(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            .unwrap_or(false)
    });
    Some(held)
}

// ---------------------------------------------------------------------------------------------
// Temporary directory trees
// ---------------------------------------------------------------------------------------------

static TREE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique directory, removed (with everything under it) on drop. Always holds `tmp/` for
/// `temp_path`.
pub struct TempTree {
    root: PathBuf,
}

impl TempTree {
    /// A fresh tree named after the test, e.g. `uwgate-test-<pid>-<n>-static_files`.
    pub fn new(name: &str) -> TempTree {
        let base = std::env::temp_dir();
        let n = TREE_COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = base.join(format!(
            "uwgate-test-{}-{}-{}-{}",
            std::process::id(),
            n,
            nanos,
            name
        ));
        fs::create_dir_all(&root).expect("create temp tree");
        // A canonical root so `disable_symlinks` is not tripped by a symlinked temp dir.
        let root = fs::canonicalize(&root).expect("canonicalize temp tree");
        fs::create_dir_all(root.join("tmp")).expect("create tmp/");
        TempTree { root }
    }

    /// The tree's root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `root/rel` (no filesystem access).
    pub fn join(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes `content` to `root/rel`, creating parent directories.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        fs::write(&p, content).expect("write file");
        p
    }

    /// Writes `len` bytes of the deterministic pattern (see [`pattern`]) to `root/rel`.
    pub fn write_pattern(&self, rel: &str, len: usize, seed: u8) -> PathBuf {
        self.write(rel, pattern(len, seed))
    }

    /// Creates directory `root/rel` (and parents).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// Creates a symlink at `root/link` pointing to `target` (taken verbatim: absolute or relative).
    pub fn symlink(&self, target: impl AsRef<Path>, link: &str) -> PathBuf {
        let p = self.root.join(link);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::os::unix::fs::symlink(target.as_ref(), &p).expect("symlink");
        p
    }

    /// Sets the modification time of `root/rel` to `secs` since the epoch.
    pub fn set_mtime(&self, rel: &str, secs: u64) {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(self.root.join(rel))
            .expect("open for set_modified");
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
            .expect("set_modified");
    }

    /// Substitutes `{DIR}` (this tree's root) and `{PORT}` in an ini template.
    pub fn render(&self, template: &str, port: u16) -> String {
        template
            .replace("{DIR}", &self.root.to_string_lossy())
            .replace("{PORT}", &port.to_string())
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Deterministic, non-repeating-looking bytes: byte `i` depends on `i` and `seed`, with a period
/// (251) that never aligns with power-of-two buffer sizes, so a misplaced chunk is detected.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_mul(7).wrapping_add(seed) ^ ((i / 251) as u8))
        .collect()
}

/// The nginx ETag of a file: `"<mtime hex>-<size hex>"`.
pub fn nginx_etag(path: &Path) -> String {
    let md = fs::metadata(path).expect("metadata");
    let mtime = md
        .modified()
        .expect("mtime")
        .duration_since(UNIX_EPOCH)
        .expect("mtime after epoch")
        .as_secs();
    format!("\"{:x}-{:x}\"", mtime, md.len())
}

/// The file's mtime, whole seconds since the epoch.
pub fn mtime_secs(path: &Path) -> u64 {
    fs::metadata(path)
        .expect("metadata")
        .modified()
        .expect("mtime")
        .duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// ini templates
// ---------------------------------------------------------------------------------------------

/// A complete ini: `[uwgate]` with `syslog = stderr`, `temp_path = {DIR}/tmp` plus `global_extra`
/// lines, a `[server]` listening on `127.0.0.1:{PORT}`, then `sections` verbatim.
pub fn ini(global_extra: &str, sections: &str) -> String {
    format!(
        "[uwgate]\nsyslog = stderr\ntemp_path = {{DIR}}/tmp\nerror_log_level = info\n{}\n\n\
         [server]\nlisten = 127.0.0.1:{{PORT}}\nserver_name = localhost\n\n{}\n",
        global_extra, sections
    )
}

/// The common case: `/static/` aliased to `{DIR}/static/`, plus `global_extra` and
/// `location_extra` (keys added to that location).
pub fn static_ini(global_extra: &str, location_extra: &str) -> String {
    ini(
        global_extra,
        &format!(
            "[location:/static/]\nalias = {{DIR}}/static/\n{}\n",
            location_extra
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A running `uwgate -f -c INI`. Dropping it sends SIGTERM, waits (bounded), then SIGKILLs.
pub struct Server {
    child: Option<Child>,
    /// The port substituted for `{PORT}`.
    pub port: u16,
    /// The ini file the server was started with.
    pub ini: PathBuf,
    /// The tree substituted for `{DIR}`.
    pub dir: PathBuf,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
    _own_tree: Option<TempTree>,
}

impl Server {
    /// Starts a server in a tree of its own (`{DIR}` is that tree).
    pub fn start(ini_template: &str) -> Server {
        let tree = TempTree::new("server");
        let mut s = Server::start_in(&tree, ini_template);
        s._own_tree = Some(tree);
        s
    }

    /// Starts a server whose `{DIR}` is `tree`, on a fresh port; panics (with its stderr) if it
    /// does not listen within [`START_TIMEOUT`].
    pub fn start_in(tree: &TempTree, ini_template: &str) -> Server {
        match Server::try_start_in(tree, ini_template) {
            Ok(s) => s,
            Err(e) => panic!("uwgate did not start: {}", e),
        }
    }

    /// Like [`Server::start_in`] but returns the failure (exit status and stderr) as text.
    pub fn try_start_in(tree: &TempTree, ini_template: &str) -> Result<Server, String> {
        // A port can be stolen between free_port() and the server's bind by a parallel test;
        // retry on that one failure mode.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            match Server::spawn(tree, ini_template, port) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    let in_use = e.contains("in use") || e.contains("EADDRINUSE");
                    last = e;
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// [`Server::start_in`] with extra environment variables for the child.
    pub fn start_in_env(tree: &TempTree, ini_template: &str, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        Server::spawn_env(tree, ini_template, port, env)
            .unwrap_or_else(|e| panic!("uwgate did not start: {}", e))
    }

    /// Spawns on the given port.
    pub fn spawn(tree: &TempTree, ini_template: &str, port: u16) -> Result<Server, String> {
        Server::spawn_env(tree, ini_template, port, &[])
    }

    /// Spawns on the given port with extra environment variables.
    pub fn spawn_env(
        tree: &TempTree,
        ini_template: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        Server::spawn_full(tree, ini_template, port, env, None)
    }

    /// [`Server::start_in`] with the child's RLIMIT_NOFILE set to (`soft`, `hard`) before exec,
    /// the hard limit hard even for root (see `limit_nofile`).
    pub fn try_start_in_nofile(
        tree: &TempTree,
        ini_template: &str,
        soft: u64,
        hard: u64,
    ) -> Result<Server, String> {
        Server::spawn_full(tree, ini_template, free_port(), &[], Some((soft, hard)))
    }

    /// Spawns on the given port with extra environment variables and, optionally, the child's
    /// RLIMIT_NOFILE (soft, hard).
    pub fn spawn_full(
        tree: &TempTree,
        ini_template: &str,
        port: u16,
        env: &[(&str, &str)],
        nofile: Option<(u64, u64)>,
    ) -> Result<Server, String> {
        Server::spawn_binary(tree, &uwgate_bin(), ini_template, port, env, nofile)
    }

    /// [`Server::start_in`] running `binary` rather than the binary under test (the in-place
    /// upgrade tests run a copy they can replace, as a package would).
    pub fn start_binary_in(tree: &TempTree, binary: &Path, ini_template: &str) -> Server {
        let mut last = String::new();
        for _ in 0..5 {
            match Server::spawn_binary(tree, binary, ini_template, free_port(), &[], None) {
                Ok(s) => return s,
                Err(e) if e.contains("in use") => last = e,
                // A copy just written: a child another test thread forked meanwhile may hold
                // its write descriptor until that child execs (ETXTBSY for that instant).
                Err(e) if e.contains("Text file busy") => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("uwgate did not start: {}", e),
            }
        }
        panic!("uwgate did not start: {}", last)
    }

    /// [`Server::spawn_full`] with the binary to run.
    fn spawn_binary(
        tree: &TempTree,
        binary: &Path,
        ini_template: &str,
        port: u16,
        env: &[(&str, &str)],
        nofile: Option<(u64, u64)>,
    ) -> Result<Server, String> {
        let ini = tree.join("uwgate.ini");
        fs::write(&ini, tree.render(ini_template, port)).expect("write ini");
        let stderr_path = tree.join(&format!("uwgate-{}.stderr", port));
        let stderr_file = fs::File::create(&stderr_path).expect("create stderr file");
        let mut cmd = Command::new(binary);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some((soft, hard)) = nofile {
            limit_nofile(&mut cmd, soft, hard);
        }
        let child = cmd
            .arg("-f")
            .arg("-c")
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(stderr_file.try_clone().expect("dup stderr file"))
            .stderr(stderr_file)
            .spawn()
            .map_err(|e| format!("spawn {}: {}", binary.display(), e))?;
        let mut s = Server {
            child: Some(child),
            port,
            ini,
            dir: tree.path().to_path_buf(),
            stderr_path,
            exit: None,
            _own_tree: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = s.try_wait() {
                return Err(format!("exited early with {}; output:\n{}", st, s.stderr()));
            }
            // The connect alone is not proof: a parallel test that took the port between
            // free_port() and our bind answers it too, so the listener must be our child's.
            let ours = listens_on(s.pid(), port) != Some(false);
            let probe = ours.then(|| {
                TcpStream::connect_timeout(
                    &format!("127.0.0.1:{}", port).parse().expect("addr"),
                    Duration::from_millis(200),
                )
            });
            if let Some(Ok(c)) = probe {
                drop(c);
                // Let the server see the probe's close so it does not hold a slot.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(s);
            }
            if Instant::now() > deadline {
                let out = s.stderr();
                s.kill();
                return Err(format!(
                    "not listening on 127.0.0.1:{} after {:?}; output:\n{}",
                    port, START_TIMEOUT, out
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the server.
    pub fn signal(&self, sig: i32) {
        if self.exit.is_some() {
            return;
        }
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {}) failed", self.pid(), sig);
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls until the server's output contains `needle`, up to `timeout`.
    pub fn wait_stderr_contains(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().contains(needle))
    }

    /// Non-blocking: the exit status if the server has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the server to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Rewrites the ini file (same `{DIR}` and `{PORT}`), e.g. before a SIGHUP.
    pub fn rewrite_ini(&self, ini_template: &str) {
        let text = ini_template
            .replace("{DIR}", &self.dir.to_string_lossy())
            .replace("{PORT}", &self.port.to_string());
        // Write then rename so the server never reads a half-written file.
        let tmp = self.ini.with_extension("ini.new");
        fs::write(&tmp, text).expect("write new ini");
        fs::rename(&tmp, &self.ini).expect("rename new ini");
    }

    /// `GET path` with `Connection: close` on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        get(self.port, path)
    }

    /// A new client connection to this server.
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        if self.wait_exit(Duration::from_secs(3)).is_none() {
            self.kill();
        }
    }
}

/// CAP_SYS_RESOURCE (linux/capability.h): lets root raise a hard rlimit.
const CAP_SYS_RESOURCE: libc::c_ulong = 24;

/// Makes `cmd`'s child start with RLIMIT_NOFILE (`soft`, `hard`), and a hard limit that is
/// hard even for root: CAP_SYS_RESOURCE leaves the bounding set, so the exec'd binary does not
/// get it back (the drop fails harmlessly when not root, who cannot raise it anyway).
fn limit_nofile(cmd: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: prctl(2) and setrlimit(2) are async-signal-safe; `lim` is a plain value copied
    // into the closure; nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the binary with `args` to completion (bounded by 10 s), returning (status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    run_cli_env(args, &[])
}

/// [`run_cli`] with the child's RLIMIT_NOFILE set to (`soft`, `hard`), hard even for root.
pub fn run_cli_nofile(args: &[&str], soft: u64, hard: u64) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(uwgate_bin());
    limit_nofile(&mut cmd, soft, hard);
    run_cli_cmd(cmd, args, &[])
}

/// [`run_cli`] with extra environment variables.
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    run_cli_cmd(Command::new(uwgate_bin()), args, env)
}

fn run_cli_cmd(
    mut cmd: Command,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn uwgate");
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait");
            panic!(
                "uwgate {:?} did not exit within 10 s (killed: {})",
                args, st
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let o = t_out.join().unwrap_or_default();
    let e = t_err.join().unwrap_or_default();
    (
        status,
        String::from_utf8_lossy(&o).into_owned(),
        String::from_utf8_lossy(&e).into_owned(),
    )
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// In order, as received (names as sent).
    pub headers: Vec<(String, String)>,
    /// Decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// The raw head, status line to the blank line inclusive.
    pub head_raw: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True if a `Connection` header lists `token` (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// A client connection with its own read buffer (so pipelined responses are split correctly).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

/// How a read attempt ended when the caller expects the connection to be closed.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly EOF.
    Eof,
    /// ECONNRESET / EPIPE.
    Reset,
}

impl Client {
    /// Connects to 127.0.0.1:port with [`IO_TIMEOUT`] read/write timeouts.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{}: {}", port, e));
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).ok();
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Wraps a stream the caller connected itself (e.g. from another source address), with the
    /// same [`IO_TIMEOUT`] timeouts as [`Client::connect`].
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).ok();
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Shrinks this socket's receive buffer (a slow reader that really stalls the server).
    pub fn set_recv_buffer(&self, bytes: i32) {
        let fd = self.stream.as_raw_fd();
        // SAFETY: setsockopt on an fd we own, with a pointer to a live i32 of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &bytes as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    }

    /// Writes all of `data` (panics on error).
    pub fn send(&mut self, data: &[u8]) {
        self.stream
            .write_all(data)
            .unwrap_or_else(|e| panic!("write {:?}: {}", String::from_utf8_lossy(data), e));
    }

    /// Writes `data`, returning the error instead of panicking (the server may have closed).
    pub fn try_send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Sets the read timeout for subsequent reads.
    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("timeout");
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = [0u8; 65536];
        let n = self.stream.read(&mut tmp)?;
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Bytes received but not yet consumed by a parsed response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Reads one response to a non-HEAD request; panics on timeout, EOF or malformed framing.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("reading response: {}", e))
    }

    /// Reads one response to a HEAD request (no body whatever the headers say).
    pub fn read_head_response(&mut self) -> Response {
        self.try_read_response(true)
            .unwrap_or_else(|e| panic!("reading HEAD response: {}", e))
    }

    /// Reads one response. `head_request`: the request was HEAD, so there is no body.
    /// A 1xx interim response is returned on its own (call again for the final one).
    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let deadline = Instant::now() + Duration::from_secs(30);
        // 1. The head.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 1 << 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "head over 1 MiB",
                ));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "overall deadline"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF before end of head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let head_raw = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head_raw.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts.next().unwrap_or("").parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {:?}", status_line),
            )
        })?;
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {:?}", status_line),
            ));
        }
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad header {:?}", line))
            })?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        self.buf.drain(..head_end);
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            head_raw,
        };
        // 2. The body, per RFC 9112 section 6.3.
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .headers_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = self.read_chunked(deadline)?;
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length {:?}", cl),
                )
            })?;
            while self.buf.len() < n {
                if Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "overall deadline"));
                }
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF after {} of {} body bytes", self.buf.len(), n),
                    ));
                }
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            // Close-delimited.
            while self.fill()? > 0 {
                if Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "overall deadline"));
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    fn read_line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "overall deadline"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in chunked body",
                ));
            }
        }
    }

    fn read_chunked(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline)?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {:?}", line),
                )
            })?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    if self.read_line(deadline)?.is_empty() {
                        return Ok(body);
                    }
                }
            }
            let Some(need) = size.checked_add(2) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("chunk size {:?} overflows", line),
                ));
            };
            while self.buf.len() < need {
                if Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "overall deadline"));
                }
                if self.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk"));
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
            self.buf.drain(..size + 2);
        }
    }

    /// Reads everything until EOF (bounded by `timeout` overall); returns the bytes and how the
    /// stream ended (`None` = still open when the time ran out).
    pub fn read_until_close(&mut self, timeout: Duration) -> (Vec<u8>, Option<Closed>) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eof {
                return (std::mem::take(&mut self.buf), Some(Closed::Eof));
            }
            let now = Instant::now();
            if now >= deadline {
                return (std::mem::take(&mut self.buf), None);
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(left)).ok();
            match self.fill() {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) if is_reset(&e) => {
                    return (std::mem::take(&mut self.buf), Some(Closed::Reset));
                }
                Err(e) => panic!("read: {}", e),
            }
        }
    }

    /// Waits up to `timeout` for the server to close the connection, without consuming a
    /// response: returns how it closed, or `None` if it is still open. Bytes received meanwhile
    /// are kept in [`Client::pending`].
    pub fn wait_closed(&mut self, timeout: Duration) -> Option<Closed> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eof {
                return Some(Closed::Eof);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .ok();
            match self.fill() {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) if is_reset(&e) => return Some(Closed::Reset),
                Err(e) => panic!("read: {}", e),
            }
        }
    }

    /// True if nothing at all arrives within `quiet` (the connection is open and silent).
    pub fn is_silent_for(&mut self, quiet: Duration) -> bool {
        let before = self.buf.len();
        match self.wait_closed(quiet) {
            None => self.buf.len() == before,
            Some(_) => false,
        }
    }
}

/// True for the errors a read timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// True for the errors a peer's abortive close produces.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `raw` on a fresh connection and reads one response (HEAD framing if `raw` is a HEAD).
pub fn request(port: u16, raw: &[u8]) -> Response {
    let mut c = Client::connect(port);
    c.send(raw);
    let head = raw.starts_with(b"HEAD ");
    let mut r = c
        .try_read_response(head)
        .unwrap_or_else(|e| panic!("request {:?}: {}", String::from_utf8_lossy(raw), e));
    // Skip interim responses the caller did not ask about.
    while (100..200).contains(&r.status) && r.status != 101 {
        r = c
            .try_read_response(head)
            .unwrap_or_else(|e| panic!("request {:?}: {}", String::from_utf8_lossy(raw), e));
    }
    r
}

/// Sends `raw` on a fresh connection and returns everything the server sent until it closed
/// (bounded by `timeout`) and how it closed: for responses whose exact bytes matter.
pub fn request_raw(port: u16, raw: &[u8], timeout: Duration) -> (Vec<u8>, Option<Closed>) {
    let mut c = Client::connect(port);
    let _ = c.try_send(raw);
    c.read_until_close(timeout)
}

/// `GET path HTTP/1.1` with `Host: localhost` and `Connection: close`.
pub fn get(port: u16, path: &str) -> Response {
    request(
        port,
        format!(
            "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            path
        )
        .as_bytes(),
    )
}

/// `GET path` with extra header lines (each `Name: value`, no CRLF).
pub fn get_with(port: u16, path: &str, extra: &[&str]) -> Response {
    let mut req = format!("GET {} HTTP/1.1\r\nHost: localhost\r\n", path);
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    request(port, req.as_bytes())
}

/// Writes all `requests` in one write on one connection and reads one response per request
/// (HEAD framing for HEAD requests).
pub fn request_pipelined(port: u16, requests: &[&[u8]]) -> Vec<Response> {
    let mut c = Client::connect(port);
    let all: Vec<u8> = requests.concat();
    c.send(&all);
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            c.try_read_response(r.starts_with(b"HEAD "))
                .unwrap_or_else(|e| panic!("pipelined response #{}: {}", i, e))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Dates (independent of the server's implementation)
// ---------------------------------------------------------------------------------------------

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `secs` since the epoch as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn imf_fixdate(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses an IMF-fixdate strictly (exact format, weekday consistent); `None` otherwise.
pub fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || &s[25..] != " GMT" {
        return None;
    }
    let day: u32 = s.get(5..7)?.parse().ok()?;
    let mon = MONTHS
        .iter()
        .position(|m| *m == s.get(8..11).unwrap_or(""))? as u32
        + 1;
    let year: i64 = s.get(12..16)?.parse().ok()?;
    let hh: i64 = s.get(17..19)?.parse().ok()?;
    let mm: i64 = s.get(20..22)?.parse().ok()?;
    let ss: i64 = s.get(23..25)?.parse().ok()?;
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    let days = days_from_civil(year, mon, day);
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    if imf_fixdate(secs) != s {
        return None;
    }
    Some(secs)
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Syslog sink
// ---------------------------------------------------------------------------------------------

/// A UDP socket standing in for syslogd.
pub struct SyslogSink {
    pub sock: UdpSocket,
    pub port: u16,
}

impl SyslogSink {
    /// Binds 127.0.0.1:0.
    pub fn bind() -> SyslogSink {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = sock.local_addr().expect("addr").port();
        SyslogSink { sock, port }
    }

    /// Binds a given port (after a restart of "syslogd").
    pub fn bind_port(port: u16) -> io::Result<SyslogSink> {
        let sock = UdpSocket::bind(("127.0.0.1", port))?;
        Ok(SyslogSink { sock, port })
    }

    /// The next datagram within `timeout`, as text.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .ok();
        let mut buf = [0u8; 65536];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Collects datagrams until one satisfies `pred` (returned) or `timeout` passes (`None`);
    /// every datagram seen is appended to `seen`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        seen: &mut Vec<String>,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if let Some(m) = self.recv(deadline - now) {
                seen.push(m.clone());
                if pred(&m) {
                    return Some(m);
                }
            }
        }
    }

    /// Every datagram that arrives within `window`.
    pub fn collect(&self, window: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let _ = self.wait_for(window, &mut seen, |_| false);
        seen
    }
}

/// A TCP connection to 127.0.0.1:`port` from `source`, with `before_connect` applied to the
/// socket first (options that must be set before the SYN: receive buffer, MSS).
pub fn connect_from(port: u16, source: Ipv4Addr, before_connect: impl Fn(i32)) -> TcpStream {
    fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        }
    }
    // SAFETY: socket(2) with constant arguments; the fd is checked, then owned by the TcpStream
    // (closed on every path, panics included).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    before_connect(fd);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr(source, 0);
    // SAFETY: bind(2) on our socket with a live sockaddr_in of the length given.
    let rc = unsafe { libc::bind(fd, &from as *const _ as *const libc::sockaddr, len) };
    assert_eq!(rc, 0, "bind {source}: {}", std::io::Error::last_os_error());
    let to = sockaddr(Ipv4Addr::LOCALHOST, port);
    // SAFETY: connect(2) (blocking) on our socket with a live sockaddr_in of the length given.
    let rc = unsafe { libc::connect(fd, &to as *const _ as *const libc::sockaddr, len) };
    assert_eq!(
        rc,
        0,
        "connect 127.0.0.1:{port}: {}",
        std::io::Error::last_os_error()
    );
    stream
}
