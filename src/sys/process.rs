//! Child processes at the syscall level: fork/exec with a clean child, waitpid, kill, pipes, users.
//!
//! Owns every `unsafe` the watchdog needs. The child side of `spawn` runs between fork and execve
//! and must never allocate, lock, panic or return: everything it touches (paths, argv, envp,
//! credentials, descriptors) is built by the parent before fork, and any failure is reported to
//! the parent through a close-on-exec pipe as `(step, errno)` followed by `_exit(127)`. The
//! parent never waits for that report: `spawn` returns after fork and the loop watches the pipe
//! (`ExecReport`).
//! This module never decides policy (which program, when, which signal): the watchdog does.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How a child ended, decoded from a `waitpid` status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by `signal`.
    Signaled {
        /// The signal number.
        signal: i32,
        /// The kernel wrote a core file.
        core_dumped: bool,
    },
}

/// The step of the child set-up that failed, reported through the error pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStep {
    /// `setsid`.
    Setsid,
    /// `dup2` of /dev/null and the output pipes onto 0, 1, 2.
    Dup2,
    /// `setgroups`.
    Setgroups,
    /// `setgid`.
    Setgid,
    /// `setuid`.
    Setuid,
    /// `prctl(PR_SET_PDEATHSIG)`.
    Pdeathsig,
    /// `chdir`.
    Chdir,
    /// Closing the inherited descriptors.
    CloseFds,
    /// `execve`.
    Exec,
    /// The parent died before the child could exec.
    ParentGone,
}

impl ChildStep {
    fn code(self) -> u32 {
        match self {
            ChildStep::Setsid => 0,
            ChildStep::Dup2 => 1,
            ChildStep::Setgroups => 2,
            ChildStep::Setgid => 3,
            ChildStep::Setuid => 4,
            ChildStep::Pdeathsig => 5,
            ChildStep::Chdir => 6,
            ChildStep::CloseFds => 7,
            ChildStep::Exec => 8,
            ChildStep::ParentGone => 9,
        }
    }
    fn from_code(code: u32) -> ChildStep {
        match code {
            0 => ChildStep::Setsid,
            1 => ChildStep::Dup2,
            2 => ChildStep::Setgroups,
            3 => ChildStep::Setgid,
            4 => ChildStep::Setuid,
            5 => ChildStep::Pdeathsig,
            6 => ChildStep::Chdir,
            7 => ChildStep::CloseFds,
            9 => ChildStep::ParentGone,
            _ => ChildStep::Exec,
        }
    }
}

/// Why `spawn` failed.
#[derive(Debug)]
pub enum SpawnError {
    /// A call in the parent failed (pipe, open /dev/null, fork).
    Parent(&'static str, io::Error),
    /// The child reported that `step` failed with this error, then exited.
    Child(ChildStep, io::Error),
}

/// User and groups a child switches to before exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Target uid.
    pub uid: u32,
    /// Primary gid (from the passwd entry).
    pub gid: u32,
    /// Supplementary groups (from the group database), including `gid`.
    pub groups: Vec<u32>,
}

/// A command ready for execve: the C strings and the NULL-terminated pointer arrays that point
/// into them, built before fork so that the child allocates nothing.
pub struct ExecImage {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    dir: Option<CString>,
}

