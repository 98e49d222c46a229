//! In-place upgrade, the running image's side (`uwgate -s upgrade`, SIGUSR2; the control
//! socket's `upgrade`): check the new binary, drain, hand everything over, exec — in the same
//! process, so the pid, the children and the listening sockets (the control socket's too)
//! stay. And the new image's first step after `Gate::new`: adopting the program table
//! (`Gate::adopt`). Each image keeps how the last upgrade it knows of ended ([`Outcome`]),
//! which the control socket's `/version` reports and `uwgate ctl upgrade` waits for.
//!
//! The steps, each logged:
//! 1. Refused at once (logged, nothing changes) while stopping or upgrading, while a reload is
//!    still stopping programs, when the file's programs differ from the running ones (a reload
//!    must come first: adoption matches by name and settings), or when the binary is missing or
//!    not executable.
//! 2. `BINARY -t -c FILE` runs as a child with `UWGATE_HANDOFF_CHECK=1` (fork returns at once;
//!    its exit comes as SIGCHLD, its exec report and output through pipes read then), bounded by
//!    `CHECK_TIMEOUT` (then SIGKILL). Refused unless it exec'd, exited 0 and named the handoff
//!    format this build writes.
//! 3. Drain, as for a stop but without stopping a program: the listeners leave the epoll set and
//!    stay open (new connections wait in their accept queue), idle keep-alive connections
//!    close, in-flight responses finish with `Connection: close`, up to `shutdown_timeout`.
//!    A connection accepted just before, whose first request is on its way, gets `FRESH_GRACE`
//!    to send it and is answered: it is not closed unanswered as a stop would.
//! 4. Once no connection is left: the handoff record (`handoff::record`) into an anonymous file,
//!    FD_CLOEXEC cleared on it, on `/proc/self/exe` (the previous binary, for a rollback), the
//!    listeners, the control socket's listener, the output pipes and pending exec reports;
//!    the control sessions are closed (they cannot cross: one without its answer gets a 503);
//!    execve. Should execve fail, the flags are set again and serving resumes. systemd hears `RELOADING=1` at step 2 and
//!    `READY=1` from whichever image serves afterwards.
//!
//! Never blocks the loop: the check is a watched child, the drain is the loop's own work. Owns
//! the upgrade's phases; the record format is `handoff`'s, the table `watchdog::handoff`'s.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::{Gate, LISTENER_BASE};
use crate::config;
use crate::control;
use crate::handoff::{self, record::Clock, record::Record};
use crate::sys;
use crate::sys::process::{self as process, ExecOutcome, ExecReport, SpawnError};

/// Bound on the new binary's `-t` run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the drain waits for the first request of a connection accepted just before it
/// began (its client is about to send it): served, not closed unanswered. Idle keep-alive
/// connections close at once, as at a stop (their clients retry, as HTTP lets them).
const FRESH_GRACE: Duration = Duration::from_millis(500);

/// Most bytes of the check's output kept for the log.
const CHECK_OUTPUT_MAX: usize = 4096;

/// `uwgate ctl upgrade` waits this long for the outcome, plus `shutdown_timeout` (the drain):
/// room for the check (`CHECK_TIMEOUT`), the new image's start (`handoff::READY_BOUND`) and a
/// rollback's.
const OUTCOME_MARGIN: Duration = Duration::from_secs(60);

/// How the last upgrade an image knows of ended, as `/version` reports it: by the new image
/// once it serves (`from 0.1.0 in 35 ms, 2 process(es) kept`), by a rolled-back one (`to 0.2.0
/// failed (why); rolled back to 0.1.0`), or by the running image when it ended without an
/// exec (`refused: why`, an exec that failed, a stop). A refusal at once is not one: it is
/// answered (and logged) where it was asked.
pub(super) struct Outcome {
    ok: bool,
    text: String,
}

/// The control socket's view of the upgrades: this image, whether one is under way, the last.
pub(super) fn view<'a>(
    image: u64,
    upgrade: &Option<Upgrade>,
    last: &'a Option<Outcome>,
) -> control::UpgradeView<'a> {
    control::UpgradeView {
        image,
        upgrading: upgrade.is_some(),
        last: last.as_ref().map(|o| (o.ok, o.text.as_str())),
    }
}

