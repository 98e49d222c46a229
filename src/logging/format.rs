//! Pure formatting for the log sinks: a byte cursor over a caller's fixed buffer, UTC calendar
//! math, `\xHH` escaping, the RFC 3164 datagram, the stderr line and nginx's "combined" access
//! line.
//!
//! Owns no state and no I/O. Must never allocate, never panic (every slice access is checked,
//! every time is clamped before the date math), and never write past the buffer it is given.

use core::fmt::{self, Write as _};
use std::net::IpAddr;

/// A `fmt::Write` over a caller's fixed byte buffer. Bytes that do not fit are dropped and
/// remembered (`is_truncated`); it never allocates and never panics.
pub struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
    truncated: bool,
}

impl<'a> Cursor<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Cursor {
            buf,
            len: 0,
            truncated: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once a write did not fit.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Appends as much of `bytes` as fits; returns false (and marks the cursor truncated) when
    /// some did not.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let room = self.buf.len().saturating_sub(self.len);
        let take = bytes.len().min(room);
        let end = self.len.saturating_add(take);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..end), bytes.get(..take)) {
            dst.copy_from_slice(src);
            self.len = end;
        }
        if take < bytes.len() {
            self.truncated = true;
            return false;
        }
        true
    }

    /// Appends one byte, or marks the cursor truncated.
    pub fn push_byte(&mut self, byte: u8) -> bool {
        self.push(&[byte])
    }

    /// When a write did not fit, replaces the tail of the buffer with `marker` ("..."), cutting
    /// back to a UTF-8 character boundary, but never below `floor` (the end of a header that
    /// must stay intact).
    pub fn mark_truncation(&mut self, floor: usize, marker: &[u8]) {
        if !self.truncated {
            return;
        }
        let mut cut = self.buf.len().saturating_sub(marker.len()).max(floor);
        // Back up over UTF-8 continuation bytes so the text before the marker stays valid.
        while cut > floor && self.buf.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
            cut -= 1;
        }
        self.len = cut.min(self.len);
        self.truncated = false;
        self.push(marker);
        self.truncated = true;
    }
}

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Err stops the formatting machinery early once the buffer is full.
        if self.push(s.as_bytes()) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

/// Upper-case hex digit of the low nibble of `n`.
fn hex_digit(n: u8) -> u8 {
    match n & 0x0F {
        d @ 0..=9 => b'0' + d,
        d => b'A' + (d - 10),
    }
}

/// The four bytes `\xHH` for `byte`.
fn hex_escape(byte: u8) -> [u8; 4] {
    [b'\\', b'x', hex_digit(byte >> 4), hex_digit(byte)]
}

/// Displays bytes as text with every control character (C0, DEL, C1) and every byte that is not
/// valid UTF-8 written as `\xHH`, so a child's output reaches syslog losslessly and can never
/// inject a line break. Valid UTF-8 text is kept as it is; a backslash is kept too (readable
/// Python reprs matter more than a perfectly reversible escape).
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let valid = chunk.valid();
            let mut start = 0;
            for (at, c) in valid.char_indices() {
                if !c.is_control() {
                    continue;
                }
                f.write_str(valid.get(start..at).unwrap_or(""))?;
                let mut utf8 = [0u8; 4];
                for &b in c.encode_utf8(&mut utf8).as_bytes() {
                    write_hex_escape(f, b)?;
                }
                start = at.saturating_add(c.len_utf8());
            }
            f.write_str(valid.get(start..).unwrap_or(""))?;
            for &b in chunk.invalid() {
                write_hex_escape(f, b)?;
            }
        }
        Ok(())
    }
}

fn write_hex_escape(f: &mut fmt::Formatter<'_>, byte: u8) -> fmt::Result {
    let esc = hex_escape(byte);
    // The escape is pure ASCII, so this conversion cannot fail.
    f.write_str(core::str::from_utf8(&esc).unwrap_or("\\x??"))
}

