//! Value grammars: sizes, durations, booleans, numbers, paths, addresses, access rules and the
//! small enumerations (facility, level, signal, ...).
//!
//! Owns: turning one trimmed, already expanded value into a typed value, or into the part of
//! an error message after `invalid value 'V' for 'K' in [S]: ` (`expected a size like 8k`).
//! Must never: know sections, lines or files — callers add those — or panic on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::{
    AccessRule, AutoRestart, Expires, ReadyCheck, Resolve, SyslogTarget, Upstream, UpstreamAddr,
};

/// Longest path a `sockaddr_un` holds, without its terminating NUL.
const UNIX_PATH_MAX: usize = 107;

/// Longest duration any key takes (365 days): keeps `Instant + timeout` far from overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The duration forms, for messages.
const DURATION_FORMS: &str = "a duration like 500ms, 60s, 5m, 1h or 30d (a bare number is seconds)";

/// Parses a size: `512`, `8k`/`8K`, `10m`/`10M`, `1g`/`1G` (powers of 1024). `None` when
/// malformed or above `u64::MAX`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (number, unit) = if let Some(n) = s.strip_suffix(['k', 'K']) {
        (n, 1u64 << 10)
    } else if let Some(n) = s.strip_suffix(['m', 'M']) {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix(['g', 'G']) {
        (n, 1 << 30)
    } else {
        (s, 1)
    };
    digits(number)?.checked_mul(unit)
}

/// Parses a duration: `500ms`, `60s`, `5m`, `1h`, `30d`, `2w`; a bare number is seconds.
/// `None` when malformed or too large for `Duration`'s seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(n) = s.strip_suffix("ms") {
        return digits(n).map(Duration::from_millis);
    }
    let (number, unit) = if let Some(n) = s.strip_suffix('s') {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400)
    } else if let Some(n) = s.strip_suffix('w') {
        (n, 604_800)
    } else {
        (s, 1)
    };
    digits(number)?.checked_mul(unit).map(Duration::from_secs)
}

/// Parses a boolean: `on/off`, `true/false`, `yes/no`, `1/0`, in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["on", "true", "yes", "1"];
    const FALSE: [&str; 4] = ["off", "false", "no", "0"];
    if TRUE.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Unsigned decimal digits only (no sign, no spaces), as u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A size shown the way a user writes it: `8k`, `16m`, `1g`, or bytes.
pub(crate) fn show_size(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")] {
        if n != 0 && n.is_multiple_of(unit) {
            return format!("{}{name}", n.checked_div(unit).unwrap_or(0));
        }
    }
    n.to_string()
}

/// A boolean key.
pub(crate) fn boolean(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| "expected on or off (also true/false, yes/no, 1/0)".to_string())
}

/// An unsigned number within `min..=max`.
pub(crate) fn number_in(v: &str, min: u64, max: u64) -> Result<u64, String> {
    digits(v)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected a number from {min} to {max}"))
}

/// A signed number within `min..=max`.
pub(crate) fn signed_in(v: &str, min: i64, max: i64) -> Result<i64, String> {
    let (negative, magnitude) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    digits(magnitude)
        .and_then(|n| i64::try_from(n).ok())
        .map(|n| if negative { n.saturating_neg() } else { n })
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected a number from {min} to {max}"))
}

/// A size within `min..=max`.
pub(crate) fn size_in(v: &str, min: u64, max: u64) -> Result<u64, String> {
    parse_size(v)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!(
                "expected a size from {} to {} (like 512, 8k, 16K, 10m, 1g)",
                show_size(min),
                show_size(max)
            )
        })
}

/// Any size (`0` included).
pub(crate) fn size(v: &str) -> Result<u64, String> {
    parse_size(v).ok_or_else(|| "expected a size like 512, 8k, 16K, 10m or 1g".to_string())
}

/// A duration up to [`MAX_DURATION`]; zero only when `allow_zero`.
pub(crate) fn duration(v: &str, allow_zero: bool) -> Result<Duration, String> {
    let d = parse_duration(v).ok_or_else(|| format!("expected {DURATION_FORMS}"))?;
    if d > MAX_DURATION {
        return Err("expected a duration of at most 365d".to_string());
    }
    if d.is_zero() && !allow_zero {
        return Err(format!("expected {DURATION_FORMS}, above 0"));
    }
    Ok(d)
}

