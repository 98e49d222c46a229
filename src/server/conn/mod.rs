//! One client connection as a state machine: read a head, answer it (a file, a page, or by
//! forwarding it), write the answer, then wait for the next request, linger, or close.
//!
//! ```text
//! (ReadingProxy ──PROXY header──▶) Idle | ReadingHead     on a `listen … proxy_protocol` address
//! Idle ──readable──▶ ReadingHead ──head──▶ Writing ──done──▶ ReadingHead (pipelined) | Idle
//!                      │   │                  ▲   ╰─────────▶ Lingering | closed
//!                      │   ╰──body to drop──▶ Discarding
//!                      ╰──uwsgi location──▶ AwaitingProxy ──slot──▶ Proxying ──▶ Writing
//! ```
//!
//! Owns the connection's socket, its buffer (checked out only while busy: an idle keep-alive
//! connection holds none), its state with the data of each state, the current exchange (the
//! parsed head and what the answer promised), and one deadline tagged with what it is for, so a
//! timeout never has to guess. The loop (`gate`) only delivers readiness and deadlines and
//! applies the [`Step`] a transition returns. Writing bodies is `write`, request bodies `body`,
//! forwarding `proxy`, the PROXY protocol header `proxy_header`.
//!
//! Never: touches another connection, blocks (every socket call is non-blocking and every loop
//! here is bounded), allocates per request, or answers a request whose framing is lost with
//! anything but a closing response.

/// The core's view of the loop, built from the fields of an `Env` (a macro,
/// so the proxy slot can stay borrowed beside it); the client is the realip one.
macro_rules! up_env {
    ($conn:ident, $env:ident) => {
        $crate::upstream::UpEnv {
            groups: &mut *$env.groups,
            registry: $env.registry,
            token: $env.token,
            now: $env.ctx.now,
            client: $conn.exchange.client.unwrap_or($conn.peer),
            slot: $env.slot,
        }
    };
}

mod body;
mod program;
mod proxy;
mod proxy_header;
#[cfg(test)]
mod tests;
mod write;

pub use proxy::Forward;

use super::access_log;
use super::dispatch::{self, Answer, Extra, Outcome, Request};
use super::Ctx;
use crate::config::{Limits, NO_ROUTE};
use crate::event::pool::{Buf, Buffers};
use crate::event::slab::Slab;
use crate::http::request::{head_overflow_status, parse_head, Head, Method};
use crate::http::Status;
use crate::static_files::body::Body;
use crate::sys;
use crate::upstream::peers::Groups;
use crate::upstream::Proxy;
use body::BodyReader;
use mio::{Registry, Token};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Steps one connection may take per turn without finishing a request; reaching it is a bug,
/// logged, and the connection closed.
const MAX_STEPS: usize = 64;
/// Pipelined requests answered in one turn before the connection yields to the others.
const MAX_PIPELINED_PER_TURN: usize = 16;
/// How long we keep reading (and discarding) from a client we answered early.
const LINGER: Duration = Duration::from_secs(2);
/// How long a 408 sent to a client that timed out sending its head may take to leave.
const TIMEOUT_ANSWER: Duration = Duration::from_secs(1);

/// A head buffer holds request input in its first `HEAD_IN` bytes (a head that outgrows them
/// moves to a large buffer), and the response head, with any page or small file after it, in
/// the `HEAD_OUT` bytes behind. nginx reads heads into 1 KiB first; browsers' heads with their
/// cookies are often longer, and a head buffer costs memory only while it is in use.
pub const HEAD_IN: usize = 2048;
/// The output region of a head buffer: what an answer may take before it needs a large buffer.
pub const HEAD_OUT: usize = 4096;
/// Size of a head buffer.
pub const HEAD_BUFFER: usize = HEAD_IN + HEAD_OUT;

/// Size of a large buffer: `buffer_size`, and at least the head limit plus an output region
/// of 4 KiB.
pub fn large_buffer_size(cfg: &crate::config::Config) -> usize {
    let g = &cfg.global;
    g.buffer_size.max(g.client_header_buffer_size + 4096)
}

