//! The system calls of an in-place upgrade: the handoff file, descriptor flags, the monotonic
//! clock, `execve` of uwgate's own process, and the exit hook that turns a failed start into a
//! rollback.
//!
//! Owns every `unsafe` the upgrade needs (`gate::upgrade` on the old image's side, `handoff` on
//! the new one's). Decides nothing: which descriptors cross the exec, and when to exec, is the
//! caller's. Never called on the request path: only at an upgrade and at start-up.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A close-on-exec, anonymous, memory-backed file for the handoff record: memfd_create(2)
/// (Linux 3.17+), else an unlinked file under `fallback_dir` (O_TMPFILE, or create + unlink)
/// for older kernels such as CentOS 7's 3.10.
pub fn anonymous_file(name: &CStr, fallback_dir: &CStr) -> io::Result<File> {
    // SAFETY: `name` is NUL-terminated; MFD_CLOEXEC is a valid flag.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd >= 0 {
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
        return Ok(unsafe { File::from_raw_fd(fd) });
    }
    super::tmpfile(fallback_dir)
}

/// Sets or clears FD_CLOEXEC on `fd`: cleared on exactly what must survive the exec.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFD))?;
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    syscall!(fcntl(fd, libc::F_SETFD, flags)).map(|_| ())
}

/// A close-on-exec duplicate of the inherited `fd` (≥ 3), for the new image to own while the
/// original stays untouched for a rollback.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    let new = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, 3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Closes an inherited descriptor number (the originals, once the new image serves); EBADF
/// (already closed) is harmless.
pub fn close(fd: RawFd) {
    let _ = syscall!(close(fd));
}

/// The file type of `fd` (`libc::S_IFIFO`, `S_IFSOCK`, …), to check what an inherited number is.
pub fn file_type(fd: RawFd) -> io::Result<libc::mode_t> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd, &mut st))?;
    Ok(st.st_mode & libc::S_IFMT)
}

/// Whether `fd` is a listening stream socket (SO_ACCEPTCONN).
pub fn is_listening(fd: RawFd) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let res = syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ACCEPTCONN,
        &mut on as *mut libc::c_int as *mut libc::c_void,
        &mut len
    ));
    res.is_ok() && on != 0
}

/// Reads all of the inherited file `fd` from offset 0 (pread: the file offset is left alone,
/// so a rollback reads it again), refusing one longer than `max` bytes.
pub fn read_inherited(fd: RawFd, max: usize) -> io::Result<Vec<u8>> {
    // SAFETY: the caller names an open descriptor it was handed; it stays open for the call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let file = File::from(borrowed.try_clone_to_owned()?);
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `std::time::Instant` reads on Linux, the same
/// before and after an exec, so deadlines and start times cross it exactly.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts)).is_err() {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Sets the process name (`/proc/PID/comm`, what `ps` and `pidof` show): an exec through
/// `/proc/self/fd/N` (a rollback) would otherwise leave it named `N`.
pub fn set_process_name(name: &CStr) {
    // PR_SET_NAME reads a NUL-terminated string and keeps at most 15 bytes of it.
    let _ = syscall!(prctl(
        libc::PR_SET_NAME,
        name.as_ptr() as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
    ));
}

/// Whether the calling process may execute `path` (access(2) with X_OK).
pub fn may_execute(path: &Path) -> io::Result<()> {
    let c = cstring(path.as_os_str())?;
    syscall!(access(c.as_ptr(), libc::X_OK)).map(|_| ())
}

/// A program to replace this process with: path, argv and environment as C strings. Built
/// before it is needed; `exec` makes the pointer arrays and calls execve(2).
#[derive(Clone, Debug)]
pub struct Reexec {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Reexec {
    /// `path` with `argv` and the environment `env`; fails on a NUL byte in any of them.
    pub fn new(path: &Path, argv: &[OsString], env: &[(OsString, OsString)]) -> io::Result<Reexec> {
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstring(OsStr::from_bytes(&kv))?);
        }
        Ok(Reexec {
            path: cstring(path.as_os_str())?,
            argv: argv.iter().map(|a| cstring(a)).collect::<io::Result<_>>()?,
            envp,
        })
    }

    /// Replaces the process image (same pid, same children, descriptors without FD_CLOEXEC
    /// kept). Returns only when execve(2) failed, with its error.
    pub fn exec(&self) -> io::Error {
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // path is NUL-terminated; argv and envp are NULL-terminated arrays of pointers into
        // CStrings owned by `self`, alive for the call.
        match syscall!(execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr())) {
            Err(e) => e,
            Ok(_) => io::Error::other("execve returned"),
        }
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

/// Runs `hook` when the process calls exit(3) (a `main` that returns included; not `_exit`,
/// not a signal). The new image registers its rollback here until it serves.
pub fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `hook` is a plain `extern "C" fn()` that lives for the whole program.
    if unsafe { libc::atexit(hook) } != 0 {
        return Err(io::Error::other("atexit failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn cloexec_is_cleared_and_set_again() {
        let f = File::open("/proc/self/exe").unwrap();
        let fd = f.as_raw_fd();
        set_cloexec(fd, false).unwrap();
        assert_eq!(
            syscall!(fcntl(fd, libc::F_GETFD)).unwrap() & libc::FD_CLOEXEC,
            0
        );
        set_cloexec(fd, true).unwrap();
        assert_ne!(
            syscall!(fcntl(fd, libc::F_GETFD)).unwrap() & libc::FD_CLOEXEC,
            0
        );
    }

    #[test]
    fn an_anonymous_file_is_read_back_from_offset_zero_twice() {
        use std::io::Write;
        let mut f = anonymous_file(c"uwgate-test", c"/tmp").unwrap();
        f.write_all(b"hello record").unwrap();
        let a = read_inherited(f.as_raw_fd(), 100).unwrap();
        let b = read_inherited(f.as_raw_fd(), 100).unwrap();
        assert_eq!(a, b"hello record");
        assert_eq!(a, b);
        assert!(read_inherited(f.as_raw_fd(), 5).is_err(), "longer than max");
    }

    #[test]
    fn the_monotonic_clock_moves_with_instant() {
        let (t0, m0) = (std::time::Instant::now(), monotonic_ns());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t1, m1) = (std::time::Instant::now(), monotonic_ns());
        let di = t1.duration_since(t0).as_nanos() as i128;
        let dm = i128::from(m1) - i128::from(m0);
        assert!((di - dm).abs() < 5_000_000, "{di} vs {dm}");
    }

    #[test]
    fn a_listening_socket_is_told_from_a_pipe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(is_listening(l.as_raw_fd()));
        assert_eq!(file_type(l.as_raw_fd()).unwrap(), libc::S_IFSOCK);
        let (r, _w) = super::super::process::output_pipe().unwrap();
        assert!(!is_listening(r.as_raw_fd()));
        assert_eq!(file_type(r.as_raw_fd()).unwrap(), libc::S_IFIFO);
    }
}
