//! One client connection: its phase, its buffer (checked out only while busy), and the
//! pure-ish steps the event loop drives — read a head, answer it, write the answer, linger.
//!
//! Owns: the per-connection state machine and response bodies (`Body`). Never: touches
//! another connection, allocates per request (except the rare multipart range body), or
//! blocks — every socket call is non-blocking and every loop here is bounded.
//!
//! Phases: `Idle` (no buffer) → `ReadingHead` → `Writing` → `Idle` (keep-alive) | closed;
//! `Lingering` drains a client we answered early so our reply is not lost to a RST.

use crate::http::response::HeadWriter;
use crate::pool::BufId;
use crate::sys;
use mio::net::TcpStream;
use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

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

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request; holds no buffer.
    Idle,
    /// Reading a request head into its buffer.
    ReadingHead,
    /// Writing a response: the head in the buffer's output region, then `Body`.
    Writing,
    /// Answered and half-closed; reading and discarding until EOF or the deadline.
    Lingering,
    /// Forwarding to uWSGI: the `upstream::Proxy` in slot `proxy` says where.
    Proxy,
    /// Answer ready in the output region; first reading and discarding the request body.
    Discarding,
}

/// A file being sent: owned by this response, or shared with the open-file cache.
pub enum FileRef {
    Owned(File),
    Shared(Rc<File>),
}

impl FileRef {
    pub fn get(&self) -> &File {
        match self {
            FileRef::Owned(f) => f,
            FileRef::Shared(f) => f,
        }
    }
}

/// What follows the response head.
pub enum Body {
    None,
    /// This many body bytes were written after the head in the output region.
    Inline(usize),
    /// `[pos, end)` of a file, by sendfile.
    File {
        file: FileRef,
        pos: u64,
        end: u64,
    },
    /// Several ranges as multipart/byteranges.
    Multipart(Box<Multipart>),
}

/// A multipart/byteranges body: part heads are formatted into the output region between
/// the file ranges, deterministically, so the Content-Length computed up front holds.
pub struct Multipart {
    file: FileRef,
    ranges: heapless::Vec<(u64, u64), 16>,
    mime: &'static str,
    charset: bool,
    size: u64,
    boundary: u64,
    /// Next range to start; `ranges.len()` means the closing boundary is next.
    next: usize,
    /// The file range being sent, `[pos, end)`.
    pos: u64,
    end: u64,
    finished: bool,
}

impl Multipart {
    pub fn new(
        file: FileRef,
        ranges: heapless::Vec<(u64, u64), 16>,
        mime: &'static str,
        charset: bool,
        size: u64,
        seed: u64,
    ) -> Multipart {
        Multipart {
            file,
            ranges,
            mime,
            charset,
            size,
            boundary: seed.wrapping_mul(6364136223846793005) % 100_000_000_000,
            next: 0,
            pos: 0,
            end: 0,
            finished: false,
        }
    }

    /// The boundary string (a zero-padded number, as nginx uses).
    pub fn write_boundary(&self, w: &mut HeadWriter<'_>) {
        let mut digits = [b'0'; 11];
        let mut n = self.boundary;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        w.put(&digits);
    }

    fn part_head(&self, i: usize, w: &mut HeadWriter<'_>) {
        let (first, last) = self.ranges[i];
        w.put(b"\r\n--");
        self.write_boundary(w);
        w.put(b"\r\n");
        crate::static_files::content_type(w, self.mime, self.charset);
        w.put(b"Content-Range: bytes ")
            .num(first)
            .put(b"-")
            .num(last)
            .put(b"/")
            .num(self.size)
            .put(b"\r\n\r\n");
    }

    fn closing(&self, w: &mut HeadWriter<'_>) {
        w.put(b"\r\n--");
        self.write_boundary(w);
        w.put(b"--\r\n");
    }

    /// Total body length: every part head, every range, the closing boundary.
    pub fn content_length(&self) -> u64 {
        let mut scratch = [0u8; 512];
        let mut total = 0u64;
        for (i, (first, last)) in self.ranges.iter().enumerate() {
            let mut w = HeadWriter::new(&mut scratch);
            self.part_head(i, &mut w);
            total += w.len() as u64 + (last - first + 1);
        }
        let mut w = HeadWriter::new(&mut scratch);
        self.closing(&mut w);
        total + w.len() as u64
    }
}

