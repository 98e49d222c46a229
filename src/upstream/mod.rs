//! The proxy core, protocol-neutral, as nginx's upstream core: it keeps a request body (in the
//! client's buffer, then a spool), picks a peer and passes the request to the next one when a
//! connect or send fails, sends the request the protocol module encoded, reads the answer's
//! head through the protocol's parser, then pulls the body, by the framing the head announced,
//! into its buffer and a spool, from where the HTTP layer takes it at the client's pace — so a
//! slow client never holds an upstream worker.
//!
//! Owns: one in-flight request's upstream side ([`Proxy`]), the peers' failure bookkeeping
//! (`peers`) and spools (`spool`). `uwsgi` is the protocol codec beside it.
//! Never: names a protocol (the caller encodes the request and brings the head parser), touches
//! the client's socket, blocks, allocates per request, or lets a byte the upstream sends past
//! the framed end of its response through (such bytes are dropped, logged, and the upstream
//! connection is closed: they could otherwise become the answer to the client's next request).

pub mod peers;
pub mod spool;
#[cfg(test)]
mod tests;
pub mod uwsgi;

use crate::config::UpstreamAddr;
use crate::event::pool::{BufId, BufferPool};
use crate::http::response_body::BodyFramer;
use crate::http::Status;
use crate::sys;
use crate::sys::stream::Stream;
use mio::{Interest, Registry, Token};
use peers::Groups;
use spool::Spool;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// An upstream address for log lines, formatted without allocating.
pub struct PeerName<'a>(pub &'a UpstreamAddr);

impl fmt::Display for PeerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            UpstreamAddr::Tcp(a) => write!(f, "{a}"),
            UpstreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where a proxied request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The HTTP layer is collecting the request body.
    Body,
    /// Non-blocking connect to the chosen peer.
    Connecting,
    /// Sending the encoded request, then the body.
    Sending,
    /// Reading the response head.
    Head,
    /// Moving the response body.
    Stream,
}

/// How far [`Proxy::send`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The whole request is out.
    Done,
    /// The socket is full (or still connecting): EPOLLOUT says when to go on.
    Blocked,
    /// Out of this turn's rounds with the socket still writable.
    Yield,
}

/// What [`Proxy::read_head`] found.
pub enum HeadRead<H> {
    /// Nothing complete yet: wait for EPOLLIN.
    Wait,
    /// The head, parsed; its bytes are at the front of the buffer.
    Head(H),
    /// The upstream failed before a complete, valid head: the client gets this status. The
    /// reason was logged, except for [`HeadFailure::ClosedSilently`], which the protocol module
    /// may explain better.
    Fail(Status, HeadFailure),
}

/// Why no head could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadFailure {
    /// Closed or reset the connection before sending a single byte.
    ClosedSilently,
    /// Anything else (logged).
    Other,
}

/// What the HTTP layer may send the client next (see [`Proxy::data`]).
pub enum Data<'a> {
    /// Nothing is waiting.
    None,
    /// Bytes from the spool: `len` at `offset` of `file`, for sendfile.
    Spooled {
        file: &'a std::fs::File,
        offset: u64,
        len: u64,
    },
    /// Bytes in the proxy's buffer.
    Buffered(&'a [u8]),
}

/// One proxied request's upstream side; lives in a preallocated slab while in flight.
pub struct Proxy {
    stage: Stage,
    group: usize,
    peer: usize,
    /// Peers already tried for this request (bit i: peer i).
    tried: u64,
    /// A request that began to reach one peer may go to another (idempotent methods).
    replayable: bool,
    sock: Option<Stream>,
    readable: bool,
    /// The upstream shut down its side (sticky): read on to the EOF after a short read.
    read_closed: bool,
    /// The socket is registered for EPOLLOUT too.
    write_interest: bool,
    /// The encoded request, then the response bytes.
    buf: Option<BufId>,
    // Request.
    body_spool: Spool,
    body_len: u64,
    request_len: usize,
    request_sent: usize,
    body_sent: u64,
    // Response: payload bytes buffered at `buf[start..end]`, older ones in `spool`.
    start: usize,
    end: usize,
    spool: Spool,
    /// The response body's framing, from its head.
    framing: BodyFramer,
    /// Payload bytes received.
    received: u64,
    /// The framed end was reached, or the upstream closed: nothing more is read.
    finished: bool,
    /// The body ended before its framed end, or its framing broke.
    truncated: bool,
    /// Payload is read and dropped (HEAD, or a client that went away).
    discard: bool,
    /// Payload bytes dropped.
    drained: u64,
}

