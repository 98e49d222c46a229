//! uwsgi forwarding, nginx-style: read the whole request body first (buffer, then a spool
//! file), only then take a uWSGI worker; drain its response as fast as it comes (buffer, then
//! a spool file up to `uwsgi_max_temp_file_size`) so a slow client never holds the worker;
//! re-frame the response for the client. 502 on connect/protocol failures, 504 on timeouts.
//!
//! Owns: the per-request `Proxy` state machine (`Body → Connecting → Sending → Head →
//! Stream`), peers' failure bookkeeping (`peers`), the packet and response codecs, the response
//! body's framing (`response_body`).
//! Never: blocks, allocates per request (proxy slots and buffers are preallocated), lets a
//! truncated upstream response end as a clean keep-alive response, or lets a byte the upstream
//! sent past the framed end of its response reach the client.

pub mod packet;
pub mod peers;
pub mod response;
pub mod response_body;

use crate::config::{Handler, UpstreamAddr, UwsgiConf};
use crate::conn::{Conn, Phase, Step};
use crate::dispatch::{self, Ctx, Extra};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{Head, Method};
use crate::http::response::HeadWriter;
use crate::http::Status;
use crate::pool::{BufId, BufferPool};
use crate::slab::Slab;
use crate::stream::Stream;
use crate::sys;
use mio::{Interest, Registry, Token};
use packet::UWSGI_DEFAULT_BUFFER_SIZE;
use peers::Groups;
use response::{Framing, UpstreamHead};
use response_body::BodyFramer;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Printable form of an upstream address for logs.
pub fn addr_display(addr: &UpstreamAddr) -> String {
    match addr {
        UpstreamAddr::Tcp(a) => a.to_string(),
        UpstreamAddr::Unix(p) => format!("unix:{}", p.display()),
    }
}

/// Starts a non-blocking connect to one upstream peer.
fn connect_upstream(addr: &UpstreamAddr) -> io::Result<Stream> {
    match addr {
        UpstreamAddr::Tcp(a) => Stream::connect_tcp(*a),
        UpstreamAddr::Unix(p) => Stream::connect_unix(p),
    }
}

/// Where a proxied request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the client's request body (into the buffer, then a spool file).
    Body,
    /// Non-blocking connect to the chosen peer.
    Connecting,
    /// Sending the uwsgi packet, then the body.
    Sending,
    /// Reading the response head from uWSGI.
    Head,
    /// Moving the response body from uWSGI to the client.
    Stream,
}

/// What the connection is waiting on when its deadline fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    Client,
    Upstream,
}

/// One proxied request's state; lives in a preallocated slab while the request is in flight.
pub struct Proxy {
    pub head: Head,
    pub stage: Stage,
    pub waiting: Waiting,
    group: usize,
    peer: usize,
    tried: u64,
    attempts: u32,
    pub sock: Option<Stream>,
    pub up_readable: bool,
    /// uWSGI shut down its side (sticky): read on to the EOF after a short read.
    pub up_read_closed: bool,
    /// The upstream socket is registered for EPOLLOUT too (see `connect_next`).
    up_write_interest: bool,
    pub up_buf: Option<BufId>,
    // Request body.
    body_len: u64,
    body_in_buf: usize,
    body_spool: Option<File>,
    decoder: Option<ChunkedDecoder>,
    body_done: bool,
    body_started: Instant,
    // Sending.
    pkt_len: usize,
    pkt_sent: usize,
    body_sent: u64,
    vars_len: usize,
    // Response.
    rb_start: usize,
    rb_end: usize,
    spool: Option<File>,
    spool_r: u64,
    spool_w: u64,
    /// Which upstream bytes are body, and where the body ends (see `response_body`).
    framer: BodyFramer,
    eof: bool,
    truncated: bool,
    discard: bool,
    /// Where the client-side output region starts in the client buffer (after the input).
    out_base: usize,
    chunk_out: bool,
    chunk_left: u64,
    crlf_pending: bool,
    client_gone: bool,
    drained: u64,
}

impl Proxy {
    fn new(head: Head, group: usize, now: Instant) -> Proxy {
        Proxy {
            head,
            stage: Stage::Body,
            waiting: Waiting::Client,
            group,
            peer: 0,
            tried: 0,
            attempts: 0,
            sock: None,
            up_readable: false,
            up_read_closed: false,
            up_write_interest: false,
            up_buf: None,
            body_len: 0,
            body_in_buf: 0,
            body_spool: None,
            decoder: None,
            body_done: false,
            body_started: now,
            pkt_len: 0,
            pkt_sent: 0,
            body_sent: 0,
            vars_len: 0,
            rb_start: 0,
            rb_end: 0,
            spool: None,
            spool_r: 0,
            spool_w: 0,
            framer: BodyFramer::default(),
            eof: false,
            truncated: false,
            discard: false,
            out_base: 0,
            chunk_out: false,
            chunk_left: 0,
            crlf_pending: false,
            client_gone: false,
            drained: 0,
        }
    }
}

/// What the loop lends the upstream side.
pub struct UpCtx<'a> {
    pub proxies: &'a mut Slab<Proxy>,
    pub groups: &'a mut Groups,
    pub registry: &'a Registry,
    /// Token of this connection's upstream socket.
    pub token: Token,
}

fn uwsgi_conf<'c>(ctx: &Ctx<'c>, si: usize, li: usize) -> Option<&'c UwsgiConf> {
    match &ctx.cfg.servers.get(si)?.locations.get(li)?.handler {
        Handler::Uwsgi(u) => Some(u),
        _ => None,
    }
}

/// Starts forwarding the request whose head was just parsed to location (si, li).
/// `Err(step)` when it can't start now (no proxy slot: wait like for a buffer).
pub fn begin(
    conn: &mut Conn,
    buf: &mut [u8],
    head: &Head,
    ctx: &Ctx<'_>,
    up: &mut UpCtx<'_>,
    si: usize,
    li: usize,
) -> Option<Step> {
    let Some(group) = up.groups.group_of(si, li) else {
        dispatch::respond_error(conn, buf, ctx, Status::BadGateway, Extra::None);
        return None;
    };
    let proxy = Proxy::new(*head, group, ctx.now);
    let Ok(pi) = up.proxies.insert(proxy) else {
        // Every proxy slot busy: the connection waits like for a buffer.
        return Some(Step::NeedBuffer);
    };
    conn.proxy = Some(pi);
    conn.phase = Phase::Proxy;
    conn.server = si as u16;
    conn.location = li as u16;
    conn.unread_body = false;
    conn.deadline = Some(ctx.now + ctx.cfg.global.client_body_timeout);
    let p = up.proxies.get_mut(pi)?;
    if head.chunked {
        p.decoder = Some(ChunkedDecoder::new());
    } else if head.content_length.unwrap_or(0) == 0 {
        p.body_done = true;
    }
    if head.expect_continue && !p.body_done && head.version_minor == 1 {
        // Nothing of the body is here yet in the usual case: invite it.
        if conn.in_len == head.head_len as usize {
            let msg = b"HTTP/1.1 100 Continue\r\n\r\n";
            if !matches!(sys::send(conn.sock.as_raw_fd(), msg, false), Ok(n) if n == msg.len()) {
                return Some(Step::Close);
            }
        }
    }
    None
}

