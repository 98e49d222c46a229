//! Logging: the `log` facade's global logger and its two sinks — syslog datagrams (the
//! production path, see `syslog`) and stderr (foreground and debugging, see `stderr`) — plus
//! the access-log line and supervised programs' output.
//!
//! Owns the process-wide logger state behind one uncontended mutex. Must never block the loop
//! on either sink (a slow or absent syslogd, or a stalled reader of stderr, costs dropped lines,
//! counted in `dropped()` and reported by the sink once it can write again), never allocate per
//! message in steady state, and never log from inside itself.
//!
//! Stderr format (UTC, nginx error-log style): `2026/11/25 20:20:22 [info] message`; access
//! lines read `2026/11/25 20:20:22 [info] uwgate-access: 1.2.3.4 - - [...] "GET / HTTP/1.1" ...`,
//! a child's output `2026/11/25 20:20:22 [error] django[1234]: Traceback ...`.

pub mod drops;
pub mod format;
pub mod stderr;
pub mod syslog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

pub use format::{format_combined, CivilTime, Escaped, Message, Severity};
pub use stderr::StderrSink;
pub use syslog::{Clock, Peer, SyslogSink};

/// Where log messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A local syslog datagram socket, normally `/dev/log`.
    Unix(PathBuf),
    /// A remote syslog over UDP.
    Udp(SocketAddr),
    /// No syslog: everything to stderr.
    Stderr,
}

impl Target {
    /// The syslog peer, or `None` for `Stderr`.
    pub fn peer(&self) -> Option<Peer> {
        match self {
            Target::Unix(path) => Some(Peer::Unix(path.clone())),
            Target::Udp(addr) => Some(Peer::Udp(*addr)),
            Target::Stderr => None,
        }
    }
}

/// The logging part of the configuration; `main` builds it from `[uwgate]` (`syslog`,
/// `syslog_facility`, `syslog_tag`, `error_log_level`) and the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Syslog socket, or stderr only.
    pub target: Target,
    /// Syslog facility number, 0..=23 (daemon = 3, local0 = 16).
    pub facility: u8,
    /// TAG of the daemon's own messages.
    pub tag: String,
    /// TAG of access-log lines (rsyslog can file them apart by programname).
    pub access_tag: String,
    /// Most verbose `log` level passed on (access lines and child output are not filtered).
    pub level: LevelFilter,
    /// Also write everything to stderr (always on when `target` is `Stderr`).
    pub stderr: bool,
}

struct State {
    tag: String,
    access_tag: String,
    syslog: Option<SyslogSink>,
    stderr: Option<StderrSink>,
    /// Drops of sinks replaced or closed by a reload.
    dropped_before: u64,
}

impl State {
    fn new(settings: &LogSettings) -> State {
        let mut state = State {
            tag: String::new(),
            access_tag: String::new(),
            syslog: None,
            stderr: None,
            dropped_before: 0,
        };
        state.apply(settings);
        state
    }

    /// Takes new settings; keeps the open socket when the syslog target is unchanged.
    fn apply(&mut self, settings: &LogSettings) {
        settings.tag.clone_into(&mut self.tag);
        settings.access_tag.clone_into(&mut self.access_tag);
        let peer = settings.target.peer();
        let same_peer = match (&self.syslog, &peer) {
            (Some(sink), Some(peer)) => sink.peer() == peer,
            _ => false,
        };
        if same_peer {
            if let Some(sink) = self.syslog.as_mut() {
                sink.set_identity(settings.facility, &settings.tag);
            }
        } else {
            if let Some(old) = self.syslog.take() {
                self.dropped_before = self.dropped_before.saturating_add(old.dropped());
            }
            self.syslog = peer.map(|p| SyslogSink::new(p, settings.facility, &settings.tag));
        }
        let want_stderr = settings.stderr || settings.target == Target::Stderr;
        if !want_stderr {
            if let Some(old) = self.stderr.take() {
                self.dropped_before = self.dropped_before.saturating_add(old.dropped());
            }
        } else if self.stderr.is_none() {
            self.stderr = Some(StderrSink::new());
        }
    }

    fn dropped(&self) -> u64 {
        let syslog = self.syslog.as_ref().map_or(0, SyslogSink::dropped);
        let stderr = self.stderr.as_ref().map_or(0, StderrSink::dropped);
        self.dropped_before
            .saturating_add(syslog)
            .saturating_add(stderr)
    }
}

