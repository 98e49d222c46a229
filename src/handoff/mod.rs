//! In-place upgrade, the new image's side: what it inherits from the image that exec'd it in the
//! same process, how it gives it back when it cannot serve (rollback), and when it stops being
//! able to (commit).
//!
//! The old image (`gate::upgrade`) writes a [`record::Record`] into an anonymous file (memfd,
//! else an unlinked file under `temp_path`), opens its own running binary (`/proc/self/exe`),
//! clears FD_CLOEXEC on exactly those two, the listeners, the control socket's listener, the
//! children's output pipes and any pending exec report, and execs the new binary with `UWGATE_HANDOFF=RECORD_FD:PREVIOUS_FD`.
//! Same pid, so every supervised child stays a child; the listeners (the control socket's too)
//! never close, so new connections wait in their accept queue.
//!
//! The new image ([`Inherited::from_env`]) arms the rollback at once: until [`Inherited::commit`],
//! an error on the way to serving, a return from `main`, an `exit()` anywhere (an atexit hook) or
//! a panic (a panic hook) re-executes the previous binary through `/proc/self/fd/PREVIOUS_FD`
//! with the same record and `UWGATE_HANDOFF_FAILED=VERSION: why`, and that image adopts the same
//! state again and logs the failure. So that the record's descriptors are still there and still
//! the same for it, the new image works on close-on-exec duplicates and leaves the originals
//! alone until the commit, and reaps no child before it (a reaped status would be lost).
//! A rolled-back image has nothing to roll back to: it commits or exits.
//!
//! Owns the environment protocol, the rollback and the inherited originals. Never decides what
//! the record holds (gate, watchdog) and never serves: `main` and `gate` drive it.

pub mod record;

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::sys::exec as sys;
use record::Record;

/// `RECORD_FD:PREVIOUS_FD`, set by the old image for the new one.
pub const ENV: &str = "UWGATE_HANDOFF";
/// `VERSION: why`, set by a new image that rolls back, for the previous one to log.
pub const FAILED_ENV: &str = "UWGATE_HANDOFF_FAILED";
/// Set on the `-t` run of an upgrade check: `-t` then also prints [`CHECK_LINE`] and the
/// formats it reads, so that a binary that cannot adopt a running uwgate is refused.
pub const CHECK_ENV: &str = "UWGATE_HANDOFF_CHECK";
/// What `-t` prints under [`CHECK_ENV`], followed by the formats read (`1`, `1 2`).
pub const CHECK_LINE: &str = "uwgate: in-place upgrade: reads handoff formats";
/// A new image must serve within this long after the exec, or it rolls back.
pub const READY_BOUND: Duration = Duration::from_secs(10);

/// The installed binary: what `-s upgrade` executes without `upgrade_binary`.
static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
/// The previous image to roll back to, until the new one serves.
static ROLLBACK: OnceLock<Rollback> = OnceLock::new();
/// Set by `commit` (or by a rollback's one attempt): from then on no exit or panic rolls back.
static SETTLED: AtomicBool = AtomicBool::new(false);

/// Resolves this process's binary (`/proc/self/exe`) once, at a first start, before any
/// package can replace it, as the default upgrade target.
pub fn remember_own_binary() {
    if let Ok(path) = std::env::current_exe() {
        // Replaced already (a package update in the instant after the exec): the path it had.
        let text = path.as_os_str().as_encoded_bytes();
        let path = match text.strip_suffix(b" (deleted)") {
            Some(kept) => PathBuf::from(String::from_utf8_lossy(kept).into_owned()),
            None => path,
        };
        let _ = INSTALLED.set(path);
    }
}

/// The installed binary, as resolved at the first start (and handed on by every upgrade).
pub fn installed_binary() -> Option<&'static Path> {
    INSTALLED.get().map(PathBuf::as_path)
}

/// What a rollback needs: the previous binary and the environment value to hand on.
struct Rollback {
    previous_fd: RawFd,
    handoff: OsString,
}