/// Releases a connection's proxy slot and everything it holds: the one place the upstream
/// socket is closed and the upstream buffer returned. No EPOLL_CTL_DEL first: closing the
/// only descriptor of a socket takes it out of the epoll set (spawned programs never keep a
/// copy: the loop waits for their exec, and every socket is close-on-exec).
pub fn release(conn: &mut Conn, pool: &mut BufferPool, proxies: &mut Slab<Proxy>) {
    if let Some(pi) = conn.proxy.take() {
        if let Some(mut p) = proxies.remove(pi) {
            drop(p.sock.take());
            if let Some(b) = p.up_buf.take() {
                pool.checkin(b);
            }
        }
    }
}

/// One turn of a proxied request. Returns `Some(step)` to stop, `None` when the connection
/// moved to another phase (Writing) and the caller's loop should go on.
pub fn step(
    conn: &mut Conn,
    pool: &mut BufferPool,
    ctx: &Ctx<'_>,
    up: &mut UpCtx<'_>,
    slot: usize,
) -> Option<Step> {
    let pi = conn.proxy?;
    let (Some(cb), Some(p)) = (conn.buf, up.proxies.get_mut(pi)) else {
        return Some(Step::Close);
    };
    let Some(conf) = uwsgi_conf(ctx, conn.server as usize, conn.location as usize) else {
        // The location vanished in a reload mid-request.
        return Some(Step::Close);
    };
    let g = &ctx.cfg.global;
    for _ in 0..64 {
        match p.stage {
            Stage::Body => {
                if !p.body_done {
                    let buf = pool.get_mut(cb);
                    match read_body(conn, p, buf, ctx) {
                        Ok(true) => {}
                        Ok(false) => {
                            p.waiting = Waiting::Client;
                            conn.deadline = Some(body_deadline(p, ctx));
                            return Some(Step::Wait);
                        }
                        Err(BodyError::Status(s)) => {
                            conn.keep_alive = false;
                            conn.unread_body = true;
                            release_and_error(conn, pool, up, ctx, s);
                            return None;
                        }
                        Err(BodyError::Closed) => return Some(Step::Close),
                    }
                    continue;
                }
                // Body complete: only now take an upstream buffer and a worker.
                if p.up_buf.is_none() {
                    match pool.checkout() {
                        Some(b) => p.up_buf = Some(b),
                        None => return Some(Step::NeedBuffer),
                    }
                }
                let Some(ub) = p.up_buf else {
                    return Some(Step::Close);
                };
                let enc = {
                    let (cbuf, ubuf) = pool.get_two(cb, ub);
                    let name = ctx
                        .cfg
                        .servers
                        .get(conn.server as usize)
                        .and_then(|s| s.server_name.first())
                        .map(String::as_str);
                    encode_packet(conn, p, cbuf, ubuf, conf, name)
                };
                match enc {
                    Ok(()) => {}
                    Err(s) => {
                        release_and_error(conn, pool, up, ctx, s);
                        return None;
                    }
                }
                if let Err(s) = connect_next(conn, p, ctx, up.groups, up.registry, up.token) {
                    release_and_error(conn, pool, up, ctx, s);
                    return None;
                }
            }
            Stage::Connecting => {
                // No getsockopt/getpeername round: send at once. While the handshake is in
                // flight send(2) says EAGAIN (and the EPOLLOUT that ends it brings us back);
                // a failed connect shows as send's error. Loopback connects complete inside
                // connect(2), so the packet usually leaves in the same turn.
                let sent_before = p.pkt_sent as u64 + p.body_sent;
                match send_request(p, pool, cb) {
                    Ok(sent) => {
                        if sent != Sent::Blocked || p.pkt_sent as u64 + p.body_sent > sent_before {
                            // Connected: Sending goes on from here (and waits if it must).
                            p.stage = Stage::Sending;
                            conn.deadline = Some(ctx.now + conf.send_timeout);
                        } else {
                            // Still connecting: its end comes as EPOLLOUT (or EPOLLERR).
                            if let Err(s) = want_writable(p, up.registry, up.token) {
                                release_and_error(conn, pool, up, ctx, s);
                                return None;
                            }
                            p.waiting = Waiting::Upstream;
                            return Some(Step::Wait);
                        }
                    }
                    Err(e) => {
                        let began = p.pkt_sent as u64 + p.body_sent > 0;
                        let what = if began {
                            "sending the request to"
                        } else {
                            "connect() to"
                        };
                        log::error!(
                            "slot {slot}: {what} upstream {} failed: {e}, client: {}",
                            peer_name(p, up.groups),
                            conn.peer
                        );
                        if let Some(s) =
                            next_peer(conn, p, ctx, up.groups, up.registry, up.token, began)
                        {
                            release_and_error(conn, pool, up, ctx, s);
                            return None;
                        }
                    }
                }
            }
            Stage::Sending => match send_request(p, pool, cb) {
                Ok(Sent::Done) => {
                    p.stage = Stage::Head;
                    p.rb_start = 0;
                    p.rb_end = 0;
                    conn.deadline = Some(ctx.now + conf.read_timeout);
                }
                Ok(Sent::Blocked) => {
                    if let Err(s) = want_writable(p, up.registry, up.token) {
                        release_and_error(conn, pool, up, ctx, s);
                        return None;
                    }
                    p.waiting = Waiting::Upstream;
                    conn.deadline = Some(ctx.now + conf.send_timeout);
                    return Some(Step::Wait);
                }
                Ok(Sent::Yield) => return Some(Step::Yield),
                Err(e) => {
                    log::error!(
                        "slot {slot}: sending the request to upstream {} failed: {e}, client: {}",
                        peer_name(p, up.groups),
                        conn.peer
                    );
                    if let Some(s) = next_peer(conn, p, ctx, up.groups, up.registry, up.token, true)
                    {
                        release_and_error(conn, pool, up, ctx, s);
                        return None;
                    }
                }
            },
            Stage::Head => match read_head(conn, p, pool, cb, ctx, up.groups, slot) {
                HeadResult::Wait => {
                    p.waiting = Waiting::Upstream;
                    return Some(Step::Wait);
                }
                HeadResult::Ready => {
                    p.stage = Stage::Stream;
                }
                HeadResult::Redirect => {
                    return internal_redirect(conn, pool, ctx, up, cb);
                }
                HeadResult::Fail(s) => {
                    release_and_error(conn, pool, up, ctx, s);
                    return None;
                }
            },
            Stage::Stream => {
                let r = stream(conn, p, pool, cb, ctx, conf, slot, up.groups);
                match r {
                    StreamResult::Wait(w) => {
                        p.waiting = w;
                        conn.deadline = Some(match w {
                            Waiting::Client => ctx.now + g.send_timeout,
                            Waiting::Upstream => ctx.now + conf.read_timeout,
                        });
                        return Some(Step::Wait);
                    }
                    StreamResult::Yield => return Some(Step::Yield),
                    StreamResult::Done => {
                        // The rest (final chunk, if any) is in the output region: plain writing.
                        release(conn, pool, up.proxies);
                        conn.phase = Phase::Writing;
                        conn.body = crate::conn::Body::None;
                        return None;
                    }
                    StreamResult::Close => return Some(Step::Close),
                    StreamResult::Fail(s) => {
                        release_and_error(conn, pool, up, ctx, s);
                        return None;
                    }
                }
            }
        }
    }
    log::error!("bug: slot {slot} proxy did not settle");
    Some(Step::Close)
}