/// An absolute path, kept exactly as written (a trailing slash matters for `alias`).
pub(crate) fn absolute_path(v: &str) -> Result<PathBuf, String> {
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err("expected an absolute path, like /srv/www or %(here)s/www".to_string())
    }
}

/// A user or group name (or numeric id): non-empty, no spaces, no ':'.
pub(crate) fn account(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        Err("expected a user or group name".to_string())
    } else {
        Ok(v.to_string())
    }
}

/// A syslog tag: 1 to 32 letters, digits, '_', '-', '.' or '/' (RFC 3164).
pub(crate) fn tag(v: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected 1 to 32 letters, digits, '_', '-', '.' or '/'".to_string())
    }
}

/// A port 1..=65535.
fn port(v: &str) -> Option<u16> {
    digits(v)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|p| *p != 0)
}

/// A `listen` address: `80` (all IPv4), `*:80`, `127.0.0.1:8080`, `[::]:80`, `[::1]:8080`.
pub(crate) fn listen(v: &str) -> Result<SocketAddr, String> {
    let expected =
        || "expected a port or address:port, like 80, 127.0.0.1:8080 or [::]:80".to_string();
    let all = v.strip_prefix("*:").unwrap_or(v);
    if digits(all).is_some() {
        let p = port(all).ok_or_else(|| "expected a port from 1 to 65535".to_string())?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)));
    }
    let addr: SocketAddr = v.parse().map_err(|_| expected())?;
    if addr.port() == 0 {
        return Err("expected a port from 1 to 65535".to_string());
    }
    Ok(addr)
}

/// `HOST:PORT` or `[V6]:PORT`; a host name is resolved now (through `resolve`) and its first
/// address taken.
pub(crate) fn host_port(v: &str, resolve: Resolve<'_>) -> Result<SocketAddr, String> {
    if let Ok(addr) = v.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("expected a port from 1 to 65535".to_string());
        }
        return Ok(addr);
    }
    let Some((host, port_text)) = v.rsplit_once(':') else {
        return Err("expected host:port, like 127.0.0.1:8000 or localhost:8000".to_string());
    };
    if host.contains(':') {
        return Err("expected an IPv6 address in brackets, like [::1]:8000".to_string());
    }
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '[' || c == ']')
    {
        return Err("expected host:port, like 127.0.0.1:8000 or localhost:8000".to_string());
    }
    let p = port(port_text).ok_or_else(|| "expected a port from 1 to 65535".to_string())?;
    resolve(host, p)
}

/// The first address of `host`, resolved with the system resolver: what [`super::load`] and
/// [`super::parse`] use. Reads `/etc/hosts` and may ask the DNS.
pub fn resolve_host(host: &str, p: u16) -> Result<SocketAddr, String> {
    let mut addrs = (host, p)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("cannot resolve '{host}': no address"))
}

/// The path after `unix:`: absolute and short enough for `sockaddr_un`.
fn unix_socket(path: &str) -> Result<PathBuf, String> {
    if !path.starts_with('/') {
        return Err(
            "expected an absolute socket path after 'unix:', like unix:/run/app.sock".to_string(),
        );
    }
    if path.len() > UNIX_PATH_MAX {
        return Err(format!("socket path is longer than {UNIX_PATH_MAX} bytes"));
    }
    Ok(PathBuf::from(path))
}

