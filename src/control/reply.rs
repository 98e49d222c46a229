//! Control socket answers, written into a session's fixed output buffer: the HTTP head (every
//! answer closes the connection, so bodies are close-delimited and need no length) and JSON.
//!
//! Owns the answer shapes the client (`client.rs`) reads. Never allocates: everything goes
//! through `HeadWriter`, which records an overflow instead of writing past the buffer.

use super::UpgradeView;
use crate::http::response::HeadWriter;
use crate::http::Status;
use crate::watchdog::ProcessStatus;
use std::time::Duration;

/// `HTTP/1.1 STATUS` with a content type; the connection closes after the body.
pub fn head(w: &mut HeadWriter<'_>, status: Status, content_type: &[u8]) {
    w.put(b"HTTP/1.1 ")
        .num(u64::from(status.code()))
        .put(b" ")
        .put(status.reason().as_bytes())
        .put(b"\r\n")
        .header(b"Content-Type", content_type)
        .header(b"Cache-Control", b"no-store")
        .header(b"Connection", b"close")
        .put(b"\r\n");
}

/// A JSON string literal of `s` (control characters, quotes and backslashes escaped; other
/// bytes as they are: names are ini words, messages are ours).
pub fn string(w: &mut HeadWriter<'_>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    w.put(b"\"");
    for &b in s {
        match b {
            b'"' => w.put(b"\\\""),
            b'\\' => w.put(b"\\\\"),
            b'\n' => w.put(b"\\n"),
            0..=0x1f | 0x7f => {
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
                w.put(b"\\u00").put(&[hi, lo])
            }
            _ => w.put(&[b]),
        };
    }
    w.put(b"\"");
}

/// A number, or `null`.
pub fn opt_num(w: &mut HeadWriter<'_>, n: Option<u64>) {
    match n {
        Some(n) => w.num(n),
        None => w.put(b"null"),
    };
}

/// `/version`: `{"version":"0.1.0","pid":N,"image":N,"upgrading":false,"last_upgrade":"…",
/// "last_upgrade_ok":true}` (the last two `null` until an upgrade ended in this image's
/// knowledge). The version is this build's (`crate::VERSION`, as `--version` and `Server:`).
pub fn version(w: &mut HeadWriter<'_>, upgrade: &UpgradeView<'_>) {
    w.put(b"{\"version\":");
    string(w, crate::VERSION.as_bytes());
    w.put(b",\"pid\":").num(u64::from(crate::sys::getpid()));
    w.put(b",\"image\":").num(upgrade.image);
    w.put(b",\"upgrading\":")
        .put(if upgrade.upgrading { b"true" } else { b"false" });
    w.put(b",\"last_upgrade\":");
    match upgrade.last {
        Some((ok, text)) => {
            string(w, text.as_bytes());
            w.put(b",\"last_upgrade_ok\":")
                .put(if ok { b"true" } else { b"false" });
        }
        None => {
            w.put(b"null,\"last_upgrade_ok\":null");
        }
    }
    w.put(b"}\n");
}

/// `POST /upgrade` began: `{"result":"started","version":"0.1.0","image":N,"wait_s":N}` —
/// the image the client waits to see replaced, and how long the outcome may take.
pub fn upgrade_started(w: &mut HeadWriter<'_>, upgrade: &UpgradeView<'_>, bound: Duration) {
    w.put(b"{\"result\":\"started\",\"version\":");
    string(w, crate::VERSION.as_bytes());
    w.put(b",\"image\":").num(upgrade.image);
    w.put(b",\"wait_s\":").num(bound.as_secs());
    w.put(b"}\n");
}

/// A complete JSON error answer: `{"error":"…"}`.
pub fn error(w: &mut HeadWriter<'_>, status: Status, message: &[u8]) {
    head(w, status, b"application/json");
    w.put(b"{\"error\":");
    string(w, message);
    w.put(b"}\n");
}

/// One process as `ctl status` shows it.
pub fn process(w: &mut HeadWriter<'_>, p: &ProcessStatus<'_>) {
    w.put(b"{\"name\":");
    string(w, p.name.as_bytes());
    w.put(b",\"group\":");
    string(w, p.group.as_bytes());
    w.put(b",\"state\":\"")
        .put(p.state.as_bytes())
        .put(b"\",\"pid\":");
    opt_num(w, p.pid.map(u64::from));
    w.put(b",\"uptime\":").num(p.uptime_secs);
    w.put(b",\"started\":")
        .put(if p.started { b"true" } else { b"false" });
    w.put(b",\"restarts\":").num(u64::from(p.restarts));
    w.put(b",\"stop_time\":");
    opt_num(w, p.stopped_unix.and_then(|t| u64::try_from(t).ok()));
    w.put(b",\"spawnerr\":");
    match p.spawnerr {
        Some(e) => string(w, e.as_bytes()),
        None => {
            w.put(b"null");
        }
    }
    w.put(b",\"last_exit\":");
    match p.last_exit {
        Some(e) => {
            let mut text = heapless::String::<64>::new();
            use std::fmt::Write as _;
            let _ = write!(text, "{e}");
            string(w, text.as_bytes());
        }
        None => {
            w.put(b"null");
        }
    }
    w.put(b"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut b = [0u8; 64];
        let mut w = HeadWriter::new(&mut b);
        string(&mut w, b"a\"b\\c\n\x01");
        let n = w.len();
        assert_eq!(&b[..n], br#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn errors_are_json_with_a_closing_head() {
        let mut b = [0u8; 256];
        let mut w = HeadWriter::new(&mut b);
        error(&mut w, Status::Forbidden, b"permission denied");
        let n = w.len();
        let text = std::str::from_utf8(&b[..n]).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"permission denied\"}\n"));
    }
}