/// The socket calls a connection makes. The loop's connections use a TCP stream; the
/// lifecycle tests use a scripted one.
pub trait ClientSocket {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends `buf`; `more` says more bytes follow at once (MSG_MORE).
    fn send(&mut self, buf: &[u8], more: bool) -> io::Result<usize>;
    /// Sends `a` then `b` in one call.
    fn send2(&mut self, a: &[u8], b: &[u8]) -> io::Result<usize>;
    /// Sends `count` bytes of `file` from `*offset`, advancing it.
    fn sendfile(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize>;
    /// TCP_CORK on or off.
    fn set_cork(&mut self, on: bool) -> io::Result<()>;
    /// Half-closes: no more bytes from us.
    fn shutdown_write(&mut self);
}

impl ClientSocket for mio::net::TcpStream {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(self, buf)
    }
    fn send(&mut self, buf: &[u8], more: bool) -> io::Result<usize> {
        sys::send(self.as_raw_fd(), buf, more)
    }
    fn send2(&mut self, a: &[u8], b: &[u8]) -> io::Result<usize> {
        sys::send2(self.as_raw_fd(), a, b)
    }
    fn sendfile(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        sys::sendfile(self.as_raw_fd(), file, offset, count)
    }
    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        sys::set_cork(self.as_raw_fd(), on)
    }
    fn shutdown_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// What a turn asks the loop to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do until a readiness event or a deadline.
    Wait,
    /// More work is ready now: put the connection in the run queue.
    Yield,
    /// The connection needs a buffer (or a proxy slot) and none is free.
    NeedBuffer,
    Close,
}

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The PROXY protocol header must arrive (proxy_protocol_timeout).
    ProxyHeader,
    /// The whole request head must arrive (client_header_timeout).
    Head,
    /// The next read of a request body (client_body_timeout, minimum rate).
    Body,
    /// An idle keep-alive connection (keepalive_timeout).
    KeepAlive,
    /// The next write to the client (send_timeout).
    Send,
    /// Draining a client we answered early.
    Linger,
    /// Connecting to an upstream (uwsgi_connect_timeout).
    UpstreamConnect,
    /// The next write to the upstream (uwsgi_send_timeout).
    UpstreamSend,
    /// The upstream's response head (uwsgi_read_timeout).
    UpstreamHead,
    /// The next read of the upstream's response body (uwsgi_read_timeout).
    UpstreamBody,
    /// Waiting for the location's program to be RUNNING (uwsgi_connect_timeout).
    Program,
}

/// A deadline and what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub timer: Timer,
}

/// Where a connection is.
enum State {
    /// On a `listen … proxy_protocol` address, before anything else: reading the PROXY
    /// protocol header (what follows it is the first request).
    ReadingProxy,
    /// Between requests: nothing read, no buffer.
    Idle,
    /// Reading a request head into the buffer.
    ReadingHead,
    /// The head is parsed but its answer did not fit the head buffer's output region: waiting
    /// for a large buffer to answer into.
    AwaitingRoom,
    /// Routed to a uwsgi location; waiting for a large buffer and a proxy slot.
    AwaitingProxy(Forward),
    /// Routed to a uwsgi location whose program (`uwsgi_program`) is starting or restarting:
    /// waiting for it to be RUNNING (`program.rs`).
    AwaitingProgram(Forward),
    /// The answer is ready in the output region (`then` follows it); first the request body is
    /// read and dropped.
    Discarding { reader: BodyReader, then: Body },
    /// Writing the response: the output region, then the body.
    Writing(Body),
    /// Forwarding to an upstream: the proxy slot and the body being collected.
    Proxying(Forward),
    /// Answered and half-closed: reading until EOF, so our answer is not lost to a reset.
    Lingering,
}

/// How stub_status counts a connection (nginx's Reading / Writing / Waiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Waiting,
    Reading,
    Writing,
    /// Waiting for its location's program (counted as Writing by stub_status, and on its own
    /// in the JSON status page).
    AwaitingProgram,
}

/// The request being answered: what its head said and what the answer promised.
#[derive(Clone, Copy)]
struct Exchange {
    /// The parsed head (its spans point into the buffer); `None` when it did not parse.
    head: Option<Head>,
    keep_alive: bool,
    head_only: bool,
    /// The request came with a body we did not read: linger after answering.
    unread_body: bool,
    /// Bytes of this request at the front of the buffer (head plus a buffered body), dropped
    /// when the response is done; what follows is pipelined input.
    req_len: usize,
    /// For the access log: status (0: nothing to log) and bytes of body sent.
    status: u16,
    body_sent: u64,
    /// (server, location) the request is routed to (`NO_ROUTE` until known): whose limits
    /// apply (`Config::limits`).
    route: (u16, u16),
    /// The client address realip found once the request was routed (`None`: the peer's):
    /// what the access log and uWSGI's REMOTE_ADDR carry.
    client: Option<SocketAddr>,
}

impl Exchange {
    const NONE: Exchange = Exchange {
        route: (NO_ROUTE, NO_ROUTE),
        head: None,
        keep_alive: false,
        head_only: false,
        unread_body: false,
        req_len: 0,
        status: 0,
        body_sent: 0,
        client: None,
    };

    /// Back to `NONE` for the next request, field by field: assigning the constant would copy
    /// all of its bytes (the head's among them) on every request.
    fn clear(&mut self) {
        let Exchange {
            head,
            keep_alive,
            head_only,
            unread_body,
            req_len,
            status,
            body_sent,
            route,
            client,
        } = self;
        *head = None;
        *keep_alive = false;
        *head_only = false;
        *unread_body = false;
        *req_len = 0;
        *status = 0;
        *body_sent = 0;
        *route = (NO_ROUTE, NO_ROUTE);
        *client = None;
    }
}

