//! Forwarding a request — the HTTP side of the proxy core: collect the request body (the same
//! body reader as a discarded body), have the uwsgi codec encode the request, let the core
//! connect and send, read the answer's head with the codec, write the client's head with the
//! framing decided once (`http::response_head::client_framing`), then stream the body from
//! the core to the client, re-chunked when the client gets chunked framing. X-Accel-Redirect
//! answers are served here from a static location.
//!
//! Owns the client side of a proxied request (`Forward`). The upstream side is the core's.

use super::body::BodyReader;
use super::{ClientSocket, Connection, Env, State, Step, Timer};
use crate::config::{Handler, UwsgiConf};
use crate::http::request::{Head, Method};
use crate::http::response_body::BodyFramer;
use crate::http::response_head::{self, client_framing, Framing, ResponseHead};
use crate::http::Status;
use crate::server::dispatch::{self, Extra};
use crate::upstream::uwsgi::{self, packet};
use crate::upstream::{HeadFailure, HeadRead, Proxy, Sent, Stage};
use std::time::Instant;

/// The client side of a forwarded request.
pub struct Forward {
    /// The proxy slot, once one was taken.
    slot: usize,
    /// (server, location) of the uwsgi location.
    route: (u16, u16),
    /// Bytes of the canonical path kept at the front of the output region until the request
    /// is encoded (for PATH_INFO).
    path_len: usize,
    body: BodyReader,
    /// Payload bytes held in the buffer after the head (the rest went to the core's spool).
    kept: usize,
    /// Where the client's response head starts in the buffer (after the request's input).
    out_base: usize,
    /// The body is re-chunked for the client.
    chunk_out: bool,
    /// Payload bytes left in the chunk being sent.
    chunk_left: u64,
    /// The chunk being sent still owes its CRLF.
    crlf_pending: bool,
    /// The client went away; the upstream's answer is drained without a reader.
    client_gone: bool,
    /// Some of our response went out (so a failure can no longer become a 502).
    answered: bool,
    /// Waiting for the location's program after an upstream failure it explains
    /// (`program.rs`); the request is sent again once it is RUNNING.
    pub(super) held: bool,
}

impl Forward {
    /// A request routed to uwsgi location `route`.
    pub fn new(
        head: &Head,
        route: (u16, u16),
        path_len: usize,
        max_body: u64,
        now: Instant,
    ) -> Forward {
        Forward {
            slot: usize::MAX,
            route,
            path_len,
            body: BodyReader::new(head, max_body, now),
            kept: 0,
            out_base: 0,
            chunk_out: false,
            chunk_left: 0,
            crlf_pending: false,
            client_gone: false,
            answered: false,
            held: false,
        }
    }

