//! The stderr sink: one line per write, formatted on the stack, written without waiting; a line
//! that cannot go out now is dropped and counted (`drops`, shared with the syslog sink), and the
//! next line that goes out is preceded by `N log lines dropped while stderr was not keeping up`.
//!
//! Owns the non-blocking writer and the drop counters. Must never block (a stalled reader of the
//! pipe costs dropped lines, never a wait), never allocate per line, and never retry a line: it
//! goes out in one write or is dropped. A line of up to `PIPE_BUF` bytes (nearly every line)
//! reaches a pipe whole or not at all; a longer one (a child's long output,
//! in the watchdog's 4 KiB pieces) may be cut when the pipe is nearly full, which counts as a
//! drop, and the next line starts on a new line. Lines are dropped rather than queued: a queue
//! would only delay the same loss while the reader is stalled, and the notice says what was
//! lost.

use core::fmt;
use std::io;

use super::drops::{DropReason, Drops};
use super::format::format_stderr_line;
use crate::sys::stderr::{NonBlockingOut, PIPE_BUF};

/// Longest line written, newline included: a 4 KiB piece of a child's output (the watchdog's
/// line buffer) with every byte escaped as `\xHH`, and the time, level and tag in front. A
/// longer message is cut and ends with "...".
pub const LINE_MAX: usize = 4 * PIPE_BUF + 256;

/// uwgate's stderr as a log sink.
#[derive(Debug)]
pub struct StderrSink {
    out: Output,
    drops: Drops,
    /// The line being written: allocated once, with the sink.
    line: Box<[u8]>,
}

/// The writer and what the last write left behind.
#[derive(Debug)]
struct Output {
    out: NonBlockingOut,
    /// A write took part of the last line: start the next one on a new line.
    cut: bool,
}

impl StderrSink {
    /// The sink for fd 2 as it is now.
    pub fn new() -> StderrSink {
        StderrSink::with_output(NonBlockingOut::stderr())
    }

    /// A sink writing through `out` (tests pass a pipe's write end).
    pub fn with_output(out: NonBlockingOut) -> StderrSink {
        StderrSink {
            out: Output { out, cut: false },
            drops: Drops::default(),
            line: vec![0; LINE_MAX].into_boxed_slice(),
        }
    }

    /// Looks at fd 2 again (after `daemonize` put /dev/null there); keeps the counters.
    pub fn reopen(&mut self) {
        self.out.out = NonBlockingOut::stderr();
    }

    /// Lines dropped since the sink was created.
    pub fn dropped(&self) -> u64 {
        self.drops.total()
    }

    /// Writes `YYYY/MM/DD hh:mm:ss [level] MESSAGE` now, after the drop notice if one is owed.
    /// Returns false when the line was dropped (and counted).
    pub fn write(&mut self, unix_time: i64, level: &str, msg: fmt::Arguments<'_>) -> bool {
        let buf = &mut self.line[..];
        if let Some(notice) = self.drops.notice("log lines", "stderr") {
            let n = format_stderr_line(
                buf,
                self.out.cut,
                unix_time,
                "warn",
                format_args!("{notice}"),
            );
            if let Err(reason) = self.out.emit(buf.get(..n).unwrap_or(&[])) {
                self.drops.count(reason);
                return false;
            }
            self.drops.reported();
        }
        let n = format_stderr_line(buf, self.out.cut, unix_time, level, msg);
        match self.out.emit(buf.get(..n).unwrap_or(&[])) {
            Ok(()) => true,
            Err(reason) => {
                self.drops.count(reason);
                false
            }
        }
    }
}