/// nginx error-log level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Writes one stderr line at `level`, stamped now.
fn write_stderr(sink: &mut StderrSink, level: Level, args: std::fmt::Arguments<'_>) {
    sink.write(Clock::now().unix, level_name(level), args);
}

/// Drops a trailing `\n` or `\r\n`.
fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

struct Gate(Mutex<Option<State>>);

static GATE: Gate = Gate(Mutex::new(None));

fn lock() -> MutexGuard<'static, Option<State>> {
    // panic = abort, so poisoning cannot happen; take the state anyway rather than panic.
    GATE.0.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Log for Gate {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut guard = lock();
        let Some(state) = guard.as_mut() else {
            return;
        };
        let level = record.level();
        if let Some(sink) = state.syslog.as_mut() {
            sink.send(
                Severity::from_level(level),
                &state.tag,
                std::process::id(),
                Message::Text(*record.args()),
            );
        }
        if let Some(sink) = state.stderr.as_mut() {
            write_stderr(sink, level, *record.args());
        }
    }

    /// Nothing is buffered: every line is written (or dropped) at once.
    fn flush(&self) {}
}

/// Installs the global logger; `main` calls it once at start, before anything listens.
/// A missing syslog socket is not an error (messages are counted as dropped until it
/// appears); the only error is a logger already installed.
pub fn init(settings: &LogSettings) -> Result<(), String> {
    *lock() = Some(State::new(settings));
    log::set_logger(&GATE).map_err(|e| format!("cannot install the logger: {e}"))?;
    log::set_max_level(settings.level);
    Ok(())
}

/// Swaps the settings at run time (SIGHUP reload). The syslog socket is kept when the target
/// did not change; a new target is connected at once.
pub fn reconfigure(settings: &LogSettings) {
    let mut guard = lock();
    match guard.as_mut() {
        Some(state) => state.apply(settings),
        None => *guard = Some(State::new(settings)),
    }
    log::set_max_level(settings.level);
}

/// Closes and reopens the syslog socket now (SIGUSR1, or after syslogd restarted).
pub fn reconnect() {
    if let Some(sink) = lock().as_mut().and_then(|s| s.syslog.as_mut()) {
        sink.reconnect(Instant::now());
    }
}

/// Sends one access-log line (from `format_combined`) with the access tag at severity info,
/// and to stderr when that is on. Called once per request by the connection code, which
/// decides whether access logging is enabled.
pub fn access(line: &[u8]) {
    let line = trim_newline(line);
    let mut guard = lock();
    let Some(state) = guard.as_mut() else {
        return;
    };
    if let Some(sink) = state.syslog.as_mut() {
        sink.send(
            Severity::Info,
            &state.access_tag,
            std::process::id(),
            Message::Bytes(line),
        );
    }
    if let Some(sink) = state.stderr.as_mut() {
        write_stderr(
            sink,
            Level::Info,
            format_args!("{}: {}", state.access_tag, Escaped(line)),
        );
    }
}

/// Sends one line of a supervised program's output with TAG = program name and the child's
/// pid, so rsyslog can filter by programname, at `severity` (the program's
/// `stdout_syslog_priority` or `stderr_syslog_priority`: info and err by default). Control
/// characters and invalid UTF-8 go out as `\xHH`. The watchdog calls it per line (it has
/// already split long lines); a trailing newline is dropped.
pub fn program_output(tag: &str, pid: u32, line: &[u8], severity: Severity) {
    let line = trim_newline(line);
    let mut guard = lock();
    let Some(state) = guard.as_mut() else {
        return;
    };
    if let Some(sink) = state.syslog.as_mut() {
        sink.send(severity, tag, pid, Message::Bytes(line));
    }
    if let Some(sink) = state.stderr.as_mut() {
        sink.write(
            Clock::now().unix,
            severity.label(),
            format_args!("{}[{}]: {}", tag, pid, Escaped(line)),
        );
    }
}

/// Looks at fd 2 again: `main` calls it after `daemonize` put /dev/null there.
pub fn reopen_stderr() {
    if let Some(sink) = lock().as_mut().and_then(|s| s.stderr.as_mut()) {
        sink.reopen();
    }
}