fn peer_name(p: &Proxy, groups: &mut Groups) -> String {
    groups
        .get_mut(p.group)
        .and_then(|g| g.peers.get(p.peer))
        .map_or_else(|| "?".into(), |u| addr_display(&u.addr))
}

fn release_and_error(
    conn: &mut Conn,
    pool: &mut BufferPool,
    up: &mut UpCtx<'_>,
    ctx: &Ctx<'_>,
    status: Status,
) {
    release(conn, pool, up.proxies);
    if let Some(cb) = conn.buf {
        dispatch::respond_error(conn, pool.get_mut(cb), ctx, status, Extra::None);
    }
}

enum BodyError {
    Status(Status),
    Closed,
}

fn body_deadline(p: &Proxy, ctx: &Ctx<'_>) -> Instant {
    dispatch::body_deadline(ctx, p.body_started, p.body_len)
}

/// Writes `data` at `offset` of the body spool, creating the spool on first use.
fn spool_write(p: &mut Proxy, ctx: &Ctx<'_>, data: &[u8], offset: u64) -> Result<(), BodyError> {
    if p.body_spool.is_none() {
        let dir = std::ffi::CString::new(ctx.cfg.global.temp_path.as_os_str().as_encoded_bytes())
            .map_err(|_| BodyError::Status(Status::InternalServerError))?;
        match sys::tmpfile(&dir) {
            Ok(f) => p.body_spool = Some(f),
            Err(e) => {
                log::error!(
                    "cannot spool a request body under temp_path {}: {e}",
                    ctx.cfg.global.temp_path.display()
                );
                return Err(BodyError::Status(Status::InternalServerError));
            }
        }
    }
    if let Some(f) = &p.body_spool {
        f.write_all_at(data, offset).map_err(|e| {
            log::error!(
                "cannot spool a request body under temp_path {}: {e}",
                ctx.cfg.global.temp_path.display()
            );
            BodyError::Status(Status::InternalServerError)
        })?;
    }
    Ok(())
}

/// Reads body bytes until the body is complete (`Ok(true)`) or the socket is drained
/// (`Ok(false)`).
fn read_body(
    conn: &mut Conn,
    p: &mut Proxy,
    buf: &mut [u8],
    ctx: &Ctx<'_>,
) -> Result<bool, BodyError> {
    let g = &ctx.cfg.global;
    let head_len = p.head.head_len as usize;
    let limit = ctx.head_limit;
    for _ in 0..1024 {
        // 1. Account for what the buffer holds beyond the payload already counted.
        if let Some(dec) = &mut p.decoder {
            let payload_end = head_len + p.body_in_buf;
            if conn.in_len > payload_end {
                let d = dec
                    .decode_in_place(&mut buf[payload_end..conn.in_len])
                    .map_err(BodyError::Status)?;
                if d.produced > 0 {
                    buf.copy_within(payload_end..payload_end + d.produced, payload_end);
                }
                p.body_in_buf += d.produced;
                p.body_len += d.produced as u64;
                if g.client_max_body_size > 0 && dec.total() > g.client_max_body_size {
                    return Err(BodyError::Status(Status::ContentTooLarge));
                }
                let new_end = head_len + p.body_in_buf;
                if d.done {
                    let extra_from = payload_end + d.consumed;
                    let extra = conn.in_len - extra_from;
                    buf.copy_within(extra_from..conn.in_len, new_end);
                    conn.in_len = new_end + extra;
                } else {
                    conn.in_len = new_end;
                }
                if d.done {
                    // Drop head and buffered payload at the end; what follows is pipelined.
                    conn.req_len = new_end;
                    if p.body_spool.is_some() {
                        flush_buffered_body(p, buf, head_len, ctx)?;
                    }
                    p.body_done = true;
                    return Ok(true);
                }
            }
            if conn.in_len >= limit {
                // The buffer's body room is full: move the payload to the spool.
                flush_buffered_body(p, buf, head_len, ctx)?;
                conn.in_len = head_len;
            }
        } else {
            let cl = p.head.content_length.unwrap_or(0);
            let fits = cl <= (limit - head_len) as u64;
            if fits {
                let end = head_len + cl as usize;
                if conn.in_len >= end {
                    p.body_in_buf = cl as usize;
                    p.body_len = cl;
                    p.body_done = true;
                    conn.req_len = end;
                    return Ok(true);
                }
            } else {
                let have = conn.in_len - head_len;
                if have > 0 {
                    let take = (have as u64).min(cl - p.body_len) as usize;
                    let chunk = &buf[head_len..head_len + take];
                    spool_write(p, ctx, chunk, p.body_len)?;
                    p.body_len += take as u64;
                    buf.copy_within(head_len + take..conn.in_len, head_len);
                    conn.in_len -= take;
                }
                if p.body_len >= cl {
                    p.body_done = true;
                    conn.req_len = head_len;
                    return Ok(true);
                }
            }
        }
        // 2. Read more.
        if !conn.readable {
            return Ok(false);
        }
        let read_limit = match (&p.decoder, p.head.content_length) {
            (None, Some(cl)) if cl <= (limit - head_len) as u64 => head_len + cl as usize,
            (None, Some(cl)) => limit.min(head_len + (cl - p.body_len).min(limit as u64) as usize),
            _ => limit,
        };
        match conn.read_into(buf, read_limit) {
            Ok(0) => return Err(BodyError::Closed),
            Ok(_) => {}
            Err(e) if sys::would_block(&e) => return Ok(false),
            Err(_) => return Err(BodyError::Closed),
        }
    }
    Ok(false)
}

