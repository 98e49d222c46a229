//! Lifecycle tests of a connection without sockets: a scripted client ([`Script`]) feeds bytes
//! (or "would block", or EOF) and records what the connection sends; the loop's part is played
//! by [`Rig`], which lends the same `Env` the gate does. Each test drives the state machine
//! through a behaviour: keep-alive, pipelining, errors, bodies, timeouts.

use super::*;
use crate::config::{self, Config};
use crate::event::pool::BufferPool;
use crate::server::router::Router;
use crate::server::{Stats, UriBuf, URI_MAX};
use crate::static_files::body::Multiparts;
use crate::static_files::cache::FileCache;
use crate::static_files::{FsPath, PathBuf0};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::CString;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// What the scripted client does when the connection reads; an empty script is EAGAIN.
enum Input {
    Bytes(Vec<u8>),
    /// The client closed (read returns 0).
    Eof,
}

/// A client socket that plays a script and records what was sent.
#[derive(Default)]
struct Script {
    input: VecDeque<Input>,
    sent: Vec<u8>,
    /// Bytes the socket still takes before it is full (None: unlimited).
    room: Option<usize>,
    half_closed: bool,
    corked: bool,
}

impl Script {
    fn then(mut self, bytes: &[u8]) -> Script {
        self.input.push_back(Input::Bytes(bytes.to_vec()));
        self
    }

    fn take(&mut self, len: usize) -> io::Result<usize> {
        match self.room {
            Some(0) => Err(io::ErrorKind::WouldBlock.into()),
            Some(room) => {
                let n = len.min(room);
                self.room = Some(room - n);
                Ok(n)
            }
            None => Ok(len),
        }
    }
}

impl ClientSocket for Script {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.input.pop_front() {
            Some(Input::Bytes(mut bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.input.push_front(Input::Bytes(bytes.split_off(n)));
                }
                Ok(n)
            }
            Some(Input::Eof) => {
                self.input.push_front(Input::Eof);
                Ok(0)
            }
            // Nothing more now (EAGAIN).
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn send(&mut self, buf: &[u8], _more: bool) -> io::Result<usize> {
        let n = self.take(buf.len())?;
        self.sent.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn send2(&mut self, a: &[u8], b: &[u8]) -> io::Result<usize> {
        let n = self.take(a.len() + b.len())?;
        let both: Vec<u8> = a.iter().chain(b).copied().take(n).collect();
        self.sent.extend_from_slice(&both);
        Ok(n)
    }
    fn sendfile(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        let n = self.take(count)?;
        let mut chunk = vec![0u8; n];
        let got = file.read_at(&mut chunk, *offset)?;
        self.sent.extend_from_slice(&chunk[..got]);
        *offset += got as u64;
        Ok(got)
    }
    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        self.corked = on;
        Ok(())
    }
    fn shutdown_write(&mut self) {
        self.half_closed = true;
    }
}

/// The loop's part: config, pools, tables, clock.
struct Rig {
    dir: PathBuf,
    cfg: Config,
    router: Router,
    bufs: Buffers,
    proxies: Slab<Proxy>,
    groups: Groups,
    poll: mio::Poll,
    watchdog: crate::watchdog::Watchdog,
    files: RefCell<FileCache>,
    uri_buf: UriBuf,
    fs_path: FsPath,
    temp_dir: CString,
    multiparts: Multiparts,
    access_buf: [u8; 4096],
    now: Instant,
}

impl Rig {
    /// A site with `/static/` (two files) and whatever `extra` adds to `[uwgate]`.
    fn new(name: &str, extra: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("uwgate-conn-{}-{name}", std::process::id()));
        std::fs::create_dir_all(dir.join("static")).unwrap();
        std::fs::write(dir.join("static/a.txt"), "AAAA").unwrap();
        std::fs::write(dir.join("static/big.bin"), vec![b'x'; 100_000]).unwrap();
        let text = format!(
            "[uwgate]\nbuffer_pool = 4\naccess_log = off\ntemp_path = {tmp}\n{extra}\n[server]\nlisten = 127.0.0.1:8080\n[location:/static/]\nalias = {dir}/static/\n",
            tmp = dir.display(),
            dir = dir.display()
        );
        let cfg = config::parse(&text, &dir.join("uwgate.ini"), &|_| None).unwrap();
        let g = &cfg.global;
        Rig {
            router: Router::new(&cfg),
            bufs: Buffers {
                heads: BufferPool::new(4, HEAD_BUFFER),
                large: BufferPool::new(g.buffer_pool, large_buffer_size(&cfg)),
            },
            proxies: Slab::new(4),
            groups: Groups::new(&cfg),
            poll: mio::Poll::new().unwrap(),
            watchdog: crate::watchdog::Watchdog::new(&[]).unwrap(),
            files: RefCell::new(FileCache::new(16, std::time::Duration::from_secs(60))),
            uri_buf: RefCell::new([0u8; URI_MAX]),
            fs_path: RefCell::new(PathBuf0::new()),
            temp_dir: CString::new(dir.as_os_str().as_encoded_bytes()).unwrap(),
            multiparts: Multiparts::new(2),
            access_buf: [0u8; 4096],
            now: Instant::now(),
            dir,
            cfg,
        }
    }

