//! The one loop: a single `mio::Poll`, edge-triggered, that owns every socket, the signalfd and
//! the watchdog's pipes. It only polls, hands readiness to the connection or the watchdog it
//! belongs to, applies the [`Step`] a connection returns (wait, run again, wait for a buffer,
//! close), checks deadlines, and handles signals: graceful stop and reload.
//!
//! Owns: accept (paused at the slot cap), the slot table and buffer pool, the proxy slots, the
//! run queue, the deadline sweep, signals, reload and stop. Never: sleeps, blocks, lets one
//! connection run unbounded (connections cap their own steps), or decides anything about a
//! request (that is `server`'s).

use crate::config::{self, Cidr, Config};
use crate::control::{self, Control};
use crate::event::per_address::PerAddress;
use crate::event::pool::{BufferPool, Buffers};
use crate::event::slab::Slab;
use crate::http::date::DateCache;
use crate::server::conn::{Activity, Connection, Env, Step, HEAD_BUFFER};
use crate::server::router::Router;
use crate::server::{Ctx, Stats, UriBuf, URI_MAX};
use crate::static_files::cache::FileCache;
use crate::static_files::{FsPath, PathBuf0};
use crate::sys;
use crate::upstream::{peers::Groups, Proxy};
use crate::watchdog::{self, Watchdog};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod upgrade;

/// The signalfd's token.
const SIGNAL: Token = Token(0);
/// Listener `i` is `Token(LISTENER_BASE + i)`.
const LISTENER_BASE: usize = 1;
const MAX_LISTENERS: usize = 256;
/// Connection slot `i` is `Token(CONN_BASE + 2 * i)` (client) and `+ 1` (its upstream).
const CONN_BASE: usize = LISTENER_BASE + MAX_LISTENERS;
/// Multi-range responses in flight at once; more are answered with the whole file.
const MULTIPART_STATES: usize = 64;
/// How often deadlines are checked: timeouts are coarse (seconds), so a sweep over the
/// slots four times a second is cheaper and simpler than a timer structure.
const SWEEP: Duration = Duration::from_millis(250);
/// A connection holding a large buffer while its client has moved no byte for this long may
/// lose it when the pool runs dry: a slow peer never makes a fast one wait. Clients that are
/// merely slow keep moving bytes more often than this.
const EVICT_AFTER: Duration = Duration::from_millis(500);

struct Listener {
    sock: TcpListener,
    addr: SocketAddr,
    /// `listen … proxy_protocol`: connections begin with a PROXY protocol header.
    proxy_protocol: bool,
}

/// The request context lent to a connection: the loop's shared, read-only parts. A macro
/// rather than a method so the borrows stay per field (the slot is borrowed mutably beside).
macro_rules! ctx {
    ($gate:ident, $stats:expr, $stopping:expr) => {
        Ctx {
            cfg: &$gate.cfg,
            router: &$gate.router,
            date: &$gate.date,
            now: $gate.now,
            unix: $gate.unix,
            stats: $stats,
            head_limit: $gate.head_limit,
            // Draining before a stop, answers already close their connections.
            stopping: $stopping || $gate.draining,
            draining: $gate.draining,
            watchdog: &$gate.watchdog,
            files: &$gate.files,
            uri_buf: &$gate.uri_buf,
            fs_path: &$gate.fs_path,
            temp_dir: &$gate.temp_dir,
            multiparts: &$gate.multiparts,
        }
    };
}

/// The control socket's view of the loop, lent to it for one call. A macro for the same reason
/// as `ctx!`: the borrows stay per field, beside `self.control`.
macro_rules! control_env {
    ($gate:ident) => {
        control::Env {
            watchdog: &mut $gate.watchdog,
            registry: $gate.poll.registry(),
            now: $gate.now,
            config_file: &$gate.cfg.file,
            upgrade: upgrade::view($gate.image, &$gate.upgrade, &$gate.last_upgrade),
        }
    };
}