/// A `uwsgi_pass` value: `ADDRESS [max_fails=N] [fail_timeout=DURATION]`, where ADDRESS is
/// `host:port`, `[v6]:port` or `unix:/path` (an nginx-style `uwsgi://` prefix is allowed).
pub(crate) fn upstream(v: &str, resolve: Resolve<'_>) -> Result<Upstream, String> {
    let mut words = v.split_whitespace();
    let Some(first) = words.next() else {
        return Err(
            "expected host:port or unix:/path, then optional max_fails=N fail_timeout=10s"
                .to_string(),
        );
    };
    let address = first.strip_prefix("uwsgi://").unwrap_or(first);
    let addr = match address.strip_prefix("unix:") {
        Some(path) => UpstreamAddr::Unix(unix_socket(path)?),
        None => UpstreamAddr::Tcp(host_port(address, resolve)?),
    };
    let mut upstream = Upstream::new(addr);
    let (mut max_fails_seen, mut fail_timeout_seen) = (false, false);
    for word in words {
        match word.split_once('=') {
            Some(("max_fails", n)) if !max_fails_seen => {
                max_fails_seen = true;
                let n = number_in(n, 0, u64::from(u32::MAX))
                    .map_err(|why| format!("max_fails: {why}"))?;
                upstream.max_fails = u32::try_from(n).unwrap_or(u32::MAX);
            }
            Some(("fail_timeout", d)) if !fail_timeout_seen => {
                fail_timeout_seen = true;
                upstream.fail_timeout =
                    duration(d, true).map_err(|why| format!("fail_timeout: {why}"))?;
            }
            _ => {
                return Err(format!(
                    "unexpected '{word}': expected at most one max_fails=N and one fail_timeout=DURATION after the address"
                ))
            }
        }
    }
    Ok(upstream)
}

/// An `allow`/`deny` value: `all`, an address, or `address/prefix`. Host bits below the prefix
/// are cleared, with a warning (as nginx does).
pub(crate) fn access(v: &str, allow: bool) -> Result<(AccessRule, Option<String>), String> {
    let expected = || {
        "expected all, an address or a network, like 127.0.0.1, 10.0.0.0/8, ::1 or fd00::/8"
            .to_string()
    };
    if v == "all" {
        return Ok((AccessRule { allow, net: None }, None));
    }
    let (addr_text, len_text) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| expected())?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max,
        Some(l) => digits(l)
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("expected a prefix length from 0 to {max} after '/'"))?,
    };
    let network = mask(addr, len);
    let warning = (network != addr)
        .then(|| format!("low address bits of {v} are meaningless, using {network}/{len}"));
    Ok((
        AccessRule {
            allow,
            net: Some((network, len)),
        },
        warning,
    ))
}

/// `addr` with the bits below a `len`-bit prefix cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let kept = bits
                .checked_shr(32u32.saturating_sub(u32::from(len)))
                .unwrap_or(0);
            let masked = kept
                .checked_shl(32u32.saturating_sub(u32::from(len)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(masked))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let shift = 128u32.saturating_sub(u32::from(len));
            let kept = bits.checked_shr(shift).unwrap_or(0);
            let masked = kept.checked_shl(shift).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(masked))
        }
    }
}

/// An `expires` value: `off`, `epoch`, `max`, a duration, or a negative duration (`-1h`).
pub(crate) fn expires(v: &str) -> Result<Expires, String> {
    match v {
        "off" => return Ok(Expires::Off),
        "epoch" => return Ok(Expires::Epoch),
        "max" => return Ok(Expires::Max),
        _ => {}
    }
    let (negative, text) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let seconds = parse_duration(text)
        .filter(|d| *d <= MAX_DURATION.saturating_mul(100))
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| {
            "expected off, epoch, max or a duration like 30d or -1h (at most 36500d)".to_string()
        })?;
    Ok(Expires::Seconds(if negative {
        seconds.saturating_neg()
    } else {
        seconds
    }))
}

/// A `syslog` value: `unix:/dev/log`, `/dev/log`, `udp:HOST[:PORT]` (port 514), `stderr`.
pub(crate) fn syslog_target(v: &str, resolve: Resolve<'_>) -> Result<SyslogTarget, String> {
    if v == "stderr" {
        return Ok(SyslogTarget::Stderr);
    }
    if let Some(path) = v.strip_prefix("unix:") {
        return unix_socket(path).map(SyslogTarget::Unix);
    }
    if v.starts_with('/') {
        return unix_socket(v).map(SyslogTarget::Unix);
    }
    if let Some(target) = v.strip_prefix("udp:").filter(|t| !t.is_empty()) {
        let bare = target
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(target);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SyslogTarget::Udp(SocketAddr::new(ip, 514)));
        }
        if !target.contains(':') {
            return resolve(target, 514).map(SyslogTarget::Udp);
        }
        return host_port(target, resolve).map(SyslogTarget::Udp);
    }
    Err("expected unix:/dev/log, /dev/log, udp:127.0.0.1:514 or stderr".to_string())
}