/// One connection slot.
pub struct Conn {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub phase: Phase,
    pub buf: Option<BufId>,
    /// Input bytes held at `buf[..in_len]`; never beyond the head limit.
    pub in_len: usize,
    /// Input length at the last parse attempt (no re-parse without new bytes).
    pub parsed_len: usize,
    /// Output region bytes still to send: `buf[out_pos..out_end]`.
    pub out_pos: usize,
    pub out_end: usize,
    pub body: Body,
    /// Length of the current request's head at the front of the buffer (0 when none).
    pub head_len: usize,
    /// Bytes of the current request at the front of the buffer (head plus a buffered body),
    /// dropped when the response is done; what follows is pipelined input.
    pub req_len: usize,
    /// Body bytes still to discard (Content-Length), or the chunked decoder discarding it.
    pub discard_left: u64,
    pub discard_chunked: Option<crate::http::chunked::ChunkedDecoder>,
    /// When discarding began and how many body bytes have arrived (for the minimum rate).
    pub discard_started: Instant,
    pub discard_seen: u64,
    /// The proxy slot of a request being forwarded.
    pub proxy: Option<usize>,
    /// Server and location the current request is routed to (`NO_ROUTE` before routing):
    /// whose limits apply (`Config::limits`), and where a forwarded request goes.
    pub server: u16,
    pub location: u16,
    /// An upstream head carrying X-Accel-Redirect, between reading it and serving the file.
    pub redirect_head: Option<crate::upstream::response::UpstreamHead>,
    pub keep_alive: bool,
    pub head_only: bool,
    /// The request came with a body we did not read: linger after answering.
    pub unread_body: bool,
    pub requests: u32,
    pub deadline: Option<Instant>,
    pub readable: bool,
    pub writable: bool,
    /// The peer has shut down its side (sticky, from the readiness event).
    pub read_closed: bool,
    /// In the loop's run queue (more work without a new readiness event).
    pub queued: bool,
    /// Access-log facts for the current response.
    pub status: u16,
    pub body_sent: u64,
    /// Length of a body sent from the output region (error pages, status text).
    pub inline_body: usize,
    /// TCP_CORK is on for a large file body (see `CORK_MIN`).
    pub corked: bool,
}

/// What a step asks the loop to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do until a readiness event or a deadline.
    Wait,
    /// More work is ready now: put the connection in the run queue.
    Yield,
    /// The connection needs a buffer and the pool is empty.
    NeedBuffer,
    Close,
}

impl Conn {
    /// A fresh slot for an accepted client; `now` is the loop's clock.
    pub fn new(sock: TcpStream, peer: SocketAddr, local: SocketAddr, now: Instant) -> Conn {
        Conn {
            sock,
            peer,
            local,
            phase: Phase::Idle,
            buf: None,
            in_len: 0,
            parsed_len: 0,
            out_pos: 0,
            out_end: 0,
            body: Body::None,
            head_len: 0,
            req_len: 0,
            discard_left: 0,
            discard_chunked: None,
            discard_started: now,
            discard_seen: 0,
            proxy: None,
            server: crate::config::NO_ROUTE,
            location: crate::config::NO_ROUTE,
            redirect_head: None,
            keep_alive: false,
            head_only: false,
            unread_body: false,
            requests: 0,
            deadline: None,
            readable: true,
            writable: true,
            read_closed: false,
            queued: false,
            status: 0,
            body_sent: 0,
            inline_body: 0,
            corked: false,
        }
    }