impl ExecImage {
    /// Builds the image for `path` with `argv` and the environment `env` (`KEY`, `VALUE` pairs),
    /// to run in `dir`. Fails with `InvalidInput` when a string holds a NUL byte.
    pub fn new<A, K, V>(
        path: &Path,
        argv: &[A],
        env: &[(K, V)],
        dir: Option<&Path>,
    ) -> io::Result<ExecImage>
    where
        A: AsRef<OsStr>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let path = cstring(path.as_os_str().as_bytes())?;
        let mut argv_c = Vec::with_capacity(argv.len());
        for a in argv {
            argv_c.push(cstring(a.as_ref().as_bytes())?);
        }
        let mut envp_c = Vec::with_capacity(env.len());
        for (k, v) in env {
            let (k, v) = (k.as_ref().as_bytes(), v.as_ref().as_bytes());
            let mut kv = Vec::with_capacity(k.len().saturating_add(v.len()).saturating_add(1));
            kv.extend_from_slice(k);
            kv.push(b'=');
            kv.extend_from_slice(v);
            envp_c.push(cstring(&kv)?);
        }
        let dir = match dir {
            Some(d) => Some(cstring(d.as_os_str().as_bytes())?),
            None => None,
        };
        // The pointers stay valid when the Vecs move: they point at each CString's own heap block.
        let argv_ptrs = argv_c
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp_ptrs = envp_c
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(ExecImage {
            path,
            _argv: argv_c,
            argv_ptrs,
            _envp: envp_c,
            envp_ptrs,
            dir,
        })
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

/// What a child gets besides its image: identity, umask and where its output goes.
pub struct ChildSetup<'a> {
    /// The command to exec.
    pub image: &'a ExecImage,
    /// Switch to this user before exec (`None`: stay who we are).
    pub credentials: Option<&'a Credentials>,
    /// `umask` for the child (`None`: inherit).
    pub umask: Option<u32>,
    /// Write end for the child's fd 1.
    pub stdout: BorrowedFd<'a>,
    /// Write end for the child's fd 2 (the same as `stdout` for redirect_stderr).
    pub stderr: BorrowedFd<'a>,
}

/// A forked child whose exec is not confirmed yet.
pub struct Forked {
    /// The child (it leads its own session and process group once it runs).
    pub pid: u32,
    /// Its exec report, for the event loop to watch.
    pub report: ExecReport,
}

/// Forks a child that execs the image: own session (setsid), SIGKILL when uwgate dies, empty
/// signal mask and default dispositions, stdin from /dev/null, stdout/stderr onto the given
/// pipes, every other descriptor closed first, then credentials, chdir, umask, execve.
/// Returns at once after fork, without waiting for anything the child does: whether it exec'd
/// comes later through the returned [`ExecReport`] (the loop watches it). Fails only when a
/// call in the parent fails (open /dev/null, pipe, fork).
/// Called by the watchdog on the event-loop thread. Between fork and exec the child only makes
/// syscalls on memory prepared here, so it is sound even when the parent has other threads
/// (the test harness does).
pub fn spawn(setup: &ChildSetup<'_>) -> Result<Forked, SpawnError> {
    // Everything the child touches is prepared here, before fork.
    let devnull = open_devnull().map_err(|e| SpawnError::Parent("open /dev/null", e))?;
    let (err_read, err_write) = pipe_pair().map_err(|e| SpawnError::Parent("pipe", e))?;
    set_nonblocking(&err_read).map_err(|e| SpawnError::Parent("pipe", e))?;
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let nsig = libc::SIGRTMAX();
    let groups: &[u32] = setup.credentials.map_or(&[], |c| &c.groups);
    let max_fd = max_open_fds();

    let pid = syscall!(fork()).map_err(|e| SpawnError::Parent("fork", e))?;
    if pid == 0 {
        // In the child: no allocation, no panic, no return.
        let plan = ChildPlan {
            setup,
            devnull: devnull.as_raw_fd(),
            err: err_write.as_raw_fd(),
            parent,
            nsig,
            groups,
            max_fd,
        };
        child_exec(&plan);
    }
    // The write end now lives in the child only (closed before any later fork can copy it):
    // the report pipe reaches EOF exactly when the child has exec'd or exited.
    drop(err_write);
    drop(devnull);
    Ok(Forked {
        pid: u32::try_from(pid).unwrap_or(0),
        report: ExecReport {
            fd: err_read,
            buf: [0; 8],
            got: 0,
        },
    })
}

