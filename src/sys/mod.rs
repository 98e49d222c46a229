//! The only home of `unsafe`: thin wrappers over the libc calls std and mio do not offer.
//!
//! Every call goes through `syscall!`, which maps -1 to `io::Error::last_os_error()`.
//! Each `unsafe` block carries a `// SAFETY:` line. Nothing here allocates on a hot path
//! or keeps state; callers own every descriptor.

/// Every libc call in uwgate goes through here. `syscall!(f(args))` maps the C convention (-1
/// and `errno`) to an `io::Result`; `syscall!(raw f(args))` is for a call without that
/// convention (one that cannot fail, returns a pointer, or never returns), whose result the
/// caller reads itself. Each call site says why its arguments are valid for `f`.
macro_rules! syscall {
    (raw $fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every call site passes arguments valid for this libc function, as the
        // comment there says; the function's own contract is the libc manual's.
        unsafe { libc::$fn($($arg),*) }
    }};
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: as in the `raw` arm: arguments valid for the function, said at the call site.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

#[cfg(feature = "count-alloc")]
pub mod alloc_count;
pub mod exec;
pub mod peer;
pub mod process;
pub mod stream;

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub mod stderr;

/// An `io::Error` for a log line, formatted as std does (`Connection refused (os error 111)`)
/// but without allocating: std's own `Display` builds a `String` for an OS error's text, which
/// would be an allocation per failed request. `strerror_r` writes into a stack buffer instead.
pub struct ErrorText<'a>(pub &'a io::Error);

impl std::fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(code) = self.0.raw_os_error() else {
            return self.0.fmt(f);
        };
        let mut buf = [0u8; 128];
        // `buf` is a live buffer of the length passed; the XSI strerror_r (musl's) fills it
        // with a NUL-terminated message and returns 0, or an error number.
        let rc = syscall!(raw strerror_r(code, buf.as_mut_ptr().cast(), buf.len()));
        let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
        match (rc, std::str::from_utf8(buf.get(..len).unwrap_or(&[]))) {
            (0, Ok(text)) if !text.is_empty() => write!(f, "{text} (os error {code})"),
            _ => write!(f, "os error {code}"),
        }
    }
}

/// True for the error a non-blocking call returns when it would have to wait.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// True for an interrupted call that should simply be retried.
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// The signals the event loop takes through its signalfd.
pub const LOOP_SIGNALS: [libc::c_int; 8] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
];

/// Blocks `signals` for the process and returns a non-blocking signalfd that reports them.
/// Called once at start-up, before any child is spawned (children reset their mask).
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    syscall!(sigemptyset(&mut set))?;
    for &sig in signals {
        syscall!(sigaddset(&mut set, sig))?;
    }
    // `set` is initialised; the old mask is not wanted.
    syscall!(sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
    let fd = syscall!(signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))?;
    // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal number from a signalfd; `Ok(None)` when none is pending.
pub fn read_signal(fd: RawFd) -> io::Result<Option<i32>> {
    // SAFETY: signalfd_siginfo is plain data, filled by read(2).
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        let res = syscall!(read(
            fd,
            &mut info as *mut libc::signalfd_siginfo as *mut libc::c_void,
            size
        ));
        match res {
            Ok(n) if n as usize == size => return Ok(Some(info.ssi_signo as i32)),
            Ok(_) => return Ok(None),
            Err(e) if interrupted(&e) => continue,
            Err(e) if would_block(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Sends up to `count` bytes of `file` from `*offset` to the socket `out`, advancing `*offset`.
pub fn sendfile(out: RawFd, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
    let mut off = *offset as libc::off_t;
    let n = syscall!(sendfile(out, file.as_raw_fd(), &mut off, count))?;
    *offset = off as u64;
    Ok(n as usize)
}

/// TCP_CORK on or off. Off pushes whatever the cork held.
pub fn set_cork(fd: RawFd, on: bool) -> io::Result<()> {
    let v: libc::c_int = on as libc::c_int;
    syscall!(setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_CORK,
        &v as *const libc::c_int as *const libc::c_void,
        std::mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
}

/// Two slices in one `sendmsg(2)` (MSG_NOSIGNAL): a response head and the body behind it.
pub fn send2(fd: RawFd, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        },
    ];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: both iovecs point into live slices of the stated lengths, which sendmsg only reads.
    let n = syscall!(sendmsg(fd, &msg, libc::MSG_NOSIGNAL))?;
    Ok(n as usize)
}

/// `send(2)` with flags (MSG_MORE when a sendfile body follows, MSG_NOSIGNAL always).
pub fn send(fd: RawFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let mut flags = libc::MSG_NOSIGNAL;
    if more {
        flags |= libc::MSG_MORE;
    }
    let n = syscall!(send(
        fd,
        buf.as_ptr() as *const libc::c_void,
        buf.len(),
        flags
    ))?;
    Ok(n as usize)
}

/// Raises RLIMIT_NOFILE's soft limit towards `need`: to `need` when the hard limit allows it
/// (or beyond the hard limit when privileged), else as far as the hard limit. Returns the soft
/// limit in force afterwards, which may be less than `need`: the caller scales down to it.
pub fn raise_nofile(need: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
    if lim.rlim_cur >= need {
        return Ok(lim.rlim_cur);
    }
    let want = libc::rlimit {
        rlim_cur: need,
        rlim_max: lim.rlim_max.max(need),
    };
    if syscall!(setrlimit(libc::RLIMIT_NOFILE, &want)).is_ok() {
        return Ok(need);
    }
    let soft = libc::rlimit {
        rlim_cur: need.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    match syscall!(setrlimit(libc::RLIMIT_NOFILE, &soft)) {
        Ok(_) => Ok(soft.rlim_cur),
        Err(_) => Ok(lim.rlim_cur),
    }
}

/// RLIMIT_NOFILE's soft limit now (0 if it cannot be read).
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    match syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim)) {
        Ok(_) => lim.rlim_cur,
        Err(_) => 0,
    }
}

