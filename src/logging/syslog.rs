//! The syslog sink: one non-blocking datagram socket (unix, e.g. /dev/log, or UDP), RFC 3164
//! datagrams formatted on the stack, drops counted and reported once syslog is back (`drops`,
//! which the stderr sink shares).
//!
//! Owns the socket and the drop counters. Must never block the event loop (the socket is
//! non-blocking and a full syslogd means a dropped message, never a wait), never allocate per
//! message, and never retry a connect more than once per second.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::drops::{DropReason, Drops};
use super::format::{format_datagram, Header, Message, Severity};

/// Largest datagram sent; longer messages are cut and end with "...".
pub const DATAGRAM_MAX: usize = 2048;

/// Least time between two connect attempts while syslog is unavailable.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// Where the datagrams go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A local syslog socket such as `/dev/log` (SOCK_DGRAM); no hostname in the datagram.
    Unix(PathBuf),
    /// A remote syslog over UDP; the datagram carries this host's name.
    Udp(SocketAddr),
}

/// "Now", twice: the monotonic clock for reconnect throttling, the wall clock for the header.
/// Tests pass their own to step time without sleeping.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Monotonic time, for the once-per-second reconnect rule.
    pub mono: Instant,
    /// Seconds since the epoch, shown in the datagram (UTC).
    pub unix: i64,
}

impl Clock {
    /// The current time.
    pub fn now() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Clock {
            mono: Instant::now(),
            unix,
        }
    }
}

enum Socket {
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

impl Socket {
    /// Opens a non-blocking, close-on-exec datagram socket connected to `peer`.
    fn open(peer: &Peer) -> io::Result<Socket> {
        match peer {
            Peer::Unix(path) => {
                let s = UnixDatagram::unbound()?;
                s.set_nonblocking(true)?;
                s.connect(path)?;
                Ok(Socket::Unix(s))
            }
            Peer::Udp(addr) => {
                let any = if addr.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                };
                let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
                s.set_nonblocking(true)?;
                s.connect(addr)?;
                Ok(Socket::Udp(s))
            }
        }
    }

    fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.send(datagram),
            Socket::Udp(s) => s.send(datagram),
        }
    }
}

/// Sorts a send error: a full buffer keeps the socket; anything else (ECONNREFUSED, ENOTCONN,
/// ENOENT, ...) means syslogd went away and the socket must be reopened.
fn classify(err: &io::Error) -> DropReason {
    if err.kind() == io::ErrorKind::WouldBlock || err.raw_os_error() == Some(libc::ENOBUFS) {
        DropReason::Slow
    } else {
        DropReason::Unavailable
    }
}

/// A syslog client that never blocks. The global logger owns one; tests drive it directly.
pub struct SyslogSink {
    peer: Peer,
    facility: u8,
    /// Tag of the drop notice (the daemon's own tag).
    tag: String,
    /// This host's name, sent only to a UDP peer.
    hostname: String,
    socket: Option<Socket>,
    /// No connect attempt before this instant.
    next_attempt: Instant,
    drops: Drops,
}

impl SyslogSink {
    /// Opens the sink and tries to connect at once. A missing socket (no /dev/log yet) is not
    /// an error: the sink starts disconnected, counts drops and retries once a second.
    pub fn new(peer: Peer, facility: u8, tag: &str) -> SyslogSink {
        SyslogSink::new_at(peer, facility, tag, Instant::now())
    }

    /// `new` with an explicit monotonic "now" (tests).
    pub fn new_at(peer: Peer, facility: u8, tag: &str, now: Instant) -> SyslogSink {
        let mut sink = SyslogSink {
            peer,
            facility,
            tag: tag.to_owned(),
            hostname: read_hostname(),
            socket: None,
            next_attempt: now,
            drops: Drops::default(),
        };
        sink.try_connect(now);
        sink
    }

    /// Where this sink sends.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Changes facility and notice tag (SIGHUP reload to the same peer); keeps the socket.
    pub fn set_identity(&mut self, facility: u8, tag: &str) {
        self.facility = facility;
        if self.tag != tag {
            tag.clone_into(&mut self.tag);
        }
    }

    /// True while a socket is open.
    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    /// Messages dropped since the sink was created.
    pub fn dropped(&self) -> u64 {
        self.drops.total()
    }

    /// Adds drops counted elsewhere (a previous sink replaced on reload).
    pub fn add_dropped(&mut self, n: u64) {
        self.drops.add_total(n);
    }

