//! An upstream's HTTP/1.x response head (uWSGI answers one: status line, header lines, blank
//! line), the client framing chosen for its body, and the head uwgate writes to the client in
//! its place.
//!
//! Owns parsing that head into a small `Copy` [`ResponseHead`] of offsets, deciding the client
//! framing ([`client_framing`]), and writing the client's head with nginx's header rules:
//! hop-by-hop fields (and any field the upstream's `Connection` names) dropped, our `Server` and
//! `Date` instead of the upstream's, `X-Accel-*` and `Status` hidden, and the framing fields
//! written fresh. Also the chunk-size lines of a chunked re-framing.
//!
//! Pure code: no I/O, no allocation, no panic on any input; the upstream is not trusted — a head
//! that could be read two ways (duplicate or conflicting lengths, folded lines, an unknown
//! transfer coding, bytes that are not HTTP, more than 16 names in `Connection`) is refused, and
//! the caller answers 502 as nginx ("upstream sent invalid header"). Work is linear in the head's
//! size: a head of thousands of tiny fields must not hold the loop.
//!
//! What uWSGI 2.0 sends (checked against pyuwsgi 2.0.30 + Django 5.2): the status line echoes the
//! request's SERVER_PROTOCOL (`HTTP/1.0 204 No Content` to a 1.0 request), every line ends in
//! CRLF, values may carry extra leading spaces (`Set-Cookie:  a=1`), a streamed response has
//! neither Content-Length nor Transfer-Encoding (it ends when uWSGI closes), and a HEAD request
//! still gets the body — the caller discards it.

use super::request::Span;
use super::Status;

/// A parsed upstream response head: offsets into the buffer given to [`parse`], valid while that
/// buffer holds the head at the same position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 200..=999 (an interim 1xx is refused by [`parse`]).
    pub status: u16,
    /// The reason phrase (possibly empty).
    pub reason: Span,
    /// Bytes of the head, blank line included; the body starts here.
    pub head_len: u32,
    /// `Content-Length`, when sent.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`: the body is chunk-encoded on the upstream connection.
    pub chunked: bool,
    /// The upstream's `Connection` lists `close`.
    pub connection_close: bool,
    /// `X-Accel-Redirect` (first occurrence, non-empty): the URI to serve internally instead of
    /// this response's body.
    pub x_accel_redirect: Option<Span>,
}

impl ResponseHead {
    /// The reason phrase bytes.
    pub fn reason(self, buf: &[u8]) -> &[u8] {
        self.reason.get(buf)
    }

    /// The `X-Accel-Redirect` URI, if any.
    pub fn x_accel_redirect(self, buf: &[u8]) -> Option<&[u8]> {
        self.x_accel_redirect.map(|s| s.get(buf))
    }
}

/// The error of the private helpers; [`parse`] reports it as `()` (the agreed interface).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InvalidHead;

/// How the body is framed for the client; chosen by [`client_framing`] (or the caller) and
/// written by [`write_client_head`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`. Also right for a HEAD response whose GET would have `n` bytes: the
    /// header is written and no body follows.
    Length(u64),
    /// `Transfer-Encoding: chunked` (an HTTP/1.1 client, length unknown).
    Chunked,
    /// No length: the body ends when uwgate closes the connection (`Connection: close` is
    /// written whatever `keep_alive` says).
    Close,
    /// No body and no framing field (204, 304, HEAD without a known length).
    NoBody,
}

/// Most field names the upstream's `Connection` fields may list, all of them together; more and
/// [`parse`] refuses the head. Each listed name is dropped from the client's head, so every field
/// is checked against the list: a small fixed list keeps that linear in the number of fields.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// Most bytes [`chunk_header`] writes (16 hex digits and CRLF).
pub const CHUNK_HEADER_MAX: usize = 18;
/// Ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and the end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Parses the upstream's response head at the start of `buf`. Called by the upstream state
/// machine after every read until it answers `Ok(Some(_))`.
///
/// `Ok(None)`: incomplete, read more (when `buf` is full, the head is too big: 502, as nginx's
/// "upstream sent too big header"). `Err(())`: not an acceptable HTTP/1.x response head: 502.
#[allow(clippy::result_unit_err)] // `()` is the agreed interface: any refusal means 502
pub fn parse(buf: &[u8]) -> Result<Option<ResponseHead>, ()> {
    parse_head(buf).map_err(|InvalidHead| ())
}

fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, InvalidHead> {
    // 1. Fail fast on bytes that can never become a status line.
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = buf.len().min(PREFIX.len());
    if buf.get(..n) != PREFIX.get(..n) {
        return Err(InvalidHead);
    }
    let Some(head_len) = head_end(buf) else {
        return Ok(None);
    };
    let head_len32 = u32::try_from(head_len).map_err(|_| InvalidHead)?;
    let head = buf.get(..head_len).ok_or(InvalidHead)?;

    // 2. Status line: HTTP/1.DIGIT SP 3DIGIT [SP reason] EOL.
    let mut lines = Lines { buf: head, pos: 0 };
    let (line_start, status_line) = lines.next().ok_or(InvalidHead)?;
    let (status, reason_off) = parse_status_line(status_line)?;
    let reason = span(
        line_start.saturating_add(reason_off),
        line_start + status_line.len(),
    )?;

    // 3. Header lines.
    let mut out = ResponseHead {
        status,
        reason,
        head_len: head_len32,
        content_length: None,
        chunked: false,
        connection_close: false,
        x_accel_redirect: None,
    };
    let mut saw_transfer_encoding = false;
    let mut connection_tokens = 0usize;
    for (start, line) in lines {
        if line.is_empty() {
            break; // the blank line ending the head
        }
        let (name, value, value_off) = split_field(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            if out.content_length.is_some() {
                return Err(InvalidHead); // nginx: "upstream sent duplicate header line"
            }
            out.content_length = Some(parse_decimal(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if saw_transfer_encoding || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(InvalidHead); // only a single `chunked` can be undone here
            }
            saw_transfer_encoding = true;
            out.chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                connection_tokens += 1;
                if connection_tokens > MAX_CONNECTION_TOKENS {
                    return Err(InvalidHead); // see MAX_CONNECTION_TOKENS
                }
                out.connection_close |= token.eq_ignore_ascii_case(b"close");
            }
        } else if name.eq_ignore_ascii_case(b"x-accel-redirect")
            && out.x_accel_redirect.is_none()
            && !value.is_empty()
        {
            let from = start.saturating_add(value_off);
            out.x_accel_redirect = Some(span(from, from.saturating_add(value.len()))?);
        }
    }
    if out.chunked && out.content_length.is_some() {
        return Err(InvalidHead); // nginx: "upstream sent Content-Length and Transfer-Encoding"
    }
    Ok(Some(out))
}

/// The framing and keep-alive for the client's response. Called once per response, after
/// [`parse`]: `head_request` for a HEAD, `client_http11` for an HTTP/1.1 client,
/// `client_keep_alive` for whether the client's connection may be reused.
///
/// As nginx: 204 and 304 carry no body; a HEAD keeps the upstream's Content-Length and sends no
/// body; a known length is kept; otherwise an HTTP/1.1 client gets chunked and an HTTP/1.0
/// client a close-delimited body (and the connection closes).
pub fn client_framing(
    head: &ResponseHead,
    head_request: bool,
    client_http11: bool,
    client_keep_alive: bool,
) -> (Framing, bool) {
    if head.status == 204 || head.status == 304 {
        return (Framing::NoBody, client_keep_alive);
    }
    if head_request {
        return match head.content_length {
            Some(n) => (Framing::Length(n), client_keep_alive),
            None => (Framing::NoBody, client_keep_alive),
        };
    }
    match head.content_length {
        Some(n) => (Framing::Length(n), client_keep_alive),
        None if client_http11 => (Framing::Chunked, client_keep_alive),
        None => (Framing::Close, false),
    }
}