    fn connection(&self, script: Script) -> Connection<Script> {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        Connection::new(
            script,
            addr("127.0.0.1:50000"),
            addr("127.0.0.1:8080"),
            self.now,
            self.cfg.global.client_header_timeout,
        )
    }

    /// Runs `f` with the `Env` the gate would lend.
    fn with_env<R>(&mut self, f: impl FnOnce(&mut Env<'_, '_>) -> R) -> R {
        let date = *b"Thu, 01 Jan 2026 00:00:00 GMT";
        let ctx = Ctx {
            cfg: &self.cfg,
            router: &self.router,
            date: &date,
            now: self.now,
            unix: 1_767_225_600,
            stats: Stats::default(),
            head_limit: self.cfg.global.client_header_buffer_size,
            stopping: false,
            draining: false,
            watchdog: &self.watchdog,
            files: &self.files,
            uri_buf: &self.uri_buf,
            fs_path: &self.fs_path,
            temp_dir: &self.temp_dir,
            multiparts: &self.multiparts,
        };
        let mut env = Env {
            bufs: &mut self.bufs,
            ctx: &ctx,
            proxies: &mut self.proxies,
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: mio::Token(1),
            access_buf: &mut self.access_buf,
            slot: 0,
        };
        f(&mut env)
    }

    fn drive(&mut self, c: &mut Connection<Script>) -> Step {
        self.with_env(|env| c.drive(env))
    }

    /// The deadline fires: what the loop would do (a transition is driven on).
    fn time_out(&mut self, c: &mut Connection<Script>) -> Step {
        if let Some(d) = c.deadline() {
            self.now = self.now.max(d.at);
        }
        self.with_env(|env| match c.on_timeout(env) {
            Some(step) => step,
            None => c.drive(env),
        })
    }

    fn heads_free(&self) -> usize {
        self.bufs.heads.available()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The responses in `sent`, as (status line, body) pairs, split by Content-Length.
fn responses(sent: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = sent;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head.lines().next().unwrap_or("").to_string();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
        let body_end = (end + 4 + len).min(rest.len());
        out.push((status, rest[end + 4..body_end].to_vec()));
        rest = &rest[body_end..];
    }
    out
}

const GET_A: &[u8] = b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn keep_alive_answers_one_request_after_another_and_holds_no_buffer_between_them() {
    let mut rig = Rig::new("keepalive", "");
    let mut c = rig.connection(Script::default().then(GET_A));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    assert!(c.is_idle_keepalive(), "idle after the first answer");
    assert_eq!(rig.heads_free(), 4, "an idle connection holds no buffer");
    assert_eq!(c.deadline().map(|d| d.timer), Some(Timer::KeepAlive));

    c.socket().input.push_back(Input::Bytes(GET_A.to_vec()));
    c.on_readiness(true, true, false);
    assert_eq!(rig.drive(&mut c), Step::Wait);
    let got = responses(&c.socket().sent);
    assert_eq!(got.len(), 2);
    for (status, body) in got {
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"AAAA");
    }
    assert_eq!(c.requests(), 2);
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_turn() {
    let mut rig = Rig::new("pipeline", "");
    let two = [
        GET_A,
        b"GET /static/nope HTTP/1.1\r\nHost: x\r\n\r\n",
        GET_A,
    ]
    .concat();
    let mut c = rig.connection(Script::default().then(&two));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    let statuses: Vec<String> = responses(&c.socket().sent)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 200 OK"
        ]
    );
}

