//! Shared harness for the `uwsgi_*` integration tests: a real pyuwsgi running the Django project
//! in `tests/django_app/`, behind a real uwgate started by `common::Server`.
//!
//! Owns: locating the virtualenv (`make venv`), one migrated sqlite database per test process
//! (copied per uWSGI instance), the uWSGI processes' lifetime (own process group; SIGINT on drop,
//! SIGKILL after a bound), a tiny uwsgi-protocol client for readiness probes, and the small JSON
//! parser and SHA-256 the tests need to check what Django saw. Like `common`, it shares no code
//! with the server: its uwsgi packet, JSON and digest code are written independently here.
//! Every wait has a bound, so a hung uWSGI or uwgate fails the test instead of stalling the suite.
//!
//! Test files include it after `common`:
//! `#[path = "common/mod.rs"] mod common;` then `#[path = "uwsgi_support/mod.rs"] mod uwsgi_support;`
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{self, TempTree};

/// The Django superuser every test database has.
pub const ADMIN_USER: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-pass-123";

/// Bound on uWSGI + Django start-up (a cold Python import on a busy 2-core machine).
pub const UWSGI_START_TIMEOUT: Duration = Duration::from_secs(40);
/// Bound on uWSGI's exit after SIGINT before SIGKILL.
pub const UWSGI_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The checkout (`CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/django_app`: uWSGI's `--chdir`.
pub fn django_dir() -> PathBuf {
    repo_root().join("tests").join("django_app")
}

/// The virtualenv with pyuwsgi and Django: `$UWGATE_VENV`, else `<checkout>/out/venv`.
/// Panics with the way to make it when it is missing.
pub fn venv() -> PathBuf {
    let dir = match std::env::var_os("UWGATE_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => repo_root().join("out").join("venv"),
    };
    if !dir.join("bin").join("uwsgi").exists() || !dir.join("bin").join("python").exists() {
        panic!(
            "no pyuwsgi virtualenv at {} (bin/uwsgi, bin/python): run `make venv` \
             (make test does it), or point UWGATE_VENV at one made from tests/requirements.txt",
            dir.display()
        );
    }
    dir
}

/// The environment every Python process of the harness gets (no `.pyc` in the checkout).
fn python_env(cmd: &mut Command, db: &Path) {
    cmd.env("DJANGO_SETTINGS_MODULE", "djangoblog.settings")
        .env("UWGATE_TEST_DB", db)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
}

// ---------------------------------------------------------------------------------------------
// The database
// ---------------------------------------------------------------------------------------------

static TEMPLATE_DB: OnceLock<PathBuf> = OnceLock::new();

/// A migrated database with the superuser, made once per test process (under cargo's
/// `CARGO_TARGET_TMPDIR`); copy it with [`fresh_db`], never use it directly.
pub fn template_db() -> &'static Path {
    TEMPLATE_DB.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_templates(&base);
        let dir = base.join(format!("uwgate-django-db-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create template db dir");
        let db = dir.join("db.sqlite3");
        let script = format!(
            "import django\n\
             django.setup()\n\
             from django.core.management import call_command\n\
             call_command('migrate', interactive=False, verbosity=0)\n\
             from django.contrib.auth.models import User\n\
             User.objects.create_superuser({:?}, 'admin@example.com', {:?})\n",
            ADMIN_USER, ADMIN_PASSWORD
        );
        let mut cmd = Command::new(venv().join("bin").join("python"));
        cmd.arg("-c").arg(script).current_dir(django_dir());
        python_env(&mut cmd, &db);
        let out = run_bounded(cmd, Duration::from_secs(120));
        assert!(
            out.0 && db.exists(),
            "migrating the Django test database failed:\n{}",
            out.1
        );
        db
    })
}