impl Output {
    /// One write of a whole line. A short write (a terminal, a socket, a long line to a nearly
    /// full pipe) loses the rest of the line: it counts as dropped, and the next line starts
    /// with a newline.
    fn emit(&mut self, line: &[u8]) -> Result<(), DropReason> {
        match self.out.write(line) {
            Ok(n) if n == line.len() => {
                self.cut = false;
                Ok(())
            }
            Ok(0) => Err(DropReason::Slow),
            Ok(_) => {
                self.cut = true;
                Err(DropReason::Slow)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(DropReason::Slow),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(DropReason::Slow),
            Err(_) => Err(DropReason::Unavailable),
        }
    }
}

impl Default for StderrSink {
    fn default() -> Self {
        StderrSink::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    const NOV_25_2026_20_20_22: i64 = 1_795_638_022;

    fn read_available(rx: &mut std::io::PipeReader, want: usize) -> String {
        let mut buf = vec![0u8; want];
        rx.read_exact(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn lines_go_out_whole_with_time_and_level() {
        let (mut rx, tx) = std::io::pipe().unwrap();
        let mut sink = StderrSink::with_output(NonBlockingOut::open(tx.as_raw_fd()));
        assert!(sink.write(NOV_25_2026_20_20_22, "info", format_args!("started {}", 1)));
        let want = "2026/11/25 20:20:22 [info] started 1\n";
        assert_eq!(read_available(&mut rx, want.len()), want);
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn stalled_reader_costs_counted_lines_reported_once_it_reads_again() {
        let (mut rx, tx) = std::io::pipe().unwrap();
        let mut sink = StderrSink::with_output(NonBlockingOut::open(tx.as_raw_fd()));
        let t = NOV_25_2026_20_20_22;
        // Lines shorter than the notice: once one is refused, so is the notice, and with it
        // every line after it.
        let mut written = 0usize;
        while sink.write(t, "info", format_args!("fill {:08}", written)) {
            written += 1;
            assert!(written < 100_000, "the pipe never filled");
        }
        for _ in 0..9 {
            assert!(!sink.write(t, "info", format_args!("lost")));
        }
        assert_eq!(sink.dropped(), 10);

        // The reader drains everything; every line it finds is whole.
        let line_len = "2026/11/25 20:20:22 [info] fill ".len() + 8 + 1;
        let drained = read_available(&mut rx, written * line_len);
        assert!(drained.lines().all(|l| l.len() == line_len - 1));

        assert!(sink.write(t, "info", format_args!("back")));
        let notice =
            "2026/11/25 20:20:22 [warn] 10 log lines dropped while stderr was not keeping up\n";
        let back = "2026/11/25 20:20:22 [info] back\n";
        assert_eq!(
            read_available(&mut rx, notice.len() + back.len()),
            format!("{notice}{back}")
        );
        // Once only.
        assert!(sink.write(t, "info", format_args!("again")));
        let again = "2026/11/25 20:20:22 [info] again\n";
        assert_eq!(read_available(&mut rx, again.len()), again);
        assert_eq!(sink.dropped(), 10);
    }

    #[test]
    fn message_longer_than_a_line_is_cut_to_one_line() {
        let (mut rx, tx) = std::io::pipe().unwrap();
        let mut sink = StderrSink::with_output(NonBlockingOut::open(tx.as_raw_fd()));
        let long = "q".repeat(2 * LINE_MAX);
        assert!(sink.write(NOV_25_2026_20_20_22, "error", format_args!("{long}")));
        let got = read_available(&mut rx, LINE_MAX);
        assert!(got.ends_with("q...\n"), "{}", &got[got.len() - 10..]);
    }

    #[test]
    fn long_line_cut_by_a_nearly_full_pipe_counts_as_dropped_and_the_next_starts_afresh() {
        let (mut rx, tx) = std::io::pipe().unwrap();
        let mut sink = StderrSink::with_output(NonBlockingOut::open(tx.as_raw_fd()));
        let t = NOV_25_2026_20_20_22;
        let long = "q".repeat(10_000);
        let mut whole = 0;
        while sink.write(t, "error", format_args!("{long}")) {
            whole += 1;
            assert!(whole < 100, "the pipe never filled");
        }
        assert!(sink.out.cut, "the pipe took part of the last line");
        assert!(!sink.write(t, "info", format_args!("lost")));
        assert_eq!(sink.dropped(), 2);

        // Drain what is queued through a non-blocking description of the read end.
        let mut drain = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/self/fd/{}", rx.as_raw_fd()))
                .unwrap()
        };
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match drain.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        let text = String::from_utf8(all).unwrap();
        assert_eq!(
            text.matches('\n').count(),
            whole,
            "whole lines, then a cut one"
        );
        assert!(!text.ends_with('\n'));

        assert!(sink.write(t, "info", format_args!("back")));
        let want =
            "\n2026/11/25 20:20:22 [warn] 2 log lines dropped while stderr was not keeping up\n\
                    2026/11/25 20:20:22 [info] back\n";
        assert_eq!(read_available(&mut rx, want.len()), want);
        assert!(!sink.out.cut);
    }

    #[test]
    fn reader_gone_counts_lines_as_unavailable() {
        let (rx, tx) = std::io::pipe().unwrap();
        let mut sink = StderrSink::with_output(NonBlockingOut::open(tx.as_raw_fd()));
        drop(rx);
        assert!(!sink.write(NOV_25_2026_20_20_22, "info", format_args!("x")));
        assert_eq!(sink.dropped(), 1);
        assert_eq!(
            sink.drops
                .notice("log lines", "stderr")
                .map(|n| n.to_string()),
            Some("1 log lines dropped while stderr was unavailable".to_owned())
        );
    }
}