    /// The hostname put in UDP datagrams.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Closes the socket and opens it again right away, ignoring the once-a-second rule
    /// (SIGUSR1, or syslogd known to have restarted). Drops keep counting while it fails.
    pub fn reconnect(&mut self, now: Instant) {
        self.socket = None;
        self.next_attempt = now;
        self.try_connect(now);
    }

    /// Sends one message now. Returns false when it was dropped (and counted).
    pub fn send(&mut self, severity: Severity, tag: &str, pid: u32, msg: Message<'_>) -> bool {
        self.send_at(Clock::now(), severity, tag, pid, msg)
    }

    /// Sends one message at `clock`. If messages were dropped before, a warning
    /// `N messages dropped while syslog was unavailable` (or `was not keeping up`) goes first;
    /// if that notice cannot be sent, this message is dropped too and the count carries on.
    pub fn send_at(
        &mut self,
        clock: Clock,
        severity: Severity,
        tag: &str,
        pid: u32,
        msg: Message<'_>,
    ) -> bool {
        if self.socket.is_none() && !self.try_connect(clock.mono) {
            self.drops.count(DropReason::Unavailable);
            return false;
        }
        let mut buf = [0u8; DATAGRAM_MAX];
        if let Some(notice) = self.drops.notice("messages", "syslog") {
            let header = Header {
                facility: self.facility,
                hostname: self.hostname_for_peer(),
                unix_time: clock.unix,
                severity: Severity::Warning,
                tag: &self.tag,
                pid: std::process::id(),
            };
            let n = format_datagram(&mut buf, &header, Message::Text(format_args!("{notice}")));
            if let Err(reason) = self.transmit(clock.mono, buf.get(..n).unwrap_or(&[])) {
                self.drops.count(reason);
                return false;
            }
            self.drops.reported();
        }
        let header = Header {
            facility: self.facility,
            hostname: self.hostname_for_peer(),
            unix_time: clock.unix,
            severity,
            tag,
            pid,
        };
        let n = format_datagram(&mut buf, &header, msg);
        match self.transmit(clock.mono, buf.get(..n).unwrap_or(&[])) {
            Ok(()) => true,
            Err(reason) => {
                self.drops.count(reason);
                false
            }
        }
    }

    fn hostname_for_peer(&self) -> Option<&str> {
        match self.peer {
            Peer::Unix(_) => None,
            Peer::Udp(_) => Some(&self.hostname),
        }
    }

    /// Opens the socket unless an attempt was made less than a second ago.
    fn try_connect(&mut self, now: Instant) -> bool {
        if now < self.next_attempt {
            return false;
        }
        self.next_attempt = now.checked_add(RECONNECT_INTERVAL).unwrap_or(now);
        self.socket = Socket::open(&self.peer).ok();
        self.socket.is_some()
    }

