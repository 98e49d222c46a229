//! The one loop: a single `mio::Poll`, edge-triggered, that owns every socket, the signalfd
//! and the watchdog's pipes, and turns readiness and deadlines into connection steps.
//!
//! Owns: accept (paused at the slot cap), the slot table and buffer pool, the run queue,
//! timers (a sweep every `SWEEP` over the slots), signals, graceful stop and reload.
//! Never: sleeps, blocks, or lets one connection run unbounded (steps are capped).

use crate::config::{self, Config};
use crate::conn::{Conn, Phase, Step};
use crate::dispatch::{self, Ctx, Extra, Stats};
use crate::http::date::DateCache;
use crate::http::request::{head_overflow_status, parse_head};
use crate::http::Status;
use crate::pool::BufferPool;
use crate::router::Router;
use crate::slab::Slab;
use crate::sys;
use crate::upstream::{self, peers::Groups, Proxy, UpCtx};
use crate::watchdog::{self, Watchdog};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The signalfd's token.
const SIGNAL: Token = Token(0);
/// Listener `i` is `Token(LISTENER_BASE + i)`.
const LISTENER_BASE: usize = 1;
const MAX_LISTENERS: usize = 256;
/// Connection slot `i` is `Token(CONN_BASE + 2 * i)` (client) and `+ 1` (its upstream).
const CONN_BASE: usize = LISTENER_BASE + MAX_LISTENERS;
/// Steps one connection may take per turn without finishing a request; reaching it is a bug,
/// logged, and the slot closed.
const MAX_STEPS: usize = 64;
/// Pipelined requests answered in one turn before the connection yields to the others.
const MAX_PIPELINED_PER_TURN: usize = 16;
/// How often deadlines are checked: timeouts are coarse (seconds), so a sweep over the
/// slots four times a second is cheaper and simpler than a timer structure.
const SWEEP: Duration = Duration::from_millis(250);
/// How long we keep reading (and discarding) from a client we answered early.
const LINGER: Duration = Duration::from_secs(2);

struct Listener {
    sock: TcpListener,
    addr: SocketAddr,
}

/// The request context lent to a connection step: the loop's shared, read-only parts.
/// A macro rather than a method so the borrows stay per field (the slot is borrowed mutably
/// beside it).
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
            stopping: $stopping,
            watchdog: &$gate.watchdog,
            files: &$gate.files,
            uri_buf: &$gate.uri_buf,
            fs_path: &$gate.fs_path,
        }
    };
}

/// Everything the loop owns.
pub struct Gate {
    poll: Poll,
    cfg: Config,
    router: Router,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    pool: BufferPool,
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
    notifier: crate::notify::Notifier,
    files: std::cell::RefCell<crate::file_cache::FileCache>,
    uri_buf: crate::dispatch::UriBuf,
    fs_path: crate::static_files::FsPath,
    /// Access-log line scratch (fixed, reused).
    access_buf: Box<[u8; 4096]>,
}

/// Binds every `listen` address of the config (deduplicated).
pub fn bind_all(cfg: &Config) -> io::Result<Vec<(std::net::TcpListener, SocketAddr)>> {
    let mut out: Vec<(std::net::TcpListener, SocketAddr)> = Vec::new();
    for server in &cfg.servers {
        for &addr in &server.listen {
            if out.iter().any(|(_, a)| *a == addr) {
                continue;
            }
            if out.len() >= MAX_LISTENERS {
                return Err(io::Error::other("too many listen addresses"));
            }
            let sock = sys::listen_tcp(addr, cfg.global.listen_backlog)
                .map_err(|e| io::Error::new(e.kind(), format!("bind() to {addr} failed: {e}")))?;
            out.push((sock, addr));
        }
    }
    Ok(out)
}