/// The read end of a child's close-on-exec report pipe (non-blocking). The child writes
/// `(step, errno)` (8 bytes, one atomic pipe write) when a set-up step or execve fails, then
/// exits 127; EOF without a report means execve succeeded (or the child was killed before).
pub struct ExecReport {
    fd: OwnedFd,
    buf: [u8; 8],
    got: usize,
}

/// What an exec report says so far.
#[derive(Debug)]
pub enum ExecOutcome {
    /// Nothing conclusive yet: the child is still between fork and exec.
    Pending,
    /// EOF without a report: the child exec'd (or died before it could report).
    Execd,
    /// The child reported the step that failed; it exits 127 right after.
    Failed(SpawnError),
}

impl ExecReport {
    /// Reads what has arrived, without blocking. Called when the loop reports the pipe
    /// readable; a spurious call returns `Pending`.
    pub fn read(&mut self) -> ExecOutcome {
        while let Some(rest) = self.buf.get_mut(self.got..).filter(|r| !r.is_empty()) {
            // `rest` is a live buffer of `rest.len()` bytes owned by `self`.
            match syscall!(read(
                self.fd.as_raw_fd(),
                rest.as_mut_ptr().cast(),
                rest.len()
            )) {
                Ok(0) => return ExecOutcome::Execd,
                Ok(n) => self.got = self.got.saturating_add(usize::try_from(n).unwrap_or(0)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ExecOutcome::Pending,
                // An unreadable report: count the child as exec'd; its exit tells the rest.
                Err(_) => return ExecOutcome::Execd,
            }
        }
        let [s0, s1, s2, s3, e0, e1, e2, e3] = self.buf;
        let step = ChildStep::from_code(u32::from_le_bytes([s0, s1, s2, s3]));
        let errno = i32::from_le_bytes([e0, e1, e2, e3]);
        ExecOutcome::Failed(SpawnError::Child(step, io::Error::from_raw_os_error(errno)))
    }

    /// What has arrived of the report so far (an in-place upgrade hands it over with the pipe).
    pub fn received(&self) -> &[u8] {
        self.buf.get(..self.got).unwrap_or_default()
    }

    /// A report pipe inherited across an in-place upgrade (`fd`, non-blocking as `spawn` made
    /// it), with the bytes that had arrived of it (at most 8; more are ignored).
    pub fn adopt(fd: OwnedFd, received: &[u8]) -> ExecReport {
        let mut buf = [0u8; 8];
        let got = received.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..got), received.get(..got)) {
            dst.copy_from_slice(src);
        }
        ExecReport { fd, buf, got }
    }

    /// The child has been reaped: the report is complete (its only writer is gone). Whatever
    /// has not arrived counts as exec'd.
    pub fn finish(&mut self) -> ExecOutcome {
        match self.read() {
            ExecOutcome::Pending => ExecOutcome::Execd,
            outcome => outcome,
        }
    }
}

impl AsRawFd for ExecReport {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

struct ChildPlan<'a> {
    setup: &'a ChildSetup<'a>,
    devnull: RawFd,
    err: RawFd,
    parent: libc::pid_t,
    nsig: libc::c_int,
    groups: &'a [u32],
    max_fd: libc::c_int,
}

/// Reports `step` and the current errno on the error pipe, then exits 127.
fn child_fail(err: RawFd, step: ChildStep) -> ! {
    // __errno_location returns this thread's errno slot, always valid to read.
    let slot = syscall!(raw __errno_location());
    // SAFETY: `slot` is libc's thread-local errno, a valid `c_int`.
    let errno = unsafe { *slot };
    let s = step.code().to_le_bytes();
    let e = errno.to_le_bytes();
    let report = [s[0], s[1], s[2], s[3], e[0], e[1], e[2], e[3]];
    // `report` is a live 8-byte stack buffer; a short or failed write only loses the report
    // (the parent then sees EOF, and the exit status 127 when it reaps the child).
    let _ = syscall!(write(err, report.as_ptr().cast(), report.len()));
    // _exit never returns and runs no atexit handlers or destructors of the parent.
    syscall!(raw _exit(127))
}

