//! The first state of a connection on a `listen … proxy_protocol` address: reading the PROXY
//! protocol header (v1 or v2) into the head buffer, before the HTTP request behind it.
//!
//! Owns the `ReadingProxy` state's turn: read, parse (`http::proxy_protocol`), then either keep
//! the bytes after the header as the start of the first request, or refuse the connection —
//! closed, with one log line saying why — when the header is missing or malformed. Its
//! deadline (`Timer::ProxyHeader`, `proxy_protocol_timeout`) is set at accept and handled in
//! `on_timeout`. Never: decides whether the header's address is believed (realip does, per
//! request) or counts it (the loop does, through `take_proxy_source`).

use super::{ClientSocket, Connection, Env, State, Step, Timer, HEAD_IN};
use crate::event::pool::Buf;
use crate::http::proxy_protocol::{parse, Header, Parsed};
use crate::sys;

impl<S: ClientSocket> Connection<S> {
    /// ReadingProxy: reads until the header is complete, then hands the connection to
    /// ReadingHead (yielding once, so the loop counts the header's address before the first
    /// request is answered).
    pub(super) fn read_proxy_header(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        if self.buf.is_none() {
            match env.bufs.heads.checkout() {
                Some(b) => self.buf = Some(Buf::Head(b)),
                // There is a head buffer per slot; this cannot happen, but never allocate.
                None => return Some(Step::NeedBuffer),
            }
        }
        let Some(b) = self.buf else {
            return Some(Step::Close);
        };
        let cap = self.in_cap(env.ctx).min(HEAD_IN);
        if self.in_len > self.parsed_len || self.in_len == cap {
            self.parsed_len = self.in_len;
            let input = env.bufs.get_mut(b).get(..self.in_len).unwrap_or(&[]);
            match parse(input, cap) {
                Ok(Parsed::Complete(header)) => {
                    self.header_read(header, env);
                    return Some(Step::Yield);
                }
                Ok(Parsed::Partial) if self.in_len < cap => {}
                Ok(Parsed::Partial) => {
                    return self.refuse_header("a PROXY header that does not fit", env)
                }
                Err(refusal) => return self.refuse_header(refusal.reason(), env),
            }
        }
        if !self.readable {
            return Some(Step::Wait);
        }
        match self.read_input(env, cap) {
            Ok(0) => {
                log::debug!(
                    "slot {}: client {} closed before its PROXY protocol header",
                    env.slot,
                    self.peer
                );
                Some(Step::Close)
            }
            Ok(_) => None,
            Err(e) if sys::would_block(&e) => Some(Step::Wait),
            Err(_) => Some(Step::Close),
        }
    }

    /// A complete header: its bytes leave the buffer, what follows is the first request, and
    /// `client_header_timeout` starts now.
    fn header_read(&mut self, header: Header, env: &mut Env<'_, '_>) {
        if let Some(b) = self.buf {
            let len = header.len.min(self.in_len);
            env.bufs.get_mut(b).copy_within(len..self.in_len, 0);
            self.in_len -= len;
        }
        self.parsed_len = 0;
        self.proxied = header.addresses.map(|(source, _)| source);
        self.proxied_new = self.proxied.is_some();
        self.state = State::ReadingHead;
        let timeout = env.ctx.cfg.global.client_header_timeout;
        self.set_deadline(env.ctx.now + timeout, Timer::Head);
    }

    /// No valid header: one log line, and the connection is closed without an answer (the
    /// peer does not speak HTTP to us until its header is accepted).
    fn refuse_header(&mut self, why: &str, env: &mut Env<'_, '_>) -> Option<Step> {
        log::warn!(
            "slot {}: client {} refused on a proxy_protocol address: {why}",
            env.slot,
            self.peer
        );
        Some(Step::Close)
    }
}
