//! The handoff record: what one uwgate image leaves the next in the same process across an
//! in-place upgrade, as versioned, length-checked text.
//!
//! ```text
//! uwgate-handoff 2 312                      magic, format, length of everything after this line
//! from version=0.1.0                        the image that wrote it
//! binary path=/usr/sbin/uwgate              the installed binary (the default upgrade target)
//! clock ns=91234567890                      CLOCK_MONOTONIC when it was written
//! counters accepts=9 handled=9 requests=41  stub_status's totals, carried on
//! listener fd=5 addr=127.0.0.1:8080         an inherited listening socket
//! control fd=6 path=/run/uwgate.sock        the control socket's listener (format 2; none: off)
//! proc program=django name=django state=running pid=4242 since=… spawns=1 …   (the watchdog's)
//! pipe fd=7 name=django pid=4242 stderr=0 partial=…                         (the watchdog's)
//! end
//! ```
//! Every line is a kind and `key=value` fields; values escape every byte outside a plain set as
//! `%XX`, so names, paths and partial output lines of any bytes fit. Times are CLOCK_MONOTONIC
//! nanoseconds ([`Clock`]), the clock `Instant` reads, which an exec does not reset. A field
//! named `fd` is always an inherited descriptor number ([`Record::fds`]).
//!
//! Format 2 added the `control` line; a format-1 record (no such line) still reads, and its
//! reader binds the control socket anew. A build that reads format 1 only would refuse the
//! line it does not know, so it is refused at the upgrade's check instead (`-t` names the
//! formats it reads).
//!
//! Owns the format and its checks. Never touches a descriptor or the clock itself: `gate`
//! writes the record, `handoff` reads it, `watchdog::handoff` fills and reads its own entries.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The format this build writes.
pub const FORMAT: u32 = 2;

/// The formats this build reads (a newer build keeps reading the older formats).
pub const READS: &[u32] = &[1, 2];

/// First word of the record.
const MAGIC: &str = "uwgate-handoff";

/// Largest record accepted (a few KiB in practice).
pub const MAX_LEN: usize = 1 << 20;

/// Instants as CLOCK_MONOTONIC nanoseconds and back: `now` and `mono_ns` are read together.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    now: Instant,
    mono_ns: u64,
}

impl Clock {
    /// `now` and the monotonic clock's nanoseconds at the same moment.
    pub fn new(now: Instant, mono_ns: u64) -> Clock {
        Clock { now, mono_ns }
    }