/// Writes the client's response head for the upstream head `head` (parsed from `buf`) into `out`
/// and returns its length, or `None` when `out` is too small. `date` is the IMF-fixdate,
/// `server` our `Server` value (omitted when empty).
///
/// Order: `HTTP/1.1 NNN reason`, `Server`, `Date`, the upstream's other fields in their order
/// (see the module header for the ones dropped), the framing field, `Connection`, blank line.
/// An empty upstream reason is replaced by the standard one when uwgate knows the code.
pub fn write_client_head(
    out: &mut [u8],
    buf: &[u8],
    head: &ResponseHead,
    date: &[u8],
    server: &[u8],
    framing: Framing,
    keep_alive: bool,
) -> Option<usize> {
    let mut w = Out { out, len: 0 };
    w.put(b"HTTP/1.1 ")?;
    w.num(u64::from(head.status))?;
    w.put(b" ")?;
    let reason = head.reason(buf);
    if reason.is_empty() {
        if let Some(s) = Status::from_code(head.status) {
            w.put(s.reason().as_bytes())?;
        }
    } else {
        w.put(reason)?;
    }
    w.put(b"\r\n")?;
    if !server.is_empty() {
        w.field(b"Server", server)?;
    }
    w.field(b"Date", date)?;
    // The names the upstream's Connection fields list, gathered once (at most
    // MAX_CONNECTION_TOKENS, as `parse` checked; a head that says otherwise is not ours).
    let mut listed: heapless::Vec<&[u8], MAX_CONNECTION_TOKENS> = heapless::Vec::new();
    for (name, value) in header_fields(buf, head) {
        if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                listed.push(token).ok()?;
            }
        }
    }
    for (name, value) in header_fields(buf, head) {
        if passes_to_client(name) && !listed.iter().any(|t| t.eq_ignore_ascii_case(name)) {
            w.field(name, value)?;
        }
    }
    let keep_alive = keep_alive && framing != Framing::Close;
    match framing {
        Framing::Length(n) => {
            w.put(b"Content-Length: ")?;
            w.num(n)?;
            w.put(b"\r\n")?;
        }
        Framing::Chunked => w.field(b"Transfer-Encoding", b"chunked")?,
        Framing::Close | Framing::NoBody => {}
    }
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    w.field(b"Connection", connection)?;
    w.put(b"\r\n")?;
    Some(w.len)
}

/// Header names nginx carries from an `X-Accel-Redirect` response onto the file it then serves
/// (its upstream table's `redirect` flag): Content-Type, Content-Disposition, Set-Cookie,
/// Cache-Control, Expires, Accept-Ranges. For [`write_fields_where`].
pub fn kept_on_accel_redirect(name: &[u8]) -> bool {
    [
        &b"content-type"[..],
        b"content-disposition",
        b"set-cookie",
        b"cache-control",
        b"expires",
        b"accept-ranges",
    ]
    .iter()
    .any(|k| name.eq_ignore_ascii_case(k))
}

/// Writes `Name: value` CRLF for every upstream field whose name satisfies `keep`, in order, and
/// returns the bytes written (`None` when `out` is too small). Used for an `X-Accel-Redirect`
/// with [`kept_on_accel_redirect`], inside the head the static handler writes.
pub fn write_fields_where(
    out: &mut [u8],
    buf: &[u8],
    head: &ResponseHead,
    keep: impl Fn(&[u8]) -> bool,
) -> Option<usize> {
    let mut w = Out { out, len: 0 };
    for (name, value) in header_fields(buf, head) {
        if keep(name) {
            w.field(name, value)?;
        }
    }
    Some(w.len)
}

/// Every upstream header field `(name, value)` in order, value trimmed. For the caller's own
/// checks and logs; never fails (a stale head yields nothing or garbage, never a panic).
pub fn header_fields<'b>(
    buf: &'b [u8],
    head: &ResponseHead,
) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + Clone + 'b {
    let head_bytes = buf.get(..head.head_len as usize).unwrap_or(&[]);
    let mut lines = Lines {
        buf: head_bytes,
        pos: 0,
    };
    let _status_line = lines.next();
    lines
        .take_while(|(_, line)| !line.is_empty())
        .filter_map(|(_, line)| split_field(line).ok().map(|(n, v, _)| (n, v)))
}