/// Everything the loop owns.
pub struct Gate {
    poll: Poll,
    cfg: Config,
    router: Router,
    listeners: Vec<Listener>,
    conns: Slab<Connection<TcpStream>>,
    /// In the run queue (more work without a new readiness event), by slot.
    queued: Vec<bool>,
    bufs: Buffers,
    /// In-flight proxied requests (each also holds a second buffer).
    proxies: Slab<Proxy>,
    groups: Groups,
    head_limit: usize,
    buf_waiters: VecDeque<usize>,
    run_queue: VecDeque<usize>,
    date_cache: DateCache,
    date: [u8; 29],
    now: Instant,
    unix: i64,
    stats: Stats,
    accept_paused: bool,
    /// Set by SIGTERM/SIGINT/SIGQUIT: the deadline for in-flight responses.
    stopping: Option<Instant>,
    signals: OwnedFd,
    watchdog: Watchdog,
    next_sweep: Instant,
    notifier: crate::event::notify::Notifier,
    files: RefCell<FileCache>,
    uri_buf: UriBuf,
    fs_path: FsPath,
    /// `temp_path` for open(2), made once (and again on reload).
    temp_dir: CString,
    /// Access-log line scratch (fixed, reused).
    access_buf: Box<[u8; 4096]>,
    /// multipart/byteranges states for multi-range responses.
    multiparts: crate::static_files::body::Multiparts,
    /// Connections per client address (`limit_conn_per_ip`).
    per_address: PerAddress,
    /// Connections refused by `limit_conn_per_ip` since the last log line about it, and when
    /// that line may come (at most one a second).
    refused: u64,
    refused_log_at: Instant,
    /// The address each slot counts against `limit_conn_per_ip` (`None`: a trusted peer, not
    /// counted, or not yet known — a PROXY protocol header is awaited).
    counted: Vec<Option<IpAddr>>,
    /// Every `set_real_ip_from` network: peers not counted at accept (see `server::realip`).
    trusted: Vec<Cidr>,
    /// `health` locations answer 503: a graceful stop (or an upgrade) began.
    draining: bool,
    /// A graceful stop waiting for `shutdown_delay` to pass: when it proceeds, and the signal.
    delayed_stop: Option<(Instant, i32)>,
    /// An in-place upgrade under way (`upgrade.rs`).
    upgrade: Option<upgrade::Upgrade>,
    /// This image took its programs over from the previous one (`adopt`): the loop resumes the
    /// watchdog instead of starting it.
    adopted: bool,
    /// The control socket (`uwgate ctl`); off unless `attach_control` gave one.
    control: Control,
    /// This image's identity for `ctl upgrade` (CLOCK_MONOTONIC ns when it was made).
    image: u64,
    /// How the last upgrade this image knows of ended (`/version`).
    last_upgrade: Option<upgrade::Outcome>,
    /// The watchdog generation requests waiting for a program were last woken at.
    program_generation: u64,
}

/// Binds every `listen` address of the config (deduplicated).
pub fn bind_all(cfg: &Config) -> io::Result<Vec<(std::net::TcpListener, SocketAddr)>> {
    bind_all_inheriting(cfg, |_| Ok(None))
}

/// [`bind_all`], taking each address's socket from `inherited` when it has one (an in-place
/// upgrade hands its listeners over) and binding only the others.
pub fn bind_all_inheriting(
    cfg: &Config,
    mut inherited: impl FnMut(SocketAddr) -> io::Result<Option<std::net::TcpListener>>,
) -> io::Result<Vec<(std::net::TcpListener, SocketAddr)>> {
    let mut out: Vec<(std::net::TcpListener, SocketAddr)> = Vec::new();
    for server in &cfg.servers {
        for &addr in &server.listen {
            if out.iter().any(|(_, a)| *a == addr) {
                continue;
            }
            if out.len() >= MAX_LISTENERS {
                return Err(io::Error::other("too many listen addresses"));
            }
            if let Some(sock) = inherited(addr)? {
                out.push((sock, addr));
                continue;
            }
            let sock = sys::listen_tcp(addr, cfg.global.listen_backlog)
                .map_err(|e| io::Error::new(e.kind(), format!("bind() to {addr} failed: {e}")))?;
            out.push((sock, addr));
        }
    }
    Ok(out)
}

/// `temp_path` as a C string (a path with a NUL cannot be configured; it becomes "/").
fn temp_dir(cfg: &Config) -> CString {
    CString::new(cfg.global.temp_path.as_os_str().as_encoded_bytes())
        .unwrap_or_else(|_| c"/".to_owned())
}

/// The stub_status counter an activity counts under.
fn counter(stats: &mut Stats, activity: Activity) -> &mut u64 {
    match activity {
        Activity::Waiting => &mut stats.waiting,
        Activity::Reading => &mut stats.reading,
        Activity::Writing => &mut stats.writing,
        Activity::AwaitingProgram => &mut stats.awaiting_program,
    }
}

/// Whether some `[server]` listens on `addr` with `proxy_protocol`.
fn proxy_protocol_at(cfg: &Config, addr: SocketAddr) -> bool {
    cfg.servers.iter().any(|s| s.proxy_protocol.contains(&addr))
}