/// The child between fork and exec. Only async-signal-safe syscalls on memory prepared before fork.
fn child_exec(plan: &ChildPlan<'_>) -> ! {
    let fail = |step: ChildStep| -> ! { child_fail(plan.err, step) };
    let setup = plan.setup;

    // 1. stdin from /dev/null, stdout/stderr onto the pipes (all ≥ 3, so dup2 never aliases and
    //    always clears close-on-exec on the target); then close every other inherited
    //    descriptor above 2 except the error pipe (close-on-exec itself). First, before any
    //    step that can block (chdir on a hung mount): the parent does not wait for the exec,
    //    and until this point the child holds a copy of every socket uwgate has open.
    // The three source descriptors are open in the child (inherited from the parent).
    let dup_failed = syscall!(dup2(plan.devnull, 0)).is_err()
        || syscall!(dup2(setup.stdout.as_raw_fd(), 1)).is_err()
        || syscall!(dup2(setup.stderr.as_raw_fd(), 2)).is_err();
    if dup_failed {
        fail(ChildStep::Dup2);
    }

    close_from_3_except(plan.err, plan.max_fd);

    // 2. Own session and process group, so killpg(pid) reaches the whole tree and the terminal's
    //    signals (Ctrl-C in a foreground uwgate) do not.
    // setsid takes no arguments.
    if syscall!(setsid()).is_err() {
        fail(ChildStep::Setsid);
    }

    // 3. Default dispositions for every signal, then an empty mask.
    reset_signals(plan.nsig);

    // 4. Credentials: groups, then gid, then uid (after setuid we could no longer change groups).
    if let Some(c) = setup.credentials {
        if let Err(step) = switch_user(c, plan.groups) {
            fail(step);
        }
    }

    // 5. Die with uwgate. Set after the credential change, which clears the parent-death signal;
    //    then check the parent is still ours (it may have died before prctl).
    if let Err(step) = die_with_parent(plan.parent) {
        fail(step);
    }

    // 6. Working directory (as the target user, like supervisor) and umask.
    if let Some(dir) = &setup.image.dir {
        // `dir` is a NUL-terminated string built before fork.
        if syscall!(chdir(dir.as_ptr())).is_err() {
            fail(ChildStep::Chdir);
        }
    }
    if let Some(mask) = setup.umask {
        // A plain integer argument; umask cannot fail.
        syscall!(raw umask(mask as libc::mode_t));
    }

    // 7. Exec.
    // path, argv and envp are NUL-terminated strings and NULL-terminated pointer arrays built
    // before fork and still alive (the parent's memory is copied into the child).
    let _ = syscall!(execve(
        setup.image.path.as_ptr(),
        setup.image.argv_ptrs.as_ptr(),
        setup.image.envp_ptrs.as_ptr(),
    ));
    fail(ChildStep::Exec)
}

/// Default dispositions for signals 1..=`nsig`, then an empty mask: uwgate blocks SIGCHLD,
/// SIGTERM, SIGHUP… for its signalfd and Rust ignores SIGPIPE; both would survive execve
/// otherwise. The raw rt_sigaction syscall, because glibc's wrapper refuses its reserved signals
/// 32 and 33, which an ignoring parent would otherwise pass on. An all-zero kernel sigaction is
/// "SIG_DFL, no flags, empty mask" on every architecture; 64 bytes cover the largest.
/// Async-signal-safe (the child calls it between fork and exec).
fn reset_signals(nsig: libc::c_int) {
    let dfl = [0u64; 8];
    let sigsetsize = usize::try_from(nsig).unwrap_or(64).saturating_add(1) / 8;
    let mut sig: libc::c_int = 1;
    while sig <= nsig {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // `dfl` is a live zeroed buffer at least as large as the kernel's sigaction; the
            // old-action pointer is NULL; an error (EINVAL) leaves the disposition as is.
            let _ = syscall!(syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                sigsetsize,
            ));
        }
        sig += 1;
    }
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // `empty` is a live sigset_t; sigprocmask only reads it.
    let _ = syscall!(sigemptyset(&mut empty));
    let _ = syscall!(sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()));
}