    /// (server, location) of the uwsgi location.
    pub fn route(&self) -> (u16, u16) {
        self.route
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The whole request body has arrived.
    pub fn body_complete(&self) -> bool {
        self.body.is_done()
    }
}

/// Methods nginx passes to the next upstream after a failed send (RFC 9110's idempotent ones).
fn idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

pub(super) fn uwsgi_conf(cfg: &crate::config::Config, route: (u16, u16)) -> Option<&UwsgiConf> {
    let loc = cfg
        .servers
        .get(route.0 as usize)?
        .locations
        .get(route.1 as usize)?;
    match &loc.handler {
        Handler::Uwsgi(u) => Some(u),
        _ => None,
    }
}

/// How a streaming turn ended.
pub(super) enum Streamed {
    /// Waiting on the client (true) or the upstream (false).
    Wait(bool),
    Yield,
    Done,
    Close,
    /// Failed before a byte of our head went out: answer this instead.
    Fail(Status),
}

mod stream;

impl<S: ClientSocket> Connection<S> {
    /// AwaitingProxy → Proxying once a proxy slot is free (and the location's program, if it
    /// names one, is not restarting: `program.rs`).
    pub(super) fn start_proxy(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        if let Some(step) = self.wait_for_program(env) {
            return Some(step);
        }
        let ctx = env.ctx;
        let State::AwaitingProxy(f) = &self.state else {
            return Some(Step::Close);
        };
        let Some(head) = self.exchange.head else {
            return Some(Step::Close);
        };
        let (route, path_len) = (f.route, f.path_len);
        // A forwarded request keeps its head, body and response head in a large buffer (the
        // canonical path comes along from the output region).
        if !self.grow(env.bufs, ctx, path_len) {
            return Some(Step::NeedBuffer);
        }
        let Some(group) = env.groups.group_of(route.0 as usize, route.1 as usize) else {
            self.answer_error(Status::BadGateway, Extra::None, env);
            return None;
        };
        let Ok(slot) = env
            .proxies
            .insert(Proxy::new(group, idempotent(head.method)))
        else {
            // Every proxy slot is busy: wait like for a buffer; the head stays parsed and
            // routed, so nothing is redone.
            return Some(Step::NeedBuffer);
        };
        let State::AwaitingProxy(mut f) = std::mem::replace(&mut self.state, State::Idle) else {
            return Some(Step::Close);
        };
        f.slot = slot;
        self.state = State::Proxying(f);
        self.exchange.unread_body = false;
        let timeout = self.limits(ctx).client_body_timeout;
        self.set_deadline(ctx.now + timeout, Timer::Body);
        if head.expect_continue && head.has_body() && self.in_len == head.head_len as usize {
            // Nothing of the body is here yet in the usual case: invite it.
            let msg = b"HTTP/1.1 100 Continue\r\n\r\n";
            if !matches!(self.sock.send(msg, false), Ok(n) if n == msg.len()) {
                return Some(Step::Close);
            }
        }
        None
    }

    /// One turn of a forwarded request.
    pub(super) fn proxy(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let State::Proxying(f) = &self.state else {
            return Some(Step::Close);
        };
        let (slot, route) = (f.slot, f.route);
        let Some(conf) = uwsgi_conf(env.ctx.cfg, route) else {
            // The location vanished in a reload mid-request.
            return Some(Step::Close);
        };
        if matches!(&self.state, State::Proxying(f) if f.held) {
            if let Some(step) = self.resume_held(env, conf) {
                return Some(step);
            }
            if !matches!(self.state, State::Proxying(_)) {
                return None;
            }
        }
        for _ in 0..64 {
            let Some(p) = env.proxies.get_mut(slot) else {
                return Some(Step::Close);
            };
            let stop = match p.stage() {
                Stage::Body => self.collect_and_connect(env, conf),
                Stage::Connecting | Stage::Sending => self.send_request(env, conf),
                Stage::Head => self.read_response_head(env, conf),
                Stage::Stream => self.stream_response(env, conf),
            };
            if let Some(step) = stop {
                return Some(step);
            }
            if !matches!(self.state, State::Proxying(_)) {
                // Answered (an error, a redirect) or done: the caller goes on.
                return None;
            }
        }
        log::error!("bug: slot {} proxy did not settle", env.slot);
        Some(Step::Close)
    }

    /// Gives the proxy slot back and answers `status` instead.
    pub(super) fn proxy_error(&mut self, status: Status, env: &mut Env<'_, '_>) {
        self.release_proxy(env);
        self.answer_error(status, Extra::None, env);
    }

    fn release_proxy(&mut self, env: &mut Env<'_, '_>) {
        if let State::Proxying(f) = &self.state {
            if let Some(mut p) = env.proxies.remove(f.slot) {
                p.release(&mut env.bufs.large, env.registry);
            }
        }
        self.state = State::Idle;
    }

    /// The forward's proxy slot.
    fn forward_slot(&self) -> usize {
        match &self.state {
            State::Proxying(f) => f.slot,
            _ => usize::MAX,
        }
    }

