//! Ready checks: "does the program accept connections yet", asked with non-blocking connects.
//!
//! Owns at most one probing socket per process, its retry and per-attempt deadlines. An attempt
//! that is refused is retried after `RETRY`; one that hangs (a dropped SYN) is abandoned after
//! `ATTEMPT_TIMEOUT`. The overall `ready_timeout` is the state machine's, not this module's.
//! Must never block or sleep: connects are non-blocking and completion arrives as a writable event.

use std::io;
use std::time::{Duration, Instant};

use crate::config::ReadyCheck;
use crate::sys::stream::Stream;

/// Pause between a refused attempt and the next.
pub const RETRY: Duration = Duration::from_millis(100);

/// Longest wait for one connect to complete.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

fn connect(check: &ReadyCheck) -> io::Result<Stream> {
    match check {
        ReadyCheck::Tcp(addr) => Stream::connect_tcp(*addr),
        ReadyCheck::Unix(path) => Stream::connect_unix(path),
    }
}

/// `Ok(true)`: connected; `Ok(false)`: still in progress; `Err`: refused or failed.
fn connected(sock: &Stream) -> io::Result<bool> {
    let (err, peer) = match sock {
        Stream::Tcp(s) => {
            let peer = s.peer_addr();
            // A port in the ephemeral range with nothing listening can "connect" to itself
            // (TCP simultaneous open): that is no listener.
            if peer.is_ok() && s.local_addr().ok() == peer.as_ref().ok().copied() {
                return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
            }
            (s.take_error(), peer.map(|_| ()))
        }
        Stream::Unix(s) => (s.take_error(), s.peer_addr().map(|_| ())),
    };
    if let Some(e) = err? {
        return Err(e);
    }
    match peer {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(e),
    }
}

enum Phase {
    Idle,
    Waiting { next_at: Instant },
    Connecting { sock: Stream, give_up_at: Instant },
}

/// One process's ready probe.
pub struct Probe {
    phase: Phase,
}

impl Default for Probe {
    fn default() -> Self {
        Probe { phase: Phase::Idle }
    }
}

impl Probe {
    /// Whether a check is under way.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// When `on_timer` has work (next attempt, or abandoning a hung one).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle => None,
            Phase::Waiting { next_at } => Some(next_at),
            Phase::Connecting { give_up_at, .. } => Some(give_up_at),
        }
    }

    /// Starts checking: the first attempt is made by the next `on_timer` at `now`.
    pub fn begin(&mut self, now: Instant) {
        if !self.is_active() {
            self.phase = Phase::Waiting { next_at: now };
        }
    }

    /// Stops checking and closes the socket.
    pub fn cancel(&mut self, registry: &mio::Registry) {
        if let Phase::Connecting { sock, .. } = &mut self.phase {
            let _ = registry.deregister(sock.source());
        }
        self.phase = Phase::Idle;
    }

    /// Runs what is due at `now`; returns true when the check just succeeded.
    pub fn on_timer(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        check: &ReadyCheck,
        now: Instant,
    ) -> bool {
        match self.phase {
            Phase::Waiting { next_at } if next_at <= now => {
                self.attempt(registry, token, check, now)
            }
            Phase::Connecting { give_up_at, .. } if give_up_at <= now => {
                self.retry_later(registry, now);
                false
            }
            _ => false,
        }
    }

    /// The socket became writable (or failed): returns true when it connected.
    pub fn on_event(&mut self, registry: &mio::Registry, now: Instant) -> bool {
        let Phase::Connecting { sock, .. } = &self.phase else {
            return false; // stale event for a socket already closed
        };
        match connected(sock) {
            Ok(true) => {
                self.cancel(registry);
                true
            }
            Ok(false) => false,
            Err(_) => {
                self.retry_later(registry, now);
                false
            }
        }
    }

    fn attempt(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        check: &ReadyCheck,
        now: Instant,
    ) -> bool {
        let mut sock = match connect(check) {
            Ok(sock) => sock,
            Err(_) => {
                self.retry_later(registry, now);
                return false;
            }
        };
        // A Unix socket (or a fast loopback) may be connected, or refused, already. Reading
        // SO_ERROR clears it, so a refusal seen here must be handled here.
        match connected(&sock) {
            Ok(true) => {
                self.phase = Phase::Idle;
                return true;
            }
            Ok(false) => {}
            Err(_) => {
                self.retry_later(registry, now);
                return false;
            }
        }
        if let Err(e) = registry.register(sock.source(), token, mio::Interest::WRITABLE) {
            log::warn!("ready check: cannot register socket: {e}");
            self.retry_later(registry, now);
            return false;
        }
        self.phase = Phase::Connecting {
            sock,
            give_up_at: super::state::after(now, ATTEMPT_TIMEOUT),
        };
        false
    }

    /// Drops any probing socket; the next attempt comes after `RETRY`.
    fn retry_later(&mut self, registry: &mio::Registry, now: Instant) {
        self.cancel(registry);
        self.phase = Phase::Waiting {
            next_at: super::state::after(now, RETRY),
        };
    }
}

/// Displays a check as it is written in the ini file: `tcp:127.0.0.1:3306`, `unix:/run/x.sock`.
pub struct Target<'a>(pub &'a ReadyCheck);

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            ReadyCheck::Tcp(addr) => write!(f, "tcp:{addr}"),
            ReadyCheck::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_until_ready(probe: &mut Probe, check: &ReadyCheck, limit: Duration) -> bool {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let token = mio::Token(1);
        let end = Instant::now() + limit;
        probe.begin(Instant::now());
        while Instant::now() < end {
            let now = Instant::now();
            if probe.on_timer(poll.registry(), token, check, now) {
                return true;
            }
            let wait = probe
                .deadline()
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(limit);
            poll.poll(&mut events, Some(wait.min(Duration::from_millis(20))))
                .unwrap();
            for _ in events.iter() {
                if probe.on_event(poll.registry(), Instant::now()) {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn tcp_listener_is_ready_and_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let check = ReadyCheck::Tcp(listener.local_addr().unwrap());
        let mut probe = Probe::default();
        assert!(run_until_ready(&mut probe, &check, Duration::from_secs(2)));
        assert!(!probe.is_active());
        drop(listener);
        // Port 1: privileged, so no other test can be listening there.
        let check = ReadyCheck::Tcp("127.0.0.1:1".parse().unwrap());
        let mut probe = Probe::default();
        assert!(!run_until_ready(
            &mut probe,
            &check,
            Duration::from_millis(350)
        ));
        assert!(probe.is_active(), "still retrying");
    }

    #[test]
    fn unix_listener_is_ready_and_missing_socket_is_not() {
        let path = std::env::temp_dir().join(format!("uwgate-ready-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let check = ReadyCheck::Unix(path.clone());
        let mut probe = Probe::default();
        assert!(!run_until_ready(
            &mut probe,
            &check,
            Duration::from_millis(250)
        ));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(run_until_ready(&mut probe, &check, Duration::from_secs(2)));
        drop(listener);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn target_is_shown_as_written() {
        assert_eq!(
            Target(&ReadyCheck::Tcp("127.0.0.1:3306".parse().unwrap())).to_string(),
            "tcp:127.0.0.1:3306"
        );
        assert_eq!(
            Target(&ReadyCheck::Unix("/run/m.sock".into())).to_string(),
            "unix:/run/m.sock"
        );
    }
}