/// What the loop lends the core for one call.
pub struct UpEnv<'a> {
    pub groups: &'a mut Groups,
    pub registry: &'a Registry,
    /// This connection's upstream token.
    pub token: Token,
    pub now: Instant,
    /// The client, for log lines.
    pub client: SocketAddr,
    /// The slot, for log lines.
    pub slot: usize,
}

impl Proxy {
    /// A request for group `group`, its body still to be collected by the HTTP layer.
    pub fn new(group: usize, replayable: bool) -> Proxy {
        Proxy {
            stage: Stage::Body,
            group,
            peer: 0,
            tried: 0,
            replayable,
            sock: None,
            readable: false,
            read_closed: false,
            write_interest: false,
            buf: None,
            body_spool: Spool::default(),
            body_len: 0,
            request_len: 0,
            request_sent: 0,
            body_sent: 0,
            start: 0,
            end: 0,
            spool: Spool::default(),
            framing: BodyFramer::default(),
            received: 0,
            finished: false,
            truncated: false,
            discard: false,
            drained: 0,
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Readiness of the upstream socket, from the loop's event.
    pub fn on_event(&mut self, readable: bool, read_closed: bool) {
        self.readable |= readable;
        self.read_closed |= read_closed;
    }

    /// The peer being tried, for log lines.
    pub fn peer_name<'g>(&self, groups: &'g Groups) -> Option<PeerName<'g>> {
        groups
            .get(self.group)
            .and_then(|g| g.peers.get(self.peer))
            .map(|u| PeerName(&u.addr))
    }

    // -- The request body ----------------------------------------------------------------------

    /// Appends body bytes the client buffer can no longer hold to the body spool.
    pub fn spill_body(&mut self, bytes: &[u8], temp_dir: &CStr) -> io::Result<()> {
        self.body_spool.append(bytes, temp_dir)
    }

    /// The body is complete: `len` payload bytes, in the spool if any was spilled, else in the
    /// client buffer after the head.
    pub fn body_complete(&mut self, len: u64) {
        self.body_len = len;
    }

    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Some of the body went to the spool (so all of it goes there once complete).
    pub fn body_spilled(&self) -> bool {
        !self.body_spool.is_empty()
    }

    // -- The request ---------------------------------------------------------------------------

    /// Takes the buffer the request is encoded into (and the response read into), or `None`
    /// when the pool is empty. Called once the body is complete.
    pub fn take_buffer(&mut self, pool: &mut BufferPool) -> Option<BufId> {
        if self.buf.is_none() {
            self.buf = pool.checkout();
        }
        self.buf
    }

    pub fn buffer(&self) -> Option<BufId> {
        self.buf
    }

    /// The protocol module wrote a request of `len` bytes at the front of the buffer.
    pub fn request_encoded(&mut self, len: usize) {
        self.request_len = len;
    }

    /// Connects to the next live peer not yet tried. `Err(status)` when none is left.
    pub fn connect_next(&mut self, env: &mut UpEnv<'_>) -> Result<(), Status> {
        let Some(group) = env.groups.get_mut(self.group) else {
            return Err(Status::BadGateway);
        };
        for _ in 0..group.peers.len().max(1) {
            let Some(i) = group.pick(env.now, self.tried) else {
                if self.tried == 0 {
                    log::error!("no live upstreams, client: {}", env.client);
                }
                return Err(Status::BadGateway);
            };
            self.tried |= 1u64.checked_shl(i as u32).unwrap_or(0);
            self.peer = i;
            let Some(addr) = group.peers.get(i).map(|p| &p.addr) else {
                return Err(Status::BadGateway);
            };
            let connected = match addr {
                UpstreamAddr::Tcp(a) => Stream::connect_tcp(*a),
                UpstreamAddr::Unix(p) => Stream::connect_unix(p),
            };
            match connected {
                Ok(mut sock) => {
                    // Registered for reading only: the request usually leaves at once (a
                    // loopback connect completes inside connect(2)), and an EPOLLOUT nobody
                    // waits for would cost a wakeup per request. `want_writable` adds it.
                    if let Err(e) =
                        env.registry
                            .register(sock.source(), env.token, Interest::READABLE)
                    {
                        let e = crate::sys::ErrorText(&e);
                        log::error!("epoll registration of upstream socket failed: {e}");
                        return Err(Status::InternalServerError);
                    }
                    self.sock = Some(sock);
                    self.readable = false;
                    self.read_closed = false;
                    self.write_interest = false;
                    // A new peer gets the whole request, whatever reached a failed one.
                    self.request_sent = 0;
                    self.body_sent = 0;
                    self.stage = Stage::Connecting;
                    return Ok(());
                }
                Err(e) => {
                    let e = crate::sys::ErrorText(&e);
                    log::error!(
                        "slot {}: connect() to upstream {} failed: {e}, client: {}",
                        env.slot,
                        PeerName(addr),
                        env.client
                    );
                    group.failed(i, env.now);
                }
            }
        }
        Err(Status::BadGateway)
    }