    /// Stage::Body: collects the request body, then has it encoded and connects.
    fn collect_and_connect(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf) -> Option<Step> {
        let ctx = env.ctx;
        let g = &ctx.cfg.global;
        match self.collect_body(env) {
            Ok(true) => {}
            Ok(false) => {
                if let State::Proxying(f) = &self.state {
                    let timeout = ctx.cfg.limits(f.route.0, f.route.1).client_body_timeout;
                    let at = f.body.deadline(ctx.now, timeout, g.client_body_min_rate);
                    self.set_deadline(at, Timer::Body);
                }
                return Some(Step::Wait);
            }
            Err(Some(status)) => {
                self.exchange.keep_alive = false;
                self.exchange.unread_body = true;
                self.proxy_error(status, env);
                return None;
            }
            Err(None) => return Some(Step::Close),
        }
        // The body is complete: only now take an upstream buffer and a worker.
        let (Some(cb), Some(head)) = (self.buf, self.exchange.head) else {
            return Some(Step::Close);
        };
        let slot = self.forward_slot();
        let Some(p) = env.proxies.get_mut(slot) else {
            return Some(Step::Close);
        };
        let Some(ub) = p.take_buffer(&mut env.bufs.large) else {
            return Some(Step::NeedBuffer);
        };
        let encoded = {
            let base = self.out_base(ctx);
            let (cbuf, ubuf) = env.bufs.get_two(cb, ub);
            let path_len = match &self.state {
                State::Proxying(f) => f.path_len,
                _ => 0,
            };
            let path = cbuf.get(base..base + path_len).unwrap_or(&[]);
            let input = cbuf.get(..head.head_len as usize).unwrap_or(&[]);
            let server_name = ctx
                .cfg
                .servers
                .get(self.exchange_route().0 as usize)
                .and_then(|s| s.server_name.first())
                .map(String::as_str);
            encode_request(
                ubuf,
                &head,
                input,
                path,
                p.body_len(),
                (self.client(), self.local),
                server_name,
                conf,
            )
        };
        match encoded {
            Ok(n) => p.request_encoded(n),
            Err(status) => {
                self.proxy_error(status, env);
                return None;
            }
        }
        let mut up = up_env!(self, env);
        let connected = p.connect_next(&mut up);
        self.connect_begun(env, conf, connected)
    }

    /// A connect to the upstream was begun (or failed at once): its deadline, or a hold while
    /// the location's program is not serving yet, or the error answer.
    pub(super) fn connect_begun(
        &mut self,
        env: &mut Env<'_, '_>,
        conf: &UwsgiConf,
        connected: Result<(), Status>,
    ) -> Option<Step> {
        match connected {
            Ok(()) => {
                self.set_deadline(env.ctx.now + conf.connect_timeout, Timer::UpstreamConnect);
                None
            }
            Err(_) if self.hold_for_program(env, conf, false) => Some(Step::Wait),
            Err(status) => {
                self.proxy_error(status, env);
                None
            }
        }
    }

    /// The route of the forwarded request.
    fn exchange_route(&self) -> (u16, u16) {
        match &self.state {
            State::Proxying(f) | State::AwaitingProxy(f) => f.route,
            _ => (0, 0),
        }
    }

    /// Reads body bytes until the body is complete (`Ok(true)`) or the socket is drained
    /// (`Ok(false)`). Payload stays in the buffer after the head until the buffer is full,
    /// then goes to the core's spool (and, once any did, all of it does). `Err(Some(status))`
    /// answers the client; `Err(None)` closes (the client went away).
    fn collect_body(&mut self, env: &mut Env<'_, '_>) -> Result<bool, Option<Status>> {
        let ctx = env.ctx;
        let (Some(cb), Some(head)) = (self.buf, self.exchange.head) else {
            return Err(None);
        };
        let head_len = head.head_len as usize;
        let limit = self.in_cap(ctx);
        for _ in 0..1024 {
            let State::Proxying(f) = &mut self.state else {
                return Err(None);
            };
            let Some(p) = env.proxies.get_mut(f.slot) else {
                return Err(None);
            };
            let buf = env.bufs.get_mut(cb);
            // 1. Decode what the buffer holds beyond the payload kept so far.
            let payload_end = head_len + f.kept;
            if self.in_len > payload_end || f.body.is_done() {
                let wire = buf.get_mut(payload_end..self.in_len).unwrap_or(&mut []);
                let d = f.body.decode(wire).map_err(Some)?;
                let new_end = payload_end + d.produced;
                buf.copy_within(payload_end + d.consumed..self.in_len, new_end);
                self.in_len = new_end + (self.in_len - payload_end - d.consumed);
                f.kept += d.produced;
                if f.body.is_done() {
                    if p.body_spilled() {
                        spill(p, buf, head_len, &mut f.kept, &mut self.in_len, ctx)?;
                    }
                    p.body_complete(f.body.payload());
                    // What follows the body is pipelined input.
                    self.exchange.req_len = head_len + f.kept;
                    return Ok(true);
                }
            }
            if head_len + f.kept >= limit {
                // The buffer's body room is full: the payload goes to the spool.
                spill(p, buf, head_len, &mut f.kept, &mut self.in_len, ctx)?;
            }
            // 2. Read more.
            if !self.readable {
                return Ok(false);
            }
            let read_limit = match f.body.known_left() {
                Some(left) => limit.min(head_len + f.kept + left.min(limit as u64) as usize),
                None => limit,
            };
            match self.read_input(env, read_limit) {
                Ok(0) => return Err(None),
                Ok(n) => {
                    if let State::Proxying(f) = &mut self.state {
                        f.body.arrived(n);
                    }
                }
                Err(e) if crate::sys::would_block(&e) => return Ok(false),
                Err(_) => return Err(None),
            }
        }
        Ok(false)
    }