/// A UTC calendar time, broken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    /// 1970..=9999.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// 9999-12-31T23:59:59Z: the last second a four-digit year can show.
const MAX_UNIX_TIME: i64 = 253_402_300_799;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl CivilTime {
    /// Breaks `unix_time` (seconds since the epoch, UTC) down, clamped to 1970..=9999 so the
    /// arithmetic can never overflow. Howard Hinnant's `civil_from_days`.
    pub fn from_unix(unix_time: i64) -> CivilTime {
        let t = unix_time.clamp(0, MAX_UNIX_TIME);
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        // 1. Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
        let z = days + 719_468;
        // 2. 400-year era, and the day within it: doe in [0, 146096].
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        // 3. Year within the era, yoe in [0, 399]; day within that March-based year, doy in
        //    [0, 365].
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        // 4. Month counted from March, mp in [0, 11]; day in [1, 31]; month in [1, 12].
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        CivilTime {
            year: u16::try_from(year).unwrap_or(9999),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
            hour: u8::try_from(secs / 3_600).unwrap_or(0),
            minute: u8::try_from(secs % 3_600 / 60).unwrap_or(0),
            second: u8::try_from(secs % 60).unwrap_or(0),
        }
    }

    /// "Jan" … "Dec".
    pub fn month_abbr(&self) -> &'static str {
        MONTHS
            .get(usize::from(self.month).saturating_sub(1))
            .copied()
            .unwrap_or("Jan")
    }
}

/// Severity of a syslog message (RFC 5424 numeric codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// 0, `emerg`.
    Emerg = 0,
    /// 1, `alert`.
    Alert = 1,
    /// 2, `crit`.
    Crit = 2,
    /// 3, `err`: `log::Level::Error` and, by default, a child's stderr.
    Err = 3,
    /// 4, `warning`: `log::Level::Warn` and the drop notice.
    Warning = 4,
    /// 5, `notice`.
    Notice = 5,
    /// 6, `info`: `log::Level::Info`, access lines and, by default, a child's stdout.
    Info = 6,
    /// 7, `debug`: `log::Level::Debug` and `Trace`.
    Debug = 7,
}

impl Severity {
    /// The syslog severity a `log` record is sent with.
    pub fn from_level(level: log::Level) -> Severity {
        match level {
            log::Level::Error => Severity::Err,
            log::Level::Warn => Severity::Warning,
            log::Level::Info => Severity::Info,
            log::Level::Debug | log::Level::Trace => Severity::Debug,
        }
    }

    /// The numeric code (0 to 7).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The severity of code `code` (a program's `stdout_syslog_priority`); above 7 is debug.
    pub fn from_code(code: u8) -> Severity {
        match code {
            0 => Severity::Emerg,
            1 => Severity::Alert,
            2 => Severity::Crit,
            3 => Severity::Err,
            4 => Severity::Warning,
            5 => Severity::Notice,
            6 => Severity::Info,
            _ => Severity::Debug,
        }
    }

    /// nginx's error-log word for it, as the stderr sink labels lines.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Emerg => "emerg",
            Severity::Alert => "alert",
            Severity::Crit => "crit",
            Severity::Err => "error",
            Severity::Warning => "warn",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }
}

/// `PRI = facility * 8 + severity`. A facility above 23 (local7) is clamped to 23.
pub fn pri(facility: u8, severity: Severity) -> u8 {
    // 23 * 8 + 7 = 191: cannot overflow a u8.
    facility.min(23) * 8 + severity.code()
}

/// The body of a syslog message.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    /// A `log` record's text, written as it is.
    Text(fmt::Arguments<'a>),
    /// Raw bytes (access line, child output): control characters and invalid UTF-8 escaped.
    Bytes(&'a [u8]),
}

/// Everything in front of the message in an RFC 3164 datagram.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// 0..=23 (daemon = 3, local0 = 16, …).
    pub facility: u8,
    /// `Some` for a remote (UDP) syslog; `None` for the local socket, as glibc's syslog(3).
    pub hostname: Option<&'a str>,
    /// Seconds since the epoch; shown in UTC.
    pub unix_time: i64,
    /// The severity half of PRI.
    pub severity: Severity,
    /// The program name rsyslog filters on; bytes that would end it early become `_`.
    pub tag: &'a str,
    /// The pid shown in `TAG[PID]`.
    pub pid: u32,
}

/// The truncation marker put at the end of a message that did not fit.
pub const TRUNCATION_MARKER: &[u8] = b"...";