/// Size of one pool buffer: the head limit plus an output region of at least 4 KiB.
pub fn buffer_size(cfg: &Config) -> usize {
    let g = &cfg.global;
    g.buffer_size.max(g.client_header_buffer_size + 4096)
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
            listeners.push(Listener { sock, addr });
        }
        let g = &cfg.global;
        let size = buffer_size(&cfg);
        let watchdog = Watchdog::new(&cfg.programs).map_err(io::Error::other)?;
        let now = Instant::now();
        let mut gate = Gate {
            poll,
            router: Router::new(&cfg),
            listeners,
            conns: Slab::new(g.worker_connections),
            pool: BufferPool::new(g.buffer_pool, size),
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
            notifier: crate::notify::Notifier::from_env(),
            files: std::cell::RefCell::new(crate::file_cache::FileCache::new(
                g.open_file_cache,
                g.open_file_cache_valid,
            )),
            uri_buf: std::cell::RefCell::new([0u8; 4096]),
            fs_path: std::cell::RefCell::new(crate::static_files::PathBuf0::new()),
            access_buf: Box::new([0u8; 4096]),
            cfg,
        };
        gate.tick_clock();
        Ok(gate)
    }

    /// Runs until a stop signal has been handled and everything has drained.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.notifier.ready(self.now);
        self.watchdog.start(self.poll.registry(), self.now);
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
            if self.now >= self.next_sweep {
                self.sweep();
                self.next_sweep = self.now + SWEEP;
            }
            self.notifier.tick(self.now);
            if self.stopping.is_some() && self.stop_done() {
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
        if let Some(d) = self.notifier.next_deadline() {
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
        } else if token >= CONN_BASE {
            let i = (token - CONN_BASE) / 2;
            let upstream_side = (token - CONN_BASE) % 2 == 1;
            if let Some(conn) = self.conns.get_mut(i) {
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                if upstream_side {
                    let Some(p) = conn.proxy.and_then(|pi| self.proxies.get_mut(pi)) else {
                        return;
                    };
                    p.up_readable |= readable;
                    p.up_read_closed |= ev.is_read_closed();
                } else {
                    conn.readable |= readable;
                    conn.writable |= writable;
                    conn.read_closed |= ev.is_read_closed();
                }
                self.drive(i);
            }
        } else if token >= LISTENER_BASE {
            self.accept_all(token - LISTENER_BASE);
        }
    }

    fn on_signals(&mut self) {
        loop {
            match sys::read_signal(self.signals.as_raw_fd()) {
                Ok(Some(sig)) => match sig {
                    libc::SIGCHLD => self.watchdog.on_sigchld(self.poll.registry(), self.now),
                    libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => self.begin_stop(sig),
                    libc::SIGHUP => self.reload(),
                    libc::SIGUSR1 => {
                        log::info!("SIGUSR1: reopening the syslog socket");
                        crate::logging::reconnect();
                    }
                    _ => {}
                },
                Ok(None) => return,
                Err(e) => {
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
            let listen_addr = listener.addr;
            match listener.sock.accept() {
                Ok((sock, peer)) => {
                    if self.conns.is_full() {
                        // A client arrived and every slot is taken: the longest-idle
                        // keep-alive connection makes room (only now, so none is closed
                        // for a wakeup that brings nobody).
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
                    let mut conn = Conn::new(sock, peer, local, self.now);
                    conn.deadline = Some(self.now + self.cfg.global.client_header_timeout);
                    let Ok(i) = self.conns.insert(conn) else {
                        continue;
                    };
                    let token = Token(CONN_BASE + 2 * i);
                    let registered = self.conns.get_mut(i).map(|c| {
                        self.poll.registry().register(
                            &mut c.sock,
                            token,
                            Interest::READABLE | Interest::WRITABLE,
                        )
                    });
                    if let Some(Err(e)) = registered {
                        log::error!("slot {i}: epoll registration failed: {e}");
                        self.conns.remove(i);
                        continue;
                    }
                    self.stats.handled += 1;
                    self.stats.active += 1;
                    self.count_phase(Phase::Idle, 1);
                    self.drive(i);
                }
                Err(e) if sys::would_block(&e) => {
                    self.accept_paused = false;
                    return;
                }
                Err(e) if sys::interrupted(&e) => continue,
                Err(e) => {
                    match e.raw_os_error() {
                        Some(libc::ECONNABORTED) => continue,
                        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                        | Some(libc::ENOMEM) => {
                            log::error!("accept() on {listen_addr} failed: {e}; pausing accept");
                            self.accept_paused = true;
                        }
                        _ => log::error!("accept() on {listen_addr} failed: {e}"),
                    }
                    return;
                }
            }
        }
    }

    fn count_phase(&mut self, phase: Phase, delta: i64) {
        let counter = phase_counter(&mut self.stats, phase);
        *counter = (*counter as i64 + delta).max(0) as u64;
    }

    /// Runs one connection until it waits, yields, needs a buffer, or closes.
    fn drive(&mut self, i: usize) {
        // As stub_status sees it, the connection it answers is writing (nginx counts so).
        let mut stats = self.stats;
        if let Some(c) = self.conns.get(i) {
            let counter = phase_counter(&mut stats, c.phase);
            *counter = counter.saturating_sub(1);
            stats.writing += 1;
            stats.requests += 1;
        }
        let ctx = ctx!(self, stats, self.stopping.is_some());
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        let before = conn.phase;
        let requests_before = conn.requests;
        let mut up = UpCtx {
            proxies: &mut self.proxies,
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: Token(CONN_BASE + 2 * i + 1),
        };
        let step = step(
            conn,
            &mut self.pool,
            &ctx,
            &mut up,
            self.access_buf.as_mut_slice(),
            i,
        );
        let after = conn.phase;
        let served = conn.requests - requests_before;
        let idle_keepalive = after == Phase::Idle && conn.requests > 0;
        self.stats.requests += served as u64;
        if before != after {
            self.count_phase(before, -1);
            self.count_phase(after, 1);
        }
        match step {
            Step::Wait if self.stopping.is_some() && after == Phase::Idle => self.close(i),
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
            }
            Step::Close => self.close(i),
        }
        self.wake_buffer_waiters();
    }

    fn enqueue(&mut self, i: usize) {
        if let Some(c) = self.conns.get_mut(i) {
            if !c.queued {
                c.queued = true;
                self.run_queue.push_back(i);
            }
        }
    }

    fn wake_buffer_waiters(&mut self) {
        while self.pool.available() > 0 {
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
            if let Some(c) = self.conns.get_mut(i) {
                c.queued = false;
                self.drive(i);
            }
        }
    }

    fn close(&mut self, i: usize) {
        let Some(mut conn) = self.conns.remove(i) else {
            return;
        };
        // Closing the socket takes it out of the epoll set: no EPOLL_CTL_DEL (see release).
        upstream::release(&mut conn, &mut self.pool, &mut self.proxies);
        if let Some(b) = conn.buf.take() {
            self.pool.checkin(b);
        }
        self.count_phase(conn.phase, -1);
        self.stats.active = self.stats.active.saturating_sub(1);
        drop(conn);
        if self.accept_paused && self.stopping.is_none() {
            self.accept_paused = false;
            for li in 0..self.listeners.len() {
                self.accept_all(li);
            }
        }
    }

    /// Checks every slot's deadline.
    fn sweep(&mut self) {
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
                    .and_then(|c| c.deadline)
                    .is_some_and(|d| d <= now)
            })
            .take(256)
            .collect();
        for i in expired {
            self.on_timeout(i);
        }
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

    fn on_timeout(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        match conn.phase {
            Phase::ReadingHead if conn.in_len > 0 && conn.status != 408 => {
                // Answer 408 once, best effort, then close whatever happens.
                log::info!(
                    "slot {i}: client {} timed out sending its request head",
                    conn.peer
                );
                if let Some(b) = conn.buf {
                    let ctx = ctx!(self, self.stats, true);
                    conn.head_only = false;
                    conn.head_len = 0;
                    dispatch::respond_error(
                        conn,
                        self.pool.get_mut(b),
                        &ctx,
                        Status::RequestTimeout,
                        Extra::None,
                    );
                    conn.deadline = Some(self.now + Duration::from_secs(1));
                    self.count_phase(Phase::ReadingHead, -1);
                    self.count_phase(Phase::Writing, 1);
                    self.drive(i);
                    return;
                }
                self.close(i);
            }
            Phase::Writing => {
                log::info!(
                    "slot {i}: client {} timed out reading the response",
                    conn.peer
                );
                self.close(i);
            }
            Phase::Proxy => {
                let ctx = ctx!(self, self.stats, self.stopping.is_some());
                let mut up = UpCtx {
                    proxies: &mut self.proxies,
                    groups: &mut self.groups,
                    registry: self.poll.registry(),
                    token: Token(CONN_BASE + 2 * i + 1),
                };
                match upstream::on_timeout(conn, &mut self.pool, &ctx, &mut up, i) {
                    Some(Step::Close) => self.close(i),
                    _ => {
                        let after = conn.phase;
                        if after != Phase::Proxy {
                            self.count_phase(Phase::Proxy, -1);
                            self.count_phase(after, 1);
                        }
                        self.drive(i);
                    }
                }
            }
            _ => self.close(i),
        }
    }

    fn begin_stop(&mut self, sig: i32) {
        if self.stopping.is_some() {
            return;
        }
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
        let quiet: Vec<usize> = self
            .conns
            .occupied()
            .filter(|&i| {
                self.conns.get(i).is_some_and(|c| {
                    c.phase == Phase::Idle || (c.phase == Phase::ReadingHead && c.in_len == 0)
                })
            })
            .collect();
        for i in quiet {
            self.close(i);
        }
        self.watchdog.stop_all(self.poll.registry(), self.now);
    }

    fn stop_done(&self) -> bool {
        self.conns.is_empty() && self.watchdog.all_stopped()
    }

    /// SIGHUP: re-read the config; a bad one is logged and the running one kept.
    fn reload(&mut self) {
        self.notifier.reloading();
        self.reload_config();
        self.notifier.reloaded();
    }

    fn reload_config(&mut self) {
        let path = self.cfg.file.clone();
        let mut new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                return;
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
            log::error!("reload failed, keeping the running configuration: {e}");
            return;
        }
        crate::logging::reconfigure(&crate::log_settings(&new, crate::stderr_logging()));
        self.watchdog
            .reload(self.poll.registry(), &new.programs, self.now);
        self.router = Router::new(&new);
        self.groups = Groups::new(&new);
        self.cfg = new;
        log::info!("configuration reloaded from {}", path.display());
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
            self.listeners.push(Listener { sock, addr });
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

/// The stub_status counter a phase counts under (nginx's Reading/Writing/Waiting).
fn phase_counter(stats: &mut Stats, phase: Phase) -> &mut u64 {
    match phase {
        Phase::Idle => &mut stats.waiting,
        Phase::ReadingHead | Phase::Discarding => &mut stats.reading,
        Phase::Writing | Phase::Lingering | Phase::Proxy => &mut stats.writing,
    }
}

/// One turn of a connection's state machine. Pure of the loop: it sees only its own slot,
/// the pool and the shared context.
fn step(
    conn: &mut Conn,
    pool: &mut BufferPool,
    ctx: &Ctx<'_>,
    up: &mut UpCtx<'_>,
    access_buf: &mut [u8],
    slot: usize,
) -> Step {
    let g = &ctx.cfg.global;
    let mut steps = 0;
    let mut served = 0;
    loop {
        steps += 1;
        if steps > MAX_STEPS {
            log::error!("bug: slot {slot} did not settle in {MAX_STEPS} steps; closing it");
            return Step::Close;
        }
        match conn.phase {
            Phase::Idle => {
                if !conn.readable {
                    return Step::Wait;
                }
                if conn.buf.is_none() {
                    match pool.checkout() {
                        Some(b) => conn.buf = Some(b),
                        // Pool empty: wait for a buffer (back-pressure), never allocate.
                        None => return Step::NeedBuffer,
                    }
                }
                conn.in_len = 0;
                conn.parsed_len = 0;
                conn.phase = Phase::ReadingHead;
            }
            Phase::ReadingHead => {
                let Some(b) = conn.buf else {
                    return Step::Close;
                };
                let buf = pool.get_mut(b);
                if conn.in_len > conn.parsed_len {
                    conn.parsed_len = conn.in_len;
                    match parse_head(&buf[..conn.in_len]) {
                        Ok(Some(head)) => {
                            conn.deadline = Some(ctx.now + g.send_timeout);
                            if let Some((si, li)) = dispatch::on_head(conn, buf, &head, ctx) {
                                if let Some(stop) =
                                    upstream::begin(conn, buf, &head, ctx, up, si, li)
                                {
                                    // No proxy slot yet: re-parse this head when woken.
                                    conn.parsed_len = 0;
                                    conn.requests = conn.requests.saturating_sub(1);
                                    return stop;
                                }
                            }
                            continue;
                        }
                        Ok(None) if conn.in_len >= ctx.head_limit => {
                            let status = head_overflow_status(&buf[..conn.in_len]);
                            request_error(conn, buf, ctx, status);
                            continue;
                        }
                        Ok(None) => {}
                        Err(status) => {
                            request_error(conn, buf, ctx, status);
                            continue;
                        }
                    }
                }
                if !conn.readable {
                    if conn.in_len == 0 {
                        // Nothing buffered: an idle connection gives its buffer back.
                        pool.checkin(b);
                        conn.buf = None;
                        conn.phase = Phase::Idle;
                    }
                    return Step::Wait;
                }
                let was_empty = conn.in_len == 0;
                match conn.read_into(buf, ctx.head_limit) {
                    Ok(0) => return Step::Close,
                    Ok(_) => {
                        if was_empty && conn.requests > 0 {
                            // A keep-alive request began: the whole head must arrive within
                            // client_header_timeout (a total deadline, not per read).
                            conn.deadline = Some(ctx.now + g.client_header_timeout);
                        }
                    }
                    Err(e) if sys::would_block(&e) => {}
                    Err(_) => return Step::Close,
                }
            }
            Phase::Writing => {
                let Some(b) = conn.buf else {
                    return Step::Close;
                };
                let buf = pool.get_mut(b);
                match conn.write_out(buf, ctx.head_limit) {
                    Ok(true) => {
                        if g.access_log && conn.status != 0 {
                            log_access(conn, buf, ctx.unix, access_buf);
                        }
                        if let Some(next) = finish(conn, buf, ctx) {
                            return next;
                        }
                        // Progress made: the step cap counts steps without a finished request.
                        steps = 0;
                        served += 1;
                        if served >= MAX_PIPELINED_PER_TURN {
                            // Let other connections run; the rest of the pipeline is queued.
                            return Step::Yield;
                        }
                    }
                    Ok(false) => {
                        conn.deadline = Some(ctx.now + g.send_timeout);
                        return if conn.writable {
                            Step::Yield
                        } else {
                            Step::Wait
                        };
                    }
                    Err(e) => {
                        log::debug!("slot {slot}: write to {} failed: {e}", conn.peer);
                        return Step::Close;
                    }
                }
            }
            Phase::Proxy => {
                if let Some(stop) = upstream::step(conn, pool, ctx, up, slot) {
                    return stop;
                }
            }
            Phase::Discarding => {
                let Some(b) = conn.buf else {
                    return Step::Close;
                };
                let buf = pool.get_mut(b);
                match dispatch::discard_body(conn, buf, ctx) {
                    Ok(true) => {
                        conn.phase = Phase::Writing;
                        conn.deadline = Some(ctx.now + g.send_timeout);
                    }
                    Ok(false) => {
                        conn.deadline = Some(dispatch::body_deadline(
                            ctx,
                            conn.discard_started,
                            conn.discard_seen,
                        ));
                        return Step::Wait;
                    }
                    Err(status) => {
                        // Framing lost inside the body: the prepared answer is replaced.
                        conn.body = crate::conn::Body::None;
                        request_error(conn, buf, ctx, status);
                        conn.requests = conn.requests.saturating_sub(1);
                    }
                }
            }
            Phase::Lingering => {
                let Some(b) = conn.buf else {
                    return Step::Close;
                };
                let buf = pool.get_mut(b);
                if !conn.readable {
                    return Step::Wait;
                }
                conn.in_len = 0;
                match conn.read_into(buf, ctx.head_limit) {
                    Ok(0) => return Step::Close,
                    Ok(_) => {}
                    Err(e) if sys::would_block(&e) => return Step::Wait,
                    Err(_) => return Step::Close,
                }
            }
        }
    }
}

/// A head that could not be parsed: answer with its status and close after.
fn request_error(conn: &mut Conn, buf: &mut [u8], ctx: &Ctx<'_>, status: Status) {
    conn.head_only = false;
    conn.head_len = 0;
    conn.keep_alive = false;
    conn.unread_body = true;
    conn.requests = conn.requests.saturating_add(1);
    dispatch::respond_error(conn, buf, ctx, status, Extra::None);
    conn.deadline = Some(ctx.now + ctx.cfg.global.send_timeout);
}

/// A response is fully sent: keep the connection alive (pipelined input first), linger, or close.
fn finish(conn: &mut Conn, buf: &mut [u8], ctx: &Ctx<'_>) -> Option<Step> {
    let g = &ctx.cfg.global;
    conn.body = crate::conn::Body::None;
    conn.status = 0;
    if !conn.keep_alive {
        if conn.unread_body || conn.in_len > conn.req_len {
            // Half-close and drain, so the client reads our answer instead of a RST.
            let _ = conn.sock.shutdown(std::net::Shutdown::Write);
            conn.phase = Phase::Lingering;
            conn.deadline = Some(ctx.now + LINGER);
            return None;
        }
        return Some(Step::Close);
    }
    let req_len = conn.req_len.min(conn.in_len);
    buf.copy_within(req_len..conn.in_len, 0);
    conn.in_len -= req_len;
    conn.head_len = 0;
    conn.req_len = 0;
    conn.parsed_len = 0;
    conn.phase = Phase::ReadingHead;
    conn.deadline = Some(if conn.in_len > 0 {
        ctx.now + g.client_header_timeout
    } else {
        ctx.now + g.keepalive_timeout
    });
    None
}

/// One access-log line in nginx's combined format.
fn log_access(conn: &Conn, buf: &[u8], unix: i64, out: &mut [u8]) {
    let head = &buf[..conn.head_len.min(conn.in_len)];
    let input = if head.is_empty() {
        &buf[..conn.in_len]
    } else {
        head
    };
    let line_end = input
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(input.len());
    let request_line = &input[..line_end];
    let (mut referer, mut agent): (&[u8], &[u8]) = (b"", b"");
    if !head.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        if req.parse(head).is_ok() {
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("referer") {
                    referer = h.value;
                } else if h.name.eq_ignore_ascii_case("user-agent") {
                    agent = h.value;
                }
            }
        }
    }
    let n = crate::logging::format_combined(
        out,
        conn.peer.ip(),
        unix,
        request_line,
        conn.status,
        conn.body_sent + conn.inline_body as u64,
        referer,
        agent,
    );
    crate::logging::access(&out[..n.min(out.len())]);
}