    /// Reads into `buf[in_len..limit]`. `Ok(0)` means EOF; WouldBlock clears `readable`.
    pub fn read_into(&mut self, buf: &mut [u8], limit: usize) -> io::Result<usize> {
        let Some(space) = buf.get_mut(self.in_len..limit) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let want = space.len();
        loop {
            match self.sock.read(space) {
                Ok(n) => {
                    // A short read drained the socket: edge-triggered epoll will report
                    // the next arrival, so no extra read(2) is spent finding EAGAIN.
                    // The peer's FIN may have come with the data: with `read_closed` seen,
                    // read on to the 0 that says so, or no later event would report it.
                    if n < want && !self.read_closed {
                        self.readable = false;
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

    /// Sends the output region, then the body, within `WRITE_BUDGET`.
    /// Returns `Ok(true)` when the whole response is out, `Ok(false)` when blocked or out of
    /// budget (then `writable` tells which).
    pub fn write_out(&mut self, buf: &mut [u8], out_base: usize) -> io::Result<bool> {
        if !self.corked && !self.head_only && self.file_left() > CORK_MIN {
            sys::set_cork(self.sock.as_raw_fd(), true)?;
            self.corked = true;
        }
        let done = self.write_some(buf, out_base)?;
        if done && self.corked {
            sys::set_cork(self.sock.as_raw_fd(), false)?;
            self.corked = false;
        }
        Ok(done)
    }

    /// File bytes still to send (for a multipart body, its file's size: an upper bound).
    fn file_left(&self) -> u64 {
        match &self.body {
            Body::File { pos, end, .. } => end - pos,
            Body::Multipart(mp) => mp.size,
            Body::None | Body::Inline(_) => 0,
        }
    }

    fn write_some(&mut self, buf: &mut [u8], out_base: usize) -> io::Result<bool> {
        let fd = self.sock.as_raw_fd();
        let mut budget = WRITE_BUDGET;
        loop {
            if self.out_pos < self.out_end {
                // MSG_MORE only while body bytes follow at once: a corked last segment would
                // wait for the kernel's 200 ms timer.
                let more = !self.head_only
                    && match &self.body {
                        Body::None | Body::Inline(_) => false,
                        Body::File { pos, end, .. } => pos < end,
                        Body::Multipart(mp) => !mp.finished,
                    };
                let chunk = &buf[self.out_pos..self.out_end];
                match sys::send(fd, chunk, more) {
                    Ok(n) => {
                        self.out_pos += n;
                        budget = budget.saturating_sub(n);
                    }
                    Err(e) if sys::interrupted(&e) => continue,
                    Err(e) if sys::would_block(&e) => {
                        self.writable = false;
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if self.head_only {
                self.body = Body::None;
                return Ok(true);
            }
            if budget == 0 {
                return Ok(false);
            }
            match &mut self.body {
                Body::None | Body::Inline(_) => return Ok(true),
                Body::File { file, pos, end } => {
                    if *pos >= *end {
                        self.body = Body::None;
                        continue;
                    }
                    match send_range(fd, file.get(), pos, *end, &mut budget)? {
                        Some(n) => self.body_sent += n as u64,
                        None => {
                            self.writable = false;
                            return Ok(false);
                        }
                    }
                }
                Body::Multipart(mp) => {
                    if mp.pos < mp.end {
                        match send_range(fd, mp.file.get(), &mut mp.pos, mp.end, &mut budget)? {
                            Some(n) => self.body_sent += n as u64,
                            None => {
                                self.writable = false;
                                return Ok(false);
                            }
                        }
                        continue;
                    }
                    if mp.finished {
                        self.body = Body::None;
                        continue;
                    }
                    // Format the next part head (or the closing boundary) into the output region.
                    let len = {
                        let mut w = HeadWriter::new(&mut buf[out_base..]);
                        if mp.next < mp.ranges.len() {
                            mp.part_head(mp.next, &mut w);
                            let (first, last) = mp.ranges[mp.next];
                            mp.pos = first;
                            mp.end = last + 1;
                            mp.next += 1;
                        } else {
                            mp.closing(&mut w);
                            mp.finished = true;
                        }
                        w.len()
                    };
                    self.out_pos = out_base;
                    self.out_end = out_base + len;
                    self.body_sent += len as u64;
                }
            }
        }
    }
}

/// One sendfile of `[*pos, end)` within the budget. `Ok(Some(n))`: n bytes went (0 after an
/// EINTR); `Ok(None)`: the socket is full.
fn send_range(
    fd: std::os::fd::RawFd,
    file: &File,
    pos: &mut u64,
    end: u64,
    budget: &mut usize,
) -> io::Result<Option<usize>> {
    let count = ((end - *pos) as usize).min(*budget);
    match sys::sendfile(fd, file, pos, count) {
        // The file shrank under us: the promised length cannot be met.
        Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        Ok(n) => {
            *budget = budget.saturating_sub(n);
            Ok(Some(n))
        }
        Err(e) if sys::interrupted(&e) => Ok(Some(0)),
        Err(e) if sys::would_block(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's memory figure for a connection slot (`Option<Conn>` in the slab, plus
    /// the slab's free-list entry and idle-list links) must stay true.
    #[test]
    fn a_connection_slot_costs_what_the_readme_says() {
        let slot = std::mem::size_of::<Option<Conn>>() + crate::slab::PER_SLOT_OVERHEAD;
        assert_eq!(
            slot, 373,
            "a connection slot changed size; update README's Design"
        );
    }
}