/// Writes `<PRI>Mmm dd hh:mm:ss [HOST ]TAG[PID]: MESSAGE` into `out` and returns its length.
/// A message that does not fit is cut at a character boundary and ends with "...".
pub fn format_datagram(out: &mut [u8], header: &Header<'_>, msg: Message<'_>) -> usize {
    let mut w = Cursor::new(out);
    let t = CivilTime::from_unix(header.unix_time);
    let _ = write!(
        w,
        "<{}>{} {:>2} {:02}:{:02}:{:02} ",
        pri(header.facility, header.severity),
        t.month_abbr(),
        t.day,
        t.hour,
        t.minute,
        t.second
    );
    if let Some(host) = header.hostname {
        w.push(host.as_bytes());
        w.push_byte(b' ');
    }
    push_tag(&mut w, header.tag);
    let _ = write!(w, "[{}]: ", header.pid);
    let header_len = w.len();
    let _ = match msg {
        Message::Text(args) => w.write_fmt(args),
        Message::Bytes(bytes) => write!(w, "{}", Escaped(bytes)),
    };
    w.mark_truncation(header_len, TRUNCATION_MARKER);
    w.len()
}

/// Writes one stderr line, `YYYY/MM/DD hh:mm:ss [level] MESSAGE\n` (nginx's error-log time, UTC),
/// into `out` and returns its length; `newline_first` puts a `\n` in front (to end a line an
/// earlier write cut short). A message that does not fit is cut at a character boundary and
/// ends with "..."; the line always ends with `\n` when `out` has room for the prefix.
pub fn format_stderr_line(
    out: &mut [u8],
    newline_first: bool,
    unix_time: i64,
    level: &str,
    msg: fmt::Arguments<'_>,
) -> usize {
    // The last byte is kept for the newline.
    let body_len = out.len().saturating_sub(1);
    let len = {
        let mut w = Cursor::new(out.get_mut(..body_len).unwrap_or(&mut []));
        if newline_first {
            w.push_byte(b'\n');
        }
        let t = CivilTime::from_unix(unix_time);
        let _ = write!(
            w,
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02} [{}] ",
            t.year, t.month, t.day, t.hour, t.minute, t.second, level
        );
        let prefix_len = w.len();
        let _ = w.write_fmt(msg);
        w.mark_truncation(prefix_len, TRUNCATION_MARKER);
        w.len()
    };
    match out.get_mut(len) {
        Some(end) => {
            *end = b'\n';
            len.saturating_add(1)
        }
        None => len,
    }
}

/// Writes a syslog TAG: anything that is not printable ASCII, or that rsyslog would read as the
/// end of the tag (`:`, `[`, `]`), becomes `_`; an empty tag becomes `-`.
fn push_tag(w: &mut Cursor<'_>, tag: &str) {
    if tag.is_empty() {
        w.push_byte(b'-');
        return;
    }
    for b in tag.bytes() {
        let ok = b.is_ascii_graphic() && !matches!(b, b':' | b'[' | b']');
        w.push_byte(if ok { b } else { b'_' });
    }
}

/// nginx's default access-log escaping: `"`, `\`, bytes below 0x20 and from 0x7f up as `\xHH`.
/// An empty value is logged as `-`, as nginx logs an empty variable.
fn push_nginx_escaped(w: &mut Cursor<'_>, value: &[u8]) {
    if value.is_empty() {
        w.push_byte(b'-');
        return;
    }
    let mut start = 0;
    for (at, &b) in value.iter().enumerate() {
        if !(0x20..0x7F).contains(&b) || b == b'"' || b == b'\\' {
            w.push(value.get(start..at).unwrap_or(&[]));
            w.push(&hex_escape(b));
            start = at.saturating_add(1);
        }
    }
    w.push(value.get(start..).unwrap_or(&[]));
}