/// Lines the sinks (syslog and stderr) have dropped since start: the JSON status page's
/// `log_dropped`.
pub fn dropped() -> u64 {
    lock().as_ref().map_or(0, State::dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn recv(rx: &UdpSocket) -> String {
        let mut buf = [0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Strips `<PRI>Mmm dd hh:mm:ss HOST ` so the rest can be compared exactly.
    fn after_host(datagram: &str) -> (&str, &str) {
        let pri_end = datagram.find('>').unwrap();
        let rest = &datagram[pri_end + 1 + 16..];
        let host_end = rest.find(' ').unwrap();
        (&datagram[..=pri_end], &rest[host_end + 1..])
    }

    // The only test that installs the global logger: the logger can be set once per process.
    #[test]
    fn global_logger_sends_records_access_lines_and_program_output() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut settings = LogSettings {
            target: Target::Udp(rx.local_addr().unwrap()),
            facility: 3,
            tag: "uwgate".to_owned(),
            access_tag: "uwgate_access".to_owned(),
            level: LevelFilter::Info,
            stderr: false,
        };
        init(&settings).unwrap();
        let me = std::process::id();

        log::info!("started {}", 1);
        let got = recv(&rx);
        assert_eq!(
            after_host(&got),
            ("<30>", &*format!("uwgate[{me}]: started 1"))
        );

        log::debug!("filtered out");
        log::error!("boom");
        let got = recv(&rx);
        assert_eq!(after_host(&got), ("<27>", &*format!("uwgate[{me}]: boom")));

        access(
            b"127.0.0.1 - - [25/Nov/2026:20:20:22 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\"\n",
        );
        let got = recv(&rx);
        assert_eq!(
            after_host(&got),
            (
                "<30>",
                &*format!(
                    "uwgate_access[{me}]: 127.0.0.1 - - [25/Nov/2026:20:20:22 +0000] \
                     \"GET / HTTP/1.1\" 200 5 \"-\" \"-\""
                )
            )
        );

        program_output("django", 4242, b"Traceback \x1b[0m\xff\r\n", Severity::Err);
        let got = recv(&rx);
        assert_eq!(
            after_host(&got),
            ("<27>", "django[4242]: Traceback \\x1B[0m\\xFF")
        );
        program_output("django", 4242, b"spawned uWSGI worker 1", Severity::Info);
        assert_eq!(
            after_host(&recv(&rx)),
            ("<30>", "django[4242]: spawned uWSGI worker 1")
        );

        // SIGHUP: new facility and level, same socket.
        settings.facility = 16;
        settings.level = LevelFilter::Debug;
        reconfigure(&settings);
        log::debug!("now visible");
        assert_eq!(
            after_host(&recv(&rx)),
            ("<135>", &*format!("uwgate[{me}]: now visible"))
        );

        reconnect();
        log::warn!("after reconnect");
        assert_eq!(
            after_host(&recv(&rx)),
            ("<132>", &*format!("uwgate[{me}]: after reconnect"))
        );
        assert_eq!(dropped(), 0);

        // A second init is refused.
        assert!(init(&settings).is_err());
    }

    #[test]
    fn trailing_newlines_are_trimmed() {
        assert_eq!(trim_newline(b"a\r\n"), b"a");
        assert_eq!(trim_newline(b"a\n"), b"a");
        assert_eq!(trim_newline(b"a\r"), b"a");
        assert_eq!(trim_newline(b"a"), b"a");
        assert_eq!(trim_newline(b""), b"");
    }

    #[test]
    fn stderr_target_has_no_syslog_sink_and_keeps_drops_across_reloads() {
        let settings = LogSettings {
            target: Target::Stderr,
            facility: 3,
            tag: "uwgate".to_owned(),
            access_tag: "access".to_owned(),
            level: LevelFilter::Info,
            stderr: false,
        };
        let mut state = State::new(&settings);
        assert!(state.syslog.is_none());
        assert!(state.stderr.is_some());

        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to_udp = LogSettings {
            target: Target::Udp(udp.local_addr().unwrap()),
            ..settings.clone()
        };
        state.apply(&to_udp);
        assert!(state.syslog.is_some());
        assert!(state.stderr.is_none());
        if let Some(sink) = state.syslog.as_mut() {
            sink.add_dropped(5);
        }
        state.apply(&settings);
        assert!(state.syslog.is_none());
        assert_eq!(state.dropped(), 5);
    }
}