/// What the loop lends a connection for one call.
pub struct Env<'a, 'c> {
    pub bufs: &'a mut Buffers,
    pub ctx: &'a Ctx<'c>,
    pub proxies: &'a mut Slab<Proxy>,
    pub groups: &'a mut Groups,
    pub registry: &'a Registry,
    /// This connection's upstream token.
    pub token: Token,
    /// Scratch for an access-log line.
    pub access_buf: &'a mut [u8],
    /// The slot, for log lines.
    pub slot: usize,
}

/// One client connection.
pub struct Connection<S> {
    sock: S,
    peer: SocketAddr,
    local: SocketAddr,
    state: State,
    buf: Option<Buf>,
    /// Input bytes held at `buf[..in_len]`; never beyond the buffer's input capacity.
    in_len: usize,
    /// Input length at the last parse attempt (no re-parse without new bytes).
    parsed_len: usize,
    /// Output-region bytes still to send: `buf[out_pos..out_end]`.
    out_pos: usize,
    out_end: usize,
    exchange: Exchange,
    requests: u32,
    deadline: Option<Deadline>,
    readable: bool,
    writable: bool,
    /// The peer has shut down its side (sticky, from the readiness event).
    read_closed: bool,
    /// TCP_CORK is on for a large file body.
    corked: bool,
    /// When a byte last moved between the client and us (the eviction order).
    progress: Instant,
    /// The source address of the PROXY protocol header this connection began with, when it
    /// named one (realip's `real_ip_header = proxy_protocol` uses it).
    proxied: Option<SocketAddr>,
    /// `proxied` was just read and the loop has not taken it yet (`take_proxy_source`).
    proxied_new: bool,
}

impl<S: ClientSocket> Connection<S> {
    /// A fresh connection for an accepted client: it has `client_header_timeout` to send a head.
    pub fn new(
        sock: S,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
        header_timeout: Duration,
    ) -> Connection<S> {
        Connection {
            sock,
            peer,
            local,
            state: State::Idle,
            buf: None,
            in_len: 0,
            parsed_len: 0,
            out_pos: 0,
            out_end: 0,
            exchange: Exchange::NONE,
            requests: 0,
            deadline: Some(Deadline {
                at: now + header_timeout,
                timer: Timer::Head,
            }),
            readable: true,
            writable: true,
            read_closed: false,
            corked: false,
            progress: now,
            proxied: None,
            proxied_new: false,
        }
    }

    /// This connection arrived on a `listen … proxy_protocol` address: before its first
    /// request it must send a PROXY protocol header, within `timeout`.
    pub fn expect_proxy_header(&mut self, now: Instant, timeout: Duration) {
        self.state = State::ReadingProxy;
        self.set_deadline(now + timeout, Timer::ProxyHeader);
    }

    /// The source address of a PROXY protocol header read since the last call (once), so the
    /// loop can count it against `limit_conn_per_ip`.
    pub fn take_proxy_source(&mut self) -> Option<SocketAddr> {
        if !std::mem::take(&mut self.proxied_new) {
            return None;
        }
        self.proxied
    }

    /// The current request's client address: realip's, else the peer's.
    fn client(&self) -> SocketAddr {
        self.exchange.client.unwrap_or(self.peer)
    }