    /// A failed attempt (`began`: some of the request reached the peer): mark the peer and
    /// pass the request to the next one, nginx's `uwsgi_next_upstream error timeout`. As nginx
    /// without `non_idempotent`, a request that is not replayable and began to reach one
    /// peer is not sent to another. `Err(status)` when no attempt is left.
    pub fn next_peer(&mut self, env: &mut UpEnv<'_>, began: bool) -> Result<(), Status> {
        if let Some(g) = env.groups.get_mut(self.group) {
            g.failed(self.peer, env.now);
        }
        if began && !self.replayable {
            return Err(Status::BadGateway);
        }
        self.close_socket(env.registry);
        self.connect_next(env)
    }

    /// Whether the request may go to a peer again after some of it reached one.
    pub fn replayable(&self) -> bool {
        self.replayable
    }

    /// Closes the upstream connection and keeps everything else (the encoded request, the
    /// body), so the request can be sent again (`connect_again`). Used while the location's
    /// program restarts.
    pub fn close_upstream(&mut self, registry: &Registry) {
        self.close_socket(registry);
    }

    /// Connects afresh, every peer allowed again, to send the whole request once more (the
    /// encoded request is still at the front of the buffer: no answer byte was read).
    pub fn connect_again(&mut self, env: &mut UpEnv<'_>) -> Result<(), Status> {
        self.close_socket(env.registry);
        self.tried = 0;
        self.end = 0;
        self.connect_next(env)
    }

    /// Marks the current peer failed (a timeout or a broken answer).
    pub fn peer_failed(&mut self, groups: &mut Groups, now: Instant) {
        if let Some(g) = groups.get_mut(self.group) {
            g.failed(self.peer, now);
        }
    }

