//! uwgate's own stderr, written without ever waiting: a write either goes out now or fails with
//! `WouldBlock`, whatever fd 2 is (a pipe to a hung `| logger`, journald's socket, a terminal).
//!
//! Owns at most one descriptor: a private open file description of fd 2. Must never change the
//! flags of fd 2's own description (O_NONBLOCK there would also hit the shell or the service
//! manager sharing it, and any process that inherits it), never block, never allocate per write.
//!
//! What is true on Linux, and chosen per file type at open:
//! - Pipe, FIFO, terminal: `open("/proc/self/fd/2", O_WRONLY|O_NONBLOCK)` opens the same pipe or
//!   tty anew, as a *new* description whose O_NONBLOCK is ours alone. A write of at most
//!   `PIPE_BUF` bytes to a pipe is then all or nothing (EAGAIN); a longer one, or any write to a
//!   terminal, may be taken in part. (poll-then-write is not enough for a terminal: a pty
//!   reports POLLOUT while it has any room, and a blocking write of a longer line then waits for
//!   the reader.)
//! - Socket (journald's stream, `StandardError=journal`): `send(MSG_DONTWAIT)` is non-blocking
//!   per call; /proc/self/fd/N cannot be opened for a socket (ENXIO).
//! - Anything else (a regular file, /dev/null), or /proc missing: `poll(POLLOUT, 0)`, then a
//!   `write` of at most `PIPE_BUF` bytes, again while ready. A file is always ready; for a pipe of
//!   which we are the only writer, POLLOUT means a free page, which takes `PIPE_BUF` bytes
//!   without waiting (a terminal without /proc is the one case left that can wait).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Longest write that a pipe takes whole or not at all.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// How the bytes reach the file.
#[derive(Debug)]
enum Way {
    /// A description of our own with O_NONBLOCK (pipe, FIFO, terminal).
    Private(OwnedFd),
    /// `send(2)` with MSG_DONTWAIT on the shared descriptor (a socket).
    Socket,
    /// `poll(2)` with a zero timeout, then `write(2)` (a file, or no /proc).
    Polled,
}

/// A non-blocking writer to one of uwgate's standard descriptors (normally fd 2).
#[derive(Debug)]
pub struct NonBlockingOut {
    fd: RawFd,
    way: Way,
}

impl NonBlockingOut {
    /// The writer for fd 2, chosen for what fd 2 is now. Called when the logger starts and
    /// again after `daemonize` put /dev/null there. Never fails: a closed fd 2 gives a writer
    /// whose writes fail (EBADF), which the caller counts.
    pub fn stderr() -> NonBlockingOut {
        NonBlockingOut::open(2)
    }

    /// The writer for `fd`, which must stay open as long as the writer is used.
    pub fn open(fd: RawFd) -> NonBlockingOut {
        let way = match file_type(fd) {
            Some(libc::S_IFIFO | libc::S_IFCHR) => {
                reopen_nonblocking(fd).map_or(Way::Polled, Way::Private)
            }
            Some(libc::S_IFSOCK) => Way::Socket,
            _ => Way::Polled,
        };
        NonBlockingOut { fd, way }
    }

    /// `"private"`, `"socket"` or `"polled"`: how writes are made non-blocking (tests, logs).
    pub fn way(&self) -> &'static str {
        match self.way {
            Way::Private(_) => "private",
            Way::Socket => "socket",
            Way::Polled => "polled",
        }
    }

    /// Writes what can go now: `Ok(n)` with `n` possibly short of `bytes.len()` (a terminal, a
    /// socket, a nearly full pipe and more than [`PIPE_BUF`] bytes), `Err(WouldBlock)` when
    /// nothing can. Up to `PIPE_BUF` bytes, a pipe takes all or nothing.
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let ptr = bytes.as_ptr() as *const libc::c_void;
        let n = match &self.way {
            Way::Private(fd) => syscall!(write(fd.as_raw_fd(), ptr, bytes.len()))?,
            Way::Socket => syscall!(send(
                self.fd,
                ptr,
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL
            ))?,
            Way::Polled => return self.write_polled(bytes),
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Pieces of at most `PIPE_BUF` bytes, each after a zero-timeout poll says fd is ready.
    fn write_polled(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) {
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            syscall!(poll(&mut pfd, 1, 0))?;
            // An error bit (a pipe with no reader, a closed fd) lets write(2) give the errno.
            let ready = libc::POLLOUT | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
            if pfd.revents & ready == 0 {
                break;
            }
            let piece = rest.len().min(PIPE_BUF);
            match syscall!(write(self.fd, rest.as_ptr() as *const libc::c_void, piece)) {
                Ok(n) => match usize::try_from(n) {
                    Ok(n) if n > 0 => done += n,
                    _ => break,
                },
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if done == 0 && !bytes.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(done)
    }
}

/// `S_IFMT` bits of `fd`, or `None` when fstat fails (a closed descriptor).
fn file_type(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: stat is plain data, filled by fstat(2).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd, &mut st)).ok()?;
    Some(st.st_mode & libc::S_IFMT)
}