    /// Stage::Connecting and Stage::Sending: sends the encoded request and the body.
    fn send_request(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf) -> Option<Step> {
        let ctx = env.ctx;
        let (Some(cb), Some(head)) = (self.buf, self.exchange.head) else {
            return Some(Step::Close);
        };
        let slot = self.forward_slot();
        let Some(p) = env.proxies.get_mut(slot) else {
            return Some(Step::Close);
        };
        let Some(ub) = p.buffer() else {
            return Some(Step::Close);
        };
        let connecting = p.stage() == Stage::Connecting;
        let before = p.request_progress();
        let sent = {
            let (cbuf, ubuf) = env.bufs.get_two(cb, ub);
            let head_len = head.head_len as usize;
            let body = cbuf
                .get(head_len..head_len + p.body_len() as usize)
                .filter(|_| !p.body_spilled())
                .unwrap_or(&[]);
            p.send(ubuf, body)
        };
        match sent {
            Ok(sent) => {
                let moved = p.request_progress() > before;
                if connecting && sent == Sent::Blocked && !moved {
                    // Still connecting: its end comes as EPOLLOUT (or EPOLLERR).
                    if let Err(s) = p.want_writable(env.registry, env.token) {
                        self.proxy_error(s, env);
                        return None;
                    }
                    return Some(Step::Wait);
                }
                p.connected();
                match sent {
                    Sent::Done => {
                        self.set_deadline(ctx.now + conf.read_timeout, Timer::UpstreamHead);
                        None
                    }
                    Sent::Blocked => {
                        if let Err(s) = p.want_writable(env.registry, env.token) {
                            self.proxy_error(s, env);
                            return None;
                        }
                        self.set_deadline(ctx.now + conf.send_timeout, Timer::UpstreamSend);
                        Some(Step::Wait)
                    }
                    Sent::Yield => Some(Step::Yield),
                }
            }
            Err(e) => self.send_failed(env, conf, connecting, &e),
        }
    }

    /// Connecting to the upstream or sending it the request failed: logged, and the request
    /// goes to the next peer, waits for its `uwsgi_program`, or gets its error page.
    #[cold]
    fn send_failed(
        &mut self,
        env: &mut Env<'_, '_>,
        conf: &UwsgiConf,
        connecting: bool,
        e: &std::io::Error,
    ) -> Option<Step> {
        let ctx = env.ctx;
        let slot = self.forward_slot();
        let Some(p) = env.proxies.get_mut(slot) else {
            return Some(Step::Close);
        };
        let began = p.request_progress() > 0;
        let what = if connecting && !began {
            "connect() to"
        } else {
            "sending the request to"
        };
        let e = crate::sys::ErrorText(e);
        log::error!(
            "slot {}: {what} upstream {} failed: {e}, client: {}",
            env.slot,
            Label(p.peer_name(env.groups)),
            self.peer
        );
        let mut up = up_env!(self, env);
        match p.next_peer(&mut up, began) {
            Ok(()) => {
                self.set_deadline(ctx.now + conf.connect_timeout, Timer::UpstreamConnect);
                None
            }
            Err(_) if self.hold_for_program(env, conf, began) => Some(Step::Wait),
            Err(s) => {
                self.proxy_error(s, env);
                None
            }
        }
    }