    /// Adds EPOLLOUT to the upstream socket's interest, once per socket.
    pub fn want_writable(&mut self, registry: &Registry, token: Token) -> Result<(), Status> {
        if self.write_interest {
            return Ok(());
        }
        let Some(sock) = &mut self.sock else {
            return Err(Status::BadGateway);
        };
        // EPOLL_CTL_MOD: the kernel re-checks readiness, so an EPOLLOUT that came before the
        // call is still reported.
        if let Err(e) = registry.reregister(
            sock.source(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            let e = crate::sys::ErrorText(&e);
            log::error!("epoll registration of upstream socket failed: {e}");
            return Err(Status::InternalServerError);
        }
        self.write_interest = true;
        Ok(())
    }

    /// Bytes of the request (encoded part and body) that reached the socket.
    pub fn request_progress(&self) -> u64 {
        self.request_sent as u64 + self.body_sent
    }

    /// The connect completed (a send got through): the request goes on from here.
    pub fn connected(&mut self) {
        if self.stage == Stage::Connecting {
            self.stage = Stage::Sending;
        }
    }

    /// Bytes of the encoded request (for the protocol's explanation of a silent close).
    pub fn request_len(&self) -> usize {
        self.request_len
    }

    /// Sends the encoded request (at the front of `ubuf`, this proxy's buffer), then the
    /// body: from the spool by sendfile, or `client_body` (the payload in the client's
    /// buffer) when nothing was spilled.
    pub fn send(&mut self, ubuf: &[u8], client_body: &[u8]) -> io::Result<Sent> {
        for _ in 0..1024 {
            let Some(sock) = &mut self.sock else {
                return Err(io::Error::other("no upstream socket"));
            };
            let res = if self.request_sent < self.request_len {
                let pending = ubuf.get(self.request_sent..self.request_len).unwrap_or(&[]);
                sock.write(pending).map(|n| self.request_sent += n)
            } else if self.body_sent < self.body_len {
                if let (Some(spool), false) = (self.body_spool.file(), self.body_spool.is_empty()) {
                    let mut off = self.body_sent;
                    let left = (self.body_len - self.body_sent).min(1 << 20) as usize;
                    sys::sendfile(sock.fd(), spool, &mut off, left).and_then(|n| {
                        if n == 0 {
                            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                        }
                        self.body_sent = off;
                        Ok(())
                    })
                } else {
                    let from = self.body_sent as usize;
                    let pending = client_body.get(from..self.body_len as usize).unwrap_or(&[]);
                    sock.write(pending).map(|n| self.body_sent += n as u64)
                }
            } else {
                self.stage = Stage::Head;
                self.start = 0;
                self.end = 0;
                return Ok(Sent::Done);
            };
            match res {
                Ok(()) => {}
                Err(e) if sys::interrupted(&e) => {}
                Err(e) if sys::would_block(&e) => return Ok(Sent::Blocked),
                Err(e) => return Err(e),
            }
        }
        Ok(Sent::Yield)
    }

    // -- The response head ---------------------------------------------------------------------

    /// Reads the response head into the buffer and asks `parse` (the protocol's head parser)
    /// after every read. Logs every failure but a silent close (see [`HeadFailure`]).
    pub fn read_head<H>(
        &mut self,
        pool: &mut BufferPool,
        env: &mut UpEnv<'_>,
        parse: impl Fn(&[u8]) -> Result<Option<H>, ()>,
    ) -> HeadRead<H> {
        let Some(ub) = self.buf else {
            return HeadRead::Fail(Status::InternalServerError, HeadFailure::Other);
        };
        for _ in 0..1024 {
            let ubuf = pool.get_mut(ub);
            if self.end > 0 {
                match parse(ubuf.get(..self.end).unwrap_or(&[])) {
                    Ok(Some(h)) => {
                        if let Some(g) = env.groups.get_mut(self.group) {
                            g.succeeded(self.peer);
                        }
                        return HeadRead::Head(h);
                    }
                    Ok(None) if self.end == ubuf.len() => {
                        log::error!(
                            "slot {}: upstream {} sent too big a header (over {} bytes), client: {}",
                            env.slot,
                            self.peer_label(env.groups),
                            ubuf.len(),
                            env.client
                        );
                        return HeadRead::Fail(Status::BadGateway, HeadFailure::Other);
                    }
                    Ok(None) => {}
                    Err(()) => {
                        log::error!(
                            "slot {}: upstream {} sent an invalid header, client: {}",
                            env.slot,
                            self.peer_label(env.groups),
                            env.client
                        );
                        return HeadRead::Fail(Status::BadGateway, HeadFailure::Other);
                    }
                }
            }
            if !self.readable {
                // Nothing new since a short read or EAGAIN: the next EPOLLIN says when.
                return HeadRead::Wait;
            }
            let Some(sock) = &mut self.sock else {
                return HeadRead::Fail(Status::BadGateway, HeadFailure::Other);
            };
            let room = ubuf.get_mut(self.end..).unwrap_or(&mut []);
            let want = room.len();
            match sock.read(room) {
                Ok(0) if self.end == 0 => {
                    return HeadRead::Fail(Status::BadGateway, HeadFailure::ClosedSilently);
                }
                Ok(0) => {
                    log::error!(
                        "slot {}: upstream {} prematurely closed the connection while reading the response header, client: {}",
                        env.slot,
                        self.peer_label(env.groups),
                        env.client
                    );
                    self.peer_failed(env.groups, env.now);
                    return HeadRead::Fail(Status::BadGateway, HeadFailure::Other);
                }
                Ok(n) => {
                    // A short read drained the socket (edge-triggered: the next EPOLLIN says
                    // when more comes); with the peer's FIN seen, read on to the EOF.
                    if n < want && !self.read_closed {
                        self.readable = false;
                    }
                    self.end += n;
                }
                Err(e) if sys::interrupted(&e) => {}
                Err(e) if sys::would_block(&e) => {
                    self.readable = false;
                    return HeadRead::Wait;
                }
                Err(_) if self.end == 0 => {
                    return HeadRead::Fail(Status::BadGateway, HeadFailure::ClosedSilently);
                }
                Err(e) => {
                    let e = crate::sys::ErrorText(&e);
                    log::error!(
                        "slot {}: reading the response header from upstream {} failed: {e}, client: {}",
                        env.slot,
                        self.peer_label(env.groups),
                        env.client
                    );
                    self.peer_failed(env.groups, env.now);
                    return HeadRead::Fail(Status::BadGateway, HeadFailure::Other);
                }
            }
        }
        HeadRead::Wait
    }

    /// The bytes read so far (the head, then whatever came with it).
    pub fn received_bytes<'b>(&self, pool: &'b mut BufferPool) -> &'b [u8] {
        match self.buf {
            Some(ub) => pool.get_mut(ub).get(..self.end).unwrap_or(&[]),
            None => &[],
        }
    }

    // -- The response body ---------------------------------------------------------------------

    /// The head (`head_len` bytes at the front of the buffer) was accepted: what follows it is
    /// body, delimited by `framer` (from the head); `discard` drops the payload (a HEAD
    /// request). The bytes that came with the head go through the framing now (a bodiless
    /// response is done at once). `false` when they break it (the caller answers 502: nothing
    /// has gone to the client yet).
    pub fn start_body(
        &mut self,
        pool: &mut BufferPool,
        head_len: usize,
        framer: BodyFramer,
        discard: bool,
        env: &UpEnv<'_>,
    ) -> bool {
        self.stage = Stage::Stream;
        self.framing = framer;
        self.discard = discard;
        let arrived = self.end.saturating_sub(head_len);
        self.start = head_len;
        self.end = head_len;
        let Some(ub) = self.buf else {
            return false;
        };
        self.take_payload(pool.get_mut(ub), arrived, env);
        !self.truncated
    }

    /// `true` once nothing more will be read from the upstream (framed end, or close).
    pub fn finished_reading(&self) -> bool {
        self.finished
    }

    /// The response ended short of its framed end, or its framing broke: the client's
    /// response must end so that the client sees it truncated.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Payload bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The client went away: drain what the upstream still sends (so its worker finishes)
    /// without keeping it.
    pub fn client_gone(&mut self) {
        self.discard = true;
        self.start = self.end;
        self.spool.consume(self.spool.pending());
    }

    /// Payload bytes dropped (HEAD, or a client that went away).
    pub fn drained(&self) -> u64 {
        self.drained
    }

    /// Payload waiting for the client: spooled bytes first, then buffered ones.
    pub fn pending(&self) -> u64 {
        self.spool.pending() + (self.end - self.start) as u64
    }

    /// Reads what the upstream has, by its framing, into the buffer (spilling the buffer to
    /// the spool when it is full, up to `max_spool` bytes waiting). Returns the bytes read
    /// from the socket — progress, even when they were all chunk framing and brought no
    /// payload (the socket is edge-triggered: stopping on "no payload" would wait for an event
    /// that never comes); `Ok(0)` when nothing could be read now. An upstream I/O error ends
    /// the body truncated (logged here); `Err` is the spool's.
    pub fn pull(
        &mut self,
        pool: &mut BufferPool,
        temp_dir: &CStr,
        max_spool: u64,
        env: &UpEnv<'_>,
    ) -> io::Result<usize> {
        if self.finished || !self.readable {
            return Ok(0);
        }
        let Some(ub) = self.buf else {
            return Ok(0);
        };
        let ubuf = pool.get_mut(ub);
        let cap = ubuf.len();
        if self.end == cap {
            if self.start > 0 && self.spool.pending() == 0 {
                ubuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                if self.spool.pending() + (self.end - self.start) as u64 > max_spool {
                    // Spool bound reached: back-pressure on the upstream until the client
                    // catches up.
                    return Ok(0);
                }
                let held = ubuf.get(self.start..self.end).unwrap_or(&[]);
                self.spool.append(held, temp_dir)?;
                self.start = 0;
                self.end = 0;
            }
        }
        let Some(sock) = &mut self.sock else {
            return Ok(0);
        };
        let room = ubuf.get_mut(self.end..).unwrap_or(&mut []);
        let want = room.len();
        match sock.read(room) {
            Ok(0) => {
                self.finish_reading(env.registry);
                self.check_complete(env);
                Ok(0)
            }
            Ok(n) => {
                if n < want && !self.read_closed {
                    self.readable = false;
                }
                self.take_payload(ubuf, n, env);
                Ok(n)
            }
            Err(e) if sys::would_block(&e) || sys::interrupted(&e) => {
                self.readable = false;
                Ok(0)
            }
            Err(e) => {
                let e = crate::sys::ErrorText(&e);
                log::error!(
                    "slot {}: upstream {} failed while sending the response body: {e}, client: {}",
                    env.slot,
                    self.peer_label(env.groups),
                    env.client
                );
                self.finish_reading(env.registry);
                self.truncated = true;
                Ok(0)
            }
        }
    }

    /// Runs `n` freshly read bytes at `ubuf[end..end + n]` through the framing: payload stays
    /// (or is dropped when discarding), framing bytes go, and anything past the framed end is
    /// surplus: dropped, logged once, and the upstream connection closed.
    fn take_payload(&mut self, ubuf: &mut [u8], n: usize, env: &UpEnv<'_>) {
        let at = self.end;
        let wire = ubuf.get_mut(at..at + n).unwrap_or(&mut []);
        let fed = match self.framing.feed(wire) {
            Ok(fed) => fed,
            Err(_) => {
                log::error!(
                    "slot {}: upstream {} sent an invalid chunked response body, client: {}",
                    env.slot,
                    self.peer_label(env.groups),
                    env.client
                );
                self.truncated = true;
                self.finish_reading(env.registry);
                return;
            }
        };
        if fed.dropped > 0 {
            log::error!(
                "slot {}: upstream {} sent {} bytes after the end of its response; dropped them and closed the connection, client: {}",
                env.slot,
                self.peer_label(env.groups),
                fed.dropped,
                env.client
            );
        }
        self.received += fed.payload as u64;
        if self.discard {
            self.drained += fed.payload as u64;
        } else {
            self.end += fed.payload;
        }
        if fed.done {
            self.finish_reading(env.registry);
        }
    }

    /// Nothing more is read: the socket is closed (the upstream closes its side too), so a
    /// byte it sends later never reaches anyone.
    fn finish_reading(&mut self, registry: &Registry) {
        self.finished = true;
        self.close_socket(registry);
    }

    /// At the upstream's EOF: a body that stopped short of its framed end is truncated —
    /// unless nobody reads it (a HEAD answer, whose body a correct upstream does not send; a
    /// client that went away).
    fn check_complete(&mut self, env: &UpEnv<'_>) {
        let short = !self.framing.complete_at_eof();
        if short && !self.truncated && !self.discard {
            log::error!(
                "slot {}: upstream {} closed the connection after {} body bytes, before the end of its response, client: {}",
                env.slot,
                self.peer_label(env.groups),
                self.received,
                env.client
            );
            self.truncated = true;
        }
    }

    /// What the client may be sent next: spooled bytes first, then buffered ones. `ubuf` is
    /// this proxy's buffer ([`Proxy::buffer`]).
    pub fn data<'a>(&'a self, ubuf: &'a [u8]) -> Data<'a> {
        if let Some((file, offset)) = self.spool.unread() {
            return Data::Spooled {
                file,
                offset,
                len: self.spool.pending(),
            };
        }
        if self.start < self.end {
            return Data::Buffered(ubuf.get(self.start..self.end).unwrap_or(&[]));
        }
        Data::None
    }

    /// Stops reading and marks the response truncated (a spool that cannot be written).
    pub fn abort(&mut self, registry: &Registry) {
        self.truncated = true;
        self.finish_reading(registry);
    }

    /// `n` bytes of what [`Proxy::data`] gave went to the client.
    pub fn consume(&mut self, n: usize) {
        if self.spool.pending() > 0 {
            self.spool.consume(n as u64);
        } else {
            self.start = (self.start + n).min(self.end);
        }
    }

    fn peer_label<'g>(&self, groups: &'g Groups) -> PeerLabel<'g> {
        PeerLabel(self.peer_name(groups))
    }

    /// Closes the upstream socket, taking it out of the epoll set first: a child forked a
    /// moment ago may still hold a copy of the descriptor (until it closes its inherited ones,
    /// the first thing it does), and a close alone would leave that copy registered, its
    /// events arriving under this slot's token.
    fn close_socket(&mut self, registry: &Registry) {
        if let Some(mut sock) = self.sock.take() {
            let _ = registry.deregister(sock.source());
        }
    }

    /// Gives the buffer back and closes the socket. The one place both are freed.
    pub fn release(&mut self, pool: &mut BufferPool, registry: &Registry) {
        self.close_socket(registry);
        if let Some(b) = self.buf.take() {
            pool.checkin(b);
        }
    }
}

/// A peer name, or `?` when the group changed under a reload.
struct PeerLabel<'a>(Option<PeerName<'a>>);

impl fmt::Display for PeerLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(p) => p.fmt(f),
            None => f.write_str("?"),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The README's memory figure for a proxy slot (`Option<Proxy>` plus the slab's own).
    #[test]
    fn a_proxy_slot_costs_what_the_readme_says() {
        let slot = std::mem::size_of::<Option<Proxy>>() + crate::event::slab::PER_SLOT_OVERHEAD;
        assert_eq!(
            slot, 240,
            "a proxy slot changed size; update README's Design"
        );
    }
}