/// Template dirs of test processes that no longer run.
fn remove_stale_templates(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("uwgate-django-db-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A private copy of the template database at `dir/db.sqlite3`.
pub fn fresh_db(dir: &Path) -> PathBuf {
    let db = dir.join("db.sqlite3");
    fs::copy(template_db(), &db).expect("copy template db");
    db
}

/// Runs `cmd` with a time bound; (success, combined output).
fn run_bounded(mut cmd: Command, timeout: Duration) -> (bool, String) {
    let out_path = std::env::temp_dir().join(format!(
        "uwgate-harness-{}-{}.out",
        std::process::id(),
        common::free_port()
    ));
    let f = fs::File::create(&out_path).expect("create output file");
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().expect("dup"))
        .stderr(f);
    let mut child = cmd.spawn().expect("spawn python");
    let deadline = Instant::now() + timeout;
    let ok = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    (ok, text)
}

// ---------------------------------------------------------------------------------------------
// uWSGI
// ---------------------------------------------------------------------------------------------

/// Where a uWSGI instance listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// 127.0.0.1:port
    Tcp(u16),
    /// A unix socket path.
    Unix(PathBuf),
}

/// How to start a uWSGI instance.
#[derive(Clone, Debug)]
pub struct UwsgiOpts {
    /// `--processes`; 1 for the tests that prove a worker is freed.
    pub processes: u32,
    /// `--buffer-size`; `None` keeps uWSGI's default (4096).
    pub buffer_size: Option<u32>,
    /// Listen on a unix socket in the instance's temp dir instead of TCP.
    pub unix: bool,
    /// Listen on this TCP port instead of a free one.
    pub port: Option<u16>,
    /// `UWGATE_TEST_INSTANCE`, echoed by `/pid`.
    pub instance: String,
    /// More uWSGI arguments.
    pub extra_args: Vec<String>,
}

impl Default for UwsgiOpts {
    fn default() -> Self {
        UwsgiOpts {
            processes: 2,
            buffer_size: Some(65535),
            unix: false,
            port: None,
            instance: String::new(),
            extra_args: Vec::new(),
        }
    }
}

/// A running pyuwsgi master with its workers, in a process group of its own.
pub struct Uwsgi {
    child: Option<Child>,
    /// Where it listens.
    pub listen: Listen,
    /// Its database file.
    pub db: PathBuf,
    log_path: PathBuf,
    tree: TempTree,
}