/// An upgrade under way.
pub(super) enum Upgrade {
    /// The new binary's `-t` runs as child `pid`.
    Checking {
        binary: PathBuf,
        pid: u32,
        report: ExecReport,
        output: OwnedFd,
        deadline: Instant,
    },
    /// In-flight requests finish; the exec follows once none is left. Until `grace_ends`,
    /// connections without a first request are left to send it.
    Draining {
        binary: PathBuf,
        since: Instant,
        grace_ends: Option<Instant>,
    },
}

impl Gate {
    /// Begins an in-place upgrade to the configured binary (`upgrade_binary`, else the one
    /// installed when uwgate started): SIGUSR2 (`uwgate -s upgrade`) and the control socket call
    /// this. `Ok`: the check runs, and the outcome is logged; `Err`: refused at once, with why
    /// (logged too). The running image keeps serving in both cases until the drain.
    #[cold]
    #[inline(never)]
    pub fn upgrade(&mut self) -> Result<(), String> {
        let started = self.start_upgrade();
        if let Err(why) = &started {
            log::error!("upgrade refused, {} keeps running: {why}", crate::VERSION);
        }
        started
    }

    /// How long `uwgate ctl upgrade` may wait for the outcome of one that began now.
    pub(super) fn upgrade_outcome_bound(&self) -> Duration {
        OUTCOME_MARGIN + self.cfg.global.shutdown_timeout
    }

    /// How the upgrade that led to this image ended (the new image, or a rolled-back one, once
    /// it serves: `main` says), for `/version`.
    pub fn note_upgrade(&mut self, ok: bool, text: String) {
        self.last_upgrade = Some(Outcome { ok, text });
    }

    fn start_upgrade(&mut self) -> Result<(), String> {
        if self.upgrade.is_some() {
            return Err("an upgrade is already in progress".into());
        }
        if self.stopping.is_some() {
            return Err("uwgate is stopping".into());
        }
        let binary = self
            .cfg
            .global
            .upgrade_binary
            .clone()
            .or_else(|| handoff::installed_binary().map(Path::to_path_buf))
            .ok_or("no binary to upgrade to (set upgrade_binary)")?;
        let live = config::load(&self.cfg.file)
            .map_err(|e| format!("the configuration does not load: {e}"))?;
        if let Some(why) = self.watchdog.handoff_blocker() {
            return Err(why);
        }
        if let Some(why) = self.watchdog.programs_differ(&live.programs) {
            return Err(format!(
                "{why} in {} since it was loaded: reload first (uwgate -s reload)",
                self.cfg.file.display()
            ));
        }
        check_binary(&binary)?;
        let (pid, report, output) = spawn_check(&binary, &self.cfg.file)?;
        log::info!(
            "upgrade: checking {} -t -c {} (pid {pid})",
            binary.display(),
            self.cfg.file.display()
        );
        self.notifier.reloading();
        self.upgrade = Some(Upgrade::Checking {
            binary,
            pid,
            report,
            output,
            deadline: self.now + CHECK_TIMEOUT,
        });
        Ok(())
    }

    /// After the watchdog reaped on SIGCHLD: the check's exit, if it was among them.
    pub(super) fn upgrade_on_sigchld(&mut self) {
        if let Some(Upgrade::Checking { pid, .. }) = &self.upgrade {
            let pid = *pid;
            self.check_finished(pid);
        }
    }