/// Moves the payload held in the buffer to the end of the body spool.
fn flush_buffered_body(
    p: &mut Proxy,
    buf: &mut [u8],
    head_len: usize,
    ctx: &Ctx<'_>,
) -> Result<(), BodyError> {
    let n = p.body_in_buf;
    if n == 0 {
        return Ok(());
    }
    // body_len already counts these bytes; they sit at the end of the body so far.
    let offset = p.body_len - n as u64;
    spool_write(p, ctx, &buf[head_len..head_len + n], offset)?;
    p.body_in_buf = 0;
    Ok(())
}

fn encode_packet(
    conn: &Conn,
    p: &mut Proxy,
    cbuf: &[u8],
    ubuf: &mut [u8],
    conf: &UwsgiConf,
    server_name: Option<&str>,
) -> Result<(), Status> {
    let head = &p.head;
    let head_bytes = &cbuf[..head.head_len as usize];
    let mut path_buf = [0u8; 4096];
    let path_len = crate::http::path::canonicalize(head.path(cbuf), &mut path_buf)?;
    let path = &path_buf[..path_len];
    let script_name = conf.script_name.as_deref().map(str::as_bytes);
    // nginx's $server_name: the server's first name; a nameless server gives its address.
    let mut ip_text = heapless::String::<48>::new();
    let server_name: &[u8] = match server_name {
        Some(n) => n.as_bytes(),
        None => {
            use std::fmt::Write as _;
            let _ = write!(ip_text, "{}", conn.local.ip());
            ip_text.as_bytes()
        }
    };
    let info = packet::RequestInfo {
        method: head.method_bytes(cbuf),
        request_uri: head.target.get(cbuf),
        query: head.query(cbuf),
        path_info: path,
        protocol: if head.version_minor == 0 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        },
        content_type: head.content_type.map(|s| s.get(cbuf)).unwrap_or(b""),
        content_length: if head.chunked || head.content_length.is_some() {
            Some(p.body_len)
        } else {
            None
        },
        remote_addr: conn.peer.ip(),
        remote_port: conn.peer.port(),
        server_addr: conn.local.ip(),
        server_port: conn.local.port(),
        server_name,
        document_root: b"",
        script_name,
        https: false,
    };
    let n = packet::encode(ubuf, &info, head_bytes, &conf.params)?;
    p.pkt_len = n;
    p.vars_len = n.saturating_sub(4);
    Ok(())
}

/// Connects to the next live peer not yet tried for this request.
fn connect_next(
    conn: &mut Conn,
    p: &mut Proxy,
    ctx: &Ctx<'_>,
    groups: &mut Groups,
    reg: &Registry,
    token: Token,
) -> Result<(), Status> {
    let Some(group) = groups.get_mut(p.group) else {
        return Err(Status::BadGateway);
    };
    let Some(conf) = uwsgi_conf(ctx, conn.server as usize, conn.location as usize) else {
        return Err(Status::BadGateway);
    };
    for _ in 0..group.peers.len().max(1) {
        let Some(i) = group.pick(ctx.now, p.tried) else {
            if p.tried == 0 {
                log::error!("no live upstreams, client: {}", conn.peer);
            }
            return Err(Status::BadGateway);
        };
        p.tried |= 1u64.checked_shl(i as u32).unwrap_or(0);
        p.peer = i;
        p.attempts += 1;
        let addr = group.peers[i].addr.clone();
        match connect_upstream(&addr) {
            Ok(mut sock) => {
                // Registered for reading only: the packet usually leaves at once (a loopback
                // connect completes inside connect(2)), and an EPOLLOUT nobody waits for would
                // cost a wakeup per request. `want_writable` adds it when a send must wait.
                if let Err(e) = reg.register(sock.source(), token, Interest::READABLE) {
                    log::error!("epoll registration of upstream socket failed: {e}");
                    return Err(Status::InternalServerError);
                }
                p.sock = Some(sock);
                p.up_readable = false;
                p.up_read_closed = false;
                p.up_write_interest = false;
                // A new peer gets the whole request, whatever reached a failed one.
                p.pkt_sent = 0;
                p.body_sent = 0;
                p.stage = Stage::Connecting;
                p.waiting = Waiting::Upstream;
                conn.deadline = Some(ctx.now + conf.connect_timeout);
                return Ok(());
            }
            Err(e) => {
                log::error!(
                    "connect() to upstream {} failed: {e}, client: {}",
                    addr_display(&addr),
                    conn.peer
                );
                group.failed(i, ctx.now);
            }
        }
    }
    Err(Status::BadGateway)
}

/// A failed attempt: mark the peer, drop the socket, try the next one (nginx's
/// `uwsgi_next_upstream error timeout`). `Some(status)` when no peer is left.
fn retry(
    conn: &mut Conn,
    p: &mut Proxy,
    ctx: &Ctx<'_>,
    groups: &mut Groups,
    reg: &Registry,
    token: Token,
) -> Option<Status> {
    if let Some(g) = groups.get_mut(p.group) {
        g.failed(p.peer, ctx.now);
    }
    drop(p.sock.take());
    connect_next(conn, p, ctx, groups, reg, token).err()
}

/// Called by the loop when a proxied connection's deadline passes.
pub fn on_timeout(
    conn: &mut Conn,
    pool: &mut BufferPool,
    ctx: &Ctx<'_>,
    up: &mut UpCtx<'_>,
    slot: usize,
) -> Option<Step> {
    let pi = conn.proxy?;
    let p = up.proxies.get_mut(pi)?;
    match (p.stage, p.waiting) {
        (Stage::Body, _) => {
            log::info!(
                "slot {slot}: client {} timed out sending its request body",
                conn.peer
            );
            conn.keep_alive = false;
            conn.unread_body = true;
            release_and_error(conn, pool, up, ctx, Status::RequestTimeout);
            None
        }
        (Stage::Connecting, _) => {
            log::error!(
                "slot {slot}: upstream {} timed out while connecting, client: {}",
                peer_name(p, up.groups),
                conn.peer
            );
            match retry(conn, p, ctx, up.groups, up.registry, up.token) {
                None => None,
                Some(_) => {
                    release_and_error(conn, pool, up, ctx, Status::GatewayTimeout);
                    None
                }
            }
        }
        (Stage::Sending, _) | (Stage::Head, _) => {
            log::error!(
                "slot {slot}: upstream {} timed out ({}), client: {}",
                peer_name(p, up.groups),
                if p.stage == Stage::Sending {
                    "sending the request"
                } else {
                    "reading the response header"
                },
                conn.peer
            );
            if let Some(g) = up.groups.get_mut(p.group) {
                g.failed(p.peer, ctx.now);
            }
            release_and_error(conn, pool, up, ctx, Status::GatewayTimeout);
            None
        }
        (Stage::Stream, Waiting::Upstream) => {
            log::error!(
                "slot {slot}: upstream {} timed out sending the response body, client: {}",
                peer_name(p, up.groups),
                conn.peer
            );
            Some(Step::Close)
        }
        (Stage::Stream, Waiting::Client) => {
            log::info!(
                "slot {slot}: client {} timed out reading the response",
                conn.peer
            );
            Some(Step::Close)
        }
    }
}