/// Writes the chunk-size line for `len` data bytes (lower-case hex, CRLF) into `out` and returns
/// its length; 0 when `out` is shorter than needed (never when it has [`CHUNK_HEADER_MAX`]).
/// The caller follows the data with [`CHUNK_END`], and the body with [`LAST_CHUNK`].
pub fn chunk_header(out: &mut [u8], len: usize) -> usize {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut count = 0;
    loop {
        let d = (n & 0xf) as u8;
        if let Some(slot) = digits.get_mut(count) {
            *slot = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        count += 1;
        n >>= 4;
        if n == 0 || count >= digits.len() {
            break;
        }
    }
    let total = count + 2;
    let Some(dst) = out.get_mut(..total) else {
        return 0;
    };
    for (i, slot) in dst.iter_mut().take(count).enumerate() {
        *slot = digits.get(count - 1 - i).copied().unwrap_or(b'0');
    }
    if let Some(crlf) = dst.get_mut(count..total) {
        crlf.copy_from_slice(b"\r\n");
    }
    total
}

// ---------------------------------------------------------------------------------------------

/// Fields never copied to the client: hop-by-hop (RFC 9110 7.6.1, plus the old Keep-Alive and
/// Proxy-Connection), ours (Date, Server), the framing we rewrite (Content-Length), and the ones
/// nginx's uwsgi module hides (Status, X-Accel-*).
fn passes_to_client(name: &[u8]) -> bool {
    const DROPPED: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
        b"content-length",
        b"status",
    ];
    if DROPPED.iter().any(|d| name.eq_ignore_ascii_case(d)) {
        return false;
    }
    let prefix = b"x-accel-";
    !name
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// The comma-separated tokens of a list value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// End of the head (after the blank line), accepting CRLF or bare LF line ends.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let lf = i + off;
        // The line after this LF is empty if it is "\n" or "\r\n".
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// Lines of a head as `(offset, line)`, without their CRLF / LF.
#[derive(Clone)]
struct Lines<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Iterator for Lines<'b> {
    type Item = (usize, &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        let lf = rest.iter().position(|&b| b == b'\n')?;
        let start = self.pos;
        self.pos = start + lf + 1;
        let line = rest.get(..lf)?;
        Some((start, line.strip_suffix(b"\r").unwrap_or(line)))
    }
}

/// (status, offset of the reason) of a status line without its EOL.
fn parse_status_line(line: &[u8]) -> Result<(u16, usize), InvalidHead> {
    let version = line.get(..8).ok_or(InvalidHead)?;
    if !version.starts_with(b"HTTP/1.") || !version.get(7).is_some_and(u8::is_ascii_digit) {
        return Err(InvalidHead);
    }
    if line.get(8) != Some(&b' ') {
        return Err(InvalidHead);
    }
    let code = line.get(9..12).ok_or(InvalidHead)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(InvalidHead);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if status < 200 {
        return Err(InvalidHead); // no interim responses: uwgate has already sent the whole request
    }
    let reason_off = match line.get(12) {
        None => 12,
        Some(b' ') => 13,
        Some(_) => return Err(InvalidHead),
    };
    let reason = line.get(reason_off..).unwrap_or(&[]);
    if !reason.iter().all(|&b| b == b'\t' || b >= b' ' && b != 0x7f) {
        return Err(InvalidHead);
    }
    Ok((status, reason_off))
}

/// (name, trimmed value, offset of the value in the line) of a header line; `Err` for anything
/// but `token ":" OWS value OWS` (including an obs-fold continuation line).
fn split_field(line: &[u8]) -> Result<(&[u8], &[u8], usize), InvalidHead> {
    let colon = line.iter().position(|&b| b == b':').ok_or(InvalidHead)?;
    let name = line.get(..colon).ok_or(InvalidHead)?;
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(InvalidHead);
    }
    let raw = line.get(colon + 1..).unwrap_or(&[]);
    if !raw.iter().all(|&b| b == b'\t' || b >= b' ' && b != 0x7f) {
        return Err(InvalidHead);
    }
    let value = trim(raw);
    let lead = raw.len() - trim_start(raw).len();
    Ok((name, value, colon + 1 + lead))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_start(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    v.get(start..).unwrap_or(&[])
}

fn trim(v: &[u8]) -> &[u8] {
    let v = trim_start(v);
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    v.get(..end).unwrap_or(&[])
}

/// `1*DIGIT` as u64; `Err` on anything else or overflow.
fn parse_decimal(v: &[u8]) -> Result<u64, InvalidHead> {
    if v.is_empty() {
        return Err(InvalidHead);
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(InvalidHead);
        }
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(b - b'0')))
            .ok_or(InvalidHead)
    })
}

fn span(start: usize, end: usize) -> Result<Span, InvalidHead> {
    Ok(Span::new(
        u32::try_from(start).map_err(|_| InvalidHead)?,
        u32::try_from(end).map_err(|_| InvalidHead)?,
    ))
}