/// PR_SET_PDEATHSIG = SIGKILL, then a check that the parent is still `parent` (it may have
/// died before prctl). Async-signal-safe.
fn die_with_parent(parent: libc::pid_t) -> Result<(), ChildStep> {
    // PR_SET_PDEATHSIG takes a signal number; the unused arguments are ignored.
    let pdeath = syscall!(prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
    ));
    if pdeath.is_err() {
        return Err(ChildStep::Pdeathsig);
    }
    // getppid takes no arguments and cannot fail.
    if syscall!(raw getppid()) != parent {
        return Err(ChildStep::ParentGone);
    }
    Ok(())
}

/// setgroups, setgid, setuid to `c` (in that order: after setuid groups could not change);
/// the failed step on error. Async-signal-safe.
fn switch_user(c: &Credentials, groups: &[u32]) -> Result<(), ChildStep> {
    // `groups` points at `groups.len()` gid_t values owned by the parent's Vec.
    if syscall!(setgroups(groups.len(), groups.as_ptr())).is_err() {
        return Err(ChildStep::Setgroups);
    }
    // A plain integer argument.
    if syscall!(setgid(c.gid)).is_err() {
        return Err(ChildStep::Setgid);
    }
    // A plain integer argument.
    if syscall!(setuid(c.uid)).is_err() {
        return Err(ChildStep::Setuid);
    }
    Ok(())
}

/// Closes fds 3.. except `keep`: close_range(2) where the kernel has it (5.9+), else a loop to
/// the descriptor limit. Async-signal-safe.
fn close_from_3_except(keep: RawFd, max_fd: libc::c_int) {
    let close_range = |first: libc::c_int, last: libc::c_uint| -> bool {
        // close_range takes plain integers; it only closes descriptors.
        syscall!(syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last,
            0 as libc::c_uint,
        ))
        .is_ok()
    };
    let below_ok = keep <= 3 || close_range(3, (keep - 1) as libc::c_uint);
    if below_ok && close_range(keep.saturating_add(1), libc::c_uint::MAX) {
        return;
    }
    let mut fd = 3;
    while fd < max_fd {
        if fd != keep {
            // Closing a descriptor number that may or may not be open; EBADF is ignored.
            let _ = syscall!(close(fd));
        }
        fd += 1;
    }
}

fn max_open_fds() -> libc::c_int {
    // SAFETY: a zeroed rlimit is a valid out-parameter.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    if syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut rl)).is_err() {
        return 65_536;
    }
    // Cap the fallback loop: an "unlimited" limit would mean billions of close calls.
    libc::c_int::try_from(rl.rlim_cur.min(1 << 20)).unwrap_or(1 << 20)
}

fn open_devnull() -> io::Result<OwnedFd> {
    let fd = syscall!(open(
        c"/dev/null".as_ptr(),
        libc::O_RDONLY | libc::O_CLOEXEC
    ))?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    above_stdio(fd)
}

/// A close-on-exec pipe, both ends ≥ 3: (read end, write end), both blocking.
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    let [r, w] = fds;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// An output pipe for a child: (read end: non-blocking, for the event loop; write end: blocking,
/// for the child's 1/2). Both close-on-exec and ≥ 3, so they never collide with 0/1/2 in the
/// child even when uwgate was started with a closed stdio descriptor.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe_pair()?;
    set_nonblocking(&r)?;
    Ok((r, w))
}

