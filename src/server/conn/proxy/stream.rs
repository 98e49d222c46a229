//! Streaming a forwarded response: pull from the upstream as fast as it comes (the core keeps
//! what the client cannot take yet, in its buffer and spool), push to the client as fast as it
//! takes, within a per-turn byte budget, re-chunked when the client gets chunked framing.
//!
//! The client side is a [`Sink`]: the socket, the output region (our head and chunk lines) and
//! the budget. Never: lets a byte past the upstream's framed end through (the core stops there),
//! or ends a truncated response with a valid last chunk.

use super::{Forward, Label, Streamed};
use crate::config::UwsgiConf;
use crate::http::response_head::{chunk_header, CHUNK_END, CHUNK_HEADER_MAX, LAST_CHUNK};
use crate::http::Status;
use crate::server::conn::write::WRITE_BUDGET;
use crate::server::conn::{ClientSocket, Connection, Env, State};
use crate::upstream::{Data, Proxy};
use std::io;

/// How one pull or push went.
enum Moved {
    /// Bytes moved (or not): go on.
    Progress(bool),
    /// The client went away and its upstream is being drained.
    ClientGone,
    /// The turn ends here.
    Stop(Streamed),
}

impl<S: ClientSocket> Connection<S> {
    /// Pulls and pushes until both sides wait, the budget is spent, or the response is done.
    pub(in crate::server::conn) fn stream(
        &mut self,
        env: &mut Env<'_, '_>,
        conf: &UwsgiConf,
    ) -> Streamed {
        let mut budget = WRITE_BUDGET;
        for _ in 0..4096 {
            let pulled = match self.pull_once(env, conf) {
                Moved::Progress(moved) => moved,
                Moved::ClientGone => continue,
                Moved::Stop(s) => return s,
            };
            let pushed = match self.push_once(env, conf, &mut budget) {
                Moved::Progress(moved) => moved,
                Moved::ClientGone => continue,
                Moved::Stop(s) => return s,
            };
            if let Some(end) = self.end_of_stream(env) {
                return end;
            }
            if budget == 0 {
                return Streamed::Yield;
            }
            if !pulled && !pushed {
                let waiting_on_client = self.out_pos < self.out_end || self.pending(env) > 0;
                return Streamed::Wait(waiting_on_client && !self.writable);
            }
        }
        Streamed::Yield
    }

    /// Response bytes the core holds for the client.
    fn pending(&self, env: &Env<'_, '_>) -> u64 {
        match &self.state {
            State::Proxying(f) => env.proxies.get(f.slot).map_or(0, Proxy::pending),
            _ => 0,
        }
    }

    /// Reads what the upstream has. A response that breaks before any of our head went out
    /// becomes a 502; one whose client is gone is drained up to its bound.
    fn pull_once(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf) -> Moved {
        let ctx = env.ctx;
        let (peer, slot) = (self.peer, env.slot);
        let State::Proxying(f) = &mut self.state else {
            return Moved::Stop(Streamed::Close);
        };
        let Some(p) = env.proxies.get_mut(f.slot) else {
            return Moved::Stop(Streamed::Close);
        };
        let mut moved = false;
        if !p.finished_reading() {
            let up = crate::upstream::UpEnv {
                groups: &mut *env.groups,
                registry: env.registry,
                token: env.token,
                now: ctx.now,
                client: peer,
                slot,
            };
            match p.pull(
                &mut env.bufs.large,
                ctx.temp_dir,
                conf.max_temp_file_size,
                &up,
            ) {
                Ok(n) => moved = n > 0,
                Err(e) => {
                    log::error!(
                        "slot {slot}: cannot spool the response of upstream {} under temp_path {}: {e}, client: {peer}",
                        Label(p.peer_name(env.groups)),
                        ctx.cfg.global.temp_path.display(),
                    );
                    p.abort(env.registry);
                }
            }
        }
        if p.truncated() && !f.answered {
            // Nothing of our head went out yet: the client gets a clean 502 instead.
            return Moved::Stop(Streamed::Fail(Status::BadGateway));
        }
        if f.client_gone {
            // Drained without a reader (uwsgi_ignore_client_abort): stop at the bound.
            if p.finished_reading() || p.drained() > conf.max_temp_file_size {
                return Moved::Stop(Streamed::Close);
            }
            return match moved {
                true => Moved::ClientGone,
                false => Moved::Stop(Streamed::Wait(false)),
            };
        }
        Moved::Progress(moved)
    }