    /// Stage::Head: reads the response head with the uwsgi codec.
    fn read_response_head(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf) -> Option<Step> {
        let slot = self.forward_slot();
        let Some(p) = env.proxies.get_mut(slot) else {
            return Some(Step::Close);
        };
        let mut up = up_env!(self, env);
        let read = p.read_head(&mut env.bufs.large, &mut up, uwsgi::parse_response_head);
        if matches!(read, HeadRead::Fail(_, HeadFailure::ClosedSilently))
            && self.hold_for_program(env, conf, true)
        {
            return Some(Step::Wait);
        }
        let Some(p) = env.proxies.get_mut(slot) else {
            return Some(Step::Close);
        };
        match read {
            HeadRead::Wait => Some(Step::Wait),
            HeadRead::Head(h) if h.x_accel_redirect.is_some() => {
                self.internal_redirect(&h, env);
                None
            }
            HeadRead::Head(h) => {
                self.start_response(&h, env);
                None
            }
            HeadRead::Fail(status, why) => {
                if why == HeadFailure::ClosedSilently {
                    let name = Label(p.peer_name(env.groups));
                    match uwsgi::oversized_vars(p.request_len()) {
                        Some(vars) => log::error!(
                            "slot {}: upstream {name} closed the connection without a response; the request's uwsgi vars were {vars} bytes, more than uWSGI's default buffer-size of {} — raise `buffer-size` in uWSGI's config (e.g. buffer-size = 32768), client: {}",
                            env.slot,
                            packet::UWSGI_DEFAULT_BUFFER_SIZE,
                            self.peer
                        ),
                        None => {
                            log::error!(
                                "slot {}: upstream {name} prematurely closed the connection while reading the response header, client: {}",
                                env.slot,
                                self.peer
                            );
                            p.peer_failed(env.groups, env.ctx.now);
                        }
                    }
                }
                self.proxy_error(status, env);
                None
            }
        }
    }

    /// The head is in: write the client's head in its place (after the request's input),
    /// with the framing decided here, once, and start the body.
    fn start_response(&mut self, h: &ResponseHead, env: &mut Env<'_, '_>) {
        let ctx = env.ctx;
        let (Some(cb), Some(head)) = (self.buf, self.exchange.head) else {
            return;
        };
        let slot = self.forward_slot();
        let Some(p) = env.proxies.get_mut(slot) else {
            return;
        };
        let Some(ub) = p.buffer() else {
            return;
        };
        let (framing, keep_alive) = client_framing(
            h,
            self.exchange.head_only,
            head.version_minor == 1,
            self.exchange.keep_alive,
        );
        let discard = self.exchange.head_only || framing == Framing::NoBody;
        let up = up_env!(self, env);
        let framer = BodyFramer::for_head(h);
        if !p.start_body(
            &mut env.bufs.large,
            h.head_len as usize,
            framer,
            discard,
            &up,
        ) {
            self.proxy_error(Status::BadGateway, env);
            return;
        }
        // The client buffer past the request's input is free for our response head (the
        // upstream's head may be up to a buffer long, so the output region alone may not do).
        let base = self.in_len;
        let written = {
            let (cbuf, ubuf) = env.bufs.get_two(cb, ub);
            let server = crate::http::response::server_name(ctx.cfg.global.server_tokens);
            response_head::write_client_head(
                cbuf.get_mut(base..).unwrap_or(&mut []),
                ubuf.get(..h.head_len as usize).unwrap_or(&[]),
                h,
                ctx.date,
                server,
                framing,
                keep_alive,
            )
        };
        let Some(len) = written else {
            log::error!(
                "slot {}: upstream sent a response head too big to re-frame in buffer_size, client: {}",
                env.slot,
                self.peer
            );
            self.proxy_error(Status::BadGateway, env);
            return;
        };
        if let State::Proxying(f) = &mut self.state {
            f.out_base = base;
            f.chunk_out = framing == Framing::Chunked;
        }
        self.exchange.keep_alive = keep_alive && framing != Framing::Close;
        self.out_pos = base;
        self.out_end = base + len;
        self.exchange.status = h.status;
        self.exchange.body_sent = 0;
    }

