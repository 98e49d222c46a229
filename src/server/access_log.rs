//! The access log: one line per answered request in nginx's `combined` format, from facts the
//! connection kept (the parsed head's spans, status, bytes sent) — the head is not parsed again.
//!
//! Never: allocates (the line is formatted into the loop's scratch buffer) or blocks (the log
//! sinks drop and count instead).

use crate::http::request::Head;
use std::net::IpAddr;

/// What one access line says.
pub struct Entry<'a> {
    pub peer: IpAddr,
    pub unix: i64,
    /// The parsed head, `None` when the head could not be parsed (the request line is the
    /// first line of `input` either way).
    pub head: Option<&'a Head>,
    /// The input the head was parsed from.
    pub input: &'a [u8],
    pub status: u16,
    pub bytes: u64,
}

/// Formats `entry` into `scratch` and hands the line to the access log.
pub fn log(entry: &Entry<'_>, scratch: &mut [u8]) {
    let (request_line, referer, agent): (&[u8], &[u8], &[u8]) = match entry.head {
        Some(h) => (
            crate::http::request::request_line(entry.input).0,
            h.referer.map_or(&[][..], |s| s.get(entry.input)),
            h.user_agent.map_or(&[][..], |s| s.get(entry.input)),
        ),
        None => (crate::http::request::request_line(entry.input).0, b"", b""),
    };
    let n = crate::logging::format_combined(
        scratch,
        entry.peer,
        entry.unix,
        request_line,
        entry.status,
        entry.bytes,
        referer,
        agent,
    );
    crate::logging::access(scratch.get(..n).unwrap_or(scratch));
}