impl Uwsgi {
    /// Starts uWSGI with `opts` and waits (bounded) until Django answers `/pid` over the uwsgi
    /// protocol; panics with uWSGI's log otherwise.
    pub fn start(opts: UwsgiOpts) -> Uwsgi {
        let mut last = String::new();
        for _ in 0..3 {
            match Uwsgi::try_start(&opts) {
                Ok(u) => return u,
                Err(e) => {
                    let retry = opts.port.is_none() && e.contains("Address already in use");
                    last = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("uWSGI did not start: {}", last)
    }

    /// One uWSGI with default options (2 workers, TCP, buffer-size 65535).
    pub fn start_default() -> Uwsgi {
        Uwsgi::start(UwsgiOpts::default())
    }

    fn try_start(opts: &UwsgiOpts) -> Result<Uwsgi, String> {
        let tree = TempTree::new("uwsgi");
        let db = fresh_db(tree.path());
        let listen = if opts.unix {
            Listen::Unix(tree.join("uwsgi.sock"))
        } else {
            Listen::Tcp(opts.port.unwrap_or_else(common::free_port))
        };
        let socket_arg = match &listen {
            Listen::Tcp(p) => format!("127.0.0.1:{}", p),
            Listen::Unix(p) => p.to_string_lossy().into_owned(),
        };
        let log_path = tree.join("uwsgi.log");
        let log = fs::File::create(&log_path).expect("create uwsgi log");
        let mut cmd = Command::new(venv().join("bin").join("uwsgi"));
        cmd.arg("--socket")
            .arg(&socket_arg)
            .arg("--chdir")
            .arg(django_dir())
            .arg("--module")
            .arg("djangoblog.wsgi:application")
            .arg("--master")
            .arg("--processes")
            .arg(opts.processes.to_string())
            .arg("--need-app")
            .arg("--no-orphans")
            .arg("--die-on-term")
            .arg("--vacuum");
        if let Some(b) = opts.buffer_size {
            cmd.arg("--buffer-size").arg(b.to_string());
        }
        cmd.args(&opts.extra_args);
        python_env(&mut cmd, &db);
        cmd.env("UWGATE_TEST_INSTANCE", &opts.instance)
            .current_dir(tree.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {}", venv().join("bin/uwsgi").display(), e))?;
        let mut u = Uwsgi {
            child: Some(child),
            listen,
            db,
            log_path,
            tree,
        };
        let deadline = Instant::now() + UWSGI_START_TIMEOUT;
        loop {
            if let Some(c) = u.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    u.child = None;
                    return Err(format!("uWSGI exited with {}; log:\n{}", st, u.log()));
                }
            }
            if let Ok(r) = u.try_request("GET", "/pid", &[]) {
                if r.starts_with(b"HTTP/1.1 200") {
                    return Ok(u);
                }
            }
            if Instant::now() > deadline {
                let log = u.log();
                u.stop();
                return Err(format!(
                    "no answer to /pid within {:?}; log:\n{}",
                    UWSGI_START_TIMEOUT, log
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `uwsgi_pass` value for this instance: `127.0.0.1:PORT` or `unix:/path`.
    pub fn pass(&self) -> String {
        match &self.listen {
            Listen::Tcp(p) => format!("127.0.0.1:{}", p),
            Listen::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// Everything uWSGI (and Django's logging) wrote so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls the log until it contains `needle`, up to `timeout`.
    pub fn wait_log_contains(&self, needle: &str, timeout: Duration) -> bool {
        common::wait_until(timeout, || self.log().contains(needle))
    }

    /// Sends one request straight to uWSGI over the uwsgi protocol (bypassing uwgate) and
    /// returns the raw response (uWSGI closes after it).
    pub fn try_request(
        &self,
        method: &str,
        path_and_query: &str,
        extra: &[(&str, &str)],
    ) -> std::io::Result<Vec<u8>> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut vars: Vec<(&str, &str)> = vec![
            ("REQUEST_METHOD", method),
            ("REQUEST_URI", path_and_query),
            ("PATH_INFO", path),
            ("QUERY_STRING", query),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_HOST", "localhost"),
        ];
        vars.extend_from_slice(extra);
        let mut body = Vec::new();
        for (k, v) in vars {
            body.extend_from_slice(&(k.len() as u16).to_le_bytes());
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(&(v.len() as u16).to_le_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        let mut pkt = vec![0u8];
        pkt.extend_from_slice(&(body.len() as u16).to_le_bytes());
        pkt.push(0);
        pkt.extend_from_slice(&body);
        let timeout = Some(Duration::from_secs(10));
        let mut out = Vec::new();
        match &self.listen {
            Listen::Tcp(p) => {
                let mut s = TcpStream::connect_timeout(
                    &format!("127.0.0.1:{}", p).parse().expect("addr"),
                    Duration::from_secs(1),
                )?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                s.write_all(&pkt)?;
                s.read_to_end(&mut out)?;
            }
            Listen::Unix(p) => {
                let mut s = UnixStream::connect(p)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                s.write_all(&pkt)?;
                s.read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Stops uWSGI: SIGINT to the master (uWSGI 2.0's "kill workers and exit"), a bounded wait,
    /// then SIGKILL to its whole process group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        if let Ok(Some(_)) = child.try_wait() {
            kill_group(pid, libc::SIGKILL);
            return;
        }
        // SAFETY: kill(2) on the child we spawned.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + UWSGI_STOP_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                kill_group(pid, libc::SIGKILL);
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Workers are in the same group; make sure none outlives the master.
        kill_group(pid, libc::SIGKILL);
    }
}

impl Drop for Uwsgi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signals the process group `pgid` (the one `process_group(0)` made for uWSGI).
fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) on the process group of a child we spawned with its own group.
        unsafe { libc::kill(-pgid, sig) };
    }
}

// ---------------------------------------------------------------------------------------------
// uwgate configuration
// ---------------------------------------------------------------------------------------------

/// A uwgate ini for the Django project: `global_extra` in `[uwgate]`; `/static/` aliased to the
/// project's collectedstatic/; `/protected/` an internal alias of the project's protected/;
/// `[location:/]` with one `uwsgi_pass` line per entry of `passes` plus `location_extra` lines.
pub fn gate_ini(global_extra: &str, passes: &[String], location_extra: &str) -> String {
    let django = django_dir();
    let mut uwsgi = String::from("[location:/]\n");
    for p in passes {
        uwsgi.push_str(&format!("uwsgi_pass = {}\n", p));
    }
    uwsgi.push_str(location_extra);
    uwsgi.push('\n');
    common::ini(
        global_extra,
        &format!(
            "[location:/static/]\nalias = {static_dir}/\n\n\
             [location:/protected/]\nalias = {protected}/\ninternal = on\n\n{uwsgi}",
            static_dir = django.join("collectedstatic").display(),
            protected = django.join("protected").display(),
        ),
    )
}

/// A uwgate in front of the given uWSGI instances, with defaults elsewhere.
pub fn start_gate(upstreams: &[&Uwsgi]) -> common::Server {
    let passes: Vec<String> = upstreams.iter().map(|u| u.pass()).collect();
    common::Server::start(&gate_ini("", &passes, ""))
}

// ---------------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------------

/// `GET path` with `Host: localhost:PORT`, the Host a browser sends.
pub fn get(port: u16, path: &str) -> common::Response {
    common::request(
        port,
        format!(
            "GET {} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            path, port
        )
        .as_bytes(),
    )
}

/// Sends `raw` and returns `/environ`'s JSON; panics unless the answer is 200 JSON.
pub fn environ_of(port: u16, raw: &[u8]) -> Json {
    let r = common::request(port, raw);
    assert_eq!(
        r.status,
        200,
        "request {:?} answered {} {}: {}",
        String::from_utf8_lossy(raw),
        r.status,
        r.reason,
        r.text()
    );
    Json::parse(&r.text())
}

/// The bytes of a PEP 3333 environ string (each char is one latin-1 byte); `None` if a char is
/// above U+00FF.
pub fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// True if environ value `s` carries the bytes `want`: uWSGI's Python 3 plugin decodes PATH_INFO
/// as UTF-8 and the other vars as latin-1 (PEP 3333), so both readings are accepted.
pub fn environ_is(s: &str, want: &[u8]) -> bool {
    s.as_bytes() == want || latin1(s).as_deref() == Some(want)
}

// ---------------------------------------------------------------------------------------------
// JSON (just enough for Django's JsonResponse)
// ---------------------------------------------------------------------------------------------

/// A parsed JSON value; objects keep their order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    /// Parses `text`; panics (showing the text) when it is not one JSON value.
    pub fn parse(text: &str) -> Json {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        match v {
            Some(v) if p.i == p.s.len() => v,
            _ => panic!("not JSON (at byte {}): {}", p.i, text),
        }
    }

    /// The member `key` of an object, or `Null`.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    /// `true` if this is an object with member `key`.
    pub fn has(&self, key: &str) -> bool {
        matches!(self, Json::Obj(m) if m.iter().any(|(k, _)| k == key))
    }

    /// The string, or `None`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string; panics otherwise.
    pub fn str(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("expected a JSON string, got {:?}", self))
    }

    /// A non-negative integer; panics otherwise.
    pub fn u64(&self) -> u64 {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => *n as u64,
            _ => panic!("expected a JSON integer, got {:?}", self),
        }
    }

    /// The array of strings; panics otherwise.
    pub fn strs(&self) -> Vec<String> {
        match self {
            Json::Arr(a) => a.iter().map(|v| v.str().to_string()).collect(),
            _ => panic!("expected a JSON array, got {:?}", self),
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Json> {
        self.ws();
        match *self.s.get(self.i)? {
            b'n' => self.eat("null").then_some(Json::Null),
            b't' => self.eat("true").then_some(Json::Bool(true)),
            b'f' => self.eat("false").then_some(Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Some(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    if self.eat("]") {
                        return Some(Json::Arr(a));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Some(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return None;
                    }
                    let v = self.value()?;
                    m.push((k, v));
                    self.ws();
                    if self.eat("}") {
                        return Some(Json::Obj(m));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            _ => {
                let start = self.i;
                while matches!(
                    self.s.get(self.i),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()?
                    .parse()
                    .ok()
                    .map(Json::Num)
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    fn string(&mut self) -> Option<String> {
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while !matches!(self.s.get(self.i), Some(b'"' | b'\\') | None) {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).ok()?);
            match self.s.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => {
                    self.i += 1;
                    let c = *self.s.get(self.i)?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.checked_sub(0xDC00)?);
                            }
                            out.push(char::from_u32(cp)?);
                        }
                        _ => return None,
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), to check what the app says it received
// ---------------------------------------------------------------------------------------------

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{:08x}", x)).collect()
}

/// Checks the harness's own helpers (run by every file that includes this module).
pub fn self_check() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let j = Json::parse(r#"{"a": [1, "x\u00e9\ud83d\ude00"], "b": {"c": null, "d": true}}"#);
    assert_eq!(
        j.get("a"),
        &Json::Arr(vec![Json::Num(1.0), Json::Str("xé😀".into())])
    );
    assert_eq!(j.get("b").get("d"), &Json::Bool(true));
    assert!(environ_is("caf\u{c3}\u{a9}", "café".as_bytes()));
    assert!(environ_is("café", "café".as_bytes()));
    assert!(!environ_is("cafe", "café".as_bytes()));
}

/// uwgate's and uWSGI's output, for assertion messages.
pub fn logs(gate: &common::Server, up: &Uwsgi) -> String {
    format!(
        "\n--- uwgate ---\n{}\n--- uWSGI ---\n{}",
        gate.stderr(),
        up.log()
    )
}

// ---------------------------------------------------------------------------------------------
// A fake upstream, for misbehaviour real uWSGI does not produce on demand
// ---------------------------------------------------------------------------------------------

/// What a [`FakeUpstream`] does with each connection.
#[derive(Clone, Debug)]
pub enum Fake {
    /// Reads the uwsgi packet header and vars, writes these bytes, closes.
    Answer(Vec<u8>),
    /// Reads the packet header and vars, closes without a byte.
    CloseSilently,
    /// Accepts and never reads nor writes (until the test ends).
    Hold,
    /// Answers `hello world` without Content-Length (so uwgate re-chunks it), behind an
    /// `X-Pad` header of as many bytes as the query's `pad=N`; closes.
    PaddedHead,
    /// Reads the whole request (packet header, vars, then the body CONTENT_LENGTH says), then
    /// plays the script: raw bytes exactly as given, pauses, and at the end a close unless the
    /// script says [`Act::Hold`]. For a hostile or buggy app.
    Script(Vec<Act>),
}

/// One step of a [`Fake::Script`].
#[derive(Clone, Debug)]
pub enum Act {
    /// Writes these bytes (one write(2), so they usually arrive as one segment).
    Write(Vec<u8>),
    /// Waits this long (lets uwgate send what it has to the client first).
    Pause(Duration),
    /// Keeps the connection open, neither reading nor writing, until the fake stops.
    Hold,
}

/// A TCP listener on 127.0.0.1 answering each connection as told; counts connections. Stops
/// (bounded) on drop.
pub struct FakeUpstream {
    /// Its port.
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    scripted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts the fake.
    pub fn start(behaviour: Fake) -> FakeUpstream {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let scripted = Arc::new(AtomicUsize::new(0));
        let done = scripted.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, st) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        match &behaviour {
                            Fake::Hold => held.push(s),
                            Fake::Answer(bytes) => {
                                read_packet(&mut s);
                                let _ = s.write_all(bytes);
                            }
                            Fake::CloseSilently => read_packet(&mut s),
                            Fake::PaddedHead => {
                                let pad = query_pad(&read_vars(&mut s));
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Pad: {}\r\n\r\n",
                                    "p".repeat(pad)
                                );
                                let _ = s.write_all(head.as_bytes());
                                let _ = s.write_all(b"hello world");
                            }
                            Fake::Script(acts) => {
                                // A write uwgate stopped reading gives up instead of hanging.
                                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                                read_request(&mut s);
                                let mut hold = false;
                                let mut wrote_all = true;
                                for act in acts {
                                    match act {
                                        Act::Write(bytes) => {
                                            wrote_all &= s.write_all(bytes).is_ok();
                                        }
                                        Act::Pause(d) => std::thread::sleep(*d),
                                        Act::Hold => hold = true,
                                    }
                                }
                                if wrote_all {
                                    done.fetch_add(1, Ordering::SeqCst);
                                }
                                if hold {
                                    held.push(s);
                                }
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeUpstream {
            port,
            accepted,
            scripted,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn pass(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`Fake::Script`]s played to the end with every write taken by uwgate.
    pub fn scripts_done(&self) -> usize {
        self.scripted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one uwsgi packet header and its vars (not the body).
fn read_packet(s: &mut TcpStream) {
    read_vars(s);
}

/// Reads one uwsgi packet header and returns its vars block (empty on a short read).
fn read_vars(s: &mut TcpStream) -> Vec<u8> {
    let mut h = [0u8; 4];
    if s.read_exact(&mut h).is_err() {
        return Vec::new();
    }
    let mut vars = vec![0u8; u16::from_le_bytes([h[1], h[2]]) as usize];
    if s.read_exact(&mut vars).is_err() {
        return Vec::new();
    }
    vars
}

/// Reads one whole request: the packet header, its vars and the body (CONTENT_LENGTH bytes).
fn read_request(s: &mut TcpStream) {
    let vars = read_vars(s);
    let len = var(&vars, b"CONTENT_LENGTH")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let _ = std::io::copy(&mut Read::by_ref(s).take(len), &mut std::io::sink());
}

/// `N` from `pad=N` in the vars' QUERY_STRING (0 when absent).
fn query_pad(vars: &[u8]) -> usize {
    var(vars, b"QUERY_STRING")
        .and_then(|q| {
            std::str::from_utf8(q)
                .ok()?
                .strip_prefix("pad=")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The value of the uwsgi var `name` in a vars block.
fn var<'v>(vars: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    let mut rest = vars;
    while rest.len() >= 4 {
        let klen = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let Some(key) = rest.get(2..2 + klen) else {
            break;
        };
        let vlen_at = 2 + klen;
        let Some(vl) = rest.get(vlen_at..vlen_at + 2) else {
            break;
        };
        let vlen = u16::from_le_bytes([vl[0], vl[1]]) as usize;
        let Some(val) = rest.get(vlen_at + 2..vlen_at + 2 + vlen) else {
            break;
        };
        if key == name {
            return Some(val);
        }
        rest = &rest[vlen_at + 2 + vlen..];
    }
    None
}

/// Panics unless `body` is exactly `common::pattern(len, seed)`, naming the first differing
/// offset (a lost, repeated or reordered piece shows up there).
pub fn assert_pattern(body: &[u8], len: usize, seed: u8) {
    let want = common::pattern(len, seed);
    if body == &want[..] {
        return;
    }
    let first = body
        .iter()
        .zip(want.iter())
        .position(|(a, b)| a != b)
        .unwrap_or(body.len().min(len));
    panic!(
        "body differs from the pattern: {} bytes received, {} expected, first difference at \
         offset {} (received {:?}..., expected {:?}...)",
        body.len(),
        len,
        first,
        &body[first.min(body.len())..(first + 16).min(body.len())],
        &want[first.min(len)..(first + 16).min(len)]
    );
}