    /// The check `pid` may have exited: its verdict, then the drain or the refusal.
    #[cold]
    #[inline(never)]
    fn check_finished(&mut self, pid: u32) {
        let Some(status) = self.watchdog.take_other_exit(pid) else {
            return;
        };
        let Some(Upgrade::Checking {
            binary,
            mut report,
            output,
            ..
        }) = self.upgrade.take()
        else {
            return;
        };
        let text = read_output(output);
        let verdict = match report.finish() {
            ExecOutcome::Failed(SpawnError::Child(_, e)) => {
                Err(format!("cannot execute {}: {e}", binary.display()))
            }
            ExecOutcome::Failed(SpawnError::Parent(what, e)) => Err(format!("{what}: {e}")),
            _ if status != crate::watchdog::state::ExitStatus::Code(0) => Err(format!(
                "{} -t failed ({status}): {}",
                binary.display(),
                one_line(&text)
            )),
            _ if !handoff::check_passed(&text) => Err(format!(
                "{} cannot take over a running uwgate (its -t does not read handoff format {})",
                binary.display(),
                handoff::record::FORMAT
            )),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => self.begin_drain(binary),
            Err(why) => self.refuse_upgrade(&why),
        }
    }

    /// Once per loop turn: the check's time bound, and the drain's end (then the exec).
    #[cold]
    #[inline(never)]
    pub(super) fn upgrade_tick(&mut self) {
        match &self.upgrade {
            Some(Upgrade::Checking { pid, deadline, .. }) if self.now >= *deadline => {
                let pid = *pid;
                if let Err(e) = process::send_signal(pid, libc::SIGKILL, false) {
                    log::warn!("upgrade: kill({pid}): {e}");
                }
                self.upgrade = None;
                self.refuse_upgrade(&format!(
                    "the -t check (pid {pid}) did not finish within {} s; killed",
                    CHECK_TIMEOUT.as_secs()
                ));
            }
            Some(Upgrade::Draining { grace_ends, .. }) => {
                if grace_ends.is_some_and(|t| self.now >= t) {
                    if let Some(Upgrade::Draining { grace_ends, .. }) = &mut self.upgrade {
                        *grace_ends = None;
                    }
                    self.close_quiet(true);
                }
                if self.conns.is_empty() {
                    if let Some(Upgrade::Draining { binary, since, .. }) = self.upgrade.take() {
                        self.exec_new_image(&binary, since);
                    }
                }
            }
            _ => {}
        }
    }

    /// A quiet connection without a first request (before `Draining` exists).
    fn spared_by_upgrade_now(&self, i: usize) -> bool {
        self.conns
            .get(i)
            .is_some_and(|c| c.is_quiet() && c.requests() == 0)
    }

    /// Whether connection `i`, quiet during a drain, is left open: it has not sent its first
    /// request and the drain's grace for that has not ended.
    pub(super) fn spared_by_upgrade(&self, i: usize) -> bool {
        matches!(
            self.upgrade,
            Some(Upgrade::Draining {
                grace_ends: Some(_),
                ..
            })
        ) && self.conns.get(i).is_some_and(|c| c.requests() == 0)
    }

    /// When `upgrade_tick` has timed work next.
    pub(super) fn upgrade_deadline(&self) -> Option<Instant> {
        match self.upgrade {
            Some(Upgrade::Checking { deadline, .. }) => Some(deadline),
            Some(Upgrade::Draining { grace_ends, .. }) => grace_ends,
            None => None,
        }
    }

    /// A stop signal while upgrading: the upgrade is abandoned (a running check is killed) and
    /// the stop goes on as usual.
    #[cold]
    #[inline(never)]
    pub(super) fn cancel_upgrade(&mut self) {
        match self.upgrade.take() {
            Some(Upgrade::Checking { pid, .. }) => {
                let _ = process::send_signal(pid, libc::SIGKILL, false);
                log::warn!("upgrade abandoned: stopping");
            }
            Some(Upgrade::Draining { .. }) => log::warn!("upgrade abandoned: stopping"),
            None => return,
        }
        self.note_upgrade(false, "abandoned: uwgate is stopping".into());
    }

    fn refuse_upgrade(&mut self, why: &str) {
        log::error!("upgrade refused, {} keeps running: {why}", crate::VERSION);
        self.note_upgrade(false, format!("refused: {why}"));
        self.notifier.reloaded();
    }