/// What an upgraded (or rolled-back) image inherited.
pub struct Inherited {
    /// The record the old image wrote.
    pub record: Record,
    record_fd: RawFd,
    previous_fd: RawFd,
    /// `VERSION: why` when this image is the rollback of a failed upgrade.
    pub rolled_back_from: Option<String>,
    /// Listeners handed out so far (by index in the record).
    taken: Vec<bool>,
    /// The control socket was handed out (else `commit` removes its file: no longer used).
    control_taken: bool,
}

impl Inherited {
    /// Takes the handoff from the environment: `None` at a normal start. Removes the variables
    /// (children must not see them), arms the rollback (unless this image is one), then reads
    /// the record. `Err` says why it is unusable; `roll_back` follows.
    pub fn from_env() -> Option<Result<Inherited, String>> {
        let value = std::env::var_os(ENV)?;
        let failed = std::env::var_os(FAILED_ENV).map(|v| v.to_string_lossy().into_owned());
        std::env::remove_var(ENV);
        std::env::remove_var(FAILED_ENV);
        let (record_fd, previous_fd) = match parse_fds(&value.to_string_lossy()) {
            Some(fds) => fds,
            None => return Some(Err(format!("{ENV}={value:?}: not RECORD_FD:PREVIOUS_FD"))),
        };
        if failed.is_none() {
            arm(previous_fd, value);
        }
        let record = sys::read_inherited(record_fd, record::MAX_LEN)
            .map_err(|e| format!("handoff record (fd {record_fd}): {e}"))
            .and_then(|bytes| Record::decode(&bytes).map_err(|e| format!("handoff record: {e}")));
        Some(record.map(|record| {
            if failed.is_some() {
                name_after(&record.binary);
            }
            let _ = INSTALLED.set(record.binary.clone());
            Inherited {
                taken: vec![false; record.listeners.len()],
                record,
                record_fd,
                previous_fd,
                rolled_back_from: failed,
                control_taken: false,
            }
        }))
    }

    /// A close-on-exec duplicate of the inherited listener bound to `addr`, if there is one,
    /// checked to be a listening socket at that address.
    pub fn take_listener(&mut self, addr: SocketAddr) -> io::Result<Option<std::net::TcpListener>> {
        let found = self
            .record
            .listeners
            .iter()
            .zip(self.taken.iter_mut())
            .find(|((_, a), taken)| *a == addr && !**taken);
        let Some(((fd, _), taken)) = found else {
            return Ok(None);
        };
        let bad = |why: &str| io::Error::other(format!("inherited fd {fd} for {addr}: {why}"));
        if !sys::is_listening(*fd) {
            return Err(bad("not a listening socket"));
        }
        let sock = std::net::TcpListener::from(sys::dup_cloexec(*fd)?);
        if sock.local_addr()? != addr {
            return Err(bad("bound elsewhere"));
        }
        *taken = true;
        Ok(Some(sock))
    }

    /// Where the previous image's control socket is, when it handed one over.
    pub fn control_path(&self) -> Option<&Path> {
        self.record.control.as_ref().map(|(_, p)| p.as_path())
    }

    /// A close-on-exec duplicate of the inherited control socket listener when the record has
    /// one bound to `path` (the configuration's `control_socket`), checked to be a listening
    /// unix socket at that path. `None`: none, or at another path (or the socket is now off):
    /// the caller binds as at a start, and `commit` removes the old file unless it was taken
    /// after all.
    pub fn take_control(
        &mut self,
        path: Option<&Path>,
    ) -> io::Result<Option<std::os::unix::net::UnixListener>> {
        let Some((fd, inherited)) = &self.record.control else {
            return Ok(None);
        };
        if self.control_taken || path != Some(inherited.as_path()) {
            return Ok(None);
        }
        let fd = *fd;
        let bad = |why: &str| {
            io::Error::other(format!(
                "inherited fd {fd} for the control socket {}: {why}",
                inherited.display()
            ))
        };
        if !sys::is_listening(fd) {
            return Err(bad("not a listening socket"));
        }
        let sock = std::os::unix::net::UnixListener::from(sys::dup_cloexec(fd)?);
        let addr = sock
            .local_addr()
            .map_err(|e| bad(&format!("not a unix socket ({e})")))?;
        if addr.as_pathname() != Some(inherited.as_path()) {
            return Err(bad("bound elsewhere"));
        }
        self.control_taken = true;
        Ok(Some(sock))
    }

