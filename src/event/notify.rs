//! systemd's notify protocol (`Type=notify`): `READY=1` once uwgate listens, `RELOADING=1`
//! and `READY=1` around a reload, `STOPPING=1` on shutdown, and `WATCHDOG=1` every half
//! `WatchdogSec` while the loop turns. Datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in
//! the abstract namespace), sent non-blocking: a missing or slow manager never stalls the loop.
//!
//! Never: blocks, or passes NOTIFY_SOCKET on (the watchdog strips it from children).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// The connection to the service manager, if there is one.
pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    watchdog_every: Option<Duration>,
    next_ping: Option<Instant>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honoured only when `WATCHDOG_PID`, if set,
    /// is ours). Without `NOTIFY_SOCKET` every call is a no-op.
    pub fn from_env() -> Notifier {
        let sock = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok()?,
                None => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
            };
            let s = UnixDatagram::unbound().ok()?;
            s.set_nonblocking(true).ok()?;
            Some((s, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(|u| Duration::from_micros(u / 2));
        Notifier {
            sock,
            watchdog_every,
            next_ping: None,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            if let Err(e) = s.send_to_addr(msg.as_bytes(), addr) {
                log::debug!("sd_notify {msg:?}: {e}");
            }
        }
    }

    /// Listening and serving: the unit is started.
    pub fn ready(&mut self, now: Instant) {
        self.send("READY=1\nSTATUS=serving");
        self.next_ping = self.watchdog_every.map(|d| now + d);
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    pub fn reloaded(&self) {
        self.send("READY=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// When the next `WATCHDOG=1` is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Sends `WATCHDOG=1` when due: proof that the loop is turning.
    pub fn tick(&mut self, now: Instant) {
        if let (Some(due), Some(every)) = (self.next_ping, self.watchdog_every) {
            if now >= due {
                self.send("WATCHDOG=1");
                self.next_ping = Some(now + every);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_watchdog_reach_a_notify_socket() {
        let dir = std::env::temp_dir().join(format!("uwgate-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier {
            sock: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog_every: Some(Duration::from_millis(10)),
            next_ping: None,
        };
        let t0 = Instant::now();
        n.ready(t0);
        n.tick(t0 + Duration::from_millis(5));
        n.tick(t0 + Duration::from_millis(11));
        let mut buf = [0u8; 64];
        let k = rx.recv(&mut buf).unwrap();
        assert!(buf[..k].starts_with(b"READY=1"));
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