    /// The `Instant` the clock was read at.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The monotonic nanoseconds of `now`.
    pub fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    /// `t` as monotonic nanoseconds.
    pub fn encode(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.now) {
            Some(ahead) => self.mono_ns.saturating_add(nanos(ahead)),
            None => self
                .mono_ns
                .saturating_sub(nanos(self.now.saturating_duration_since(t))),
        }
    }

    /// Monotonic nanoseconds as an `Instant` (clamped to `now` where it cannot be one).
    pub fn decode(&self, ns: u64) -> Instant {
        if ns >= self.mono_ns {
            let ahead = Duration::from_nanos(ns.saturating_sub(self.mono_ns));
            self.now.checked_add(ahead).unwrap_or(self.now)
        } else {
            let behind = Duration::from_nanos(self.mono_ns.saturating_sub(ns));
            self.now.checked_sub(behind).unwrap_or(self.now)
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One line: a kind and its fields (values unescaped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// `listener`, `proc`, `pipe`, …
    pub kind: String,
    fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// An empty line of `kind`.
    pub fn new(kind: &str) -> Entry {
        Entry {
            kind: kind.to_string(),
            fields: Vec::new(),
        }
    }

    /// Adds `key=N` (any integer that fits an i64: pids, descriptors, nanoseconds).
    pub fn put(self, key: &str, value: impl TryInto<i64>) -> Entry {
        self.put_int(key, Some(value.try_into().unwrap_or(i64::MAX)))
    }

    /// Adds `key=N`, or `key=-` for `None`.
    pub fn put_opt(self, key: &str, value: Option<impl TryInto<i64>>) -> Entry {
        self.put_int(key, value.map(|v| v.try_into().unwrap_or(i64::MAX)))
    }

    fn put_int(self, key: &str, value: Option<i64>) -> Entry {
        match value {
            Some(n) => self.put_bytes(key, n.to_string().as_bytes()),
            None => self.put_bytes(key, b"-"),
        }
    }

    /// Adds `key=bytes` (any bytes).
    pub fn put_bytes(mut self, key: &str, value: &[u8]) -> Entry {
        self.fields.push((key.to_string(), value.to_vec()));
        self
    }

    /// The raw value of `key`.
    pub fn bytes(&self, key: &str) -> Result<&[u8], String> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| format!("{}: no {key}", self.kind))
    }

    /// The value of `key` as text.
    pub fn text(&self, key: &str) -> Result<&str, String> {
        std::str::from_utf8(self.bytes(key)?)
            .map_err(|_| format!("{}: {key} is not text", self.kind))
    }

    /// The integer `key`, in the caller's type (`u32`, `RawFd`, `u64`…).
    pub fn get<T: TryFrom<i64>>(&self, key: &str) -> Result<T, String> {
        let n = self
            .int(key)?
            .ok_or_else(|| format!("{}: no value for {key}", self.kind))?;
        T::try_from(n).map_err(|_| format!("{}: {key} out of range", self.kind))
    }

    /// The integer `key`, `None` for `-`.
    pub fn get_opt<T: TryFrom<i64>>(&self, key: &str) -> Result<Option<T>, String> {
        match self.int(key)? {
            Some(n) => T::try_from(n)
                .map(Some)
                .map_err(|_| format!("{}: {key} out of range", self.kind)),
            None => Ok(None),
        }
    }

    fn int(&self, key: &str) -> Result<Option<i64>, String> {
        let text = self.text(key)?;
        if text == "-" {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| format!("{}: bad {key} '{text}'", self.kind))
    }

    /// A `0`/`1` flag.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.bytes(key)? {
            b"0" => Ok(false),
            b"1" => Ok(true),
            _ => Err(format!("{}: bad {key}", self.kind)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.kind.as_bytes());
        for (k, v) in &self.fields {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            escape(v, out);
        }
        out.push(b'\n');
    }

    fn parse(line: &[u8]) -> Result<Entry, String> {
        let mut words = line.split(|&b| b == b' ');
        let kind = words.next().unwrap_or_default();
        let mut entry = Entry::new(&String::from_utf8_lossy(kind));
        for word in words {
            let eq = word
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| format!("{}: field without '='", entry.kind))?;
            let (key, value) = (word.get(..eq).unwrap_or_default(), word.get(eq + 1..));
            let value = unescape(value.unwrap_or_default())
                .ok_or_else(|| format!("{}: bad escape", entry.kind))?;
            entry
                .fields
                .push((String::from_utf8_lossy(key).into_owned(), value));
        }
        Ok(entry)
    }
}

/// Bytes written as they are; every other byte is `%XX`.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:/+-@,[]()*".contains(&b)
}

fn escape(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        if plain(b) {
            out.push(b);
        } else {
            out.push(b'%');
            out.extend(HEX.get(usize::from(b >> 4)));
            out.extend(HEX.get(usize::from(b & 15)));
        }
    }
}

fn unescape(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut it = value.iter();
    while let Some(&b) = it.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = char::from(*it.next()?).to_digit(16)?;
        let lo = char::from(*it.next()?).to_digit(16)?;
        out.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    Some(out)
}

/// Everything one image hands the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The version of the image that wrote the record.
    pub from_version: String,
    /// The installed binary (what `-s upgrade` executes when `upgrade_binary` is not set).
    pub binary: PathBuf,
    /// CLOCK_MONOTONIC nanoseconds when the record was written (just before the exec).
    pub written_ns: u64,
    /// stub_status's accepts, handled, requests.
    pub counters: [u64; 3],
    /// Inherited listening sockets and the address each is bound to.
    pub listeners: Vec<(RawFd, SocketAddr)>,
    /// The control socket's inherited listener and the path it is bound to (format 2).
    pub control: Option<(RawFd, PathBuf)>,
    /// The watchdog's entries (`proc`, `pipe`, `ended`), in order.
    pub programs: Vec<Entry>,
}