/// Writes one access line in nginx's `combined` format into `out` and returns its length:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`, with `$remote_user` always `-`, the time in UTC
/// (`25/Nov/2026:20:20:22 +0000`), empty values as `-` and nginx's `\xHH` escaping.
/// Called by the connection code once per request, into a fixed buffer; a line longer than
/// `out` is cut short (no marker), never overflowing.
#[allow(clippy::too_many_arguments)] // the fields of the combined format, in its order
pub fn format_combined(
    out: &mut [u8],
    remote: IpAddr,
    unix_time: i64,
    request_line: &[u8],
    status: u16,
    body_bytes: u64,
    referer: &[u8],
    user_agent: &[u8],
) -> usize {
    let mut w = Cursor::new(out);
    let t = CivilTime::from_unix(unix_time);
    let _ = write!(
        w,
        "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"",
        remote,
        t.day,
        t.month_abbr(),
        t.year,
        t.hour,
        t.minute,
        t.second
    );
    push_nginx_escaped(&mut w, request_line);
    let _ = write!(w, "\" {:03} {} \"", status, body_bytes);
    push_nginx_escaped(&mut w, referer);
    w.push(b"\" \"");
    push_nginx_escaped(&mut w, user_agent);
    w.push_byte(b'"');
    w.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const NOV_25_2026_20_20_22: i64 = 1_795_638_022;

    fn combined(
        remote: IpAddr,
        request: &[u8],
        status: u16,
        bytes: u64,
        referer: &[u8],
        ua: &[u8],
    ) -> String {
        let mut buf = [0u8; 1024];
        let n = format_combined(
            &mut buf,
            remote,
            NOV_25_2026_20_20_22,
            request,
            status,
            bytes,
            referer,
            ua,
        );
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn datagram(header: &Header<'_>, msg: Message<'_>, cap: usize) -> Vec<u8> {
        let mut buf = vec![0u8; cap];
        let n = format_datagram(&mut buf, header, msg);
        buf.truncate(n);
        buf
    }

    fn header<'a>(tag: &'a str, hostname: Option<&'a str>) -> Header<'a> {
        Header {
            facility: 3,
            hostname,
            unix_time: NOV_25_2026_20_20_22,
            severity: Severity::Info,
            tag,
            pid: 42,
        }
    }

    #[test]
    fn pri_is_facility_times_eight_plus_severity() {
        assert_eq!(pri(3, Severity::Err), 27); // daemon.err
        assert_eq!(pri(3, Severity::Info), 30); // daemon.info
        assert_eq!(pri(16, Severity::Warning), 132); // local0.warning
        assert_eq!(pri(23, Severity::Debug), 191); // local7.debug
        assert_eq!(pri(0, Severity::Err), 3); // kern.err
    }

    #[test]
    fn facility_above_local7_is_clamped() {
        assert_eq!(pri(200, Severity::Debug), 191);
        assert_eq!(pri(u8::MAX, Severity::Err), 187);
    }

    #[test]
    fn log_levels_map_to_syslog_severities() {
        assert_eq!(Severity::from_level(log::Level::Error).code(), 3);
        assert_eq!(Severity::from_level(log::Level::Warn).code(), 4);
        assert_eq!(Severity::from_level(log::Level::Info).code(), 6);
        assert_eq!(Severity::from_level(log::Level::Debug).code(), 7);
        assert_eq!(Severity::from_level(log::Level::Trace).code(), 7);
        for code in 0..=7 {
            assert_eq!(Severity::from_code(code).code(), code);
        }
        assert_eq!(Severity::from_code(9), Severity::Debug);
        assert_eq!(Severity::from_code(3).label(), "error");
    }

    #[test]
    fn civil_time_matches_known_dates() {
        let t = CivilTime::from_unix(NOV_25_2026_20_20_22);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 11, 25, 20, 20, 22)
        );
        let leap = CivilTime::from_unix(1_709_164_800);
        assert_eq!((leap.year, leap.month, leap.day), (2024, 2, 29));
        let y2k = CivilTime::from_unix(946_684_800);
        assert_eq!((y2k.year, y2k.month, y2k.day, y2k.hour), (2000, 1, 1, 0));
        let epoch = CivilTime::from_unix(0);
        assert_eq!((epoch.year, epoch.month, epoch.day), (1970, 1, 1));
        assert_eq!(CivilTime::from_unix(1_772_672_523).month_abbr(), "Mar");
    }

    #[test]
    fn civil_time_agrees_with_day_counting_for_every_day_of_several_centuries() {
        // Walk day by day from 1970 to 2400 and check the date advances by exactly one.
        let mut prev = CivilTime::from_unix(0);
        for day in 1..(430 * 366) {
            let t = CivilTime::from_unix(day * 86_400);
            let next_month = if t.month == 1 { 12 } else { t.month - 1 };
            let same_month = t.year == prev.year && t.month == prev.month && t.day == prev.day + 1;
            let new_month = t.day == 1 && prev.month == next_month && prev.day >= 28;
            assert!(same_month || new_month, "{prev:?} -> {t:?}");
            prev = t;
        }
    }

    #[test]
    fn extreme_times_are_clamped_without_panicking() {
        let low = CivilTime::from_unix(i64::MIN);
        assert_eq!((low.year, low.month, low.day), (1970, 1, 1));
        let high = CivilTime::from_unix(i64::MAX);
        assert_eq!(
            (
                high.year,
                high.month,
                high.day,
                high.hour,
                high.minute,
                high.second
            ),
            (9999, 12, 31, 23, 59, 59)
        );
    }

    #[test]
    fn combined_line_has_nginx_layout_exactly() {
        let line = combined(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 7)),
            b"GET /static/app.css HTTP/1.1",
            200,
            5316,
            b"https://django.blog/",
            b"Mozilla/5.0 (X11; Linux x86_64)",
        );
        assert_eq!(
            line,
            "192.168.1.7 - - [25/Nov/2026:20:20:22 +0000] \"GET /static/app.css HTTP/1.1\" 200 5316 \
             \"https://django.blog/\" \"Mozilla/5.0 (X11; Linux x86_64)\""
        );
    }

    #[test]
    fn combined_line_shows_empty_values_as_dash_and_pads_status() {
        let line = combined(IpAddr::V6(Ipv6Addr::LOCALHOST), b"", 0, 0, b"", b"");
        assert_eq!(
            line,
            "::1 - - [25/Nov/2026:20:20:22 +0000] \"-\" 000 0 \"-\" \"-\""
        );
    }

    #[test]
    fn combined_line_escapes_quotes_backslashes_controls_and_high_bytes() {
        let line = combined(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            b"GET /a\"b\\c\x01\x1f HTTP/1.1",
            400,
            150,
            b"ref\x7f\xff",
            b"caf\xc3\xa9\n",
        );
        assert_eq!(
            line,
            "127.0.0.1 - - [25/Nov/2026:20:20:22 +0000] \"GET /a\\x22b\\x5Cc\\x01\\x1F HTTP/1.1\" \
             400 150 \"ref\\x7F\\xFF\" \"caf\\xC3\\xA9\\x0A\""
        );
    }

    #[test]
    fn combined_line_truncates_safely_in_a_small_buffer() {
        for cap in 0..120 {
            let mut buf = vec![0u8; cap];
            let n = format_combined(
                &mut buf,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                NOV_25_2026_20_20_22,
                b"GET /\"\"\"\"\"\" HTTP/1.1",
                200,
                u64::MAX,
                b"r",
                b"u",
            );
            assert!(n <= cap);
        }
        let full = combined(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            b"GET / HTTP/1.1",
            200,
            u64::MAX,
            b"",
            b"",
        );
        let mut small = [0u8; 30];
        let n = format_combined(
            &mut small,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            NOV_25_2026_20_20_22,
            b"GET / HTTP/1.1",
            200,
            u64::MAX,
            b"",
            b"",
        );
        assert_eq!(n, 30);
        assert_eq!(&small[..], &full.as_bytes()[..30]);
    }

    #[test]
    fn datagram_for_local_socket_has_no_hostname() {
        let d = datagram(
            &header("uwgate", None),
            Message::Text(format_args!("listening on {}", 80)),
            2048,
        );
        assert_eq!(d, b"<30>Nov 25 20:20:22 uwgate[42]: listening on 80");
    }

    #[test]
    fn datagram_for_remote_syslog_carries_hostname() {
        let d = datagram(
            &header("uwgate", Some("box1")),
            Message::Text(format_args!("hi")),
            2048,
        );
        assert_eq!(d, b"<30>Nov 25 20:20:22 box1 uwgate[42]: hi");
    }

    #[test]
    fn datagram_day_of_month_is_space_padded() {
        let mut h = header("t", None);
        h.unix_time = 1_772_672_523; // 2026-03-05 01:02:03
        h.severity = Severity::Err;
        let d = datagram(&h, Message::Text(format_args!("x")), 2048);
        assert_eq!(d, b"<27>Mar  5 01:02:03 t[42]: x");
    }

    #[test]
    fn tag_characters_that_end_a_tag_are_replaced() {
        let d = datagram(
            &header("my prog:[1]", None),
            Message::Text(format_args!("x")),
            2048,
        );
        assert_eq!(d, b"<30>Nov 25 20:20:22 my_prog__1_[42]: x");
        let d = datagram(&header("", None), Message::Text(format_args!("x")), 2048);
        assert_eq!(d, b"<30>Nov 25 20:20:22 -[42]: x");
    }

    #[test]
    fn byte_messages_escape_controls_and_invalid_utf8() {
        let d = datagram(
            &header("django", None),
            Message::Bytes(b"caf\xc3\xa9 \t\x1b[31mred\x7f \xff\xfe \xc2\x85 \\n ok"),
            2048,
        );
        assert_eq!(
            String::from_utf8(d).unwrap(),
            "<30>Nov 25 20:20:22 django[42]: café \\x09\\x1B[31mred\\x7F \\xFF\\xFE \\xC2\\x85 \\n ok"
        );
    }

    #[test]
    fn truncated_utf8_sequence_at_end_is_escaped() {
        let d = datagram(&header("p", None), Message::Bytes(b"ab\xe2\x82"), 2048);
        assert_eq!(d, b"<30>Nov 25 20:20:22 p[42]: ab\\xE2\\x82");
    }

    #[test]
    fn ten_kilobyte_message_is_truncated_with_marker() {
        let big = "x".repeat(10 * 1024);
        let d = datagram(
            &header("uwgate", None),
            Message::Text(format_args!("{big}")),
            2048,
        );
        assert_eq!(d.len(), 2048);
        assert!(d.starts_with(b"<30>Nov 25 20:20:22 uwgate[42]: xxx"));
        assert!(d.ends_with(b"x..."));
        let bytes = vec![b'y'; 10 * 1024];
        let d = datagram(&header("uwgate", None), Message::Bytes(&bytes), 2048);
        assert_eq!(d.len(), 2048);
        assert!(d.ends_with(b"y..."));
    }

    #[test]
    fn truncation_never_splits_a_utf8_character() {
        let text = "é".repeat(2000); // 4000 bytes of two-byte characters
        for cap in 40..60 {
            let d = datagram(
                &header("t", None),
                Message::Text(format_args!("{text}")),
                cap,
            );
            assert!(d.ends_with(b"..."));
            assert!(core::str::from_utf8(&d).is_ok(), "cap {cap}");
            assert!(d.len() <= cap);
        }
    }

    #[test]
    fn tiny_buffers_never_panic() {
        for cap in 0..40 {
            let d = datagram(
                &header("uwgate", Some("host")),
                Message::Bytes(b"hello \xff"),
                cap,
            );
            assert!(d.len() <= cap);
        }
    }

    #[test]
    fn cursor_reports_truncation() {
        let mut buf = [0u8; 4];
        let mut w = Cursor::new(&mut buf);
        assert!(w.is_empty());
        assert!(w.push(b"ab"));
        assert!(!w.push(b"cde"));
        assert!(w.is_truncated());
        assert_eq!(w.written(), b"abcd");
    }

    fn stderr_line(cap: usize, newline_first: bool, msg: fmt::Arguments<'_>) -> String {
        let mut buf = vec![0u8; cap];
        let n = format_stderr_line(&mut buf, newline_first, NOV_25_2026_20_20_22, "warn", msg);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn stderr_line_has_nginx_error_log_time_level_and_a_newline() {
        assert_eq!(
            stderr_line(4096, false, format_args!("bind {}", 80)),
            "2026/11/25 20:20:22 [warn] bind 80\n"
        );
        assert_eq!(
            stderr_line(4096, true, format_args!("x")),
            "\n2026/11/25 20:20:22 [warn] x\n"
        );
    }

    #[test]
    fn long_stderr_line_is_cut_to_the_buffer_with_marker_and_newline() {
        let long = "é".repeat(3000);
        let line = stderr_line(4096, false, format_args!("{long}"));
        assert!(line.len() <= 4096, "{}", line.len());
        assert!(line.len() >= 4090, "{}", line.len());
        assert!(line.ends_with("é...\n"), "{line:?}");
        assert!(line.starts_with("2026/11/25 20:20:22 [warn] é"));
    }

    #[test]
    fn tiny_stderr_buffers_never_panic() {
        for cap in 0..40 {
            let mut buf = vec![0u8; cap];
            let n = format_stderr_line(&mut buf, true, -1, "error", format_args!("hello"));
            assert!(n <= cap);
            if cap > 0 {
                assert_eq!(buf[n - 1], b'\n', "cap {cap}");
            }
        }
    }
}