    pub fn socket(&mut self) -> &mut S {
        &mut self.sock
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// Requests answered on this connection.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The proxy slot of a forwarded request.
    pub fn proxy_slot(&self) -> Option<usize> {
        match &self.state {
            State::Proxying(f) => Some(f.slot()),
            _ => None,
        }
    }

    /// An idle keep-alive connection: evictable when a new client needs the slot.
    pub fn is_idle_keepalive(&self) -> bool {
        matches!(self.state, State::Idle) && self.requests > 0
    }

    /// Nothing is in flight: no request begun, nothing to send (a graceful stop closes these).
    pub fn is_quiet(&self) -> bool {
        match self.state {
            State::Idle => true,
            State::ReadingHead | State::ReadingProxy => self.in_len == 0,
            _ => false,
        }
    }

    /// How stub_status counts this connection.
    pub fn activity(&self) -> Activity {
        if self.awaits_program() {
            return Activity::AwaitingProgram;
        }
        match self.state {
            State::Idle => Activity::Waiting,
            State::ReadingProxy | State::ReadingHead | State::Discarding { .. } => {
                Activity::Reading
            }
            State::AwaitingRoom
            | State::AwaitingProxy(_)
            | State::AwaitingProgram(_)
            | State::Writing(_)
            | State::Proxying(_)
            | State::Lingering => Activity::Writing,
        }
    }

    /// Readiness of the client socket, from the loop's event.
    pub fn on_readiness(&mut self, readable: bool, writable: bool, read_closed: bool) {
        self.readable |= readable;
        self.writable |= writable;
        self.read_closed |= read_closed;
    }

    fn set_deadline(&mut self, at: Instant, timer: Timer) {
        self.deadline = Some(Deadline { at, timer });
    }

    /// The limits of the current request's route (`[uwgate]`'s before it is routed).
    fn limits<'c>(&self, ctx: &Ctx<'c>) -> &'c Limits {
        let (server, location) = self.exchange.route;
        ctx.cfg.limits(server, location)
    }

    /// `send_timeout` from now, as the route says.
    fn send_deadline(&mut self, ctx: &Ctx<'_>) {
        let at = ctx.now + self.limits(ctx).send_timeout;
        self.set_deadline(at, Timer::Send);
    }

    /// Bytes the buffer takes as input: a head buffer's `HEAD_IN` (or less with a smaller
    /// `client_header_buffer_size`), a large buffer's `client_header_buffer_size`.
    fn in_cap(&self, ctx: &Ctx<'_>) -> usize {
        match self.buf {
            Some(Buf::Large(_)) => ctx.head_limit,
            _ => HEAD_IN.min(ctx.head_limit),
        }
    }

    /// Where the output region starts in the buffer.
    fn out_base(&self, ctx: &Ctx<'_>) -> usize {
        match self.buf {
            Some(Buf::Large(_)) => ctx.head_limit,
            _ => HEAD_IN,
        }
    }

    /// Moves the connection to a large buffer: its input, and the first `keep_out` bytes of
    /// its output region. `false` when the pool is empty.
    fn grow(&mut self, bufs: &mut Buffers, ctx: &Ctx<'_>, keep_out: usize) -> bool {
        let Some(Buf::Head(h)) = self.buf else {
            return self.buf.is_some();
        };
        let Some(l) = bufs.large.checkout() else {
            return false;
        };
        let (from, to) = (bufs.heads.get_mut(h), bufs.large.get_mut(l));
        let (input, out) = (self.in_len, keep_out);
        let moved = match (from.get(..input), to.get_mut(..input)) {
            (Some(a), Some(b)) => {
                b.copy_from_slice(a);
                true
            }
            _ => false,
        };
        let src = from.get(HEAD_IN..HEAD_IN + out);
        let dst = to.get_mut(ctx.head_limit..ctx.head_limit + out);
        let moved = moved
            && match (src, dst) {
                (Some(a), Some(b)) => {
                    b.copy_from_slice(a);
                    true
                }
                _ => out == 0,
            };
        if !moved {
            bufs.large.checkin(l);
            return false;
        }
        bufs.heads.checkin(h);
        self.buf = Some(Buf::Large(l));
        true
    }

    /// Back to a head buffer once a large one is no longer needed (the pipelined input left
    /// fits a head buffer), so a keep-alive connection holds no large buffer between requests.
    fn shrink(&mut self, bufs: &mut Buffers) {
        let Some(Buf::Large(l)) = self.buf else {
            return;
        };
        if self.in_len > HEAD_IN {
            return;
        }
        let Some(h) = bufs.heads.checkout() else {
            return;
        };
        let (from, to) = (bufs.large.get_mut(l), bufs.heads.get_mut(h));
        if let (Some(a), Some(b)) = (from.get(..self.in_len), to.get_mut(..self.in_len)) {
            b.copy_from_slice(a);
            bufs.large.checkin(l);
            self.buf = Some(Buf::Head(h));
        } else {
            bufs.heads.checkin(h);
        }
    }

    /// Gives back everything the connection holds in the loop's tables (its buffer, its proxy
    /// slot). Called by the loop just before the connection is dropped.
    pub fn release(&mut self, bufs: &mut Buffers, proxies: &mut Slab<Proxy>, registry: &Registry) {
        if let Some(pi) = self.proxy_slot() {
            if let Some(mut p) = proxies.remove(pi) {
                p.release(&mut bufs.large, registry);
            }
        }
        self.state = State::Idle;
        if let Some(b) = self.buf.take() {
            bufs.checkin(b);
        }
    }

    /// When this connection's client last made progress, if it holds a large buffer while it
    /// waits on its client — a candidate for eviction when the pool runs dry. A connection
    /// waiting on us (or on its upstream) is never evicted.
    pub fn stalled_since(&self, proxies: &Slab<Proxy>) -> Option<Instant> {
        let holds_large = matches!(self.buf, Some(Buf::Large(_)));
        let waits_on_client = match &self.state {
            State::ReadingProxy
            | State::ReadingHead
            | State::Discarding { .. }
            | State::Lingering => true,
            State::Writing(_) => !self.writable,
            State::Proxying(f) => match proxies.get(f.slot()).map(Proxy::stage) {
                Some(crate::upstream::Stage::Body) => !f.body_complete(),
                Some(crate::upstream::Stage::Stream) => !self.writable,
                _ => false,
            },
            State::Idle
            | State::AwaitingRoom
            | State::AwaitingProxy(_)
            | State::AwaitingProgram(_) => false,
        };
        (holds_large && waits_on_client).then_some(self.progress)
    }

    /// Evicted to free its buffers for a faster client: a client in the middle of sending
    /// its request gets a best-effort 408 (one non-blocking send); then the loop closes it.
    pub fn evict(&mut self, ctx: &Ctx<'_>, slot: usize) {
        let sending = match &self.state {
            State::ReadingProxy | State::ReadingHead | State::Discarding { .. } => true,
            State::Proxying(_) => self.exchange.status == 0,
            _ => false,
        };
        log::info!(
            "slot {slot}: client {} made no progress for {} ms; closed to free a buffer",
            self.peer,
            ctx.now.saturating_duration_since(self.progress).as_millis()
        );
        if sending {
            let mut page = [0u8; 512];
            let answer = dispatch::error(
                Status::RequestTimeout,
                Extra::None,
                false,
                false,
                &mut page,
                ctx,
            );
            let _ = self.sock.send(page.get(..answer.len).unwrap_or(&[]), false);
        }
    }

    /// Runs the connection until it waits, yields, needs a buffer, or closes.
    pub fn drive(&mut self, env: &mut Env<'_, '_>) -> Step {
        let mut steps = 0;
        let mut served = 0;
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                log::error!(
                    "bug: slot {} did not settle in {MAX_STEPS} steps; closing it",
                    env.slot
                );
                return Step::Close;
            }
            let stop = match self.state {
                State::ReadingProxy => self.read_proxy_header(env),
                State::Idle => self.start_reading(env.bufs),
                State::ReadingHead => self.read_head(env),
                State::AwaitingRoom => self.answer_in_room(env),
                State::AwaitingProxy(_) | State::AwaitingProgram(_) => self.start_proxy(env),
                State::Discarding { .. } => self.discard(env),
                State::Writing(_) => match self.write(env) {
                    Ok(None) => {
                        // A response went out: the step cap counts steps without one.
                        steps = 0;
                        served += 1;
                        if served >= MAX_PIPELINED_PER_TURN {
                            // Let other connections run; the rest of the pipeline is queued.
                            return Step::Yield;
                        }
                        None
                    }
                    Ok(Some(step)) => Some(step),
                    Err(e) => {
                        log::debug!(
                            "slot {}: write to {} failed: {}",
                            env.slot,
                            self.peer,
                            crate::sys::ErrorText(&e)
                        );
                        Some(Step::Close)
                    }
                },
                State::Proxying(_) => self.proxy(env),
                State::Lingering => self.linger(env),
            };
            if let Some(step) = stop {
                return step;
            }
        }
    }

    /// Idle → ReadingHead once the client sends something.
    fn start_reading(&mut self, bufs: &mut Buffers) -> Option<Step> {
        if !self.readable {
            return Some(Step::Wait);
        }
        if self.buf.is_none() {
            match bufs.heads.checkout() {
                Some(b) => self.buf = Some(Buf::Head(b)),
                // There is a head buffer per slot; this cannot happen, but never allocate.
                None => return Some(Step::NeedBuffer),
            }
        }
        self.in_len = 0;
        self.parsed_len = 0;
        self.state = State::ReadingHead;
        None
    }

    /// Reads and parses the head; a complete one is answered.
    fn read_head(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let Some(b) = self.buf else {
            return Some(Step::Close);
        };
        let ctx = env.ctx;
        let in_cap = self.in_cap(ctx);
        if self.in_len > self.parsed_len {
            self.parsed_len = self.in_len;
            let input = env.bufs.get_mut(b).get(..self.in_len).unwrap_or(&[]);
            match parse_head(input) {
                Ok(Some(head)) => {
                    self.on_head(head, env);
                    return None;
                }
                Ok(None) if self.in_len >= ctx.head_limit => {
                    let status = head_overflow_status(input);
                    self.request_error(status, env);
                    return None;
                }
                Ok(None) => {}
                Err(status) => {
                    self.request_error(status, env);
                    return None;
                }
            }
        }
        if self.in_len >= in_cap {
            // The head outgrew the head buffer: a large one takes it (or the pool is empty,
            // and the loop frees one from a stalled client).
            if !self.grow(env.bufs, ctx, 0) {
                return Some(Step::NeedBuffer);
            }
            return None;
        }
        if !self.readable {
            if self.in_len == 0 {
                // Nothing buffered: an idle connection gives its buffer back.
                env.bufs.checkin(b);
                self.buf = None;
                self.state = State::Idle;
            }
            return Some(Step::Wait);
        }
        let was_empty = self.in_len == 0;
        match self.read_input(env, in_cap) {
            Ok(0) => return Some(Step::Close),
            Ok(_) => {
                if was_empty && self.requests > 0 {
                    // A keep-alive request began: the whole head must arrive within
                    // client_header_timeout (a total deadline, not per read).
                    let g = &ctx.cfg.global;
                    self.set_deadline(ctx.now + g.client_header_timeout, Timer::Head);
                }
            }
            Err(e) if sys::would_block(&e) => {}
            Err(_) => return Some(Step::Close),
        }
        None
    }

    /// Reads into `buf[in_len..limit]`. `Ok(0)` means EOF; WouldBlock clears `readable`.
    fn read_input(&mut self, env: &mut Env<'_, '_>, limit: usize) -> io::Result<usize> {
        let Some(b) = self.buf else {
            return Err(io::Error::other("no buffer"));
        };
        let Some(space) = env.bufs.get_mut(b).get_mut(self.in_len..limit) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let want = space.len();
        loop {
            match self.sock.recv(space) {
                Ok(n) => {
                    // A short read drained the socket: edge-triggered epoll will report the
                    // next arrival, so no extra read(2) is spent finding EAGAIN. The peer's
                    // FIN may have come with the data: with `read_closed` seen, read on to the
                    // 0 that says so, or no later event would report it.
                    if n < want && !self.read_closed {
                        self.readable = false;
                    }
                    if n > 0 {
                        self.progress = env.ctx.now;
                    }
                    self.in_len += n;
                    return Ok(n);
                }
                Err(e) if sys::interrupted(&e) => continue,
                Err(e) => {
                    if sys::would_block(&e) {
                        self.readable = false;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// A complete head: limits, then the handler's answer or forwarding.
    fn on_head(&mut self, head: Head, env: &mut Env<'_, '_>) {
        let ctx = env.ctx;
        self.requests = self.requests.saturating_add(1);
        let ex = &mut self.exchange;
        ex.clear();
        ex.keep_alive = head.keep_alive && !ctx.stopping;
        ex.head_only = head.method == Method::Head;
        ex.unread_body = head.has_body();
        ex.req_len = head.head_len as usize;
        ex.head = Some(head);
        self.answer(env);
    }

    /// Answers the parsed head into the output region, or starts forwarding it.
    fn answer(&mut self, env: &mut Env<'_, '_>) {
        let ctx = env.ctx;
        // The head is borrowed where it lies (a copy is 144 bytes on every request).
        let (Some(b), Some(head)) = (self.buf, self.exchange.head.as_ref()) else {
            self.state = State::Lingering;
            return;
        };
        let base = self.out_base(ctx);
        let (input, out) = env.bufs.get_mut(b).split_at_mut(base);
        let out_len = match self.buf {
            Some(Buf::Head(_)) => HEAD_OUT.min(out.len()),
            _ => out.len(),
        };
        let out = out.get_mut(..out_len).unwrap_or(&mut []);
        let req = Request {
            head,
            peer: self.peer,
            proxied: self.proxied,
            client: std::cell::Cell::new(self.peer),
            local: self.local,
            wants_keep_alive: head.keep_alive && !ctx.stopping,
            requests: self.requests,
            head_only: self.exchange.head_only,
        };
        let outcome = dispatch::answer(&req, input, out, ctx);
        self.exchange.client = Some(req.client.get());
        match outcome {
            Outcome::TooBig if matches!(self.buf, Some(Buf::Head(_))) => {
                // Rare (the status page, a redirect to a very long path): answer again in a
                // large buffer, once one is free.
                self.state = State::AwaitingRoom;
            }
            Outcome::TooBig => {
                log::error!(
                    "slot {}: an answer does not fit the output region (raise buffer_size)",
                    env.slot
                );
                self.answer_error(Status::InternalServerError, Extra::None, env);
            }
            Outcome::Answer(answer) => {
                self.exchange.route = answer.route;
                // An answer that closes for the framing's sake (413: the body is too large to
                // read) goes out at once; the body is drained while lingering.
                let drop_body = head.has_body() && !dispatch::loses_framing(answer.status);
                self.begin_writing(answer, base);
                self.send_deadline(ctx);
                if drop_body {
                    self.drop_body_first(env);
                }
            }
            Outcome::Forward {
                server,
                location,
                path_len,
                keep_alive,
            } => {
                self.exchange.route = (server, location);
                self.exchange.keep_alive = keep_alive;
                let max_body = self.limits(ctx).client_max_body_size;
                let forward = Forward::new(head, (server, location), path_len, max_body, ctx.now);
                self.state = State::AwaitingProxy(forward);
            }
        }
    }

    /// AwaitingRoom: answer once a large buffer is free.
    fn answer_in_room(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        if !self.grow(env.bufs, env.ctx, 0) {
            return Some(Step::NeedBuffer);
        }
        self.answer(env);
        None
    }

    /// An answer to a request with a body we will not forward: read the body and drop it
    /// first (validating its framing), so the connection stays usable, as nginx's
    /// discard_request_body does; a client waiting for `100 Continue` is answered and closed.
    fn drop_body_first(&mut self, env: &mut Env<'_, '_>) {
        let State::Writing(body) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        let max_body = self.limits(env.ctx).client_max_body_size;
        let Some(head) = self.exchange.head.as_ref() else {
            self.state = State::Writing(body);
            return;
        };
        if head.expect_continue {
            // The client holds its body back for a 100 we will not send: answer, then close.
            self.exchange.keep_alive = false;
            self.rewrite_connection_close(env.bufs);
            self.state = State::Writing(body);
            return;
        }
        let reader = BodyReader::new(head, max_body, env.ctx.now);
        self.exchange.unread_body = false;
        self.state = State::Discarding { reader, then: body };
    }

    /// A head that could not be parsed: answer with its status and close after.
    fn request_error(&mut self, status: Status, env: &mut Env<'_, '_>) {
        self.requests = self.requests.saturating_add(1);
        self.exchange.clear();
        self.exchange.unread_body = true;
        self.answer_error(status, Extra::None, env);
    }

    /// Replaces whatever answer was coming with an error page (the request's framing holds,
    /// unless the status says otherwise).
    fn answer_error(&mut self, status: Status, extra: Extra, env: &mut Env<'_, '_>) {
        let ctx = env.ctx;
        let Some(b) = self.buf else {
            self.state = State::Lingering;
            return;
        };
        let base = self.out_base(ctx);
        let out = env.bufs.get_mut(b).get_mut(base..).unwrap_or(&mut []);
        let answer = dispatch::error(
            status,
            extra,
            self.exchange.keep_alive,
            self.exchange.head_only,
            out,
            ctx,
        );
        self.begin_writing(answer, base);
        self.send_deadline(ctx);
    }

    /// An answer is in the output region at `base`: write it.
    fn begin_writing(&mut self, answer: Answer, base: usize) {
        self.out_pos = base;
        self.out_end = base + answer.len;
        self.exchange.status = answer.status.code();
        self.exchange.body_sent = answer.inline as u64;
        self.exchange.keep_alive = answer.keep_alive;
        self.state = State::Writing(answer.body);
    }

    /// A head already written with `Connection: keep-alive` becomes `Connection: close      `
    /// in place (same length, padded), so the bytes promised stay the same.
    fn rewrite_connection_close(&mut self, bufs: &mut Buffers) {
        let Some(b) = self.buf else {
            return;
        };
        let Some(region) = bufs.get_mut(b).get_mut(self.out_pos..self.out_end) else {
            return;
        };
        let needle = b"Connection: keep-alive";
        if let Some(at) = region.windows(needle.len()).position(|w| w == needle) {
            if let Some(field) = region.get_mut(at..at + needle.len()) {
                field.copy_from_slice(b"Connection: close     ");
            }
        }
    }

    /// Discarding: reads and drops the request body, then writes the prepared answer.
    fn discard(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let ctx = env.ctx;
        let g = &ctx.cfg.global;
        let Some(b) = self.buf else {
            return Some(Step::Close);
        };
        let head_len = self.exchange.req_len;
        let in_cap = self.in_cap(ctx);
        for _ in 0..1024 {
            let State::Discarding { reader, .. } = &mut self.state else {
                return Some(Step::Close);
            };
            let buf = env.bufs.get_mut(b);
            if self.in_len > head_len {
                let wire = buf.get_mut(head_len..self.in_len).unwrap_or(&mut []);
                match reader.decode(wire) {
                    Ok(d) => {
                        // The payload is dropped; what follows the body is pipelined input.
                        buf.copy_within(head_len + d.consumed..self.in_len, head_len);
                        self.in_len -= d.consumed;
                    }
                    Err(status) => {
                        // Framing lost inside the body: the prepared answer is replaced.
                        self.exchange.keep_alive = false;
                        self.exchange.unread_body = true;
                        self.answer_error(status, Extra::None, env);
                        return None;
                    }
                }
            }
            if reader.is_done() {
                let State::Discarding { then, .. } =
                    std::mem::replace(&mut self.state, State::Idle)
                else {
                    return Some(Step::Close);
                };
                self.state = State::Writing(then);
                self.send_deadline(ctx);
                return None;
            }
            if !self.readable {
                let timeout = ctx
                    .cfg
                    .limits(self.exchange.route.0, self.exchange.route.1)
                    .client_body_timeout;
                let at = reader.deadline(ctx.now, timeout, g.client_body_min_rate);
                self.set_deadline(at, Timer::Body);
                return Some(Step::Wait);
            }
            let limit = match reader.known_left() {
                Some(left) => in_cap.min(head_len + left.min(in_cap as u64) as usize),
                None => in_cap,
            };
            match self.read_input(env, limit) {
                Ok(n) if n > 0 => {
                    if let State::Discarding { reader, .. } = &mut self.state {
                        reader.arrived(n);
                    }
                }
                Err(e) if sys::would_block(&e) => {}
                Ok(_) | Err(_) => {
                    // EOF or an error inside the body: the prepared answer is replaced.
                    self.exchange.keep_alive = false;
                    self.exchange.unread_body = true;
                    self.answer_error(Status::BadRequest, Extra::None, env);
                    return None;
                }
            }
        }
        Some(Step::Yield)
    }

    /// A response is fully sent: log it, then keep the connection alive (pipelined input
    /// first), linger, or close.
    fn finish(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let ctx = env.ctx;
        let g = &ctx.cfg.global;
        let Some(b) = self.buf else {
            return Some(Step::Close);
        };
        let ex = self.exchange;
        // The idle time is the finished request's location's; the next one is routed anew.
        let keepalive_timeout = self.limits(ctx).keepalive_timeout;
        if g.access_log && ex.status != 0 {
            let input = env.bufs.get_mut(b).get(..self.in_len).unwrap_or(&[]);
            let entry = access_log::Entry {
                peer: self.client().ip(),
                unix: ctx.unix,
                head: ex.head.as_ref(),
                input,
                status: ex.status,
                bytes: ex.body_sent,
            };
            access_log::log(&entry, env.access_buf);
        }
        self.state = State::Idle;
        self.exchange.status = 0;
        if !ex.keep_alive {
            if ex.unread_body || self.in_len > ex.req_len {
                // Half-close and drain, so the client reads our answer instead of a RST.
                self.sock.shutdown_write();
                self.state = State::Lingering;
                self.set_deadline(ctx.now + LINGER, Timer::Linger);
                return None;
            }
            return Some(Step::Close);
        }
        let req_len = ex.req_len.min(self.in_len);
        if self.in_len > req_len {
            env.bufs.get_mut(b).copy_within(req_len..self.in_len, 0);
        }
        self.in_len -= req_len;
        self.parsed_len = 0;
        self.exchange.clear();
        self.state = State::ReadingHead;
        self.shrink(env.bufs);
        if self.in_len > 0 {
            self.set_deadline(ctx.now + g.client_header_timeout, Timer::Head);
        } else {
            self.set_deadline(ctx.now + keepalive_timeout, Timer::KeepAlive);
        }
        None
    }

    /// Lingering: reads and drops whatever the client still sends, until EOF — up to 64
    /// buffers a turn, then the connection yields (a refused body may arrive in a burst).
    fn linger(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let limit = self.in_cap(env.ctx);
        for _ in 0..64 {
            if !self.readable {
                return Some(Step::Wait);
            }
            self.in_len = 0;
            match self.read_input(env, limit) {
                Ok(0) => return Some(Step::Close),
                Ok(_) => {}
                Err(e) if sys::would_block(&e) => return Some(Step::Wait),
                Err(_) => return Some(Step::Close),
            }
        }
        Some(Step::Yield)
    }

    /// The deadline passed: act on what it was for. `Some(Close)` closes the connection;
    /// `None` means a transition happened and the connection should be driven.
    pub fn on_timeout(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let deadline = self.deadline.take()?;
        match deadline.timer {
            Timer::ProxyHeader if matches!(self.state, State::ReadingProxy) => {
                log::info!(
                    "slot {}: client {} sent no complete PROXY protocol header in time; closed",
                    env.slot,
                    self.peer
                );
                Some(Step::Close)
            }
            Timer::Head if matches!(self.state, State::ReadingHead) && self.in_len > 0 => {
                // Answer 408 once, best effort, then close whatever happens.
                log::info!(
                    "slot {}: client {} timed out sending its request head",
                    env.slot,
                    self.peer
                );
                self.request_error(Status::RequestTimeout, env);
                self.set_deadline(env.ctx.now + TIMEOUT_ANSWER, Timer::Send);
                None
            }
            Timer::Send if matches!(self.state, State::Writing(_)) => {
                log::info!(
                    "slot {}: client {} timed out reading the response",
                    env.slot,
                    self.peer
                );
                Some(Step::Close)
            }
            Timer::Program if self.awaits_program() => self.program_timeout(env),
            Timer::Body
            | Timer::Send
            | Timer::UpstreamConnect
            | Timer::UpstreamSend
            | Timer::UpstreamHead
            | Timer::UpstreamBody
                if matches!(self.state, State::Proxying(_)) =>
            {
                self.proxy_timeout(deadline.timer, env)
            }
            Timer::ProxyHeader
            | Timer::Head
            | Timer::Body
            | Timer::KeepAlive
            | Timer::Send
            | Timer::Linger
            | Timer::UpstreamConnect
            | Timer::UpstreamSend
            | Timer::UpstreamHead
            | Timer::UpstreamBody
            | Timer::Program => Some(Step::Close),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The README's memory figure for a connection slot (`Option<Connection>` in the slab,
    /// plus the slab's free-list entry and idle-list links) must stay true.
    #[test]
    fn a_connection_slot_costs_what_the_readme_says() {
        let slot = std::mem::size_of::<Option<Connection<mio::net::TcpStream>>>()
            + crate::event::slab::PER_SLOT_OVERHEAD;
        assert_eq!(
            slot, 584,
            "a connection slot changed size; update README's Design"
        );
    }
}
