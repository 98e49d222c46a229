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
    /// The parsed head, `None` when the head could not be parsed (then the first line of
    /// `input` is logged as the request line).
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
            h.request_line.get(entry.input),
            h.referer.map_or(&[][..], |s| s.get(entry.input)),
            h.user_agent.map_or(&[][..], |s| s.get(entry.input)),
        ),
        None => {
            let line = first_line(entry.input);
            (line, b"", b"")
        }
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

/// The first line of `input` after any leading empty lines, without its line end.
fn first_line(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    let rest = input.get(start..).unwrap_or(&[]);
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    rest.get(..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_has_no_line_end_in_either_form() {
        assert_eq!(
            first_line(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            b"GET / HTTP/1.1"
        );
        assert_eq!(
            first_line(b"\r\nGET /x HTTP/1.0\nHost: a\n"),
            b"GET /x HTTP/1.0"
        );
        assert_eq!(first_line(b"GARBAGE"), b"GARBAGE");
    }
}