/// A syslog facility name, as its code (daemon = 3).
pub(crate) fn facility(v: &str) -> Result<u8, String> {
    const NAMES: [(&str, u8); 20] = [
        ("kern", 0),
        ("user", 1),
        ("mail", 2),
        ("daemon", 3),
        ("auth", 4),
        ("syslog", 5),
        ("lpr", 6),
        ("news", 7),
        ("uucp", 8),
        ("cron", 9),
        ("authpriv", 10),
        ("ftp", 11),
        ("local0", 16),
        ("local1", 17),
        ("local2", 18),
        ("local3", 19),
        ("local4", 20),
        ("local5", 21),
        ("local6", 22),
        ("local7", 23),
    ];
    NAMES
        .iter()
        .find(|(name, _)| v.eq_ignore_ascii_case(name))
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            "expected kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp or local0..local7".to_string()
        })
}

/// An nginx error_log level; notice logs as info, crit/alert/emerg as error.
pub(crate) fn level(v: &str) -> Result<log::LevelFilter, String> {
    use log::LevelFilter;
    const NAMES: [(&str, LevelFilter); 8] = [
        ("debug", LevelFilter::Debug),
        ("info", LevelFilter::Info),
        ("notice", LevelFilter::Info),
        ("warn", LevelFilter::Warn),
        ("error", LevelFilter::Error),
        ("crit", LevelFilter::Error),
        ("alert", LevelFilter::Error),
        ("emerg", LevelFilter::Error),
    ];
    NAMES
        .iter()
        .find(|(name, _)| v.eq_ignore_ascii_case(name))
        .map(|(_, level)| *level)
        .ok_or_else(|| {
            "expected debug, info, notice, warn, error, crit, alert or emerg".to_string()
        })
}

/// A syslog priority (severity) name, as its code: `info` = 6, `err` = 3. Takes syslog's names
/// (`emerg alert crit err warning notice info debug`) and nginx's spellings (`error`, `warn`).
pub(crate) fn priority(v: &str) -> Result<u8, String> {
    const NAMES: [(&str, u8); 10] = [
        ("emerg", 0),
        ("alert", 1),
        ("crit", 2),
        ("err", 3),
        ("error", 3),
        ("warning", 4),
        ("warn", 4),
        ("notice", 5),
        ("info", 6),
        ("debug", 7),
    ];
    NAMES
        .iter()
        .find(|(name, _)| v.eq_ignore_ascii_case(name))
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            "expected emerg, alert, crit, err, warning, notice, info or debug".to_string()
        })
}

/// A control socket path: absolute and short enough for `sockaddr_un`.
pub(crate) fn control_socket(v: &str) -> Result<PathBuf, String> {
    if !v.starts_with('/') {
        return Err("expected an absolute socket path, like /run/uwgate.sock".to_string());
    }
    if v.len() > UNIX_PATH_MAX {
        return Err(format!("socket path is longer than {UNIX_PATH_MAX} bytes"));
    }
    Ok(PathBuf::from(v))
}

/// An octal file mode for the control socket, `0600` to `0777`.
pub(crate) fn socket_mode(v: &str) -> Result<u32, String> {
    let octal = v.len() <= 4 && !v.is_empty() && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal
        .then(|| u32::from_str_radix(v, 8).ok())
        .flatten()
        .filter(|m| *m <= 0o777 && *m & 0o600 == 0o600)
        .ok_or_else(|| "expected an octal mode like 0600 or 0660 (the owner keeps rw)".to_string())
}

/// A stop signal name, with or without `SIG`, in any case.
pub(crate) fn signal(v: &str) -> Result<i32, String> {
    let upper = v.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    match name {
        "TERM" => Ok(libc::SIGTERM),
        "HUP" => Ok(libc::SIGHUP),
        "INT" => Ok(libc::SIGINT),
        "QUIT" => Ok(libc::SIGQUIT),
        "KILL" => Ok(libc::SIGKILL),
        "USR1" => Ok(libc::SIGUSR1),
        "USR2" => Ok(libc::SIGUSR2),
        _ => Err("expected TERM, HUP, INT, QUIT, KILL, USR1 or USR2".to_string()),
    }
}

/// An octal umask, `022`, at most `0777`.
pub(crate) fn umask(v: &str) -> Result<u32, String> {
    let octal = v.len() <= 4 && !v.is_empty() && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal
        .then(|| u32::from_str_radix(v, 8).ok())
        .flatten()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| "expected an octal umask like 022".to_string())
}