    /// Sends what the client can take now.
    fn push_once(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf, budget: &mut usize) -> Moved {
        if !self.writable {
            return Moved::Progress(false);
        }
        let (Some(cb), now) = (self.buf, env.ctx.now) else {
            return Moved::Stop(Streamed::Close);
        };
        let State::Proxying(f) = &mut self.state else {
            return Moved::Stop(Streamed::Close);
        };
        let Some(p) = env.proxies.get_mut(f.slot) else {
            return Moved::Stop(Streamed::Close);
        };
        let Some(ub) = p.buffer() else {
            return Moved::Stop(Streamed::Close);
        };
        let (cbuf, ubuf) = env.bufs.get_two(cb, ub);
        let mut sink = Sink {
            sock: &mut self.sock,
            cbuf,
            out_pos: &mut self.out_pos,
            out_end: &mut self.out_end,
            body_sent: &mut self.exchange.body_sent,
            writable: &mut self.writable,
            budget,
        };
        match sink.push(f, p, ubuf) {
            Ok(n) => {
                if n > 0 {
                    self.progress = now;
                }
                Moved::Progress(n > 0)
            }
            Err(e) => {
                log::debug!("slot {}: client {} went away: {e}", env.slot, self.peer);
                if !conf.ignore_client_abort {
                    return Moved::Stop(Streamed::Close);
                }
                f.client_gone = true;
                p.client_gone();
                self.exchange.keep_alive = false;
                Moved::ClientGone
            }
        }
    }

    /// The upstream is done and everything went out: the response ends — with the last chunk
    /// when we chunk, or by closing when it was truncated.
    fn end_of_stream(&mut self, env: &mut Env<'_, '_>) -> Option<Streamed> {
        let cb = self.buf?;
        let State::Proxying(f) = &self.state else {
            return Some(Streamed::Close);
        };
        let p = env.proxies.get(f.slot)?;
        if !p.finished_reading() || self.out_pos < self.out_end || p.pending() > 0 {
            return None;
        }
        if p.truncated() {
            // Never end a truncated response cleanly: the client sees the close.
            return Some(Streamed::Close);
        }
        if f.chunk_out {
            let base = f.out_base;
            let out = env.bufs.get_mut(cb).get_mut(base..).unwrap_or(&mut []);
            let mut len = 0;
            for part in [if f.crlf_pending { CHUNK_END } else { b"" }, LAST_CHUNK] {
                if let Some(dst) = out.get_mut(len..len + part.len()) {
                    dst.copy_from_slice(part);
                    len += part.len();
                }
            }
            self.out_pos = base;
            self.out_end = base + len;
        }
        Some(Streamed::Done)
    }
}

/// The client side of a stream: the socket, the output region (our head, chunk lines) and the
/// turn's byte budget — the sink the proxy core's data goes into.
struct Sink<'a, S> {
    sock: &'a mut S,
    cbuf: &'a mut [u8],
    out_pos: &'a mut usize,
    out_end: &'a mut usize,
    body_sent: &'a mut u64,
    writable: &'a mut bool,
    budget: &'a mut usize,
}