impl Record {
    /// Every inherited descriptor the record names (listeners, the control socket, and each
    /// `fd` field).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|(fd, _)| *fd).collect();
        fds.extend(self.control.as_ref().map(|(fd, _)| *fd));
        fds.extend(
            self.programs
                .iter()
                .filter_map(|e| e.get::<RawFd>("fd").ok()),
        );
        fds
    }

    /// The record as bytes: the header line, then the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let [accepts, handled, requests] = self.counters;
        let head = [
            Entry::new("from").put_bytes("version", self.from_version.as_bytes()),
            Entry::new("binary").put_bytes("path", self.binary.as_os_str().as_encoded_bytes()),
            Entry::new("clock").put("ns", self.written_ns),
            Entry::new("counters")
                .put("accepts", accepts)
                .put("handled", handled)
                .put("requests", requests),
        ];
        for e in &head {
            e.write(&mut body);
        }
        for (fd, addr) in &self.listeners {
            Entry::new("listener")
                .put("fd", *fd)
                .put_bytes("addr", addr.to_string().as_bytes())
                .write(&mut body);
        }
        if let Some((fd, path)) = &self.control {
            Entry::new("control")
                .put("fd", *fd)
                .put_bytes("path", path.as_os_str().as_encoded_bytes())
                .write(&mut body);
        }
        for e in &self.programs {
            e.write(&mut body);
        }
        body.extend_from_slice(b"end\n");
        let mut out = format!("{MAGIC} {FORMAT} {}\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// Reads a record: the magic, a format in [`READS`], the stated length exactly, a last
    /// `end` line, and every line well-formed; anything else is an error (nothing is trusted).
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no header line")?;
        let header = String::from_utf8_lossy(bytes.get(..nl).unwrap_or_default()).into_owned();
        let body = bytes.get(nl + 1..).unwrap_or_default();
        let mut words = header.split(' ');
        if words.next() != Some(MAGIC) {
            return Err("not a handoff record".into());
        }
        let format: u32 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or("no format")?;
        if !READS.contains(&format) {
            return Err(format!(
                "handoff format {format} is not one this build reads"
            ));
        }
        let len: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or("no length")?;
        if len != body.len() || !body.ends_with(b"\nend\n") {
            return Err(format!("truncated: {} bytes of {len}", body.len()));
        }
        let mut record = Record::default();
        let content = body
            .get(..len.saturating_sub(b"end\n".len()))
            .unwrap_or_default();
        let lines = content.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        for line in lines {
            let e = Entry::parse(line)?;
            match e.kind.as_str() {
                "from" => record.from_version = e.text("version")?.to_string(),
                "binary" => record.binary = PathBuf::from(e.text("path")?),
                "clock" => record.written_ns = e.get("ns")?,
                "counters" => {
                    record.counters = [e.get("accepts")?, e.get("handled")?, e.get("requests")?]
                }
                "listener" => {
                    let addr = e.text("addr")?;
                    let addr = addr
                        .parse()
                        .map_err(|_| format!("listener: bad addr '{addr}'"))?;
                    record.listeners.push((e.get("fd")?, addr));
                }
                "control" if record.control.is_none() => {
                    record.control = Some((e.get("fd")?, PathBuf::from(e.text("path")?)));
                }
                "control" => return Err("a second control line".into()),
                "end" => return Err("an end line before the end".into()),
                _ => record.programs.push(e),
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            from_version: "0.1.0".into(),
            binary: PathBuf::from("/usr/sbin/uw gate"),
            written_ns: 123_456_789,
            counters: [3, 3, 17],
            listeners: vec![
                (5, "127.0.0.1:8080".parse().unwrap()),
                (6, "[::1]:80".parse().unwrap()),
            ],
            control: Some((9, PathBuf::from("/run/uw gate.sock"))),
            programs: vec![
                Entry::new("proc")
                    .put_bytes("name", b"django 1")
                    .put("pid", 42)
                    .put_opt("at", None::<u64>),
                Entry::new("pipe")
                    .put("fd", 7)
                    .put_bytes("partial", b"half a line \xff%=\n"),
            ],
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = sample();
        let bytes = r.encode();
        assert!(bytes.starts_with(b"uwgate-handoff 2 "));
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        assert_eq!(r.fds(), vec![5, 6, 9, 7]);
    }

    #[test]
    fn fields_of_any_bytes_survive_and_options_read_back() {
        let r = Record::decode(&sample().encode()).unwrap();
        let pipe = &r.programs[1];
        assert_eq!(pipe.bytes("partial").unwrap(), b"half a line \xff%=\n");
        let proc = &r.programs[0];
        assert_eq!(proc.text("name").unwrap(), "django 1");
        assert_eq!(proc.get::<u32>("pid").unwrap(), 42);
        assert_eq!(proc.get_opt::<u64>("at").unwrap(), None);
        assert!(proc.get::<u32>("missing").is_err());
    }

    #[test]
    fn a_truncated_or_extended_record_is_refused() {
        let bytes = sample().encode();
        assert!(Record::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(
            Record::decode(&bytes[..bytes.len() - 5]).is_err(),
            "no end line"
        );
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"x\n");
        assert!(Record::decode(&longer).is_err());
    }

    #[test]
    fn an_unknown_format_or_magic_is_refused() {
        let bytes = sample().encode();
        let text =
            String::from_utf8_lossy(&bytes).replacen("uwgate-handoff 2", "uwgate-handoff 9", 1);
        assert!(Record::decode(text.as_bytes())
            .unwrap_err()
            .contains("format 9"));
        let text = String::from_utf8_lossy(&bytes).replacen("uwgate-handoff", "other", 1);
        assert!(Record::decode(text.as_bytes()).is_err());
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(b"uwgate-handoff 1 4\nend\n").is_err());
    }

    #[test]
    fn the_control_line_carries_the_socket_and_its_path() {
        let bytes = sample().encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("\ncontrol fd=9 path=/run/uw%20gate.sock\n"),
            "{text}"
        );
        let r = Record::decode(&bytes).unwrap();
        assert_eq!(r.control, Some((9, PathBuf::from("/run/uw gate.sock"))));
        // Off: no line at all.
        let off = Record {
            control: None,
            ..sample()
        };
        let text = String::from_utf8_lossy(&off.encode()).into_owned();
        assert!(!text.contains("control"), "{text}");
        assert_eq!(Record::decode(text.as_bytes()).unwrap().control, None);
        // Two control lines are not one record's.
        let twice = text.replace("end\n", "control fd=3 path=/a\ncontrol fd=4 path=/b\nend\n");
        let body = twice.split_once('\n').unwrap().1;
        let again = format!("uwgate-handoff 2 {}\n{body}", body.len());
        assert!(Record::decode(again.as_bytes()).is_err());
    }

    #[test]
    fn a_format_1_record_without_a_control_line_still_reads() {
        // As the build before the control line wrote it.
        let body = "from version=0.1.0\nbinary path=/usr/sbin/uwgate\nclock ns=5\n\
                    counters accepts=1 handled=1 requests=2\n\
                    listener fd=5 addr=127.0.0.1:8080\n\
                    proc program=django name=django pid=42\nend\n";
        let bytes = format!("uwgate-handoff 1 {}\n{body}", body.len());
        let r = Record::decode(bytes.as_bytes()).unwrap();
        assert_eq!(r.control, None);
        assert_eq!(r.listeners.len(), 1);
        assert_eq!(r.programs.len(), 1);
        assert_eq!(r.fds(), vec![5]);
    }

    #[test]
    fn a_bad_escape_is_an_error_not_a_panic() {
        let body = b"proc name=%G1\nend\n";
        let mut bytes = format!("uwgate-handoff 1 {}\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        assert!(Record::decode(&bytes).is_err());
        let body = b"proc name=%4\nend\n";
        let mut bytes = format!("uwgate-handoff 1 {}\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        assert!(Record::decode(&bytes).is_err());
    }

    #[test]
    fn instants_cross_as_monotonic_nanoseconds() {
        let now = Instant::now();
        let old = Clock::new(now, 10_000_000_000);
        let later = now + Duration::from_millis(1500);
        let earlier = now - Duration::from_millis(250);
        let (a, b) = (old.encode(later), old.encode(earlier));
        assert_eq!(a, 11_500_000_000);
        assert_eq!(b, 9_750_000_000);
        // The new image reads its clock 40 ms later.
        let new_now = now + Duration::from_millis(40);
        let new = Clock::new(new_now, 10_040_000_000);
        assert_eq!(new.decode(a), later);
        assert_eq!(new.decode(b), earlier);
    }
}