/// Sets O_NONBLOCK on `fd` (for a pipe: on its open file description).
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
    syscall!(fcntl(
        fd.as_raw_fd(),
        libc::F_SETFL,
        flags | libc::O_NONBLOCK
    ))
    .map(|_| ())
}

/// Moves `fd` to a number ≥ 3 (close-on-exec) when it is 0, 1 or 2.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = syscall!(fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// One `waitpid(-1, WNOHANG)`: `Some((pid, status))` for a reaped child (or reparented
/// grandchild), `None` when no child has changed state or there are no children at all.
/// The watchdog calls it in a loop on SIGCHLD.
pub fn reap_one() -> Option<(u32, WaitStatus)> {
    let mut status: libc::c_int = 0;
    loop {
        match syscall!(waitpid(-1, &mut status, libc::WNOHANG)) {
            Ok(0) => return None,
            Ok(pid) => return Some((u32::try_from(pid).unwrap_or(0), decode_status(status))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None, // ECHILD
        }
    }
}

fn decode_status(status: libc::c_int) -> WaitStatus {
    if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    }
}

/// Whether this process has any child at all (running or zombie), without reaping one:
/// `waitid(P_ALL, WNOWAIT)` fails with ECHILD only when there is none.
pub fn has_children() -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        match syscall!(waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )) {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e.raw_os_error() != Some(libc::ECHILD),
        }
    }
}

/// Sends `signal` to `pid`, or to its process group (`kill(-pid)`) when `group`.
/// ESRCH (already gone) is not an error; pid 0, group 1 and pids beyond pid_t are refused.
pub fn send_signal(pid: u32, signal: i32, group: bool) -> io::Result<()> {
    let pid = match libc::pid_t::try_from(pid) {
        // kill(0) or kill(-1) would hit uwgate itself or everything: never (a group of 1
        // would be kill(-1)).
        Ok(pid) if pid > 1 || (pid == 1 && !group) => pid,
        _ => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
    };
    let target = if group { -pid } else { pid };
    match syscall!(kill(target, signal)) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether process group `pgid` has any member (zombies included): `kill(-pgid, 0)`.
/// EPERM means it exists but is not ours to signal; pid 0 and pids beyond pid_t are never groups.
pub fn group_exists(pgid: u32) -> bool {
    let pgid = match libc::pid_t::try_from(pgid) {
        Ok(pgid) if pgid > 1 => pgid,
        _ => return false,
    };
    match syscall!(kill(-pgid, 0)) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// Makes uwgate the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so a daemon
/// that double-forks stays visible to waitpid and to the shutdown sweep.
pub fn set_child_subreaper() -> io::Result<()> {
    syscall!(prctl(
        libc::PR_SET_CHILD_SUBREAPER,
        1 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
    ))
    .map(|_| ())
}

/// The effective uid of uwgate.
pub fn effective_uid() -> u32 {
    // geteuid takes no arguments and cannot fail.
    syscall!(raw geteuid())
}

/// Looks `user` up (a name, or a numeric uid) in the passwd and group databases.
/// `Ok(None)`: no such user. May block on NSS: call at start-up and reload only, never per event.
pub fn lookup_user(user: &str) -> io::Result<Option<Credentials>> {
    let name = cstring(user.as_bytes())?;
    let uid = user.parse::<u32>().ok();
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: a zeroed passwd is a valid out-parameter.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // pw, buf (with its true length) and result are valid for the call; `name` is
        // NUL-terminated. These return an errno, not -1.
        let rc = match uid {
            Some(uid) => syscall!(raw getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result
            )),
            None => syscall!(raw getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )),
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len().saturating_mul(2), 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() || pw.pw_name.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name points into `buf`, NUL-terminated, alive for this iteration.
        let pw_name = unsafe { CStr::from_ptr(pw.pw_name) }.to_owned();
        let groups = group_list(&pw_name, pw.pw_gid);
        return Ok(Some(Credentials {
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            groups,
        }));
    }
}