    /// Time since the old image wrote the record (the exec and this start-up).
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(sys::monotonic_ns().saturating_sub(self.record.written_ns))
    }

    /// The new image is about to serve: past [`READY_BOUND`] it refuses (`Err`, and the caller
    /// rolls back); else from now on nothing rolls back, and every inherited original (the
    /// record, the previous binary, listeners, pipes, reports) is closed — the image works on
    /// its duplicates. Listeners the configuration no longer has close here too, and an
    /// inherited control socket it no longer has (moved or off) is removed.
    pub fn commit(&self) -> Result<(), String> {
        let took = self.elapsed();
        if took > READY_BOUND {
            return Err(format!(
                "not ready {} ms after the exec (the bound is {} s)",
                took.as_millis(),
                READY_BOUND.as_secs()
            ));
        }
        SETTLED.store(true, Ordering::SeqCst);
        for fd in self.record.fds() {
            sys::close(fd);
        }
        sys::close(self.record_fd);
        sys::close(self.previous_fd);
        if let Some((_, path)) = self.record.control.as_ref().filter(|_| !self.control_taken) {
            remove_old_control_socket(path);
        }
        Ok(())
    }
}

/// The control socket the previous image served at `path` is no longer this one's: its file
/// goes (only a socket file; a failure is logged, the process may lack the right by now).
fn remove_old_control_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => log::info!(
            "control socket {} (no longer configured) removed",
            path.display()
        ),
        Err(e) => log::warn!(
            "control socket {} (no longer configured): cannot remove it: {e}",
            path.display()
        ),
    }
}

/// A rollback was exec'd through `/proc/self/fd/N`, which named the process `N`: it takes the
/// installed binary's name again (`ps`, `pidof` and the init script read it).
fn name_after(binary: &Path) {
    let name = binary
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_else(|| b"uwgate".to_vec());
    if let Ok(name) = std::ffi::CString::new(name) {
        sys::set_process_name(&name);
    }
}

fn parse_fds(value: &str) -> Option<(RawFd, RawFd)> {
    let (a, b) = value.split_once(':')?;
    let (a, b): (RawFd, RawFd) = (a.parse().ok()?, b.parse().ok()?);
    (a > 2 && b > 2).then_some((a, b))
}

/// Arms the rollback to the binary open at `previous_fd`: by `roll_back`, at exit(3), on a panic.
fn arm(previous_fd: RawFd, handoff: OsString) {
    if ROLLBACK
        .set(Rollback {
            previous_fd,
            handoff,
        })
        .is_err()
    {
        return;
    }
    if let Err(e) = sys::at_exit(exit_before_serving) {
        eprintln!("uwgate: {e}: an exit before serving will not roll back");
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        if !SETTLED.load(Ordering::SeqCst) {
            let _ = roll_back(&format!("panicked: {info}"));
        }
    }));
}

extern "C" fn exit_before_serving() {
    if !SETTLED.load(Ordering::SeqCst) {
        let _ = roll_back("exited before it served");
    }
}