impl<S: ClientSocket> Sink<'_, S> {
    /// Sends output-region bytes, then body bytes (spool first, then buffer), chunk-framed when
    /// we chunk. Returns bytes of progress.
    fn push(&mut self, f: &mut Forward, p: &mut Proxy, ubuf: &[u8]) -> io::Result<usize> {
        if f.chunk_out && f.chunk_left == 0 && p.pending() > 0 && *self.budget > 0 {
            self.frame_chunk(f, p.pending())?;
        }
        let mut progress = self.flush_out(f, p, ubuf)?;
        if !*self.writable || p.pending() == 0 || *self.budget == 0 {
            return Ok(progress);
        }
        if f.chunk_out && f.chunk_left == 0 {
            // The chunk framed above is out, or none fit behind the head: the next call frames.
            return Ok(progress + 1);
        }
        progress += self.send_data(f, p, ubuf)?;
        Ok(progress)
    }

    /// Frames the next chunk (everything available now) behind any unsent head bytes; a head
    /// that leaves no room for the size line goes out alone first, and the line is framed at
    /// the output base on the next call.
    fn frame_chunk(&mut self, f: &mut Forward, available: u64) -> io::Result<()> {
        let pending = *self.out_pos < *self.out_end;
        let at = if pending { *self.out_end } else { f.out_base };
        let mut line = [0u8; 2 + CHUNK_HEADER_MAX];
        let mut n = 0;
        if f.crlf_pending {
            if let Some(crlf) = line.get_mut(..2) {
                crlf.copy_from_slice(CHUNK_END);
                n = 2;
            }
        }
        n += chunk_header(line.get_mut(n..).unwrap_or(&mut []), available as usize);
        match self.cbuf.get_mut(at..at + n) {
            Some(dst) => {
                dst.copy_from_slice(line.get(..n).unwrap_or(&[]));
                if !pending {
                    *self.out_pos = f.out_base;
                }
                *self.out_end = at + n;
                *self.body_sent += n as u64;
                f.chunk_left = available;
                f.crlf_pending = true;
                Ok(())
            }
            None if !pending => Err(io::Error::other("no room to frame a chunk")),
            None => Ok(()),
        }
    }

    /// Sends the output region; buffered body bytes go in the same sendmsg, spooled ones
    /// follow by sendfile under MSG_MORE (`writable` turns false when the socket fills up).
    fn flush_out(&mut self, f: &mut Forward, p: &mut Proxy, ubuf: &[u8]) -> io::Result<usize> {
        let mut progress = 0;
        while *self.out_pos < *self.out_end {
            let out = self.cbuf.get(*self.out_pos..*self.out_end).unwrap_or(&[]);
            let limit = self.limit(f);
            let body = match p.data(ubuf) {
                Data::Buffered(b) if *self.budget > 0 => {
                    b.get(..(b.len() as u64).min(limit) as usize).unwrap_or(&[])
                }
                _ => &[],
            };
            let res = if body.is_empty() {
                self.sock.send(out, p.pending() > 0)
            } else {
                self.sock.send2(out, body)
            };
            match res {
                Ok(n) => {
                    let head = n.min(out.len());
                    *self.out_pos += head;
                    progress += n;
                    f.answered |= n > 0;
                    let sent = n - head;
                    if sent > 0 {
                        p.consume(sent);
                        self.sent_body(f, sent);
                    }
                }
                Err(e) if crate::sys::interrupted(&e) => {}
                Err(e) if crate::sys::would_block(&e) => {
                    *self.writable = false;
                    return Ok(progress);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Sends body bytes without a head before them: from the spool by sendfile, or from the
    /// buffer.
    fn send_data(&mut self, f: &mut Forward, p: &mut Proxy, ubuf: &[u8]) -> io::Result<usize> {
        let limit = self.limit(f);
        let res = match p.data(ubuf) {
            Data::Spooled { file, offset, len } => {
                let mut off = offset;
                self.sock
                    .sendfile(file, &mut off, len.min(limit) as usize)
                    .and_then(|n| match n {
                        0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                        n => Ok(n),
                    })
            }
            Data::Buffered(b) => {
                let end = (b.len() as u64).min(limit) as usize;
                self.sock.send(b.get(..end).unwrap_or(&[]), false)
            }
            Data::None => Ok(0),
        };
        let sent = match res {
            Ok(n) => n,
            Err(e) if crate::sys::would_block(&e) => {
                *self.writable = false;
                0
            }
            Err(e) if crate::sys::interrupted(&e) => 0,
            Err(e) => return Err(e),
        };
        p.consume(sent);
        self.sent_body(f, sent);
        Ok(sent)
    }

    /// Body bytes that may go now: the budget, and the chunk's rest when we chunk.
    fn limit(&self, f: &Forward) -> u64 {
        if f.chunk_out {
            f.chunk_left.min(*self.budget as u64)
        } else {
            *self.budget as u64
        }
    }

    /// Accounts `n` body bytes handed to the client socket.
    fn sent_body(&mut self, f: &mut Forward, n: usize) {
        if f.chunk_out {
            f.chunk_left -= n as u64;
        }
        *self.body_sent += n as u64;
        *self.budget = self.budget.saturating_sub(n);
    }
}