fn group_list(name: &CStr, gid: libc::gid_t) -> Vec<u32> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
        // `groups` has room for `n` entries; getgrouplist writes at most `n` and updates it.
        let rc = syscall!(raw getgrouplist(
            name.as_ptr(),
            gid,
            groups.as_mut_ptr(),
            &mut n
        ));
        let n = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(n);
            return groups;
        }
        if n <= groups.len() || n > 65_536 {
            // Refused without asking for more room: the primary group alone.
            return vec![gid];
        }
        groups.resize(n, 0);
    }
}

/// Children of the test process are shared by every test thread: tests that fork hold this lock,
/// so one test's `waitpid(-1)` never reaps another test's child.
#[cfg(test)]
pub(crate) fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    fn wait_for(pid: u32) -> WaitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((p, st)) = reap_one() {
                if p == pid {
                    return st;
                }
            }
            assert!(Instant::now() < deadline, "child {pid} never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls the exec report until it is conclusive; a failed child is reaped (exit 127).
    fn await_exec(mut forked: Forked) -> Result<u32, SpawnError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match forked.report.read() {
                ExecOutcome::Pending => {
                    assert!(Instant::now() < deadline, "no exec report");
                    std::thread::sleep(Duration::from_millis(1));
                }
                ExecOutcome::Execd => return Ok(forked.pid),
                ExecOutcome::Failed(e) => {
                    assert_eq!(wait_for(forked.pid), WaitStatus::Exited(127));
                    return Err(e);
                }
            }
        }
    }

    fn run(
        argv: &[&str],
        env: &[(&str, &str)],
        dir: Option<&Path>,
        umask: Option<u32>,
    ) -> (Result<u32, SpawnError>, Vec<u8>) {
        let image = ExecImage::new(Path::new(argv[0]), argv, env, dir).unwrap();
        let (r, w) = output_pipe().unwrap();
        let setup = ChildSetup {
            image: &image,
            credentials: None,
            umask,
            stdout: w.as_fd(),
            stderr: w.as_fd(),
        };
        let res = spawn(&setup).and_then(await_exec);
        drop(w);
        let mut out = Vec::new();
        let mut f = File::from(r);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut b = [0u8; 4096];
            match f.read(&mut b) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline);
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        }
        (res, out)
    }

    #[test]
    fn exit_status_is_decoded() {
        let _g = fork_lock();
        let (res, _) = run(&["/bin/sh", "-c", "exit 3"], &[], None, None);
        assert_eq!(wait_for(res.unwrap()), WaitStatus::Exited(3));
        let (res, _) = run(&["/bin/sh", "-c", "kill -9 $$"], &[], None, None);
        assert_eq!(
            wait_for(res.unwrap()),
            WaitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
    }

    #[test]
    fn child_gets_clean_environment_dir_umask_signals_and_stdio() {
        let _g = fork_lock();
        let script = "echo env=$FOO; pwd; umask; cat; ls /proc/self/fd | tr '\\n' ' '; echo; \
                      grep -E '^(SigBlk|SigIgn)' /proc/self/status; echo err >&2";
        let (res, out) = run(
            &["/bin/sh", "-c", script],
            &[("FOO", "bar baz"), ("PATH", "/usr/bin:/bin")],
            Some(Path::new("/tmp")),
            Some(0o027),
        );
        let pid = res.unwrap();
        assert_eq!(wait_for(pid), WaitStatus::Exited(0));
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "env=bar baz");
        assert_eq!(lines[1], "/tmp");
        assert_eq!(lines[2], "0027");
        // stdin was /dev/null (cat printed nothing); only 0, 1, 2 and ls's own directory fd.
        assert_eq!(lines[3].split_whitespace().count(), 4, "fds: {}", lines[3]);
        assert_eq!(lines[4], "SigBlk:\t0000000000000000");
        assert_eq!(lines[5], "SigIgn:\t0000000000000000");
        assert_eq!(lines[6], "err");
    }

    #[test]
    fn child_leads_its_own_session() {
        let _g = fork_lock();
        let (res, out) = run(
            &["/bin/sh", "-c", "cut -d' ' -f6 /proc/$$/stat; echo $$"],
            &[],
            None,
            None,
        );
        wait_for(res.unwrap());
        let out = String::from_utf8(out).unwrap();
        let v: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(v.len(), 2, "{out}");
        assert_eq!(v[0], v[1], "session id == pid: {out}");
    }

    #[test]
    fn exec_and_chdir_failures_are_reported_by_step_then_the_child_exits_127() {
        let _g = fork_lock();
        let (res, _) = run(&["/nonexistent/prog"], &[], None, None);
        match res {
            Err(SpawnError::Child(ChildStep::Exec, e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOENT))
            }
            other => panic!("{other:?}"),
        }
        let (res, _) = run(
            &["/bin/true"],
            &[],
            Some(Path::new("/nonexistent-dir")),
            None,
        );
        match res {
            Err(SpawnError::Child(ChildStep::Chdir, e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOENT))
            }
            other => panic!("{other:?}"),
        }
        assert!(!has_children(), "failed spawns leave no zombie");
    }

    #[test]
    fn report_read_after_the_child_was_reaped_is_conclusive() {
        let _g = fork_lock();
        let spawn_only = |argv: &[&str]| {
            let image = ExecImage::new(Path::new(argv[0]), argv, &[("A", "b")], None).unwrap();
            let (_r, w) = output_pipe().unwrap();
            let setup = ChildSetup {
                image: &image,
                credentials: None,
                umask: None,
                stdout: w.as_fd(),
                stderr: w.as_fd(),
            };
            spawn(&setup).unwrap()
        };
        // SIGCHLD may be handled before the pipe's readiness: the report is read after reaping.
        let mut ok = spawn_only(&["/bin/true"]);
        assert_eq!(wait_for(ok.pid), WaitStatus::Exited(0));
        assert!(matches!(ok.report.finish(), ExecOutcome::Execd));
        let mut bad = spawn_only(&["/nonexistent/prog"]);
        assert_eq!(wait_for(bad.pid), WaitStatus::Exited(127));
        match bad.report.finish() {
            ExecOutcome::Failed(SpawnError::Child(ChildStep::Exec, e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOENT))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nul_bytes_are_rejected_before_fork() {
        let no_env: &[(&str, &str)] = &[];
        assert!(ExecImage::new(Path::new("/bin/true"), &["a\0b"], no_env, None).is_err());
        assert!(ExecImage::new(Path::new("/bin/true"), &["a"], &[("K", "v\0")], None).is_err());
    }

    #[test]
    fn root_lookup_works_and_unknown_user_is_none() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(lookup_user("0").unwrap().unwrap().uid, 0);
        assert!(lookup_user("no-such-user-uwgate").unwrap().is_none());
    }

    #[test]
    fn group_exists_only_for_a_live_group() {
        // SAFETY: getpgrp takes no arguments and cannot fail.
        let own = u32::try_from(unsafe { libc::getpgrp() }).unwrap();
        assert!(own <= 1 || group_exists(own));
        assert!(!group_exists(0) && !group_exists(1) && !group_exists(u32::MAX));
        assert!(!group_exists(4_000_000));
    }

    #[test]
    fn signalling_pid_zero_is_refused_and_a_gone_pid_is_ignored() {
        assert!(send_signal(0, libc::SIGTERM, false).is_err());
        assert!(send_signal(1, 0, true).is_err(), "kill(-1) is everything");
        assert!(send_signal(u32::MAX, libc::SIGTERM, true).is_err());
        assert!(send_signal(4_000_000, libc::SIGTERM, false).is_ok());
    }
}