/// Appends into the caller's buffer; `None` = does not fit.
struct Out<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn num(&mut self, mut n: u64) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            *digits.get_mut(i)? = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.put(digits.get(i..)?)
    }

    fn field(&mut self, name: &[u8], value: &[u8]) -> Option<()> {
        self.put(name)?;
        self.put(b": ")?;
        self.put(value)?;
        self.put(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn parsed(raw: &[u8]) -> ResponseHead {
        parse(raw).expect("valid").expect("complete")
    }

    fn client_head(raw: &[u8], framing: Framing, keep_alive: bool) -> String {
        let head = parsed(raw);
        let mut out = [0u8; 4096];
        let n = write_client_head(
            &mut out,
            raw,
            &head,
            DATE,
            b"uwgate/0.1.0",
            framing,
            keep_alive,
        )
        .expect("fits");
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_uwsgi_head_parses_with_its_offsets() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                    Content-Length: 558\r\nX-Frame-Options: DENY\r\n\r\n<!doctype html>";
        let h = parsed(raw);
        assert_eq!(h.status, 200);
        assert_eq!(h.reason(raw), b"OK");
        assert_eq!(&raw[h.head_len as usize..], b"<!doctype html>");
        assert_eq!(h.content_length, Some(558));
        assert!(!h.chunked);
        assert!(!h.connection_close);
        assert_eq!(h.x_accel_redirect, None);
    }

    #[test]
    fn an_incomplete_head_asks_for_more_at_every_cut() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(None), "{:?}", &raw[..cut]);
        }
        assert!(parse(raw).unwrap().is_some());
    }

    #[test]
    fn bare_lf_heads_are_accepted() {
        let raw = b"HTTP/1.0 404 Not Found\nContent-Length: 3\nX-A:  b \n\nabc";
        let h = parsed(raw);
        assert_eq!(h.status, 404);
        assert_eq!(h.reason(raw), b"Not Found");
        assert_eq!(h.head_len as usize, raw.len() - 3);
        let fields: Vec<_> = header_fields(raw, &h).collect();
        assert_eq!(
            fields,
            vec![(&b"Content-Length"[..], &b"3"[..]), (b"X-A", b"b")]
        );
    }

    #[test]
    fn garbage_is_refused_early() {
        for raw in [
            &b"<html>"[..],
            b"HTTX",
            b"\x00",
            b"HTTP/2 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
        ] {
            assert_eq!(parse(raw), Err(()), "{:?}", raw);
        }
    }

    #[test]
    fn malformed_status_lines_are_refused() {
        for raw in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.x 200 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x00K\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
        ] {
            assert_eq!(parse(raw), Err(()), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_status_line_without_reason_is_accepted() {
        let raw = b"HTTP/1.1 200\r\n\r\n";
        let h = parsed(raw);
        assert_eq!(h.status, 200);
        assert_eq!(h.reason(raw), b"");
        let raw2 = b"HTTP/1.1 599 \r\n\r\n";
        assert_eq!(parsed(raw2).status, 599);
    }

    #[test]
    fn malformed_fields_are_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        ] {
            assert_eq!(parse(raw), Err(()), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn content_length_must_be_one_plain_number() {
        assert_eq!(
            parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").content_length,
            Some(0)
        );
        assert_eq!(
            parsed(b"HTTP/1.1 200 OK\r\ncontent-length:  18446744073709551615 \r\n\r\n")
                .content_length,
            Some(u64::MAX)
        );
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        ] {
            assert_eq!(parse(raw), Err(()), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn only_a_single_chunked_transfer_coding_is_accepted() {
        assert!(parsed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n").chunked);
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(parse(raw), Err(()), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn connection_close_and_accel_redirect_are_noticed() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\n\
                    X-Accel-Redirect:   /protected/a b.txt  \r\nX-Accel-Redirect: /second\r\n\r\n";
        let h = parsed(raw);
        assert!(h.connection_close);
        assert_eq!(h.x_accel_redirect(raw), Some(&b"/protected/a b.txt"[..]));
        let empty = b"HTTP/1.1 200 OK\r\nX-Accel-Redirect:\r\n\r\n";
        assert_eq!(parsed(empty).x_accel_redirect, None);
    }

    #[test]
    fn client_head_has_status_server_date_fields_framing_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\
                    X-Frame-Options: DENY\r\n\r\nhello";
        assert_eq!(
            client_head(raw, Framing::Length(5), true),
            "HTTP/1.1 200 OK\r\nServer: uwgate/0.1.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/html\r\nX-Frame-Options: DENY\r\nContent-Length: 5\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn hop_by_hop_fields_are_dropped() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-Private, close\r\nKeep-Alive: timeout=5\r\n\
                    Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n\
                    Upgrade: h2c\r\nX-Private: secret\r\nx-private: again\r\nX-Public: ok\r\n\r\n";
        let out = client_head(raw, Framing::Chunked, true);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: uwgate/0.1.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             X-Public: ok\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn connection_listing_more_than_sixteen_names_is_refused() {
        let names: Vec<String> = (0..MAX_CONNECTION_TOKENS)
            .map(|i| format!("X-{i}"))
            .collect();
        let head = |extra: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nConnection: {}\r\nConnection: {extra}\r\n\r\n",
                names.join(", ")
            )
        };
        assert!(parse(head("").as_bytes()).unwrap().is_some());
        assert!(parse(head(" , ").as_bytes()).unwrap().is_some());
        assert_eq!(parse(head("close").as_bytes()), Err(()));
    }

    #[test]
    fn thousands_of_tiny_fields_are_written_in_linear_time() {
        // Found by fuzzing: each field was checked against every field for Connection names,
        // so a 15 KiB head of 5,000 `a:` lines held the event loop for 270 ms (release build).
        let mut raw = b"HTTP/1.1 200 OK\nConnection: b\n".to_vec();
        for _ in 0..5000 {
            raw.extend_from_slice(b"a:\nb: x\n");
        }
        raw.extend_from_slice(b"\n");
        let head = parsed(&raw);
        let mut out = vec![0u8; 64 << 10];
        let started = std::time::Instant::now();
        let n = write_client_head(&mut out, &raw, &head, DATE, b"", Framing::Chunked, true)
            .expect("fits");
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "{took:?} for 10,000 fields"
        );
        let text = String::from_utf8(out[..n].to_vec()).unwrap();
        assert_eq!(text.split("\r\n").filter(|l| *l == "a: ").count(), 5000);
        assert!(!text.contains("b: x"), "a Connection-listed field passed");
    }

    #[test]
    fn upstream_date_server_length_and_coding_are_replaced_by_ours() {
        let raw = b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nServer: uWSGI\r\n\
                    Transfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
        let out = client_head(raw, Framing::Length(10), false);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: uwgate/0.1.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             X-A: 1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn x_accel_and_status_fields_are_hidden() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Accel-Redirect: /p/x\r\nX-Accel-Buffering: no\r\n\
                    x-accel-expires: 10\r\nX-Accel-Limit-Rate: 1\r\nX-Accel-Charset: utf-8\r\n\
                    Status: 200 OK\r\nX-Accelerated: kept\r\n\r\n";
        let out = client_head(raw, Framing::NoBody, true);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: uwgate/0.1.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             X-Accelerated: kept\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn repeated_fields_stay_separate_lines_with_values_trimmed() {
        let raw =
            b"HTTP/1.0 200 OK\r\nSet-Cookie:  a=1; Path=/\r\nSet-Cookie:  b=2; Path=/\r\n\r\n";
        let out = client_head(raw, Framing::Close, true);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: uwgate/0.1.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn the_status_line_is_http_1_1_with_a_reason_even_if_upstream_had_none() {
        let raw = b"HTTP/1.0 404\r\n\r\n";
        assert!(
            client_head(raw, Framing::Length(0), true).starts_with("HTTP/1.1 404 Not Found\r\n")
        );
        let raw = b"HTTP/1.1 599\r\n\r\n";
        assert!(client_head(raw, Framing::Length(0), true).starts_with("HTTP/1.1 599 \r\n"));
        let raw = b"HTTP/1.1 403 Nope Nope\r\n\r\n";
        assert!(
            client_head(raw, Framing::Length(0), true).starts_with("HTTP/1.1 403 Nope Nope\r\n")
        );
    }

    #[test]
    fn an_empty_server_value_omits_the_field() {
        let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
        let h = parsed(raw);
        let mut out = [0u8; 256];
        let n = write_client_head(&mut out, raw, &h, DATE, b"", Framing::NoBody, true).unwrap();
        assert_eq!(
            &out[..n],
            &b"HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
               Connection: keep-alive\r\n\r\n"[..]
        );
    }

    #[test]
    fn a_small_out_buffer_gives_none_at_every_size() {
        let raw = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n";
        let h = parsed(raw);
        let mut big = [0u8; 512];
        let n = write_client_head(&mut big, raw, &h, DATE, b"uwgate", Framing::Length(3), true)
            .unwrap();
        for size in 0..n {
            let mut out = vec![0u8; size];
            assert_eq!(
                write_client_head(&mut out, raw, &h, DATE, b"uwgate", Framing::Length(3), true),
                None,
                "{size}"
            );
        }
    }

    #[test]
    fn a_stale_head_never_panics() {
        let raw = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-Accel-Redirect: /x\r\n\r\n";
        let h = parsed(raw);
        let mut out = [0u8; 512];
        for cut in 0..raw.len() {
            let _ = write_client_head(&mut out, &raw[..cut], &h, DATE, b"s", Framing::Close, true);
            let _ = h.x_accel_redirect(&raw[..cut]);
            let _ = header_fields(&raw[..cut], &h).count();
        }
    }

    #[test]
    fn framing_follows_nginx() {
        let with_len = parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n");
        let no_len = parsed(b"HTTP/1.1 200 OK\r\n\r\n");
        let no_content = parsed(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        let not_modified = parsed(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        // (head, HEAD request, HTTP/1.1, keep-alive) -> (framing, keep-alive)
        assert_eq!(
            client_framing(&with_len, false, true, true),
            (Framing::Length(7), true)
        );
        assert_eq!(
            client_framing(&with_len, false, false, true),
            (Framing::Length(7), true)
        );
        assert_eq!(
            client_framing(&no_len, false, true, true),
            (Framing::Chunked, true)
        );
        assert_eq!(
            client_framing(&no_len, false, true, false),
            (Framing::Chunked, false)
        );
        assert_eq!(
            client_framing(&no_len, false, false, true),
            (Framing::Close, false)
        );
        assert_eq!(
            client_framing(&with_len, true, true, true),
            (Framing::Length(7), true)
        );
        assert_eq!(
            client_framing(&no_len, true, false, true),
            (Framing::NoBody, true)
        );
        assert_eq!(
            client_framing(&no_content, false, true, true),
            (Framing::NoBody, true)
        );
        assert_eq!(
            client_framing(&not_modified, false, false, true),
            (Framing::NoBody, true)
        );
    }

    #[test]
    fn close_framing_always_says_close() {
        let raw = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(client_head(raw, Framing::Close, true).ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn accel_redirect_keeps_nginx_s_redirect_fields() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n\
                    Content-Disposition: attachment; filename=\"a.pdf\"\r\nX-Frame-Options: DENY\r\n\
                    Set-Cookie: s=1\r\nCache-Control: private\r\nExpires: 0\r\nAccept-Ranges: bytes\r\n\
                    X-Accel-Redirect: /protected/a.pdf\r\nContent-Length: 0\r\n\r\n";
        let h = parsed(raw);
        let mut out = [0u8; 512];
        let n = write_fields_where(&mut out, raw, &h, kept_on_accel_redirect).unwrap();
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
             Set-Cookie: s=1\r\nCache-Control: private\r\nExpires: 0\r\nAccept-Ranges: bytes\r\n"
        );
        assert_eq!(
            write_fields_where(&mut out[..10], raw, &h, kept_on_accel_redirect),
            None
        );
    }

    #[test]
    fn chunk_header_is_lower_hex_and_crlf() {
        let mut out = [0u8; CHUNK_HEADER_MAX];
        for (len, text) in [
            (0usize, "0\r\n"),
            (1, "1\r\n"),
            (10, "a\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
            (0x12ab_cdef, "12abcdef\r\n"),
        ] {
            let n = chunk_header(&mut out, len);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), text);
        }
        let n = chunk_header(&mut out, usize::MAX);
        assert_eq!(
            n,
            CHUNK_HEADER_MAX.min(2 + 2 * std::mem::size_of::<usize>())
        );
        assert!(out[..n - 2].iter().all(|&b| b == b'f'));
    }

    #[test]
    fn chunk_header_into_a_short_buffer_writes_nothing() {
        let mut out = [0u8; 3];
        assert_eq!(chunk_header(&mut out, 0x100), 0);
        assert_eq!(out, [0, 0, 0]);
        assert_eq!(chunk_header(&mut out, 0xf), 3);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix of mangled heads.
        let base: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\
                            X-Accel-Redirect: /x\r\nTransfer-Encoding: chunked\r\n\r\nbody";
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut v = base.to_vec();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let i = seed as usize % v.len();
                v[i] = (seed >> 8) as u8;
            }
            for cut in [v.len(), v.len() / 2, 20] {
                let _ = parse(&v[..cut.min(v.len())]);
            }
        }
    }
}