    /// X-Accel-Redirect: serve the named URI from an `internal = on` static location, with
    /// the app's headers nginx carries onto the file.
    fn internal_redirect(&mut self, h: &ResponseHead, env: &mut Env<'_, '_>) {
        let ctx = env.ctx;
        let (Some(cb), slot) = (self.buf, self.forward_slot()) else {
            return;
        };
        let Some(ub) = env.proxies.get(slot).and_then(|p| p.buffer()) else {
            return;
        };
        let mut uri = [0u8; 2048];
        let mut extra = [0u8; 4096];
        let (uri_len, extra_len) = {
            let ubuf = env.bufs.large.get_mut(ub);
            let head_bytes = ubuf.get(..h.head_len as usize).unwrap_or(&[]);
            let target = h.x_accel_redirect(head_bytes).unwrap_or(b"");
            let n = target.len().min(uri.len());
            uri.get_mut(..n)
                .unwrap_or(&mut [])
                .copy_from_slice(target.get(..n).unwrap_or(&[]));
            let keep = |name: &[u8]| {
                response_head::kept_on_accel_redirect(name)
                    && !name.eq_ignore_ascii_case(b"accept-ranges")
            };
            let e = response_head::write_fields_where(&mut extra, head_bytes, h, keep).unwrap_or(0);
            (n, e)
        };
        let server = self.exchange_route().0 as usize;
        self.release_proxy(env);
        let base = self.out_base(ctx);
        let out = env.bufs.get_mut(cb).get_mut(base..).unwrap_or(&mut []);
        let answer = dispatch::internal(
            uri.get(..uri_len).unwrap_or(&[]),
            extra.get(..extra_len).unwrap_or(&[]),
            server,
            self.exchange.keep_alive,
            self.exchange.head_only,
            out,
            ctx,
        );
        self.begin_writing(answer, base);
        self.send_deadline(ctx);
    }

    /// Stage::Stream: moves the body from the core to the client.
    fn stream_response(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf) -> Option<Step> {
        let ctx = env.ctx;
        match self.stream(env, conf) {
            Streamed::Wait(client) => {
                if client {
                    self.send_deadline(ctx);
                } else {
                    self.set_deadline(ctx.now + conf.read_timeout, Timer::UpstreamBody);
                }
                Some(Step::Wait)
            }
            Streamed::Yield => Some(Step::Yield),
            Streamed::Done => {
                // The rest (the last chunk, if any) is in the output region: plain writing.
                self.release_proxy(env);
                self.state = State::Writing(crate::static_files::body::Body::None);
                None
            }
            Streamed::Close => Some(Step::Close),
            Streamed::Fail(status) => {
                self.proxy_error(status, env);
                None
            }
        }
    }