/// `exitcodes`: comma-separated codes 0..=255.
pub(crate) fn exitcodes(v: &str) -> Result<Vec<i32>, String> {
    let expected = || "expected exit codes 0 to 255 separated by commas, like 0,2".to_string();
    let mut codes = Vec::new();
    for part in v.split(',') {
        let code = digits(part.trim())
            .filter(|n| *n <= 255)
            .ok_or_else(expected)?;
        codes.push(i32::try_from(code).map_err(|_| expected())?);
    }
    Ok(codes)
}

/// `autorestart`: `unexpected`, or a boolean.
pub(crate) fn autorestart(v: &str) -> Result<AutoRestart, String> {
    if v.eq_ignore_ascii_case("unexpected") {
        return Ok(AutoRestart::Unexpected);
    }
    match parse_bool(v) {
        Some(true) => Ok(AutoRestart::Always),
        Some(false) => Ok(AutoRestart::Never),
        None => Err("expected true, false or unexpected".to_string()),
    }
}

/// `ready`: `tcp:HOST:PORT` or `unix:/path`.
pub(crate) fn ready(v: &str, resolve: Resolve<'_>) -> Result<ReadyCheck, String> {
    if let Some(target) = v.strip_prefix("tcp:") {
        return host_port(target, resolve).map(ReadyCheck::Tcp);
    }
    if let Some(path) = v.strip_prefix("unix:") {
        return unix_socket(path).map(ReadyCheck::Unix);
    }
    Err("expected tcp:127.0.0.1:3306 or unix:/path/to.sock".to_string())
}