/// Binds and listens on `addr` with SO_REUSEADDR (and IPV6_V6ONLY for v6), non-blocking.
pub fn listen_tcp(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = syscall!(socket(
        domain,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))?;
    // SAFETY: socket returned a fresh descriptor; OwnedFd closes it on every error path.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let one_ptr = &one as *const libc::c_int as *const libc::c_void;
    let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        one_ptr,
        int_len
    ))?;
    if addr.is_ipv6() {
        syscall!(setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            one_ptr,
            int_len
        ))?;
    }
    let (storage, len) = sockaddr_from(addr);
    syscall!(bind(
        fd,
        &storage as *const libc::sockaddr_storage as *const libc::sockaddr,
        len
    ))?;
    syscall!(listen(fd, backlog))?;
    Ok(std::net::TcpListener::from(owned))
}

fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data large enough for either family.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned.
            unsafe {
                std::ptr::write(
                    &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in,
                    sin,
                )
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned.
            unsafe {
                std::ptr::write(
                    &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6,
                    sin6,
                )
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Opens `path` read-only (O_CLOEXEC | O_NOCTTY; O_NOFOLLOW on the last component when
/// `nofollow`). `path` must be NUL-terminated.
pub fn open_read(path: &CStr, nofollow: bool) -> io::Result<File> {
    let mut flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    // openat(2) directly: musl's open() follows O_CLOEXEC with a redundant fcntl(F_SETFD)
    // for kernels older than 2.6.23, one system call per static request we don't need.
    // `path` is NUL-terminated; the flags need no mode argument.
    let fd = syscall!(syscall(
        libc::SYS_openat,
        libc::AT_FDCWD,
        path.as_ptr(),
        flags
    ))?;
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

/// Opens a directory for use as an `openat` base (O_PATH | O_DIRECTORY).
pub fn open_dir(path: &CStr) -> io::Result<OwnedFd> {
    let fd = syscall!(open(
        path.as_ptr(),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC
    ))?;
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// Opens `rel` (relative, NUL-terminated, no leading '/') beneath `dir` refusing every symlink
/// on the way: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) on kernels that have it (5.6+),
/// otherwise a walk that opens one component at a time with O_NOFOLLOW (CentOS 7's 3.10).
pub fn open_beneath_nofollow(dir: RawFd, rel: &[u8]) -> io::Result<File> {
    let mut path = [0u8; 4097];
    let Some(dst) = path
        .get_mut(..rel.len())
        .filter(|_| rel.len() < 4097 && !rel.contains(&0))
    else {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    dst.copy_from_slice(rel);
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    // `path` is NUL-terminated, `how` is a valid open_how of the size passed.
    let res = syscall!(syscall(
        libc::SYS_openat2,
        dir,
        path.as_ptr(),
        &how as *const OpenHow,
        std::mem::size_of::<OpenHow>(),
    ));
    match res {
        // SAFETY: openat2 returned a fresh descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { File::from_raw_fd(fd as RawFd) }),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            open_walk_nofollow(dir, &mut path, rel.len())
        }
        // RESOLVE_NO_SYMLINKS reports a symlink as ELOOP, as O_NOFOLLOW does.
        Err(e) => Err(e),
    }
}

/// Walks `path[..len]` component by component from `dir`; every intermediate is opened
/// O_PATH|O_NOFOLLOW|O_DIRECTORY, the last O_RDONLY|O_NOFOLLOW. `path` has a spare byte after
/// `len` for the terminating NUL.
fn open_walk_nofollow(dir: RawFd, path: &mut [u8], len: usize) -> io::Result<File> {
    let mut base: Option<OwnedFd> = None;
    let mut start = 0;
    while start < len {
        let end = path
            .get(start..len)
            .and_then(|rest| rest.iter().position(|&b| b == b'/'))
            .map_or(len, |p| start + p);
        if path.get(start..end) == Some(&b".."[..]) {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        let last = end == len;
        let Some(saved) = path.get(end).copied() else {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        };
        // The component is NUL-terminated in place for openat, then restored.
        if let Some(b) = path.get_mut(end) {
            *b = 0;
        }
        let at = base.as_ref().map_or(dir, |f| f.as_raw_fd());
        let flags = if last {
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW
        };
        let name = path.get(start..).unwrap_or(&[]);
        // `name` starts at the component and holds its NUL.
        let res = syscall!(openat(at, name.as_ptr() as *const libc::c_char, flags));
        if let Some(b) = path.get_mut(end) {
            *b = saved;
        }
        let fd = res?;
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if last {
            return Ok(File::from(owned));
        }
        base = Some(owned);
        start = end + 1;
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

/// Looks up a user's uid, primary gid and home by name (reads /etc/passwd through libc).
pub fn lookup_user(name: &str) -> io::Result<(u32, u32)> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name contains NUL"))?;
    // `cname` is NUL-terminated; getpwnam returns libc's static record or NULL.
    let pw = syscall!(raw getpwnam(cname.as_ptr()));
    if pw.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown user '{name}'"),
        ));
    }
    // SAFETY: pw is non-null and points at libc's passwd record.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Looks up a group's gid by name.
pub fn lookup_group(name: &str) -> io::Result<u32> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group name contains NUL"))?;
    // `cname` is NUL-terminated; getgrnam returns libc's static record or NULL.
    let gr = syscall!(raw getgrnam(cname.as_ptr()));
    if gr.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("unknown group '{name}'"),
        ));
    }
    // SAFETY: gr is non-null and points at libc's group record.
    Ok(unsafe { (*gr).gr_gid })
}

/// Drops root to `uid`/`gid` (supplementary groups cleared). Called once after binding.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    syscall!(setgroups(1, &gid))?;
    syscall!(setgid(gid))?;
    syscall!(setuid(uid))?;
    Ok(())
}