/// The new image cannot serve (`why`): re-executes the previous binary with the same handoff,
/// and returns only when that is impossible (this image is already a rollback, or it already
/// serves, or execve failed) — then the caller exits with the returned failure.
pub fn roll_back(why: &str) -> ExitCode {
    let Some(rb) = ROLLBACK.get().filter(|_| !SETTLED.load(Ordering::SeqCst)) else {
        return ExitCode::FAILURE;
    };
    // Once only: an exit(3) after a failed exec must not try again.
    SETTLED.store(true, Ordering::SeqCst);
    say(&format!(
        "upgrade to {} failed: {why}; rolling back",
        crate::VERSION
    ));
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != ENV && k != FAILED_ENV)
        .collect();
    env.push((ENV.into(), rb.handoff.clone()));
    env.push((
        FAILED_ENV.into(),
        format!("{}: {why}", crate::VERSION).into(),
    ));
    let previous = PathBuf::from(format!("/proc/self/fd/{}", rb.previous_fd));
    let argv: Vec<OsString> = std::env::args_os().collect();
    let err = match sys::Reexec::new(&previous, &argv, &env) {
        Ok(image) => image.exec(),
        Err(e) => e,
    };
    say(&format!(
        "rollback: execve({}) failed: {err}; exiting (the supervised programs go with it)",
        previous.display()
    ));
    ExitCode::FAILURE
}

/// An error line: to the log once logging is set up, else (a configuration that does not
/// load) to stderr, which is where the start-up's own errors go too.
fn say(line: &str) {
    if log::max_level() == log::LevelFilter::Off {
        eprintln!("uwgate: {line}");
    } else {
        log::error!("{line}");
    }
}

/// Whether a handoff is armed and not yet committed (the image is between exec and serving).
pub fn is_pending() -> bool {
    ROLLBACK.get().is_some() && !SETTLED.load(Ordering::SeqCst)
}

/// The formats line `-t` prints for an upgrade check.
pub fn check_line() -> String {
    let formats: Vec<String> = record::READS.iter().map(u32::to_string).collect();
    format!("{CHECK_LINE} {}", formats.join(" "))
}

/// Whether the `-t` output of a candidate binary says it reads this build's format.
pub fn check_passed(output: &str) -> bool {
    output.lines().any(|line| {
        line.strip_prefix(CHECK_LINE).is_some_and(|rest| {
            rest.split_whitespace()
                .any(|w| w.parse() == Ok(record::FORMAT))
        })
    })
}

/// Test hooks of the `upgrade-test` build (the tests' "next version"): it refuses the value
/// `syslog_tag = upgrade-test-reject` (a key the running build accepts: its `-t` fails), and
/// with `syslog_tag = upgrade-test-exit` an adopted image calls exit(3) just before it would
/// serve (it must roll back).
#[cfg(feature = "upgrade-test")]
pub mod test_hooks {
    /// `Some(error)` for the rejected value.
    pub fn reject(cfg: &crate::config::Config) -> Option<String> {
        (cfg.global.syslog_tag == "upgrade-test-reject").then(|| {
            format!(
                "{}: syslog_tag = upgrade-test-reject: refused by this build (upgrade-test)",
                cfg.file.display()
            )
        })
    }

    /// Exits when asked to, as a broken new version would (an upgraded image only: a
    /// rolled-back one has nothing to fall back to).
    pub fn exit_before_serving(cfg: &crate::config::Config) {
        if cfg.global.syslog_tag == "upgrade-test-exit" && super::is_pending() {
            log::warn!("upgrade-test: exiting before serving, as asked");
            std::process::exit(3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_value_names_two_descriptors_above_stdio() {
        assert_eq!(parse_fds("5:6"), Some((5, 6)));
        assert_eq!(parse_fds("5"), None);
        assert_eq!(parse_fds("1:6"), None);
        assert_eq!(parse_fds("a:b"), None);
    }

    #[test]
    fn the_check_line_names_the_formats_read() {
        let line = check_line();
        assert!(check_passed(&format!("uwgate: syntax is ok\n{line}\n")));
        assert!(!check_passed("uwgate: syntax is ok\n"));
        assert!(!check_passed(&format!("{CHECK_LINE} 7 8\n")));
    }
}