    /// Step 3: serving stops taking new connections (they wait in the accept queue) and the
    /// connections drain, as at a stop; the programs are left alone.
    #[cold]
    #[inline(never)]
    fn begin_drain(&mut self, binary: PathBuf) {
        log::info!(
            "upgrade: {} passed -t; finishing {} connection(s) (up to {:?}), new ones wait in the accept queue",
            binary.display(),
            self.conns.len(),
            self.cfg.global.shutdown_timeout
        );
        self.stopping = Some(self.now + self.cfg.global.shutdown_timeout);
        self.set_draining(true);
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
        self.close_quiet(false);
        let fresh = self.conns.occupied().any(|i| self.spared_by_upgrade_now(i));
        self.upgrade = Some(Upgrade::Draining {
            binary,
            since: self.now,
            grace_ends: fresh.then(|| self.now + FRESH_GRACE),
        });
    }

    /// Step 4: the record, the flags, execve. Returns only when the exec failed (serving
    /// then resumes).
    #[cold]
    #[inline(never)]
    fn exec_new_image(&mut self, binary: &Path, drain_began: Instant) {
        let drained = self.now.saturating_duration_since(drain_began);
        let err = match self.prepare_handoff(binary) {
            Ok(handoff) => {
                let count = |kind: &str| {
                    let entries = handoff.record.programs.iter();
                    entries.filter(|e| e.kind == kind).count()
                };
                log::info!(
                    "upgrade: drained in {} ms; executing {} in place (pid {}; handing over {} listener(s){}, {} process(es), {} output pipe(s))",
                    drained.as_millis(),
                    binary.display(),
                    sys::getpid(),
                    handoff.record.listeners.len(),
                    if handoff.record.control.is_some() {
                        " and the control socket"
                    } else {
                        ""
                    },
                    count("proc"),
                    count("pipe")
                );
                // Sessions do not cross the exec; the control listener does.
                self.control.close_sessions(self.poll.registry());
                handoff.exec()
            }
            Err(e) => e,
        };
        log::error!(
            "upgrade to {} failed: {err}; {} keeps running",
            binary.display(),
            crate::VERSION
        );
        self.note_upgrade(
            false,
            format!(
                "to {} failed ({err}); {} keeps running",
                binary.display(),
                crate::VERSION
            ),
        );
        self.resume_serving();
    }

    /// The record in its anonymous file, the previous binary opened, the exec image built.
    fn prepare_handoff(&self, binary: &Path) -> Result<Handoff, String> {
        let clock = Clock::new(Instant::now(), sys::exec::monotonic_ns());
        let record = Record {
            from_version: crate::VERSION.to_string(),
            binary: handoff::installed_binary().unwrap_or(binary).to_path_buf(),
            written_ns: clock.mono_ns(),
            counters: [self.stats.accepts, self.stats.handled, self.stats.requests],
            listeners: self
                .listeners
                .iter()
                .map(|l| (l.sock.as_raw_fd(), l.addr))
                .collect(),
            control: self.control.handoff(),
            programs: self.watchdog.export(&clock),
        };
        let previous =
            File::open("/proc/self/exe").map_err(|e| format!("open /proc/self/exe: {e}"))?;
        let mut file = sys::exec::anonymous_file(c"uwgate-handoff", &self.temp_dir)
            .map_err(|e| format!("handoff file: {e}"))?;
        file.write_all(&record.encode())
            .map_err(|e| format!("handoff file: {e}"))?;
        let image = reexec(binary, file.as_raw_fd(), previous.as_raw_fd())
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        Ok(Handoff {
            record,
            file,
            previous,
            image,
        })
    }

    /// After a failed exec: the listeners are watched again and serving goes on.
    fn resume_serving(&mut self) {
        self.stopping = None;
        self.set_draining(false);
        for (i, l) in self.listeners.iter_mut().enumerate() {
            let token = Token(LISTENER_BASE + i);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut l.sock, token, Interest::READABLE)
            {
                log::error!("listener {}: epoll registration failed: {e}", l.addr);
            }
        }
        for li in 0..self.listeners.len() {
            self.accept_all(li);
        }
        self.notifier.reloaded();
    }

    /// The new image, after `Gate::new`: takes the program table and the counters over from
    /// the record (see `watchdog::handoff`); the loop then resumes the watchdog instead of
    /// starting it. `Err`: the caller rolls back.
    #[cold]
    #[inline(never)]
    pub fn adopt(&mut self, inherited: &handoff::Inherited) -> Result<usize, String> {
        let clock = Clock::new(std::time::Instant::now(), sys::exec::monotonic_ns());
        let record = &inherited.record;
        let adopted = self
            .watchdog
            .adopt(self.poll.registry(), &record.programs, &clock)?;
        let [accepts, handled, requests] = record.counters;
        self.stats.accepts = accepts;
        self.stats.handled = handled;
        self.stats.requests = requests;
        self.adopted = true;
        Ok(adopted)
    }
}