    /// Sends one datagram. When the peer is gone (syslogd restarted) the socket is reopened
    /// at once if the once-a-second rule allows, and the datagram sent again, as glibc does.
    fn transmit(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DropReason> {
        let first = match &self.socket {
            Some(socket) => socket.send(datagram),
            None => return Err(DropReason::Unavailable),
        };
        let err = match first {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        match classify(&err) {
            DropReason::Slow => Err(DropReason::Slow),
            DropReason::Unavailable => {
                self.socket = None;
                if !self.try_connect(now) {
                    return Err(DropReason::Unavailable);
                }
                let again = match &self.socket {
                    Some(socket) => socket.send(datagram),
                    None => return Err(DropReason::Unavailable),
                };
                match again {
                    Ok(_) => Ok(()),
                    Err(err) => {
                        let reason = classify(&err);
                        if reason == DropReason::Unavailable {
                            self.socket = None;
                        }
                        Err(reason)
                    }
                }
            }
        }
    }
}

/// This host's name for RFC 3164 (no domain part): /proc/sys/kernel/hostname, then
/// /etc/hostname, then "localhost". Read when a sink is created, not per message.
fn read_hostname() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(raw) = std::fs::read_to_string(path) {
            let name = raw.trim();
            let short = if name.parse::<IpAddr>().is_ok() {
                name
            } else {
                name.split('.').next().unwrap_or("")
            };
            if !short.is_empty() && short.bytes().all(|b| b.is_ascii_graphic()) {
                return short.to_owned();
            }
        }
    }
    "localhost".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("uwgate-log-{}-{}", std::process::id(), n));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn bind(path: &Path) -> UnixDatagram {
        let rx = UnixDatagram::bind(path).unwrap();
        rx.set_nonblocking(true).unwrap();
        rx
    }

    fn recv(rx: &UnixDatagram) -> Option<String> {
        let mut buf = [0u8; 4096];
        match rx.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("recv: {e}"),
        }
    }

    fn clock(start: Instant, millis: u64) -> Clock {
        Clock {
            mono: start + Duration::from_millis(millis),
            unix: 1_795_638_022, // 2026-11-25 20:20:22 UTC
        }
    }

    macro_rules! text {
        ($s:expr) => {
            Message::Text(format_args!("{}", $s))
        };
    }

    #[test]
    fn datagram_arrives_on_a_unix_socket_in_rfc3164_form() {
        let dir = TempDir::new();
        let rx = bind(&dir.path("log"));
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(dir.path("log")), 3, "uwgate", start);
        assert!(sink.is_connected());
        assert!(sink.send_at(
            clock(start, 0),
            Severity::Err,
            "uwgate",
            123,
            text!("bind failed")
        ));
        assert_eq!(
            recv(&rx).unwrap(),
            "<27>Nov 25 20:20:22 uwgate[123]: bind failed"
        );
        assert!(sink.send_at(
            clock(start, 0),
            Severity::Info,
            "django",
            77,
            Message::Bytes(b"GET /\x00\xff")
        ));
        assert_eq!(
            recv(&rx).unwrap(),
            "<30>Nov 25 20:20:22 django[77]: GET /\\x00\\xFF"
        );
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn ten_kilobyte_message_arrives_truncated_to_one_datagram() {
        let dir = TempDir::new();
        let rx = bind(&dir.path("log"));
        let mut sink = SyslogSink::new(Peer::Unix(dir.path("log")), 3, "uwgate");
        let big = "z".repeat(10 * 1024);
        assert!(sink.send(Severity::Info, "uwgate", 1, text!(&big)));
        let got = recv(&rx).unwrap();
        assert_eq!(got.len(), DATAGRAM_MAX);
        assert!(got.ends_with("z..."));
    }

    #[test]
    fn missing_socket_at_start_is_not_an_error_and_counts_drops() {
        let dir = TempDir::new();
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(dir.path("absent")), 3, "uwgate", start);
        assert!(!sink.is_connected());
        assert!(!sink.send_at(clock(start, 10), Severity::Info, "uwgate", 1, text!("a")));
        assert!(!sink.send_at(clock(start, 20), Severity::Info, "uwgate", 1, text!("b")));
        assert_eq!(sink.dropped(), 2);

        // syslogd appears; within the second no attempt is made, after it the sink connects.
        let rx = bind(&dir.path("absent"));
        assert!(!sink.send_at(clock(start, 500), Severity::Info, "uwgate", 1, text!("c")));
        assert!(recv(&rx).is_none());
        assert!(sink.send_at(clock(start, 1_100), Severity::Info, "uwgate", 1, text!("d")));
        let notice = recv(&rx).unwrap();
        assert!(
            notice.ends_with(": 3 messages dropped while syslog was unavailable"),
            "{notice}"
        );
        assert!(
            notice.starts_with("<28>Nov 25 20:20:22 uwgate["),
            "{notice}"
        );
        assert_eq!(recv(&rx).unwrap(), "<30>Nov 25 20:20:22 uwgate[1]: d");
        assert!(recv(&rx).is_none());
        assert_eq!(sink.dropped(), 3);
    }

    #[test]
    fn full_receiver_buffer_drops_and_counts_then_reports_once_reading_resumes() {
        let dir = TempDir::new();
        let rx = bind(&dir.path("log"));
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(dir.path("log")), 3, "uwgate", start);
        let c = clock(start, 0);
        // Never read: send until the kernel refuses (EAGAIN), which must not block.
        let mut sent = 0u64;
        while sink.send_at(c, Severity::Info, "uwgate", 1, text!("fill")) {
            sent += 1;
            assert!(sent < 1_000_000, "receiver never filled up");
        }
        assert!(sent > 0);
        for _ in 0..9 {
            assert!(!sink.send_at(c, Severity::Info, "uwgate", 1, text!("lost")));
        }
        assert_eq!(sink.dropped(), 10);
        assert!(sink.is_connected(), "a slow syslogd keeps the socket");

        // Reading resumes: drain everything that was queued.
        let mut queued = 0u64;
        while let Some(m) = recv(&rx) {
            assert!(m.ends_with(": fill"));
            queued += 1;
        }
        assert_eq!(queued, sent);

        assert!(sink.send_at(c, Severity::Info, "uwgate", 1, text!("back")));
        let notice = recv(&rx).unwrap();
        assert!(
            notice.ends_with(": 10 messages dropped while syslog was not keeping up"),
            "{notice}"
        );
        assert_eq!(recv(&rx).unwrap(), "<30>Nov 25 20:20:22 uwgate[1]: back");
        // The notice is sent once only.
        assert!(sink.send_at(c, Severity::Info, "uwgate", 1, text!("again")));
        assert_eq!(recv(&rx).unwrap(), "<30>Nov 25 20:20:22 uwgate[1]: again");
        assert!(recv(&rx).is_none());
        assert_eq!(sink.dropped(), 10);
    }

    #[test]
    fn restarted_syslogd_is_reconnected_after_its_socket_is_removed_and_rebound() {
        let dir = TempDir::new();
        let path = dir.path("log");
        let rx = bind(&path);
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(path.clone()), 3, "uwgate", start);
        assert!(sink.send_at(clock(start, 0), Severity::Info, "uwgate", 1, text!("one")));
        assert!(recv(&rx).is_some());

        // syslogd stops: its socket closes and the file goes away.
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        assert!(!sink.send_at(clock(start, 100), Severity::Info, "uwgate", 1, text!("two")));
        assert!(!sink.is_connected());

        // syslogd starts again at the same path.
        let rx = bind(&path);
        assert!(!sink.send_at(
            clock(start, 600),
            Severity::Info,
            "uwgate",
            1,
            text!("three")
        ));
        assert_eq!(sink.dropped(), 2);

        assert!(sink.send_at(
            clock(start, 1_200),
            Severity::Info,
            "uwgate",
            1,
            text!("four")
        ));
        assert!(sink.is_connected());
        let notice = recv(&rx).unwrap();
        assert!(
            notice.ends_with(": 2 messages dropped while syslog was unavailable"),
            "{notice}"
        );
        assert_eq!(recv(&rx).unwrap(), "<30>Nov 25 20:20:22 uwgate[1]: four");
    }

    #[test]
    fn syslogd_restarted_long_ago_loses_no_message() {
        // As glibc: a failed send reopens the socket and sends again when allowed.
        let dir = TempDir::new();
        let path = dir.path("log");
        let rx = bind(&path);
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(path.clone()), 3, "uwgate", start);
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        let rx = bind(&path);
        assert!(sink.send_at(
            clock(start, 5_000),
            Severity::Info,
            "uwgate",
            1,
            text!("kept")
        ));
        assert_eq!(recv(&rx).unwrap(), "<30>Nov 25 20:20:22 uwgate[1]: kept");
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn explicit_reconnect_moves_to_a_new_socket_at_the_same_path() {
        // The old receiver stays open (its file unlinked): only an explicit reconnect helps.
        let dir = TempDir::new();
        let path = dir.path("log");
        let old = bind(&path);
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(path.clone()), 3, "uwgate", start);
        std::fs::remove_file(&path).unwrap();
        let new = bind(&path);
        assert!(sink.send_at(clock(start, 0), Severity::Info, "uwgate", 1, text!("stale")));
        assert!(recv(&old).is_some());
        sink.reconnect(start);
        assert!(sink.send_at(clock(start, 0), Severity::Info, "uwgate", 1, text!("fresh")));
        assert_eq!(recv(&new).unwrap(), "<30>Nov 25 20:20:22 uwgate[1]: fresh");
        assert!(recv(&old).is_none());
    }

    #[test]
    fn udp_target_receives_datagram_with_hostname() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = rx.local_addr().unwrap();
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Udp(addr), 16, "uwgate", start);
        assert!(sink.is_connected());
        assert!(sink.send_at(
            clock(start, 0),
            Severity::Warning,
            "uwgate",
            9,
            text!("hello")
        ));
        let mut buf = [0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        let got = String::from_utf8(buf[..n].to_vec()).unwrap();
        let host = sink.hostname().to_owned();
        assert!(!host.is_empty() && !host.contains(' ') && !host.contains('.'));
        assert_eq!(got, format!("<132>Nov 25 20:20:22 {host} uwgate[9]: hello"));
    }

    #[test]
    fn set_identity_changes_facility_and_keeps_the_socket() {
        let dir = TempDir::new();
        let rx = bind(&dir.path("log"));
        let start = Instant::now();
        let mut sink = SyslogSink::new_at(Peer::Unix(dir.path("log")), 3, "uwgate", start);
        sink.set_identity(16, "gate");
        assert!(sink.send_at(clock(start, 0), Severity::Info, "gate", 2, text!("x")));
        assert_eq!(recv(&rx).unwrap(), "<134>Nov 25 20:20:22 gate[2]: x");
    }
}