impl Gate {
    /// Builds the loop around already-bound listeners and a signalfd.
    pub fn new(
        cfg: Config,
        bound: Vec<(std::net::TcpListener, SocketAddr)>,
        signals: OwnedFd,
    ) -> io::Result<Gate> {
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNAL,
            Interest::READABLE,
        )?;
        let mut listeners = Vec::with_capacity(bound.len());
        for (i, (sock, addr)) in bound.into_iter().enumerate() {
            let mut sock = TcpListener::from_std(sock);
            poll.registry()
                .register(&mut sock, Token(LISTENER_BASE + i), Interest::READABLE)?;
            listeners.push(Listener {
                sock,
                addr,
                proxy_protocol: proxy_protocol_at(&cfg, addr),
            });
        }
        let g = &cfg.global;
        let size = crate::server::conn::large_buffer_size(&cfg);
        let watchdog = Watchdog::new(&cfg.programs).map_err(io::Error::other)?;
        let now = Instant::now();
        let mut gate = Gate {
            poll,
            router: Router::new(&cfg),
            listeners,
            conns: Slab::new(g.worker_connections),
            queued: vec![false; g.worker_connections],
            bufs: Buffers {
                heads: BufferPool::new(g.worker_connections, HEAD_BUFFER),
                large: BufferPool::new(g.buffer_pool, size),
            },
            proxies: Slab::new(g.buffer_pool.max(1)),
            groups: Groups::new(&cfg),
            head_limit: g.client_header_buffer_size,
            buf_waiters: VecDeque::with_capacity(g.worker_connections),
            run_queue: VecDeque::with_capacity(g.worker_connections),
            date_cache: DateCache::new(),
            date: [b' '; 29],
            now,
            unix: 0,
            stats: Stats::default(),
            accept_paused: false,
            stopping: None,
            signals,
            watchdog,
            next_sweep: now + SWEEP,
            notifier: crate::event::notify::Notifier::from_env(),
            files: RefCell::new(FileCache::new(g.open_file_cache, g.open_file_cache_valid)),
            uri_buf: RefCell::new([0u8; URI_MAX]),
            fs_path: RefCell::new(PathBuf0::new()),
            temp_dir: temp_dir(&cfg),
            access_buf: Box::new([0u8; 4096]),
            per_address: PerAddress::new(g.worker_connections, g.limit_conn_per_ip),
            multiparts: crate::static_files::body::Multiparts::new(MULTIPART_STATES),
            refused: 0,
            refused_log_at: now,
            counted: vec![None; g.worker_connections],
            trusted: crate::server::realip::trusted_anywhere(&cfg),
            draining: false,
            delayed_stop: None,
            upgrade: None,
            adopted: false,
            control: Control::off(),
            image: sys::exec::monotonic_ns(),
            last_upgrade: None,
            program_generation: 0,
            cfg,
        };
        gate.tick_clock();
        Ok(gate)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Serves the control socket `main` bound (before privileges dropped) in this loop.
    pub fn attach_control(&mut self, mut control: Control) -> io::Result<()> {
        control.register(self.poll.registry())?;
        self.control = control;
        Ok(())
    }