#[test]
fn a_head_that_does_not_parse_is_answered_400_then_the_connection_lingers() {
    let mut rig = Rig::new("badhead", "");
    let mut c = rig.connection(Script::default().then(b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    let got = responses(&c.socket().sent);
    assert_eq!(got[0].0, "HTTP/1.1 400 Bad Request");
    assert!(
        c.socket().half_closed,
        "answered, then half-closed to drain"
    );
    assert_eq!(c.deadline().map(|d| d.timer), Some(Timer::Linger));
    c.socket().input.push_back(Input::Eof);
    c.on_readiness(true, false, true);
    assert_eq!(rig.drive(&mut c), Step::Close);
}

#[test]
fn a_body_sent_to_a_static_location_is_read_and_dropped_before_the_answer() {
    let mut rig = Rig::new("discard", "");
    let post = b"POST /static/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab";
    let mut c = rig.connection(Script::default().then(post));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    assert!(
        c.socket().sent.is_empty(),
        "no answer before the body is read"
    );
    assert_eq!(c.deadline().map(|d| d.timer), Some(Timer::Body));
    c.socket()
        .input
        .push_back(Input::Bytes([b"cde".as_slice(), GET_A].concat()));
    c.on_readiness(true, true, false);
    assert_eq!(rig.drive(&mut c), Step::Wait);
    let got = responses(&c.socket().sent);
    assert_eq!(got[0].0, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(got[1], ("HTTP/1.1 200 OK".to_string(), b"AAAA".to_vec()));
}

#[test]
fn a_head_that_times_out_half_way_gets_408() {
    let mut rig = Rig::new("headtimeout", "client_header_timeout = 5s");
    let mut c = rig.connection(Script::default().then(b"GET /static/a.txt HTTP/1.1\r\n"));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    assert_eq!(c.deadline().map(|d| d.timer), Some(Timer::Head));
    rig.time_out(&mut c);
    let got = responses(&c.socket().sent);
    assert_eq!(got[0].0, "HTTP/1.1 408 Request Timeout");
}

#[test]
fn an_idle_keep_alive_connection_closes_when_its_timeout_passes() {
    let mut rig = Rig::new("idletimeout", "keepalive_timeout = 3s");
    let mut c = rig.connection(Script::default().then(GET_A));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    let d = c.deadline().unwrap();
    assert_eq!(d.timer, Timer::KeepAlive);
    assert_eq!(d.at, rig.now + std::time::Duration::from_secs(3));
    assert_eq!(rig.time_out(&mut c), Step::Close);
}

#[test]
fn a_reader_that_stops_reading_is_waited_for_under_send_timeout_then_closed() {
    let mut rig = Rig::new("slowreader", "send_timeout = 7s");
    let mut script = Script::default().then(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    script.room = Some(1000);
    let mut c = rig.connection(script);
    assert_eq!(rig.drive(&mut c), Step::Wait);
    assert_eq!(c.socket().sent.len(), 1000);
    assert!(c.socket().corked, "a body over 64 KiB goes out corked");
    assert_eq!(c.deadline().map(|d| d.timer), Some(Timer::Send));
    assert_eq!(rig.time_out(&mut c), Step::Close);
}

#[test]
fn a_head_over_the_head_buffer_moves_to_a_large_buffer_and_back() {
    let mut rig = Rig::new("bighead", "");
    let long = format!(
        "GET /static/a.txt HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
        "c".repeat(3000)
    );
    let mut c = rig.connection(Script::default().then(long.as_bytes()));
    assert_eq!(rig.drive(&mut c), Step::Wait);
    let got = responses(&c.socket().sent);
    assert_eq!(got[0], ("HTTP/1.1 200 OK".to_string(), b"AAAA".to_vec()));
    assert_eq!(rig.bufs.large.available(), 4, "the large buffer went back");
}