/// A new open file description of what `fd` refers to, write-only, non-blocking, close-on-exec,
/// never becoming a controlling terminal.
fn reopen_nonblocking(fd: RawFd) -> Option<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    let new = syscall!(open(path.as_ptr(), flags)).ok()?;
    // SAFETY: open(2) returned a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn nonblocking(fd: RawFd) -> bool {
        // SAFETY: F_GETFL on a descriptor the test owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(flags >= 0);
        flags & libc::O_NONBLOCK != 0
    }

    /// Writes `line` until the writer refuses; returns the bytes taken.
    fn fill(out: &NonBlockingOut, line: &[u8]) -> usize {
        let mut taken = 0;
        for _ in 0..1_000_000 {
            match out.write(line) {
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return taken,
                Err(e) => panic!("write: {e}"),
            }
        }
        panic!("never refused");
    }

    #[test]
    fn full_pipe_refuses_whole_lines_and_leaves_the_shared_description_blocking() {
        let (mut rx, tx) = std::io::pipe().unwrap();
        let out = NonBlockingOut::open(tx.as_raw_fd());
        assert_eq!(out.way(), "private");
        let line = [b'x'; 100];
        let taken = fill(&out, &line);
        assert_eq!(taken % line.len(), 0, "a line was cut: {taken}");
        assert!(taken >= 60_000, "{taken}");
        assert!(!nonblocking(tx.as_raw_fd()), "fd's own description changed");

        // One page read frees a slot: a PIPE_BUF write then goes whole.
        let mut page = vec![0u8; 8192];
        rx.read_exact(&mut page).unwrap();
        assert_eq!(out.write(&[b'y'; PIPE_BUF]).unwrap(), PIPE_BUF);
    }

    #[test]
    fn full_socket_refuses_without_blocking() {
        let (_rx, tx) = UnixStream::pair().unwrap();
        let out = NonBlockingOut::open(tx.as_raw_fd());
        assert_eq!(out.way(), "socket");
        assert!(fill(&out, &[b'z'; 1000]) > 0);
        assert!(!nonblocking(tx.as_raw_fd()));
    }

    #[test]
    fn regular_file_is_written_after_a_poll() {
        let path = std::env::temp_dir().join(format!("uwgate-nb-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let out = NonBlockingOut::open(file.as_raw_fd());
        assert_eq!(out.way(), "polled");
        assert_eq!(out.write(b"line\n").unwrap(), 5);
        let long = [b'l'; 3 * PIPE_BUF + 7];
        assert_eq!(out.write(&long).unwrap(), long.len());
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[..5], b"line\n");
        assert_eq!(&written[5..], &long[..]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn pipe_without_reader_fails_instead_of_blocking() {
        let (rx, tx) = std::io::pipe().unwrap();
        drop(rx);
        // No reader: the FIFO open fails (ENXIO), so the writer polls; the write says EPIPE.
        let out = NonBlockingOut::open(tx.as_raw_fd());
        let err = out.write(b"x\n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn closed_descriptor_fails_instead_of_blocking() {
        // Far above any open descriptor (a closed fd 2 behaves the same: EBADF).
        let out = NonBlockingOut::open(1 << 30);
        assert_eq!(out.way(), "polled");
        let err = out.write(b"x\n").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