/// After a failed connect or send: the next peer, or `Some(status)` when there is none. As
/// nginx without `non_idempotent`, a POST, PATCH or unknown method that has `began` to reach
/// one uWSGI is not sent to another: the failed peer is marked and the client gets a 502.
fn next_peer(
    conn: &mut Conn,
    p: &mut Proxy,
    ctx: &Ctx<'_>,
    groups: &mut Groups,
    reg: &Registry,
    token: Token,
    began: bool,
) -> Option<Status> {
    if began && !idempotent(p.head.method) {
        if let Some(g) = groups.get_mut(p.group) {
            g.failed(p.peer, ctx.now);
        }
        return Some(Status::BadGateway);
    }
    retry(conn, p, ctx, groups, reg, token)
}

/// Methods nginx passes to the next upstream after a failed send (RFC 9110's idempotent ones).
fn idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

/// Adds EPOLLOUT to the upstream socket's interest, once per socket.
fn want_writable(p: &mut Proxy, reg: &Registry, token: Token) -> Result<(), Status> {
    if p.up_write_interest {
        return Ok(());
    }
    let Some(sock) = &mut p.sock else {
        return Err(Status::BadGateway);
    };
    // EPOLL_CTL_MOD: the kernel re-checks readiness, so an EPOLLOUT that came before the
    // call is still reported.
    if let Err(e) = reg.reregister(
        sock.source(),
        token,
        Interest::READABLE | Interest::WRITABLE,
    ) {
        log::error!("epoll registration of upstream socket failed: {e}");
        return Err(Status::InternalServerError);
    }
    p.up_write_interest = true;
    Ok(())
}

/// How far `send_request` got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The whole request is out.
    Done,
    /// The socket is full (or still connecting): wait for EPOLLOUT.
    Blocked,
    /// Out of this turn's rounds with the socket still writable: run again from the queue.
    Yield,
}