/// The effective uid (0 = root).
pub fn geteuid() -> u32 {
    // geteuid takes nothing and cannot fail.
    syscall!(raw geteuid())
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    syscall!(kill(pid, sig)).map(|_| ())
}

/// Opens an anonymous temporary file under `dir` (O_TMPFILE, or create+unlink where the
/// kernel or filesystem lacks it). Used to spool bodies larger than a buffer.
pub fn tmpfile(dir: &CStr) -> io::Result<File> {
    match syscall!(open(
        dir.as_ptr(),
        libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
        0o600 as libc::c_uint
    )) {
        // SAFETY: open returned a fresh descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { File::from_raw_fd(fd) }),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) =>
        {
            // DIR/uwgate.XXXXXX and its NUL, in a fixed buffer (no allocation per spool).
            let mut template = [0u8; 4096 + 16];
            let dir = dir.to_bytes();
            let suffix = b"/uwgate.XXXXXX\0";
            let total = dir.len() + suffix.len();
            let Some(name) = template.get_mut(..total) else {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            };
            let (head, tail) = name.split_at_mut(dir.len());
            head.copy_from_slice(dir);
            tail.copy_from_slice(suffix);
            // `template` is NUL-terminated and ends in XXXXXX, as mkostemp wants.
            let fd = syscall!(mkostemp(
                template.as_mut_ptr() as *mut libc::c_char,
                libc::O_CLOEXEC
            ))?;
            // mkostemp filled in the template, still NUL-terminated; a failed unlink only
            // leaves the file visible.
            let _ = syscall!(unlink(template.as_ptr() as *const libc::c_char));
            // SAFETY: mkostemp returned a fresh descriptor that nothing else owns.
            Ok(unsafe { File::from_raw_fd(fd) })
        }
        Err(e) => Err(e),
    }
}

/// The current process id.
pub fn getpid() -> u32 {
    std::process::id()
}

/// Detaches from the terminal: fork (the parent exits 0), setsid, stdio onto /dev/null.
/// Called once at start-up, after binding, before any child or the loop exists.
pub fn daemonize() -> io::Result<()> {
    let pid = syscall!(fork())?;
    if pid > 0 {
        // _exit ends the parent without running destructors shared with the child.
        syscall!(raw _exit(0));
    }
    syscall!(setsid())?;
    let fd = syscall!(open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC))?;
    for target in 0..3 {
        syscall!(dup2(fd, target))?;
    }
    if fd > 2 {
        syscall!(close(fd))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_std_writes_them() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(ErrorText(&e).to_string(), e.to_string());
        let other = io::Error::other("spool lost");
        assert_eq!(ErrorText(&other).to_string(), "spool lost");
    }
}