/// Everything the exec needs, made before it.
struct Handoff {
    record: Record,
    file: File,
    previous: File,
    image: sys::exec::Reexec,
}

impl Handoff {
    /// Clears FD_CLOEXEC on exactly what crosses, and execs. Returns only when that failed
    /// (the flags set again; the file and the previous binary close when `self` drops).
    fn exec(self) -> String {
        let mut fds = self.record.fds();
        fds.extend([self.file.as_raw_fd(), self.previous.as_raw_fd()]);
        let err = match set_cloexec_all(&fds, false) {
            Ok(()) => format!("execve: {}", self.image.exec()),
            Err(e) => format!("fcntl: {e}"),
        };
        let _ = set_cloexec_all(&fds, true);
        err
    }
}

/// Step 1's checks of the file: a regular file this process may execute.
fn check_binary(binary: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", binary.display()));
    }
    sys::exec::may_execute(binary)
        .map_err(|e| format!("{}: not executable ({e})", binary.display()))
}

/// Forks `BINARY -t -c FILE` with its output into a pipe: (pid, exec report, read end).
fn spawn_check(binary: &Path, file: &Path) -> Result<(u32, ExecReport, OwnedFd), String> {
    // Strings, as the watchdog's commands are (a path that is not UTF-8 is refused here).
    let text = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: not a UTF-8 path", p.display()))
    };
    let argv = vec![text(binary)?, "-t".into(), "-c".into(), text(file)?];
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != "NOTIFY_SOCKET" && k != handoff::ENV)
        .collect();
    env.push((handoff::CHECK_ENV.into(), "1".into()));
    let image = process::ExecImage::new(binary, &argv, &env, None)
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let (out_r, out_w) = process::output_pipe().map_err(|e| format!("pipe: {e}"))?;
    let setup = process::ChildSetup {
        image: &image,
        credentials: None,
        umask: None,
        stdout: out_w.as_fd(),
        stderr: out_w.as_fd(),
    };
    // The child's own failures come later, through the report; here only the parent's.
    let forked = process::spawn(&setup).map_err(|e| match e {
        SpawnError::Parent(what, e) => format!("{what}: {e}"),
        SpawnError::Child(step, e) => format!("{step:?}: {e}"),
    })?;
    Ok((forked.pid, forked.report, out_r))
}

/// What the check wrote (it has exited: the pipe holds all of it, up to the kept maximum).
fn read_output(fd: OwnedFd) -> String {
    let mut file = File::from(fd);
    let mut buf = vec![0u8; CHECK_OUTPUT_MAX];
    let mut len = 0;
    while let Some(room) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
        match file.read(room) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned()
}

/// Output lines joined for one log line (`a | b`), without the check's own format line.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(handoff::CHECK_LINE))
        .collect();
    if lines.is_empty() {
        "no output".into()
    } else {
        lines.join(" | ")
    }
}

/// The new image's exec: this process's argv and environment, with `UWGATE_HANDOFF` naming the
/// record and the previous binary.
fn reexec(binary: &Path, record: RawFd, previous: RawFd) -> std::io::Result<sys::exec::Reexec> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != handoff::ENV && k != handoff::FAILED_ENV)
        .collect();
    env.push((handoff::ENV.into(), format!("{record}:{previous}").into()));
    sys::exec::Reexec::new(binary, &argv, &env)
}

fn set_cloexec_all(fds: &[RawFd], on: bool) -> std::io::Result<()> {
    fds.iter()
        .try_for_each(|&fd| sys::exec::set_cloexec(fd, on))
}