/// Sends the packet, then the body (from the buffer or by sendfile from the spool).
fn send_request(p: &mut Proxy, pool: &mut BufferPool, cb: BufId) -> io::Result<Sent> {
    let Some(ub) = p.up_buf else {
        return Err(io::Error::other("no upstream buffer"));
    };
    let head_len = p.head.head_len as usize;
    for _ in 0..1024 {
        let Some(sock) = &mut p.sock else {
            return Err(io::Error::other("no upstream socket"));
        };
        let res = if p.pkt_sent < p.pkt_len {
            let ubuf = pool.get_mut(ub);
            sock.write(&ubuf[p.pkt_sent..p.pkt_len]).map(|n| {
                p.pkt_sent += n;
            })
        } else if p.body_sent < p.body_len {
            if let Some(spool) = &p.body_spool {
                let mut off = p.body_sent;
                let left = (p.body_len - p.body_sent).min(1 << 20) as usize;
                sys::sendfile(sock.fd(), spool, &mut off, left).and_then(|n| {
                    if n == 0 {
                        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                    }
                    p.body_sent = off;
                    Ok(())
                })
            } else {
                let cbuf = pool.get_mut(cb);
                let from = head_len + p.body_sent as usize;
                let to = head_len + p.body_len as usize;
                sock.write(&cbuf[from..to]).map(|n| {
                    p.body_sent += n as u64;
                })
            }
        } else {
            return Ok(Sent::Done);
        };
        match res {
            Ok(()) => {}
            Err(e) if sys::interrupted(&e) => {}
            Err(e) if sys::would_block(&e) => {
                return Ok(Sent::Blocked);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Sent::Yield)
}

enum HeadResult {
    Wait,
    Ready,
    Redirect,
    Fail(Status),
}

/// Reads and parses uWSGI's response head, then writes ours into the output region.
fn read_head(
    conn: &mut Conn,
    p: &mut Proxy,
    pool: &mut BufferPool,
    cb: BufId,
    ctx: &Ctx<'_>,
    groups: &mut Groups,
    slot: usize,
) -> HeadResult {
    let Some(ub) = p.up_buf else {
        return HeadResult::Fail(Status::InternalServerError);
    };
    for _ in 0..1024 {
        {
            let ubuf = pool.get_mut(ub);
            if p.rb_end > 0 {
                match response::parse(&ubuf[..p.rb_end]) {
                    Ok(Some(h)) => {
                        if let Some(g) = groups.get_mut(p.group) {
                            g.succeeded(p.peer);
                        }
                        if h.x_accel_redirect.is_some() {
                            conn.redirect_head = Some(h);
                            return HeadResult::Redirect;
                        }
                        return start_response(conn, p, pool, (cb, ub), ctx, &h, groups, slot);
                    }
                    Ok(None) if p.rb_end == ubuf.len() => {
                        log::error!(
                            "slot {slot}: upstream {} sent too big a header (over {} bytes), client: {}",
                            peer_name(p, groups),
                            ubuf.len(),
                            conn.peer
                        );
                        return HeadResult::Fail(Status::BadGateway);
                    }
                    Ok(None) => {}
                    Err(()) => {
                        log::error!(
                            "slot {slot}: upstream {} sent an invalid header, client: {}",
                            peer_name(p, groups),
                            conn.peer
                        );
                        return HeadResult::Fail(Status::BadGateway);
                    }
                }
            }
        }
        if !p.up_readable {
            // Nothing new since a short read or EAGAIN: the next EPOLLIN says when.
            return HeadResult::Wait;
        }
        let Some(sock) = &mut p.sock else {
            return HeadResult::Fail(Status::BadGateway);
        };
        let ubuf = pool.get_mut(ub);
        let want = ubuf.len() - p.rb_end;
        match sock.read(&mut ubuf[p.rb_end..]) {
            Ok(0) => {
                let name = peer_name(p, groups);
                if p.rb_end == 0 && p.vars_len > UWSGI_DEFAULT_BUFFER_SIZE {
                    log::error!(
                        "slot {slot}: upstream {name} closed the connection without a response; the request's uwsgi vars were {} bytes, more than uWSGI's default buffer-size of {} — raise `buffer-size` in uWSGI's config (e.g. buffer-size = 32768), client: {}",
                        p.vars_len,
                        UWSGI_DEFAULT_BUFFER_SIZE,
                        conn.peer
                    );
                } else {
                    log::error!(
                        "slot {slot}: upstream {name} prematurely closed the connection while reading the response header, client: {}",
                        conn.peer
                    );
                    if let Some(g) = groups.get_mut(p.group) {
                        g.failed(p.peer, ctx.now);
                    }
                }
                return HeadResult::Fail(Status::BadGateway);
            }
            Ok(n) => {
                // A short read drained the socket (as in pull_upstream).
                if n < want && !p.up_read_closed {
                    p.up_readable = false;
                }
                p.rb_end += n;
            }
            Err(e) if sys::interrupted(&e) => {}
            Err(e) if sys::would_block(&e) => {
                p.up_readable = false;
                return HeadResult::Wait;
            }
            Err(e) if p.rb_end == 0 && p.vars_len > UWSGI_DEFAULT_BUFFER_SIZE => {
                log::error!(
                    "slot {slot}: upstream {} reset the connection without a response ({e}); the request's uwsgi vars were {} bytes, more than uWSGI's default buffer-size of {} — raise `buffer-size` in uWSGI's config (e.g. buffer-size = 32768), client: {}",
                    peer_name(p, groups),
                    p.vars_len,
                    UWSGI_DEFAULT_BUFFER_SIZE,
                    conn.peer
                );
                return HeadResult::Fail(Status::BadGateway);
            }
            Err(e) => {
                log::error!(
                    "slot {slot}: reading the response header from upstream {} failed: {e}, client: {}",
                    peer_name(p, groups),
                    conn.peer
                );
                if let Some(g) = groups.get_mut(p.group) {
                    g.failed(p.peer, ctx.now);
                }
                return HeadResult::Fail(Status::BadGateway);
            }
        }
    }
    HeadResult::Wait
}

#[allow(clippy::too_many_arguments)]
fn start_response(
    conn: &mut Conn,
    p: &mut Proxy,
    pool: &mut BufferPool,
    (cb, ub): (BufId, BufId),
    ctx: &Ctx<'_>,
    h: &UpstreamHead,
    groups: &mut Groups,
    slot: usize,
) -> HeadResult {
    // The body bytes that came with the head are framed first: broken framing there is a 502
    // (nothing of the response has gone out), and bytes past the end are never queued.
    p.framer = BodyFramer::for_head(h);
    let head_len = h.head_len as usize;
    let fed = match p.framer.feed(
        pool.get_mut(ub)
            .get_mut(head_len..p.rb_end)
            .unwrap_or_default(),
    ) {
        Ok(fed) => fed,
        Err(response_body::Broken) => {
            log_broken_framing(conn, p, groups, slot);
            return HeadResult::Fail(Status::BadGateway);
        }
    };
    p.rb_end = head_len + fed.payload;
    if fed.done {
        // The framed end: nothing more is read from this upstream connection.
        p.eof = true;
    }
    if fed.dropped > 0 {
        log_past_the_end(conn, p, groups, slot, fed.dropped);
    }
    let no_body = matches!(h.status, 100..=199 | 204 | 304);
    // A chunked upstream body is decoded (above and in pull_upstream) and framed afresh for the
    // client like one of unknown length: the upstream's chunk framing never reaches the client.
    let framing = if no_body {
        Framing::NoBody
    } else if let Some(n) = h.content_length {
        Framing::Length(n)
    } else if p.head.version_minor == 1 && conn.keep_alive {
        p.chunk_out = !conn.head_only;
        Framing::Chunked
    } else {
        conn.keep_alive = false;
        Framing::Close
    };
    if h.connection_close && matches!(framing, Framing::Close) {
        conn.keep_alive = false;
    }
    p.discard = conn.head_only || no_body;
    let (cbuf, ubuf) = pool.get_two(cb, ub);
    // The client buffer past the request's input is free for our response head (the
    // upstream's head may be up to a buffer long, so the output region alone may not do).
    let base = conn.in_len;
    p.out_base = base;
    let server = crate::http::response::server_name(ctx.cfg.global.server_tokens);
    let Some(len) = response::write_client_head(
        &mut cbuf[base..],
        &ubuf[..p.rb_end],
        h,
        ctx.date,
        server,
        framing,
        conn.keep_alive,
    ) else {
        log::error!(
            "upstream sent a response head too big to re-frame in buffer_size ({} bytes), client: {}",
            cbuf.len(),
            conn.peer
        );
        return HeadResult::Fail(Status::BadGateway);
    };
    conn.out_pos = base;
    conn.out_end = base + len;
    conn.status = h.status;
    conn.body_sent = 0;
    conn.inline_body = 0;
    p.rb_start = head_len;
    HeadResult::Ready
}

/// X-Accel-Redirect: serve the named URI from an `internal = on` static location.
fn internal_redirect(
    conn: &mut Conn,
    pool: &mut BufferPool,
    ctx: &Ctx<'_>,
    up: &mut UpCtx<'_>,
    cb: BufId,
) -> Option<Step> {
    let Some(h) = conn.redirect_head.take() else {
        return Some(Step::Close);
    };
    let pi = conn.proxy?;
    let p = up.proxies.get_mut(pi)?;
    let ub = p.up_buf?;
    let mut uri = [0u8; 2048];
    // nginx carries these of the app's headers onto the file it serves.
    let mut extra = [0u8; 4096];
    let (uri_len, extra_len) = {
        let ubuf = pool.get_mut(ub);
        let target = h.x_accel_redirect.map(|s| s.get(ubuf)).unwrap_or(b"");
        let n = target.len().min(uri.len());
        uri[..n].copy_from_slice(&target[..n]);
        let keep = |name: &[u8]| {
            response::kept_on_accel_redirect(name) && !name.eq_ignore_ascii_case(b"accept-ranges")
        };
        let e = response::write_fields_where(&mut extra, &ubuf[..p.rb_end], &h, keep).unwrap_or(0);
        (n, e)
    };
    release(conn, pool, up.proxies);
    let cbuf = pool.get_mut(cb);
    dispatch::serve_internal(conn, cbuf, &uri[..uri_len], &extra[..extra_len], ctx);
    None
}

enum StreamResult {
    Wait(Waiting),
    Yield,
    Done,
    Close,
    /// The response failed before any of it went out: answer this status instead.
    Fail(Status),
}

/// True while no byte of our response head has been handed to the client socket (the head sits
/// whole at `out_base`, and no body or chunk framing has been counted): until then a failed
/// response can still become an error page.
fn head_unsent(conn: &Conn, p: &Proxy) -> bool {
    conn.out_pos == p.out_base && conn.body_sent == 0
}

/// Logs bytes the upstream sent past the framed end of its response (discarded, never sent to
/// the client; the upstream connection is read no more and closed at `release`).
fn log_past_the_end(conn: &Conn, p: &Proxy, groups: &mut Groups, slot: usize, dropped: usize) {
    log::error!(
        "slot {slot}: upstream {} sent {dropped} bytes past the end of its response; discarded, and its connection closed, client: {}",
        peer_name(p, groups),
        conn.peer
    );
}

/// Logs a chunked response body whose framing the upstream broke.
fn log_broken_framing(conn: &Conn, p: &Proxy, groups: &mut Groups, slot: usize) {
    log::error!(
        "slot {slot}: upstream {} sent invalid chunked framing after {} body bytes, client: {}",
        peer_name(p, groups),
        p.framer.received(),
        conn.peer
    );
}

/// Logs an upstream that closed before the framed end of its response body.
fn log_cut_short(conn: &Conn, p: &Proxy, groups: &mut Groups, slot: usize) {
    let name = peer_name(p, groups);
    let got = p.framer.received();
    match p.framer.expected() {
        Some(total) => log::error!(
            "slot {slot}: upstream {name} closed the connection after {got} of {total} body bytes, client: {}",
            conn.peer
        ),
        None => log::error!(
            "slot {slot}: upstream {name} closed the connection before the last chunk of its chunked body ({got} bytes), client: {}",
            conn.peer
        ),
    }
}

/// Moves the response body: upstream → buffer (→ spool) → client, re-framed.
#[allow(clippy::too_many_arguments)]
fn stream(
    conn: &mut Conn,
    p: &mut Proxy,
    pool: &mut BufferPool,
    cb: BufId,
    ctx: &Ctx<'_>,
    conf: &UwsgiConf,
    slot: usize,
    groups: &mut Groups,
) -> StreamResult {
    let Some(ub) = p.up_buf else {
        return StreamResult::Close;
    };
    let base = p.out_base;
    let mut budget = crate::conn::WRITE_BUDGET;
    for _ in 0..4096 {
        let mut progressed = false;
        // 1. Pull from uWSGI as fast as it comes (eof: it closed, or the body's end is here).
        if !p.eof && p.up_readable {
            match pull_upstream(p, pool.get_mut(ub), ctx, conf) {
                Ok(pulled) => {
                    progressed = pulled.read > 0;
                    if pulled.dropped > 0 {
                        log_past_the_end(conn, p, groups, slot, pulled.dropped);
                    }
                }
                Err(fault) => {
                    match fault {
                        PullFault::Upstream(e) => log::error!(
                            "slot {slot}: upstream {} failed while sending the response body: {e}, client: {}",
                            peer_name(p, groups),
                            conn.peer
                        ),
                        PullFault::Framing => log_broken_framing(conn, p, groups, slot),
                        PullFault::Spool(e) => log::error!(
                            "slot {slot}: cannot spool the response of upstream {} under temp_path {}: {e}, client: {}",
                            peer_name(p, groups),
                            ctx.cfg.global.temp_path.display(),
                            conn.peer
                        ),
                    }
                    p.eof = true;
                    p.truncated = true;
                }
            }
        }
        if p.eof && !p.truncated && !p.framer.complete_at_eof() {
            log_cut_short(conn, p, groups, slot);
            p.truncated = true;
        }
        if p.truncated && head_unsent(conn, p) {
            // Nothing of the response has reached the client: it gets a whole 502 instead.
            return StreamResult::Fail(Status::BadGateway);
        }
        if p.client_gone {
            // Drained without a reader (uwsgi_ignore_client_abort): stop at the spool bound.
            if p.eof || p.drained > conf.max_temp_file_size {
                return StreamResult::Close;
            }
            if progressed {
                continue;
            }
            return StreamResult::Wait(Waiting::Upstream);
        }
        // 2. Push to the client.
        if conn.writable {
            let (cbuf, ubuf) = pool.get_two(cb, ub);
            match push_client(conn, p, cbuf, ubuf, base, &mut budget) {
                Ok(n) if n > 0 => progressed = true,
                Ok(_) => {}
                Err(e) => {
                    log::debug!("slot {slot}: client {} went away: {e}", conn.peer);
                    if !conf.ignore_client_abort {
                        return StreamResult::Close;
                    }
                    p.client_gone = true;
                    conn.keep_alive = false;
                    continue;
                }
            }
        }
        let pending_out = conn.out_pos < conn.out_end;
        let have_data = p.spool_r < p.spool_w || p.rb_start < p.rb_end;
        if p.eof && !pending_out && !have_data {
            if p.truncated {
                // Never end a truncated response cleanly: the client sees the connection close.
                return StreamResult::Close;
            }
            if p.chunk_out {
                let mut w = HeadWriter::new(&mut pool.get_mut(cb)[base..]);
                if p.crlf_pending {
                    w.put(b"\r\n");
                }
                w.put(b"0\r\n\r\n");
                conn.out_pos = base;
                conn.out_end = base + w.len();
            }
            return StreamResult::Done;
        }
        if budget == 0 {
            return StreamResult::Yield;
        }
        if !progressed {
            if (pending_out || have_data) && !conn.writable {
                return StreamResult::Wait(Waiting::Client);
            }
            return StreamResult::Wait(Waiting::Upstream);
        }
    }
    StreamResult::Yield
}

/// What one `pull_upstream` did.
struct Pulled {
    /// Bytes read from the upstream socket.
    read: usize,
    /// Of those, bytes past the framed end of the response (discarded).
    dropped: usize,
}

/// Why the response cannot go on.
enum PullFault {
    /// Reading from the upstream failed.
    Upstream(io::Error),
    /// The upstream broke the chunked framing of its body.
    Framing,
    /// Writing the spool under `temp_path` failed (ENOSPC, EIO, ...).
    Spool(io::Error),
}

/// Reads what uWSGI has into the upstream buffer, spilling the buffer to the spool when full;
/// every read goes through the framer, so only body bytes are kept, and the body's end sets
/// `eof` (nothing more is read from that connection).
fn pull_upstream(
    p: &mut Proxy,
    ubuf: &mut [u8],
    ctx: &Ctx<'_>,
    conf: &UwsgiConf,
) -> Result<Pulled, PullFault> {
    let nothing = Pulled {
        read: 0,
        dropped: 0,
    };
    let cap = ubuf.len();
    if p.rb_end == cap {
        if p.rb_start > 0 && p.spool_r == p.spool_w {
            ubuf.copy_within(p.rb_start..p.rb_end, 0);
            p.rb_end -= p.rb_start;
            p.rb_start = 0;
        } else {
            let backlog = p.spool_w - p.spool_r;
            if backlog + (p.rb_end - p.rb_start) as u64 > conf.max_temp_file_size {
                // Spool bound reached: back-pressure on uWSGI until the client catches up.
                return Ok(nothing);
            }
            spill(p, ubuf, ctx).map_err(PullFault::Spool)?;
        }
    }
    let Some(sock) = &mut p.sock else {
        return Ok(nothing);
    };
    let room = &mut ubuf[p.rb_end..];
    let want = room.len();
    match sock.read(room) {
        Ok(0) => {
            p.eof = true;
            Ok(nothing)
        }
        Ok(n) => {
            if n < want && !p.up_read_closed {
                p.up_readable = false;
            }
            let fed = p
                .framer
                .feed(&mut room[..n])
                .map_err(|response_body::Broken| PullFault::Framing)?;
            if fed.done {
                // The framed end: nothing more is read from this upstream connection.
                p.eof = true;
            }
            if p.discard || p.client_gone {
                p.drained += fed.payload as u64;
            } else {
                p.rb_end += fed.payload;
            }
            Ok(Pulled {
                read: n,
                dropped: fed.dropped,
            })
        }
        Err(e) if sys::would_block(&e) || sys::interrupted(&e) => {
            p.up_readable = false;
            Ok(nothing)
        }
        Err(e) => Err(PullFault::Upstream(e)),
    }
}

/// Appends the buffered response bytes to the spool file and empties the buffer.
fn spill(p: &mut Proxy, ubuf: &mut [u8], ctx: &Ctx<'_>) -> io::Result<()> {
    if p.spool.is_none() {
        let dir = std::ffi::CString::new(ctx.cfg.global.temp_path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::other("temp_path contains NUL"))?;
        p.spool = Some(sys::tmpfile(&dir)?);
    }
    if let Some(f) = &p.spool {
        if p.spool_r == p.spool_w && p.spool_w > 0 {
            // Drained: start over at offset 0, but truncate first. sendfile(2) queued the
            // file's page-cache pages on the socket without copying them; writing over those
            // offsets in place would change bytes still waiting to be transmitted. Truncation
            // detaches the old pages (the socket keeps its references) and new writes get
            // fresh pages.
            f.set_len(0)?;
            p.spool_r = 0;
            p.spool_w = 0;
        }
        f.write_all_at(&ubuf[p.rb_start..p.rb_end], p.spool_w)?;
    }
    p.spool_w += (p.rb_end - p.rb_start) as u64;
    p.rb_start = 0;
    p.rb_end = 0;
    Ok(())
}

/// Sends output-region bytes, then stream bytes (spool first, then buffer), chunk-framed
/// when we chunk. Returns bytes of progress.
fn push_client(
    conn: &mut Conn,
    p: &mut Proxy,
    cbuf: &mut [u8],
    ubuf: &[u8],
    base: usize,
    budget: &mut usize,
) -> io::Result<usize> {
    let fd = conn.sock.as_raw_fd();
    let mut progress = 0;
    if p.discard {
        p.rb_start = p.rb_end;
    }
    let available = (p.spool_w - p.spool_r) + (p.rb_end - p.rb_start) as u64;
    if p.chunk_out && p.chunk_left == 0 && available > 0 && *budget > 0 {
        // Frame the next chunk (everything available now) behind any unsent head bytes; a
        // head that leaves no room for the size line goes out alone first, and the line is
        // framed at `base` on the next call.
        let pending = conn.out_pos < conn.out_end;
        let at = if pending { conn.out_end } else { base };
        let mut w = HeadWriter::new(&mut cbuf[at..]);
        if p.crlf_pending {
            w.put(b"\r\n");
        }
        w.hex(available).put(b"\r\n");
        if !w.overflowed() {
            let n = w.len();
            if !pending {
                conn.out_pos = base;
            }
            conn.out_end = at + n;
            conn.body_sent += n as u64;
            p.chunk_left = available;
            p.crlf_pending = true;
        } else if !pending {
            return Err(io::Error::other("no room to frame a chunk"));
        }
    }
    // Output region first (response head, chunk framing); buffered body bytes go in the
    // same sendmsg, spooled ones follow by sendfile under MSG_MORE.
    while conn.out_pos < conn.out_end {
        let out = &cbuf[conn.out_pos..conn.out_end];
        let body = if p.spool_r == p.spool_w && *budget > 0 {
            let limit = if p.chunk_out {
                p.chunk_left.min(*budget as u64)
            } else {
                *budget as u64
            };
            let end = p.rb_start + ((p.rb_end - p.rb_start) as u64).min(limit) as usize;
            &ubuf[p.rb_start..end]
        } else {
            &[]
        };
        let res = if body.is_empty() {
            let follows = p.spool_r < p.spool_w || p.rb_start < p.rb_end;
            sys::send(fd, out, follows)
        } else {
            sys::send2(fd, out, body)
        };
        match res {
            Ok(n) => {
                let head = n.min(out.len());
                conn.out_pos += head;
                progress += n;
                let sent = n - head;
                if sent > 0 {
                    p.rb_start += sent;
                    sent_body(conn, p, budget, sent);
                }
            }
            Err(e) if sys::interrupted(&e) => {}
            Err(e) if sys::would_block(&e) => {
                conn.writable = false;
                return Ok(progress);
            }
            Err(e) => return Err(e),
        }
    }
    let available = (p.spool_w - p.spool_r) + (p.rb_end - p.rb_start) as u64;
    if available == 0 || *budget == 0 {
        return Ok(progress);
    }
    if p.chunk_out && p.chunk_left == 0 {
        // The chunk framed above is out, or none fit behind the head: the next call frames.
        return Ok(progress + 1);
    }
    let limit = if p.chunk_out {
        p.chunk_left.min(*budget as u64)
    } else {
        *budget as u64
    };
    let sent = if p.spool_r < p.spool_w {
        let Some(spool) = &p.spool else {
            return Err(io::Error::other("spool lost"));
        };
        let count = (p.spool_w - p.spool_r).min(limit) as usize;
        let mut off = p.spool_r;
        match sys::sendfile(fd, spool, &mut off, count) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                p.spool_r = off;
                n
            }
            Err(e) if sys::would_block(&e) => {
                conn.writable = false;
                0
            }
            Err(e) if sys::interrupted(&e) => 0,
            Err(e) => return Err(e),
        }
    } else {
        let end = p.rb_start + ((p.rb_end - p.rb_start) as u64).min(limit) as usize;
        match sys::send(fd, &ubuf[p.rb_start..end], false) {
            Ok(n) => {
                p.rb_start += n;
                n
            }
            Err(e) if sys::would_block(&e) => {
                conn.writable = false;
                0
            }
            Err(e) if sys::interrupted(&e) => 0,
            Err(e) => return Err(e),
        }
    };
    sent_body(conn, p, budget, sent);
    Ok(progress + sent)
}

/// Accounts `n` body bytes handed to the client socket.
fn sent_body(conn: &mut Conn, p: &mut Proxy, budget: &mut usize, n: usize) {
    if p.chunk_out {
        p.chunk_left -= n as u64;
    }
    conn.body_sent += n as u64;
    *budget = budget.saturating_sub(n);
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The README's memory figure for a proxy slot (`Option<Proxy>` plus the slab's own).
    #[test]
    fn a_proxy_slot_costs_what_the_readme_says() {
        let slot = std::mem::size_of::<Option<Proxy>>() + crate::slab::PER_SLOT_OVERHEAD;
        assert_eq!(
            slot, 477,
            "a proxy slot changed size; update README's Design"
        );
    }
}
