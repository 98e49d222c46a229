//! Child output: a pipe read end registered in the loop, cut into lines for the log (at the
//! program's syslog priority for that stream) and copied, as read, into the process's output
//! ring for `uwgate ctl tail`.
//!
//! Owns the read end and one fixed line buffer per pipe (allocated at spawn, never grown).
//! A line longer than the buffer goes out in buffer-sized pieces, never dropped; each call reads
//! at most a byte budget, so a child flooding its stdout cannot starve the rest of the loop (the
//! pipe is then marked `pending` and the watchdog is called again). Must never block: the read
//! end is non-blocking, and reads stop at `WouldBlock`.

use std::io::{self, Read};
use std::rc::Rc;

use super::ring::Ring;
use crate::logging::Severity;

/// Bytes held for an unfinished line; a longer line is emitted in pieces of this size.
pub const LINE_MAX: usize = 4096;

/// Bytes read from one pipe per event before yielding to the rest of the loop.
pub const READ_BUDGET: usize = 64 * 1024;

/// Where complete lines go: `(tag, pid, line without '\n', syslog severity)`.
pub type Sink = fn(&str, u32, &[u8], Severity);

/// A fixed buffer that turns a byte stream into lines.
pub struct LineBuffer {
    buf: Box<[u8]>,
    len: usize,
}

impl LineBuffer {
    /// An empty buffer of `LINE_MAX` bytes.
    pub fn new() -> LineBuffer {
        LineBuffer {
            buf: vec![0; LINE_MAX].into_boxed_slice(),
            len: 0,
        }
    }

    /// The free space to read into; never empty (a full buffer is flushed by `commit`).
    pub fn spare(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.len..).unwrap_or_default()
    }

    /// Takes `n` bytes just read into `spare()`: emits every complete line (without its '\n'),
    /// keeps the unfinished rest, and emits the whole buffer as one piece when it is full.
    pub fn commit(&mut self, n: usize, emit: &mut impl FnMut(&[u8])) {
        let scan_from = self.len;
        self.len = self.len.saturating_add(n).min(self.buf.len());
        let mut start = 0;
        let mut pos = scan_from;
        while let Some(off) = self
            .buf
            .get(pos..self.len)
            .and_then(|s| s.iter().position(|&b| b == b'\n'))
        {
            let nl = pos.saturating_add(off);
            emit(self.buf.get(start..nl).unwrap_or_default());
            start = nl.saturating_add(1);
            pos = start;
        }
        if start > 0 {
            self.buf.copy_within(start..self.len, 0);
            self.len = self.len.saturating_sub(start);
        }
        if self.len == self.buf.len() {
            // A line longer than the buffer: split it, do not lose it.
            emit(&self.buf);
            self.len = 0;
        }
    }

    /// The unfinished line held so far (an in-place upgrade hands it to the next image).
    pub fn unfinished(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Puts back an unfinished line handed over by the previous image (at most the buffer).
    pub fn restore(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len().saturating_sub(1));
        if let (Some(dst), Some(src)) = (self.buf.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
            self.len = n;
        }
    }

    /// At end of stream: emits the unfinished last line, if any.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if self.len > 0 {
            emit(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new()
    }
}

/// What `OutputPipe::pump` left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pump {
    /// Drained to `WouldBlock`; wait for the next readiness event.
    Idle,
    /// Stopped at the byte budget with data left: call again (edge-triggered, no new event).
    Pending,
    /// End of file or a read error: deregister and drop.
    Closed,
}

/// The read end of one child's stdout or stderr.
pub struct OutputPipe {
    /// The non-blocking read end (a mio source).
    pub rx: mio::unix::pipe::Receiver,
    /// The process name, the syslog tag.
    pub tag: Rc<str>,
    /// The child that was spawned with this pipe.
    pub pid: u32,
    /// Whether this is stderr.
    pub is_stderr: bool,
    /// The syslog severity of its lines (`stdout_syslog_priority` / `stderr_syslog_priority`).
    pub severity: Severity,
    /// Identity of the owning process entry (for the lingering-pipe cap).
    pub owner: u64,
    /// Spawn order, to close the oldest lingering pipes first.
    pub serial: u64,
    /// `Pump::Pending` was returned: the watchdog must call `pump` again.
    pub pending: bool,
    lines: LineBuffer,
}

impl OutputPipe {
    /// Wraps a read end for the child `pid` of process `tag`; its lines go out at `severity`.
    pub fn new(
        rx: mio::unix::pipe::Receiver,
        tag: Rc<str>,
        pid: u32,
        (is_stderr, severity): (bool, Severity),
        owner: u64,
        serial: u64,
    ) -> OutputPipe {
        OutputPipe {
            rx,
            tag,
            pid,
            is_stderr,
            severity,
            owner,
            serial,
            pending: false,
            lines: LineBuffer::new(),
        }
    }

    /// The unfinished line this pipe holds (see `LineBuffer::unfinished`).
    pub fn unfinished(&self) -> &[u8] {
        self.lines.unfinished()
    }

    /// Puts back the unfinished line of the previous image (see `LineBuffer::restore`).
    pub fn restore_unfinished(&mut self, bytes: &[u8]) {
        self.lines.restore(bytes);
    }