    /// A deadline of a forwarded request passed.
    pub(super) fn proxy_timeout(&mut self, timer: Timer, env: &mut Env<'_, '_>) -> Option<Step> {
        let slot = self.forward_slot();
        let Some(p) = env.proxies.get_mut(slot) else {
            return Some(Step::Close);
        };
        let name = Label(p.peer_name(env.groups));
        match timer {
            Timer::Body => {
                log::info!(
                    "slot {}: client {} timed out sending its request body",
                    env.slot,
                    self.peer
                );
                self.exchange.keep_alive = false;
                self.exchange.unread_body = true;
                self.proxy_error(Status::RequestTimeout, env);
                None
            }
            Timer::UpstreamConnect => {
                log::error!(
                    "slot {}: upstream {name} timed out while connecting, client: {}",
                    env.slot,
                    self.peer
                );
                let mut up = up_env!(self, env);
                match p.next_peer(&mut up, false) {
                    Ok(()) => {
                        let conf = uwsgi_conf(env.ctx.cfg, self.exchange_route());
                        let wait =
                            conf.map_or(std::time::Duration::from_secs(60), |c| c.connect_timeout);
                        self.set_deadline(env.ctx.now + wait, Timer::UpstreamConnect);
                    }
                    Err(_) => self.proxy_error(Status::GatewayTimeout, env),
                }
                None
            }
            Timer::UpstreamSend | Timer::UpstreamHead => {
                let what = if timer == Timer::UpstreamSend {
                    "sending the request"
                } else {
                    "reading the response header"
                };
                log::error!(
                    "slot {}: upstream {name} timed out ({what}), client: {}",
                    env.slot,
                    self.peer
                );
                p.peer_failed(env.groups, env.ctx.now);
                self.proxy_error(Status::GatewayTimeout, env);
                None
            }
            Timer::UpstreamBody => {
                log::error!(
                    "slot {}: upstream {name} timed out sending the response body, client: {}",
                    env.slot,
                    self.peer
                );
                Some(Step::Close)
            }
            Timer::Send => {
                log::info!(
                    "slot {}: client {} timed out reading the response",
                    env.slot,
                    self.peer
                );
                Some(Step::Close)
            }
            Timer::ProxyHeader
            | Timer::Head
            | Timer::KeepAlive
            | Timer::Linger
            | Timer::Program => Some(Step::Close),
        }
    }
}

/// Moves the payload kept in the buffer (after the head) to the end of the core's body spool.
fn spill(
    p: &mut Proxy,
    buf: &mut [u8],
    head_len: usize,
    kept: &mut usize,
    in_len: &mut usize,
    ctx: &crate::server::Ctx<'_>,
) -> Result<(), Option<Status>> {
    let held = buf.get(head_len..head_len + *kept).unwrap_or(&[]);
    if let Err(e) = p.spill_body(held, ctx.temp_dir) {
        let e = crate::sys::ErrorText(&e);
        log::error!(
            "cannot spool a request body under temp_path {}: {e}",
            ctx.cfg.global.temp_path.display()
        );
        return Err(Some(Status::InternalServerError));
    }
    buf.copy_within(head_len + *kept..*in_len, head_len);
    *in_len -= *kept;
    *kept = 0;
    Ok(())
}

/// The uwsgi packet for this request, into `ubuf`.
#[allow(clippy::too_many_arguments)]
fn encode_request(
    ubuf: &mut [u8],
    head: &Head,
    input: &[u8],
    path: &[u8],
    body_len: u64,
    (peer, local): (std::net::SocketAddr, std::net::SocketAddr),
    server_name: Option<&str>,
    conf: &UwsgiConf,
) -> Result<usize, Status> {
    // nginx's $server_name: the server's first name; a nameless server gives its address.
    let mut ip_text = heapless::String::<48>::new();
    let server_name: &[u8] = match server_name {
        Some(n) => n.as_bytes(),
        None => {
            use std::fmt::Write as _;
            let _ = write!(ip_text, "{}", local.ip());
            ip_text.as_bytes()
        }
    };
    let info = packet::RequestInfo {
        method: head.method_bytes(input),
        request_uri: head.target.get(input),
        query: head.query(input),
        path_info: path,
        protocol: if head.version_minor == 0 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        },
        content_type: head.content_type.map(|s| s.get(input)).unwrap_or(b""),
        content_length: if head.chunked || head.content_length.is_some() {
            Some(body_len)
        } else {
            None
        },
        remote_addr: peer.ip(),
        remote_port: peer.port(),
        server_addr: local.ip(),
        server_port: local.port(),
        server_name,
        document_root: b"",
        script_name: conf.script_name.as_deref().map(str::as_bytes),
        https: false,
    };
    packet::encode(ubuf, &info, input, &conf.params)
}

/// A peer name for a log line, or `?` when the group changed under a reload.
pub(super) struct Label<'a>(pub(super) Option<crate::upstream::PeerName<'a>>);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(p) => p.fmt(f),
            None => f.write_str("?"),
        }
    }
}