/// `charset`: `utf-8` (or on) adds the charset, `off` does not.
pub(crate) fn charset(v: &str) -> Result<bool, String> {
    if v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8") {
        return Ok(true);
    }
    parse_bool(v).ok_or_else(|| "expected utf-8 or off".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The value grammars with the system resolver, as `load` reads them.
    fn upstream(v: &str) -> Result<Upstream, String> {
        super::upstream(v, &resolve_host)
    }

    fn syslog_target(v: &str) -> Result<SyslogTarget, String> {
        super::syslog_target(v, &resolve_host)
    }

    fn ready(v: &str) -> Result<ReadyCheck, String> {
        super::ready(v, &resolve_host)
    }

    #[test]
    fn sizes_take_k_m_g_in_either_case() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("16K"), Some(16384));
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2G"), Some(2 << 30));
    }

    #[test]
    fn malformed_sizes_are_none() {
        for bad in [
            "",
            "k",
            "-1",
            "+1",
            "1.5m",
            "1 k",
            "1kb",
            "1t",
            "ten",
            "18446744073709551616",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn size_overflow_is_none_not_a_panic() {
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("18446744073709551615g"), None);
        assert_eq!(parse_size("17179869184g"), None);
    }

    #[test]
    fn durations_take_ms_s_m_h_d_w_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("75"), Some(Duration::from_secs(75)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_none() {
        for bad in [
            "",
            "s",
            "ms",
            "-1s",
            "1.5s",
            "1 s",
            "1S",
            "1y",
            "5sec",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("18446744073709551615d"), None);
    }

    #[test]
    fn booleans_take_every_spelling_in_any_case() {
        for t in ["on", "ON", "true", "True", "yes", "YES", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["off", "Off", "false", "FALSE", "no", "No", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "y", "2", "enabled", "on "] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_show_in_their_largest_unit() {
        assert_eq!(show_size(1024), "1k");
        assert_eq!(show_size(16 << 20), "16m");
        assert_eq!(show_size(1 << 30), "1g");
        assert_eq!(show_size(1000), "1000");
        assert_eq!(show_size(0), "0");
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(number_in("5", 1, 10), Ok(5));
        assert_eq!(
            number_in("0", 1, 10),
            Err("expected a number from 1 to 10".into())
        );
        assert!(number_in("-1", 0, 10).is_err());
        assert_eq!(signed_in("-5", -10, 10), Ok(-5));
        assert_eq!(signed_in("-0", -10, 10), Ok(0));
        assert!(signed_in("--5", -10, 10).is_err());
        assert!(signed_in("-", -10, 10).is_err());
        assert!(signed_in("99999999999999999999", i64::MIN, i64::MAX).is_err());
    }

    #[test]
    fn durations_are_capped_and_zero_is_optional() {
        assert_eq!(duration("365d", false), Ok(MAX_DURATION));
        assert_eq!(
            duration("366d", false),
            Err("expected a duration of at most 365d".into())
        );
        assert!(duration("0", false).unwrap_err().ends_with("above 0"));
        assert_eq!(duration("0s", true), Ok(Duration::ZERO));
    }

    #[test]
    fn listen_forms() {
        assert_eq!(listen("80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(listen("*:8080").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            listen("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(listen("[::]:80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(listen("[::1]:8080").unwrap(), "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn bad_listen_values_are_refused() {
        assert_eq!(listen("0"), Err("expected a port from 1 to 65535".into()));
        assert_eq!(
            listen("65536"),
            Err("expected a port from 1 to 65535".into())
        );
        assert_eq!(
            listen("127.0.0.1:0"),
            Err("expected a port from 1 to 65535".into())
        );
        for bad in [
            "",
            "localhost:80",
            "::1:80",
            "127.0.0.1",
            "80 default_server",
            "*:x",
        ] {
            assert!(listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_forms() {
        let up = upstream("127.0.0.1:8000").unwrap();
        assert_eq!(
            up,
            Upstream::new(UpstreamAddr::Tcp("127.0.0.1:8000".parse().unwrap()))
        );
        assert_eq!(up.max_fails, 1);
        assert_eq!(up.fail_timeout, Duration::from_secs(10));
        assert_eq!(
            upstream("unix:/run/x.sock").unwrap().addr,
            UpstreamAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            upstream("uwsgi://[::1]:8000").unwrap().addr,
            UpstreamAddr::Tcp("[::1]:8000".parse().unwrap())
        );
        let up = upstream("127.0.0.1:8000 max_fails=3 fail_timeout=30s").unwrap();
        assert_eq!(up.max_fails, 3);
        assert_eq!(up.fail_timeout, Duration::from_secs(30));
        assert_eq!(upstream("unix:/x max_fails=0").unwrap().max_fails, 0);
    }

    #[test]
    fn upstream_host_names_resolve_now() {
        let UpstreamAddr::Tcp(addr) = upstream("localhost:8000").unwrap().addr else {
            panic!("not tcp")
        };
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 8000);
    }

    #[test]
    fn bad_upstreams_are_refused() {
        assert!(upstream("").is_err());
        assert!(upstream("127.0.0.1").is_err());
        assert!(upstream("127.0.0.1:0").is_err());
        assert_eq!(
            upstream("::1:8000"),
            Err("expected an IPv6 address in brackets, like [::1]:8000".into())
        );
        assert!(upstream("unix:run/x.sock")
            .unwrap_err()
            .contains("absolute"));
        let long = format!("unix:/{}", "a".repeat(107));
        assert!(upstream(&long).unwrap_err().contains("longer than 107"));
        assert!(upstream("1.2.3.4:80 weight=2")
            .unwrap_err()
            .starts_with("unexpected 'weight=2'"));
        assert!(upstream("1.2.3.4:80 max_fails=x")
            .unwrap_err()
            .starts_with("max_fails: "));
        assert!(upstream("1.2.3.4:80 max_fails=1 max_fails=2").is_err());
        assert!(upstream("1.2.3.4:80 fail_timeout=soon")
            .unwrap_err()
            .starts_with("fail_timeout: "));
        assert!(upstream("no-such-host.invalid:80")
            .unwrap_err()
            .starts_with("cannot resolve 'no-such-host.invalid'"));
    }

    #[test]
    fn access_rules() {
        assert_eq!(
            access("all", false).unwrap(),
            (
                AccessRule {
                    allow: false,
                    net: None
                },
                None
            )
        );
        let (rule, warning) = access("127.0.0.1", true).unwrap();
        assert_eq!(rule.net, Some(("127.0.0.1".parse().unwrap(), 32)));
        assert_eq!(warning, None);
        let (rule, _) = access("10.0.0.0/8", true).unwrap();
        assert_eq!(rule.net, Some(("10.0.0.0".parse().unwrap(), 8)));
        let (rule, _) = access("::1", true).unwrap();
        assert_eq!(rule.net, Some(("::1".parse().unwrap(), 128)));
        let (rule, _) = access("fd00::/8", true).unwrap();
        assert_eq!(rule.net, Some(("fd00::".parse().unwrap(), 8)));
        let (rule, _) = access("0.0.0.0/0", true).unwrap();
        assert_eq!(rule.net, Some(("0.0.0.0".parse().unwrap(), 0)));
    }

    #[test]
    fn access_host_bits_are_cleared_with_a_warning() {
        let (rule, warning) = access("10.1.2.3/8", true).unwrap();
        assert_eq!(rule.net, Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(
            warning.unwrap(),
            "low address bits of 10.1.2.3/8 are meaningless, using 10.0.0.0/8"
        );
        let (rule, _) = access("fd12:3456::1/16", true).unwrap();
        assert_eq!(rule.net, Some(("fd12::".parse().unwrap(), 16)));
        let (rule, _) = access("1.2.3.4/0", false).unwrap();
        assert_eq!(rule.net, Some(("0.0.0.0".parse().unwrap(), 0)));
    }

    #[test]
    fn bad_access_rules_are_refused() {
        for bad in [
            "",
            "any",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10/8",
            "10.0.0.0/-1",
            "localhost",
        ] {
            assert!(access(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn expires_forms() {
        assert_eq!(expires("off"), Ok(Expires::Off));
        assert_eq!(expires("epoch"), Ok(Expires::Epoch));
        assert_eq!(expires("max"), Ok(Expires::Max));
        assert_eq!(expires("30d"), Ok(Expires::Seconds(30 * 86400)));
        assert_eq!(expires("3600"), Ok(Expires::Seconds(3600)));
        assert_eq!(expires("-1h"), Ok(Expires::Seconds(-3600)));
        assert_eq!(expires("0"), Ok(Expires::Seconds(0)));
        for bad in ["", "on", "modified 1h", "@15h", "--1h", "36501d"] {
            assert!(expires(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn syslog_targets() {
        assert_eq!(syslog_target("stderr"), Ok(SyslogTarget::Stderr));
        assert_eq!(
            syslog_target("unix:/dev/log"),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        assert_eq!(
            syslog_target("/dev/log"),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        assert_eq!(
            syslog_target("udp:127.0.0.1:514"),
            Ok(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            syslog_target("udp:10.0.0.1"),
            Ok(SyslogTarget::Udp("10.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            syslog_target("udp:[::1]"),
            Ok(SyslogTarget::Udp("[::1]:514".parse().unwrap()))
        );
        assert_eq!(
            syslog_target("udp:[::1]:1514"),
            Ok(SyslogTarget::Udp("[::1]:1514".parse().unwrap()))
        );
        for bad in [
            "",
            "syslog",
            "dev/log",
            "unix:dev/log",
            "udp:",
            "tcp:1.2.3.4:514",
        ] {
            assert!(syslog_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn facilities_have_their_codes() {
        assert_eq!(facility("kern"), Ok(0));
        assert_eq!(facility("daemon"), Ok(3));
        assert_eq!(facility("authpriv"), Ok(10));
        assert_eq!(facility("ftp"), Ok(11));
        assert_eq!(facility("local0"), Ok(16));
        assert_eq!(facility("LOCAL7"), Ok(23));
        assert!(facility("local8").is_err());
    }

    #[test]
    fn levels_map_nginx_names() {
        use log::LevelFilter;
        assert_eq!(level("debug"), Ok(LevelFilter::Debug));
        assert_eq!(level("info"), Ok(LevelFilter::Info));
        assert_eq!(level("notice"), Ok(LevelFilter::Info));
        assert_eq!(level("warn"), Ok(LevelFilter::Warn));
        assert_eq!(level("error"), Ok(LevelFilter::Error));
        assert_eq!(level("crit"), Ok(LevelFilter::Error));
        assert_eq!(level("alert"), Ok(LevelFilter::Error));
        assert_eq!(level("emerg"), Ok(LevelFilter::Error));
        assert!(level("trace").is_err());
    }

    #[test]
    fn signals_with_or_without_sig() {
        assert_eq!(signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(signal("SIGQUIT"), Ok(libc::SIGQUIT));
        assert_eq!(signal("hup"), Ok(libc::SIGHUP));
        assert_eq!(signal("INT"), Ok(libc::SIGINT));
        assert_eq!(signal("KILL"), Ok(libc::SIGKILL));
        assert_eq!(signal("USR1"), Ok(libc::SIGUSR1));
        assert_eq!(signal("SIGUSR2"), Ok(libc::SIGUSR2));
        assert!(signal("STOP").is_err());
        assert!(signal("15").is_err());
        assert!(signal("SIG").is_err());
    }

    #[test]
    fn priorities_have_their_codes() {
        assert_eq!(priority("info"), Ok(6));
        assert_eq!(priority("ERR"), Ok(3));
        assert_eq!(priority("error"), Ok(3));
        assert_eq!(priority("warning"), Ok(4));
        assert_eq!(priority("warn"), Ok(4));
        assert_eq!(priority("emerg"), Ok(0));
        assert_eq!(priority("debug"), Ok(7));
        assert_eq!(priority("notice"), Ok(5));
        assert!(priority("loud").unwrap_err().contains("expected emerg"));
    }

    #[test]
    fn control_socket_paths_and_modes() {
        assert_eq!(
            control_socket("/run/uwgate.sock"),
            Ok(PathBuf::from("/run/uwgate.sock"))
        );
        assert!(control_socket("run/uwgate.sock").is_err());
        assert!(control_socket(&format!("/{}", "a".repeat(200))).is_err());
        assert_eq!(socket_mode("0660"), Ok(0o660));
        assert_eq!(socket_mode("600"), Ok(0o600));
        assert!(socket_mode("0066").is_err(), "the owner keeps rw");
        assert!(socket_mode("0999").is_err());
        assert!(socket_mode("").is_err());
    }

    #[test]
    fn umask_is_octal() {
        assert_eq!(umask("022"), Ok(0o22));
        assert_eq!(umask("0"), Ok(0));
        assert_eq!(umask("0777"), Ok(0o777));
        for bad in ["", "8", "1000", "0o22", "-22", "00000"] {
            assert!(umask(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exitcodes_are_comma_separated() {
        assert_eq!(exitcodes("0"), Ok(vec![0]));
        assert_eq!(exitcodes("0, 2,255"), Ok(vec![0, 2, 255]));
        for bad in ["", "0,", "256", "-1", "0 2"] {
            assert!(exitcodes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn autorestart_values() {
        assert_eq!(autorestart("true"), Ok(AutoRestart::Always));
        assert_eq!(autorestart("false"), Ok(AutoRestart::Never));
        assert_eq!(autorestart("Unexpected"), Ok(AutoRestart::Unexpected));
        assert!(autorestart("sometimes").is_err());
    }

    #[test]
    fn ready_checks() {
        assert_eq!(
            ready("tcp:127.0.0.1:3306"),
            Ok(ReadyCheck::Tcp("127.0.0.1:3306".parse().unwrap()))
        );
        assert_eq!(
            ready("unix:/run/mysqld/mysqld.sock"),
            Ok(ReadyCheck::Unix("/run/mysqld/mysqld.sock".into()))
        );
        assert!(ready("127.0.0.1:3306").is_err());
        assert!(ready("tcp:127.0.0.1").is_err());
    }

    #[test]
    fn charset_values() {
        assert_eq!(charset("utf-8"), Ok(true));
        assert_eq!(charset("UTF-8"), Ok(true));
        assert_eq!(charset("off"), Ok(false));
        assert_eq!(charset("on"), Ok(true));
        assert!(charset("koi8-r").is_err());
    }

    #[test]
    fn accounts_and_tags() {
        assert_eq!(account("nginx"), Ok("nginx".into()));
        assert_eq!(account("1000"), Ok("1000".into()));
        assert!(account("").is_err());
        assert!(account("a b").is_err());
        assert!(account("a:b").is_err());
        assert_eq!(tag("uwgate-access"), Ok("uwgate-access".into()));
        assert!(tag("").is_err());
        assert!(tag(&"a".repeat(33)).is_err());
        assert!(tag("a b").is_err());
    }

    #[test]
    fn paths_must_be_absolute_and_keep_their_slash() {
        assert_eq!(
            absolute_path("/srv/static/").unwrap().as_os_str(),
            "/srv/static/"
        );
        assert!(absolute_path("srv").is_err());
        assert!(absolute_path("").is_err());
    }
}