    /// Reads until `WouldBlock`, EOF or `budget` bytes, sending complete lines to `sink` and
    /// every byte read to `ring` (the owner's ring of this stream, when it still exists).
    pub fn pump(&mut self, budget: usize, sink: Sink, mut ring: Option<&mut Ring>) -> Pump {
        let (tag, pid, is_stderr) = (&*self.tag, self.pid, self.is_stderr);
        let severity = self.severity;
        let mut emit = |line: &[u8]| sink(tag, pid, line, severity);
        let mut read = 0usize;
        let result = loop {
            if read >= budget {
                break Pump::Pending;
            }
            let spare = self.lines.spare();
            let room = spare.len().min(budget.saturating_sub(read));
            match self.rx.read(spare.get_mut(..room).unwrap_or_default()) {
                Ok(0) => {
                    self.lines.finish(&mut emit);
                    break Pump::Closed;
                }
                Ok(n) => {
                    read = read.saturating_add(n);
                    if let Some(ring) = ring.as_deref_mut() {
                        ring.push(self.lines.spare().get(..n).unwrap_or_default());
                    }
                    self.lines.commit(n, &mut emit);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Pump::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!(
                        "{}: reading {} of pid {}: {e}",
                        tag,
                        if is_stderr { "stderr" } else { "stdout" },
                        pid
                    );
                    self.lines.finish(&mut emit);
                    break Pump::Closed;
                }
            }
        };
        self.pending = result == Pump::Pending;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lb: &mut LineBuffer, data: &[u8], out: &mut Vec<Vec<u8>>) {
        let mut rest = data;
        while !rest.is_empty() {
            let spare = lb.spare();
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            lb.commit(n, &mut |l: &[u8]| out.push(l.to_vec()));
            rest = &rest[n..];
        }
    }

    #[test]
    fn complete_lines_are_emitted_and_the_rest_kept() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        feed(&mut lb, b"one\ntwo\nthr", &mut out);
        assert_eq!(out, vec![b"one".to_vec(), b"two".to_vec()]);
        feed(&mut lb, b"ee\n\nfour", &mut out);
        assert_eq!(out[2..], [b"three".to_vec(), b"".to_vec()]);
        lb.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        assert_eq!(out.last().unwrap(), b"four");
        let n = out.len();
        lb.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        assert_eq!(out.len(), n, "nothing left after finish");
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_split_not_lost() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        let long: Vec<u8> = (0..LINE_MAX * 2 + 10)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let mut data = long.clone();
        data.extend_from_slice(b"\nnext\n");
        feed(&mut lb, &data, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1].len(), LINE_MAX);
        assert_eq!(out[0..3].concat(), long);
        assert_eq!(out[3], b"next");
    }

    #[test]
    fn an_unfinished_line_handed_over_is_completed_by_the_next_bytes() {
        let mut old = LineBuffer::new();
        let mut out = Vec::new();
        feed(&mut old, b"done\nhalf a ", &mut out);
        let mut new = LineBuffer::new();
        new.restore(old.unfinished());
        feed(&mut new, b"line\n", &mut out);
        assert_eq!(out, vec![b"done".to_vec(), b"half a line".to_vec()]);
    }

    #[test]
    fn byte_at_a_time_input_gives_the_same_lines() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for b in b"a\nbc\n\nd" {
            feed(&mut lb, &[*b], &mut out);
        }
        lb.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        assert_eq!(
            out,
            vec![b"a".to_vec(), b"bc".to_vec(), b"".to_vec(), b"d".to_vec()]
        );
    }

    /// A line seen by the sink: (tag, pid, line, severity).
    type Seen = (String, u32, Vec<u8>, Severity);

    thread_local! {
        static SEEN: std::cell::RefCell<Vec<Seen>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    fn record(tag: &str, pid: u32, line: &[u8], severity: Severity) {
        SEEN.with(|s| {
            s.borrow_mut()
                .push((tag.to_string(), pid, line.to_vec(), severity))
        });
    }

    #[test]
    fn pump_stops_at_the_budget_and_resumes() {
        let (mut tx, rx) = mio::unix::pipe::new().unwrap();
        let mut pipe = OutputPipe::new(rx, Rc::from("prog"), 7, (true, Severity::Err), 1, 1);
        let mut ring = Ring::new(250);
        use std::io::Write;
        let line = [b'x'; 99];
        for _ in 0..100 {
            tx.write_all(&line).unwrap();
            tx.write_all(b"\n").unwrap();
        }
        assert_eq!(pipe.pump(1000, record, Some(&mut ring)), Pump::Pending);
        assert!(pipe.pending);
        let first = SEEN.with(|s| s.borrow().len());
        assert_eq!(first, 10, "a budget's worth of lines");
        assert_eq!(pipe.pump(1 << 20, record, Some(&mut ring)), Pump::Idle);
        assert!(!pipe.pending);
        drop(tx);
        assert_eq!(pipe.pump(1 << 20, record, Some(&mut ring)), Pump::Closed);
        assert_eq!(ring.total(), 10_000, "every byte read went to the ring");
        let (a, b) = ring.slices(0, u64::MAX);
        assert_eq!([a, b].concat().len(), 250);
        SEEN.with(|s| {
            let s = s.borrow();
            assert_eq!(s.len(), 100);
            assert!(s.iter().all(|(t, p, l, e)| t == "prog"
                && *p == 7
                && l.len() == 99
                && *e == Severity::Err));
        });
    }
}