    /// Runs until a stop signal has been handled and everything has drained.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.notifier.ready(self.now);
        if self.adopted {
            self.watchdog.resume(self.poll.registry(), self.now);
        } else {
            self.watchdog.start(self.poll.registry(), self.now);
        }
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if sys::interrupted(&e) {
                    continue;
                }
                return Err(e);
            }
            self.tick_clock();
            for ev in events.iter() {
                self.on_event(ev);
            }
            self.run_queued();
            if self.watchdog.has_pending_output() {
                self.watchdog.drain_pending(self.poll.registry(), self.now);
            }
            if self.watchdog.next_deadline().is_some_and(|d| d <= self.now) {
                self.watchdog.on_timer(self.poll.registry(), self.now);
            }
            if self.control.wants_turn(self.now) {
                self.control_turn();
            }
            self.wake_program_waiters(false);
            if self.now >= self.next_sweep {
                self.sweep();
                self.next_sweep = self.now + SWEEP;
            }
            self.notifier.tick(self.now);
            self.check_delayed_stop();
            if self.upgrade.is_some() {
                self.upgrade_tick();
            }
            if self.stopping.is_some() && self.upgrade.is_none() && self.stop_done() {
                log::info!("exiting");
                return Ok(());
            }
        }
    }

    fn tick_clock(&mut self) {
        self.now = Instant::now();
        self.unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.date = *self.date_cache.get(self.unix);
    }

    fn poll_timeout(&self) -> Duration {
        if !self.run_queue.is_empty() || self.watchdog.has_pending_output() {
            return Duration::ZERO;
        }
        let mut timeout = if self.conns.is_empty() && !self.accept_paused {
            Duration::from_secs(1)
        } else {
            self.next_sweep.saturating_duration_since(self.now)
        };
        if let Some(d) = self.watchdog.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(self.now));
        }
        if let Some(d) = self.stopping {
            timeout = timeout.min(d.saturating_duration_since(self.now));
        }
        if let Some((d, _)) = self.delayed_stop {
            timeout = timeout.min(d.saturating_duration_since(self.now));
        }
        if let Some(d) = self.notifier.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(self.now));
        }
        if let Some(d) = self.upgrade_deadline() {
            timeout = timeout.min(d.saturating_duration_since(self.now));
        }
        if let Some(d) = self.control.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(self.now));
        }
        timeout
    }

    fn on_event(&mut self, ev: &mio::event::Event) {
        let token = ev.token().0;
        if ev.token() == SIGNAL {
            self.on_signals();
        } else if token >= watchdog::TOKEN_BASE {
            self.watchdog.on_event(self.poll.registry(), ev, self.now);
        } else if token >= control::TOKEN_BASE {
            self.on_control(ev.token());
        } else if token >= CONN_BASE {
            let i = (token - CONN_BASE) / 2;
            let upstream_side = (token - CONN_BASE) % 2 == 1;
            let Some(conn) = self.conns.get_mut(i) else {
                return;
            };
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
            if upstream_side {
                let Some(p) = conn.proxy_slot().and_then(|pi| self.proxies.get_mut(pi)) else {
                    return;
                };
                p.on_event(readable, ev.is_read_closed());
            } else {
                conn.on_readiness(readable, writable, ev.is_read_closed());
            }
            self.drive(i);
        } else if token >= LISTENER_BASE {
            self.accept_all(token - LISTENER_BASE);
        }
    }

    fn on_signals(&mut self) {
        loop {
            match sys::read_signal(self.signals.as_raw_fd()) {
                Ok(Some(sig)) => match sig {
                    libc::SIGCHLD => {
                        self.watchdog.on_sigchld(self.poll.registry(), self.now);
                        self.upgrade_on_sigchld();
                    }
                    libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => self.begin_stop(sig),
                    libc::SIGHUP => self.reload(),
                    libc::SIGUSR1 => {
                        log::info!("SIGUSR1: reopening the syslog socket");
                        crate::logging::reconnect();
                    }
                    libc::SIGUSR2 => {
                        // Refusals are logged by `upgrade` itself.
                        let _ = self.upgrade();
                    }
                    _ => {}
                },
                Ok(None) => return,
                Err(e) => {
                    let e = crate::sys::ErrorText(&e);
                    log::error!("signalfd read failed: {e}");
                    return;
                }
            }
        }
    }

    fn accept_all(&mut self, li: usize) {
        if self.stopping.is_some() {
            return;
        }
        loop {
            if self.conns.is_full() && self.conns.idle_oldest().is_none() {
                // Every slot busy, none idle: leave new connections in the listen backlog.
                self.accept_paused = true;
                return;
            }
            let Some(listener) = self.listeners.get(li) else {
                return;
            };
            let (listen_addr, proxy_protocol) = (listener.addr, listener.proxy_protocol);
            match listener.sock.accept() {
                Ok((sock, peer)) => self.admit(sock, peer, listen_addr, proxy_protocol),
                Err(e) if sys::would_block(&e) => {
                    self.accept_paused = false;
                    return;
                }
                Err(e) if sys::interrupted(&e) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => {
                    self.accept_failed(&e, listen_addr);
                    return;
                }
            }
        }
    }

    /// A client `accept` returned: counted against its address, given a slot (the longest-idle
    /// keep-alive connection makes room when none is free), registered and driven once.
    fn admit(
        &mut self,
        sock: mio::net::TcpStream,
        peer: SocketAddr,
        listen_addr: SocketAddr,
        proxy_protocol: bool,
    ) {
        let Some(counted) = self.count_at_accept(peer) else {
            // One address may not hold every slot: closed at once.
            self.refuse(peer.ip());
            return;
        };
        if self.conns.is_full() {
            // A client arrived and every slot is taken: the longest-idle keep-alive connection
            // makes room (only now, so none is closed for a wakeup that brings nobody).
            if let Some(old) = self.conns.idle_oldest() {
                self.close(old);
            }
        }
        self.stats.accepts += 1;
        let local = if listen_addr.ip().is_unspecified() {
            sock.local_addr().unwrap_or(listen_addr)
        } else {
            listen_addr
        };
        let _ = sock.set_nodelay(true);
        let timeout = self.cfg.global.client_header_timeout;
        let conn = Connection::new(sock, peer, local, self.now, timeout);
        let Ok(i) = self.conns.insert(conn) else {
            if let Some(ip) = counted {
                self.per_address.release(ip);
            }
            return;
        };
        if let Some(slot) = self.counted.get_mut(i) {
            *slot = counted;
        }
        if proxy_protocol {
            let timeout = self.cfg.global.proxy_protocol_timeout;
            if let Some(c) = self.conns.get_mut(i) {
                c.expect_proxy_header(self.now, timeout);
            }
        }
        let token = Token(CONN_BASE + 2 * i);
        let registered = self.conns.get_mut(i).map(|c| {
            self.poll.registry().register(
                c.socket(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        if let Some(Err(e)) = registered {
            let e = crate::sys::ErrorText(&e);
            log::error!("slot {i}: epoll registration failed: {e}");
            self.conns.remove(i);
            self.release_count(i);
            return;
        }
        self.stats.handled += 1;
        self.stats.active += 1;
        self.stats.waiting += 1;
        self.drive(i);
    }

    /// `accept` failed for another reason than an empty queue: out of descriptors or memory
    /// pauses accepting (the sweep resumes it), anything else is logged.
    #[cold]
    fn accept_failed(&mut self, e: &io::Error, listen_addr: SocketAddr) {
        let paused = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        let text = crate::sys::ErrorText(e);
        if paused {
            log::error!("accept() on {listen_addr} failed: {text}; pausing accept");
            self.accept_paused = true;
        } else {
            log::error!("accept() on {listen_addr} failed: {text}");
        }
    }

    /// Counts a new connection from `peer` against `limit_conn_per_ip`: `Some(Some(ip))` when
    /// counted, `Some(None)` for a peer in `set_real_ip_from` (a balancer holds many
    /// connections; its PROXY protocol source addresses are counted instead, see
    /// `admit_proxied`), `None` when the address is at its limit.
    fn count_at_accept(&mut self, peer: SocketAddr) -> Option<Option<IpAddr>> {
        let ip = peer.ip();
        if self.trusted.iter().any(|c| c.contains(ip)) {
            return Some(None);
        }
        self.per_address.admit(ip).then_some(Some(ip))
    }

    /// Slot `i`'s connection read its PROXY protocol header: when its peer is trusted, the
    /// source address the header names is counted now. `false` when that address is at its
    /// limit: the connection is closed (and the refusal logged like one at accept).
    fn admit_proxied(&mut self, i: usize) -> bool {
        let Some(conn) = self.conns.get_mut(i) else {
            return true;
        };
        let Some(source) = conn.take_proxy_source() else {
            return true;
        };
        let peer = conn.peer().ip();
        if !self.trusted.iter().any(|c| c.contains(peer)) {
            return true;
        }
        let ip = source.ip();
        if !self.per_address.admit(ip) {
            self.refuse(ip);
            self.close(i);
            return false;
        }
        if let Some(slot) = self.counted.get_mut(i) {
            *slot = Some(ip);
        }
        true
    }

    /// Gives back slot `i`'s count against `limit_conn_per_ip`.
    fn release_count(&mut self, i: usize) {
        if let Some(ip) = self.counted.get_mut(i).and_then(Option::take) {
            self.per_address.release(ip);
        }
    }

    /// A connection refused by `limit_conn_per_ip`: counted, and logged at most once a second.
    fn refuse(&mut self, ip: IpAddr) {
        self.refused += 1;
        if self.now >= self.refused_log_at {
            log::warn!(
                "limiting connections by address {}: {} refused (limit_conn_per_ip = {})",
                ip,
                self.refused,
                self.cfg.global.limit_conn_per_ip
            );
            self.refused = 0;
            self.refused_log_at = self.now + Duration::from_secs(1);
        }
    }

    /// Moves a connection's stub_status count from one activity to another.
    fn recount(&mut self, before: Activity, after: Activity) {
        if before != after {
            let c = counter(&mut self.stats, before);
            *c = c.saturating_sub(1);
            *counter(&mut self.stats, after) += 1;
        }
    }

    /// Runs one connection until it waits, yields, needs a buffer, or closes.
    fn drive(&mut self, i: usize) {
        // As stub_status sees it, the connection it answers is writing (nginx counts so).
        let mut stats = self.stats;
        let Some(before) = self.conns.get(i).map(|c| c.activity()) else {
            return;
        };
        let c = counter(&mut stats, before);
        *c = c.saturating_sub(1);
        stats.writing += 1;
        stats.requests += 1;
        let ctx = ctx!(self, stats, self.stopping.is_some());
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        let requests_before = conn.requests();
        let mut env = Env {
            bufs: &mut self.bufs,
            ctx: &ctx,
            proxies: &mut self.proxies,
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: Token(CONN_BASE + 2 * i + 1),
            access_buf: self.access_buf.as_mut_slice(),
            slot: i,
        };
        let step = conn.drive(&mut env);
        self.after_step(i, before, requests_before, step);
    }

    /// Applies what a connection's turn returned.
    fn after_step(&mut self, i: usize, before: Activity, requests_before: u32, step: Step) {
        let Some(conn) = self.conns.get(i) else {
            return;
        };
        let after = conn.activity();
        let served = conn.requests().saturating_sub(requests_before);
        let idle_keepalive = conn.is_idle_keepalive();
        self.stats.requests += u64::from(served);
        self.recount(before, after);
        if !self.admit_proxied(i) {
            self.wake_buffer_waiters();
            return;
        }
        match step {
            Step::Wait
                if self.stopping.is_some()
                    && after == Activity::Waiting
                    && !self.spared_by_upgrade(i) =>
            {
                self.close(i)
            }
            Step::Wait => {
                if idle_keepalive {
                    self.conns.idle_push(i);
                } else {
                    self.conns.idle_remove(i);
                }
            }
            Step::Yield => {
                self.conns.idle_remove(i);
                self.enqueue(i);
            }
            Step::NeedBuffer => {
                self.conns.idle_remove(i);
                self.buf_waiters.push_back(i);
                if self.bufs.large.available() == 0 {
                    self.evict_stalled(i);
                }
            }
            Step::Close => self.close(i),
        }
        self.wake_buffer_waiters();
    }

    /// The pool is dry and slot `needy` waits for a buffer: closes the connection whose
    /// client has made no progress for longest (at least `EVICT_AFTER`) among those holding a
    /// large buffer while they wait on their client. `true` when one was closed. A scan over
    /// the slots, done only when the pool is empty.
    fn evict_stalled(&mut self, needy: usize) -> bool {
        let Some(cutoff) = self.now.checked_sub(EVICT_AFTER) else {
            return false;
        };
        let mut victim: Option<(usize, Instant)> = None;
        for j in self.conns.occupied() {
            let Some(since) = self
                .conns
                .get(j)
                .and_then(|c| c.stalled_since(&self.proxies))
            else {
                continue;
            };
            if j != needy && since <= cutoff && victim.is_none_or(|(_, t)| since < t) {
                victim = Some((j, since));
            }
        }
        let Some((j, _)) = victim else {
            return false;
        };
        let ctx = ctx!(self, self.stats, self.stopping.is_some());
        if let Some(c) = self.conns.get_mut(j) {
            c.evict(&ctx, j);
        }
        self.stats.evicted += 1;
        self.close(j);
        true
    }

    fn enqueue(&mut self, i: usize) {
        if let Some(q) = self.queued.get_mut(i) {
            if !*q {
                *q = true;
                self.run_queue.push_back(i);
            }
        }
    }

    fn wake_buffer_waiters(&mut self) {
        while self.bufs.large.available() > 0 {
            let Some(w) = self.buf_waiters.pop_front() else {
                return;
            };
            self.enqueue(w);
        }
    }

    fn run_queued(&mut self) {
        // Only what is queued now runs this turn; re-queued work waits for the next poll.
        for _ in 0..self.run_queue.len() {
            let Some(i) = self.run_queue.pop_front() else {
                break;
            };
            if let Some(q) = self.queued.get_mut(i) {
                *q = false;
            }
            if self.conns.get(i).is_some() {
                self.drive(i);
            }
        }
    }

    fn close(&mut self, i: usize) {
        let Some(mut conn) = self.conns.remove(i) else {
            return;
        };
        let activity = conn.activity();
        self.release_count(i);
        conn.release(&mut self.bufs, &mut self.proxies, self.poll.registry());
        // Out of the epoll set before the close: a child forked a moment ago may still hold a
        // copy of the descriptor, and a close alone would leave that copy registered.
        let _ = self.poll.registry().deregister(conn.socket());
        let c = counter(&mut self.stats, activity);
        *c = c.saturating_sub(1);
        self.stats.active = self.stats.active.saturating_sub(1);
        if let Some(q) = self.queued.get_mut(i) {
            *q = false;
        }
        drop(conn);
        if self.accept_paused && self.stopping.is_none() {
            self.accept_paused = false;
            for li in 0..self.listeners.len() {
                self.accept_all(li);
            }
        }
    }

    /// Requests waiting for their location's program (`uwsgi_program`) run again when a
    /// program's state changed — or, with `always`, on the sweep, so a program that just came
    /// up is tried again — and go on or wait on. A scan of the slots, only while some wait.
    fn wake_program_waiters(&mut self, always: bool) {
        let generation = self.watchdog.generation();
        if generation == self.program_generation && !always {
            return;
        }
        self.program_generation = generation;
        if self.stats.awaiting_program == 0 {
            return;
        }
        for i in 0..self.queued.len() {
            if self.conns.get(i).is_some_and(|c| c.awaits_program()) {
                self.enqueue(i);
            }
        }
    }

    /// Checks every slot's deadline.
    fn sweep(&mut self) {
        self.wake_program_waiters(true);
        if self.accept_paused && !self.conns.is_full() && self.stopping.is_none() {
            self.accept_paused = false;
            for li in 0..self.listeners.len() {
                self.accept_all(li);
            }
        }
        let now = self.now;
        let expired: heapless::Vec<usize, 256> = self
            .conns
            .occupied()
            .filter(|&i| {
                self.conns
                    .get(i)
                    .and_then(|c| c.deadline())
                    .is_some_and(|d| d.at <= now)
            })
            .take(256)
            .collect();
        for i in expired {
            self.on_timeout(i);
        }
        // Waiters the pool could not serve: stalled holders may have become evictable.
        for _ in 0..self.buf_waiters.len() {
            if self.bufs.large.available() > 0 || !self.evict_stalled(usize::MAX) {
                break;
            }
        }
        self.wake_buffer_waiters();
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                let open: Vec<usize> = self.conns.occupied().collect();
                if !open.is_empty() {
                    log::warn!(
                        "shutdown_timeout reached: closing {} connection(s) still in flight",
                        open.len()
                    );
                }
                for i in open {
                    self.close(i);
                }
            }
        }
    }

    /// A connection's deadline passed: it says what that means.
    fn on_timeout(&mut self, i: usize) {
        let Some(before) = self.conns.get(i).map(|c| c.activity()) else {
            return;
        };
        let ctx = ctx!(self, self.stats, self.stopping.is_some());
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        let requests_before = conn.requests();
        let mut env = Env {
            bufs: &mut self.bufs,
            ctx: &ctx,
            proxies: &mut self.proxies,
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: Token(CONN_BASE + 2 * i + 1),
            access_buf: self.access_buf.as_mut_slice(),
            slot: i,
        };
        let step = match conn.on_timeout(&mut env) {
            Some(step) => step,
            None => conn.drive(&mut env),
        };
        self.after_step(i, before, requests_before, step);
    }

    /// `health` locations answer 503 from now on (`true`), so balancers stop sending this box
    /// new requests, or again 200 (`false`). A graceful stop sets it; an in-place upgrade sets
    /// it before it begins and clears it if it is abandoned.
    pub fn set_draining(&mut self, on: bool) {
        if self.draining != on {
            log::info!(
                "{} draining: health locations answer {}",
                if on { "begin" } else { "end" },
                if on { 503 } else { 200 }
            );
        }
        self.draining = on;
    }

    /// SIGTERM/SIGINT/SIGQUIT: a graceful stop, after `shutdown_delay` of draining when one is
    /// set (health locations answer 503 at once, everything else is served as before, answers
    /// close their connections). A second stop signal during the delay stops at once.
    fn begin_stop(&mut self, sig: i32) {
        if self.stopping.is_some() && self.upgrade.is_none() {
            return;
        }
        self.cancel_upgrade();
        self.set_draining(true);
        let delay = self.cfg.global.shutdown_delay;
        if self.delayed_stop.take().is_none() && !delay.is_zero() {
            log::info!(
                "signal {sig} received: draining for {delay:?} (shutdown_delay), then a graceful stop"
            );
            self.notifier.stopping();
            self.delayed_stop = Some((self.now + delay, sig));
            return;
        }
        self.stop_now(sig);
    }

    /// The `shutdown_delay` of a graceful stop has passed: stop.
    fn check_delayed_stop(&mut self) {
        if let Some((at, sig)) = self.delayed_stop {
            if self.now >= at {
                self.delayed_stop = None;
                self.stop_now(sig);
            }
        }
    }

    /// The graceful stop itself: stop accepting, close what is quiet, stop the programs.
    fn stop_now(&mut self, sig: i32) {
        log::info!(
            "signal {sig} received: graceful stop (in-flight responses get {:?})",
            self.cfg.global.shutdown_timeout
        );
        self.stopping = Some(self.now + self.cfg.global.shutdown_timeout);
        self.notifier.stopping();
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
        self.listeners.clear();
        self.close_quiet(true);
        self.watchdog.stop_all(self.poll.registry(), self.now);
    }

    /// Closes the connections with nothing in flight: idle keep-alive ones, and with
    /// `fresh_too` those that have not sent their first request yet.
    fn close_quiet(&mut self, fresh_too: bool) {
        let quiet: Vec<usize> = self
            .conns
            .occupied()
            .filter(|&i| {
                self.conns
                    .get(i)
                    .is_some_and(|c| c.is_quiet() && (fresh_too || c.requests() > 0))
            })
            .collect();
        for i in quiet {
            self.close(i);
        }
    }

    fn stop_done(&self) -> bool {
        self.conns.is_empty() && self.watchdog.all_stopped()
    }

    /// Readiness of a control socket token; what the session asks of the loop is done here.
    fn on_control(&mut self, token: Token) {
        let mut env = control_env!(self);
        match self.control.on_event(token, &mut env) {
            None => {}
            Some((session, control::Ask::Reload)) => {
                self.notifier.reloading();
                let result = self.reload_config();
                self.notifier.reloaded();
                let mut env = control_env!(self);
                self.control.reloaded(session, result, &mut env);
            }
            Some((_, control::Ask::Shutdown)) => self.begin_stop(libc::SIGTERM),
            Some((session, control::Ask::Upgrade)) => {
                // As SIGUSR2; a refusal is logged by `upgrade` and answered with its why.
                let result = self.upgrade();
                let bound = self.upgrade_outcome_bound();
                let mut env = control_env!(self);
                self.control.upgrade_asked(session, result, bound, &mut env);
            }
        }
    }

    /// Control sessions that wait for programs or stream their output.
    fn control_turn(&mut self) {
        let mut env = control_env!(self);
        self.control.turn(&mut env);
    }

    /// SIGHUP: re-read the config; a bad one is logged and the running one kept.
    fn reload(&mut self) {
        if self.upgrade.is_some() {
            log::warn!("SIGHUP ignored: an upgrade is in progress (the new image reads the file)");
            return;
        }
        self.notifier.reloading();
        let _ = self.reload_config();
        self.notifier.reloaded();
    }

    /// Reloads; `Err` (also logged) when the running configuration was kept.
    fn reload_config(&mut self) -> Result<(), String> {
        let path = self.cfg.file.clone();
        let mut new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                return Err(e.to_string());
            }
        };
        for w in &new.warnings {
            log::warn!("{w}");
        }
        // Sizes fixed at start stay as they are until a restart; scaled to the descriptor
        // limit as at start, so a scaled-down start compares like with like.
        let _ = config::descriptors::fit_to_limit(&mut new.global, sys::nofile_limit());
        let (old, g) = (&self.cfg.global, &mut new.global);
        if g.worker_connections != old.worker_connections
            || g.buffer_size != old.buffer_size
            || g.buffer_pool != old.buffer_pool
            || g.client_header_buffer_size != old.client_header_buffer_size
        {
            log::warn!("reload: worker_connections and buffer sizes change only on restart");
            g.worker_connections = old.worker_connections;
            g.buffer_size = old.buffer_size;
            g.buffer_pool = old.buffer_pool;
            g.client_header_buffer_size = old.client_header_buffer_size;
        }
        if let Err(e) = self.rebind(&new) {
            let e = crate::sys::ErrorText(&e);
            log::error!("reload failed, keeping the running configuration: {e}");
            return Err(e.to_string());
        }
        crate::logging::reconfigure(&crate::log_settings(&new, crate::stderr_logging()));
        self.watchdog
            .reload(self.poll.registry(), &new.programs, self.now);
        self.router = Router::new(&new);
        self.groups = Groups::new(&new);
        self.temp_dir = temp_dir(&new);
        self.per_address.set_limit(new.global.limit_conn_per_ip);
        self.trusted = crate::server::realip::trusted_anywhere(&new);
        for l in &mut self.listeners {
            l.proxy_protocol = proxy_protocol_at(&new, l.addr);
        }
        if new.global.control_socket != self.cfg.global.control_socket {
            log::warn!("reload: control_socket changes only on restart or upgrade");
        }
        self.cfg = new;
        log::info!("configuration reloaded from {}", path.display());
        Ok(())
    }

    /// Opens listeners the new config adds and closes those it drops.
    fn rebind(&mut self, new: &Config) -> io::Result<()> {
        let wanted: Vec<SocketAddr> = new
            .servers
            .iter()
            .flat_map(|s| s.listen.iter().copied())
            .collect();
        let mut added = Vec::new();
        for &addr in &wanted {
            if self.listeners.iter().any(|l| l.addr == addr)
                || added.iter().any(|(_, a)| *a == addr)
            {
                continue;
            }
            let sock = sys::listen_tcp(addr, new.global.listen_backlog)
                .map_err(|e| io::Error::new(e.kind(), format!("bind() to {addr} failed: {e}")))?;
            added.push((TcpListener::from_std(sock), addr));
        }
        for l in &mut self.listeners {
            if !wanted.contains(&l.addr) {
                let _ = self.poll.registry().deregister(&mut l.sock);
            }
        }
        self.listeners.retain(|l| wanted.contains(&l.addr));
        for (sock, addr) in added {
            self.listeners.push(Listener {
                sock,
                addr,
                proxy_protocol: proxy_protocol_at(new, addr),
            });
        }
        if self.listeners.len() > MAX_LISTENERS {
            return Err(io::Error::other("too many listen addresses"));
        }
        // Tokens follow positions: re-register everything under its (possibly new) index.
        for (i, l) in self.listeners.iter_mut().enumerate() {
            let token = Token(LISTENER_BASE + i);
            if self
                .poll
                .registry()
                .reregister(&mut l.sock, token, Interest::READABLE)
                .is_err()
            {
                self.poll
                    .registry()
                    .register(&mut l.sock, token, Interest::READABLE)?;
            }
        }
        for li in 0..self.listeners.len() {
            self.accept_all(li);
        }
        Ok(())
    }
}
