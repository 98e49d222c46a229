//! Writing a response: the output region (head, inline body), then the body — a file range by
//! sendfile, or multipart ranges with their part heads formatted between them — within a
//! per-turn byte budget, so one fast download never starves the other connections.

use super::{ClientSocket, Connection, Env, State, Step};
use crate::http::response::HeadWriter;
use crate::static_files::body::Body;
use std::fs::File;
use std::io;

/// File bodies longer than this are sent under TCP_CORK, as nginx's `tcp_nopush` does.
/// sendfile(2) feeds the socket 64 KiB at a time and drops the socket lock in between; an
/// ACK arriving then (TCP_NODELAY) pushes the partial segment at the tail, so without the
/// cork a 100 KiB body left in 2.4 segments instead of 2, and a 10 MiB one in segments of
/// 50 KB instead of 64 KB: more packets for the client to take in, measured as 4-10% less
/// throughput (`make bench`, scenarios 2 and 3). The two setsockopt(2) calls cost less than
/// the segments they save; a body that fits one 64 KiB splice has no such gap to cork.
const CORK_MIN: u64 = 64 * 1024;

/// Bytes a connection may write in one turn before it yields to the others.
pub const WRITE_BUDGET: usize = 2 * 1024 * 1024;

impl<S: ClientSocket> Connection<S> {
    /// Writing: sends what is left of the response. `Ok(None)` when it is all out and the
    /// connection moved on (to its next request); `Ok(Some(step))` to stop here.
    pub(super) fn write(&mut self, env: &mut Env<'_, '_>) -> io::Result<Option<Step>> {
        let Some(b) = self.buf else {
            return Ok(Some(Step::Close));
        };
        let out_base = self.out_base(env.ctx);
        let buf = env.bufs.get_mut(b);
        if !self.corked && !self.exchange.head_only && self.file_left() > CORK_MIN {
            self.sock.set_cork(true)?;
            self.corked = true;
        }
        let sent_before = (self.out_pos, self.exchange.body_sent);
        let done = self.write_some(buf, out_base)?;
        if (self.out_pos, self.exchange.body_sent) != sent_before {
            self.progress = env.ctx.now;
        }
        if done && self.corked {
            self.sock.set_cork(false)?;
            self.corked = false;
        }
        if done {
            return Ok(self.finish(env));
        }
        self.send_deadline(env.ctx);
        Ok(Some(if self.writable {
            Step::Yield
        } else {
            Step::Wait
        }))
    }

    /// File bytes still to send (for a multipart body, its file's size: an upper bound).
    fn file_left(&self) -> u64 {
        match &self.state {
            State::Writing(Body::File { pos, end, .. }) => end - pos,
            State::Writing(Body::Multipart(mp)) => mp.with(|m| m.file_bytes()).unwrap_or(0),
            _ => 0,
        }
    }

    /// Sends the output region, then the body, within `WRITE_BUDGET`. `Ok(true)` when the
    /// whole response is out, `Ok(false)` when blocked or out of budget (then `writable`
    /// tells which).
    fn write_some(&mut self, buf: &mut [u8], out_base: usize) -> io::Result<bool> {
        let mut budget = WRITE_BUDGET;
        let head_only = self.exchange.head_only;
        let State::Writing(body) = &mut self.state else {
            return Ok(true);
        };
        loop {
            if self.out_pos < self.out_end {
                // MSG_MORE only while body bytes follow at once: a corked last segment would
                // wait for the kernel's 200 ms timer.
                let more = !head_only && body_follows(body);
                let chunk = buf.get(self.out_pos..self.out_end).unwrap_or(&[]);
                match self.sock.send(chunk, more) {
                    Ok(n) => {
                        self.out_pos += n;
                        budget = budget.saturating_sub(n);
                    }
                    Err(e) if crate::sys::interrupted(&e) => {}
                    Err(e) if crate::sys::would_block(&e) => {
                        self.writable = false;
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if head_only {
                *body = Body::None;
                return Ok(true);
            }
            if budget == 0 {
                return Ok(false);
            }
            match body_step(&mut self.sock, body, buf, out_base, &mut budget)? {
                Part::Sent(Some(n)) => self.exchange.body_sent += n as u64,
                Part::Sent(None) => {
                    self.writable = false;
                    return Ok(false);
                }
                Part::Framed(len) => {
                    self.out_pos = out_base;
                    self.out_end = out_base + len;
                    self.exchange.body_sent += len as u64;
                }
                Part::Finished => {
                    *body = Body::None;
                    return Ok(true);
                }
            }
        }
    }
}

/// Body bytes still follow the output region.
fn body_follows(body: &Body) -> bool {
    match body {
        Body::None | Body::Inline(_) => false,
        Body::File { pos, end, .. } => pos < end,
        Body::Multipart(mp) => mp.with(|m| !m.is_finished()).unwrap_or(false),
    }
}

/// One step of a body after the output region: a file range by sendfile, or a multipart's
/// next range or part head (formatted into the output region at `out_base`).
fn body_step<S: ClientSocket>(
    sock: &mut S,
    body: &mut Body,
    buf: &mut [u8],
    out_base: usize,
    budget: &mut usize,
) -> io::Result<Part> {
    match body {
        Body::None | Body::Inline(_) => Ok(Part::Finished),
        Body::File { pos, end, .. } if *pos >= *end => Ok(Part::Finished),
        Body::File { file, pos, end } => {
            send_range(sock, file.get(), pos, *end, budget).map(Part::Sent)
        }
        Body::Multipart(mp) => mp
            .with(|m| {
                let (file, pos, end) = m.range_mut();
                if *pos < end {
                    return send_range(sock, file, pos, end, budget).map(Part::Sent);
                }
                if m.is_finished() {
                    return Ok(Part::Finished);
                }
                // The next part head (or the closing boundary) into the output region.
                let mut w = HeadWriter::new(buf.get_mut(out_base..).unwrap_or(&mut []));
                m.advance(&mut w);
                Ok(Part::Framed(w.len()))
            })
            .unwrap_or(Ok(Part::Finished)),
    }
}

/// What one step of a multipart body did.
enum Part {
    /// A file range went out (`None`: the socket is full).
    Sent(Option<usize>),
    /// A part head or the closing boundary is in the output region, this long.
    Framed(usize),
    /// Everything is out.
    Finished,
}

/// One sendfile of `[*pos, end)` within the budget. `Ok(Some(n))`: n bytes went (0 after an
/// EINTR); `Ok(None)`: the socket is full.
fn send_range<S: ClientSocket>(
    sock: &mut S,
    file: Option<&File>,
    pos: &mut u64,
    end: u64,
    budget: &mut usize,
) -> io::Result<Option<usize>> {
    let Some(file) = file else {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    };
    let count = ((end - *pos) as usize).min(*budget);
    match sock.sendfile(file, pos, count) {
        // The file shrank under us: the promised length cannot be met.
        Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        Ok(n) => {
            *budget = budget.saturating_sub(n);
            Ok(Some(n))
        }
        Err(e) if crate::sys::interrupted(&e) => Ok(Some(0)),
        Err(e) if crate::sys::would_block(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
