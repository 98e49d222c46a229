//! The request head: httparse plus the RFC 9112 rules httparse leaves to its caller.
//!
//! Owns deciding whether a request head is complete and acceptable, and extracting what the rest
//! of uwgate needs from it as offsets into the connection's header buffer (so a [`Head`] is a
//! small `Copy` value that lives in a connection slot without borrowing). It is the framing guard
//! of the server: anything that could make uwgate and the upstream disagree on where a request
//! ends (bare CR, obs-fold, `Content-Length` with `Transfer-Encoding`, conflicting lengths, a
//! second `Host` or `Transfer-Encoding`) is rejected. It must never allocate, never perform I/O,
//! and never panic on any input.
//!
//! Lines of the head (request line and fields) end in CRLF or a bare LF, mixed freely (RFC 9112
//! section 2.2, as nginx): uwgate never forwards the raw head, it re-encodes every request as a
//! uwsgi packet or answers it itself, so no peer can read those line ends differently. Chunked
//! framing (`chunked`) stays strict CRLF.
//!
//! Every `Err(status)` from [`parse_head`] means: send `status` and close the connection, because
//! the request's framing cannot be trusted.
//!
//! Decisions where the RFCs leave a choice:
//! - `HTTP/x.y` other than 1.0 and 1.1 (including `HTTP/2.0` and `HTTP/1.2`) → 505; anything not
//!   shaped like `HTTP/DIGIT.DIGIT`, and HTTP/0.9 request lines (no version) → 400.
//! - `CONNECT` and `TRACE` → 405 and close, once the head is otherwise valid (nginx refuses both
//!   before the request is processed): uwgate is not a tunnelling proxy, and TRACE would echo
//!   credentials. Their target is read as any other: an authority-form target (`host:port`, with
//!   or without the port) → 400 with every method, as nginx. `*` with any method but `OPTIONS`
//!   → 400.
//! - `Transfer-Encoding` anything but exactly `chunked` (e.g. `gzip, chunked`, `gzip`,
//!   `chunked, chunked`, `chunked;x=1`) → 501, as nginx; an empty value, or the field on two
//!   lines → 400 (nginx's "duplicate header line").
//! - A raw `#` in the request-target → 400 (a fragment is never sent on the wire).
//! - `Host` is stricter than RFC 3986 reg-name: letters, digits, `-`, `.`, `_`, no `..` and no
//!   leading `.`, optional `:port` of at most 5 digits; or `[` IPv6 `]` (no `..` inside either).
//!   An empty `Host`, or an absolute-form target with an empty host, → 400, as nginx.
//! - A POST from MSIE 4 to 6 (nginx's default `keepalive_disable msie6`) is answered with
//!   `Connection: close`.
//! - `Expect` with anything but `100-continue` → 417, whatever the version; a `100-continue` in
//!   an HTTP/1.0 request is ignored (RFC 9110 10.1.1).
//! - For the optional fields (`Range`, `If-None-Match`, ...) the first occurrence is kept;
//!   [`fields`] walks all of them.

use std::mem::MaybeUninit;

use super::Status;

/// Most header fields in one request; one more → 431.
pub const MAX_HEADERS: usize = 100;

/// A byte range `start..end` inside the header buffer the head was parsed from. The end is
/// kept plus one in a `NonZeroU32`, so an `Option<Span>` costs no more than a `Span`: a head
/// has a dozen optional fields, and every connection slot keeps one head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end_plus_one: std::num::NonZeroU32,
}

impl Default for Span {
    fn default() -> Span {
        Span::new(0, 0)
    }
}

impl Span {
    /// `start..end` (an end of `u32::MAX` or more is kept as `u32::MAX - 1`: no buffer is
    /// that large).
    pub fn new(start: u32, end: u32) -> Span {
        let end_plus_one = end.min(u32::MAX - 1) + 1;
        Span {
            start,
            end_plus_one: std::num::NonZeroU32::new(end_plus_one)
                .unwrap_or(std::num::NonZeroU32::MIN),
        }
    }

    /// First byte.
    pub fn start(self) -> u32 {
        self.start
    }

    /// One past the last byte.
    pub fn end(self) -> u32 {
        self.end_plus_one.get() - 1
    }

    /// The bytes of this span in `buf` (the same buffer given to [`parse_head`]); empty if the
    /// span does not fit `buf`, so a stale head can never cause a panic.
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end() as usize)
            .unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        self.end().saturating_sub(self.start) as usize
    }

    /// `true` for a zero-length span.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The request method. Methods are case-sensitive: `get` is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// TRACE (never in a successful [`Head`]: `parse_head` answers 405).
    Trace,
    /// CONNECT (never in a successful [`Head`]: `parse_head` answers 405).
    Connect,
    /// Any other valid token; its text is `Head::method_span`.
    Other,
}

impl Method {
    fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// Which form the request-target had (RFC 9112 section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`
    Origin,
    /// `http://host:port/path?query`; the host comes from here, not from `Host:`.
    Absolute,
    /// `*` of `OPTIONS * HTTP/1.1`; `path` is the `*`.
    Asterisk,
}

/// A parsed, validated request head: offsets into the buffer given to [`parse_head`].
///
/// Valid only while that buffer still holds the head at the same position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The method token as sent.
    pub method_span: Span,
    /// The whole request-target as sent (for the access log and `REQUEST_URI`).
    pub target: Span,
    /// The form of the request-target.
    pub form: TargetForm,
    /// The raw path, without query (still percent-encoded; see `path::canonicalize`). Empty only
    /// for an absolute-form target without a path (`http://host`), which means `/`: use
    /// [`Head::path`].
    pub path: Span,
    /// The query after `?`, without the `?`; `Some(empty)` for a bare `?`.
    pub query: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Bytes of the head, leading empty lines and the final CRLF CRLF included; the body (or the
    /// next pipelined request) starts here.
    pub head_len: u32,
    /// The authority of an absolute-form target, else the `Host` field value (`host[:port]`,
    /// never empty: an empty one is 400). `None` only for HTTP/1.0 without `Host`.
    pub host: Option<Span>,
    /// The body length from `Content-Length`.
    pub content_length: Option<u64>,
    /// The body is chunked (`Transfer-Encoding: chunked`); `content_length` is then `None`.
    pub chunked: bool,
    /// The connection may be reused after the response.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body (HTTP/1.1 only).
    pub expect_continue: bool,
    /// `If-None-Match` (first occurrence).
    pub if_none_match: Option<Span>,
    /// `If-Modified-Since` (first occurrence).
    pub if_modified_since: Option<Span>,
    /// `If-Match` (first occurrence).
    pub if_match: Option<Span>,
    /// `If-Unmodified-Since` (first occurrence).
    pub if_unmodified_since: Option<Span>,
    /// `Range` (first occurrence).
    pub range: Option<Span>,
    /// `If-Range` (first occurrence).
    pub if_range: Option<Span>,
    /// `Accept-Encoding` (first occurrence).
    pub accept_encoding: Option<Span>,
    /// `User-Agent` (first occurrence).
    pub user_agent: Option<Span>,
    /// `Referer` (first occurrence).
    pub referer: Option<Span>,
    /// `Content-Type` (first occurrence).
    pub content_type: Option<Span>,
}

impl Head {
    /// The method token.
    pub fn method_bytes(self, buf: &[u8]) -> &[u8] {
        self.method_span.get(buf)
    }

    /// The raw (undecoded) path: `/` for `http://host`, `*` for `OPTIONS *`.
    pub fn path(self, buf: &[u8]) -> &[u8] {
        if self.path.is_empty() {
            b"/"
        } else {
            self.path.get(buf)
        }
    }

    /// The query string without `?`, empty when absent.
    pub fn query(self, buf: &[u8]) -> &[u8] {
        self.query.map_or(&[][..], |q| q.get(buf))
    }

    /// The host (`host[:port]`, see [`host_name`]), empty when absent.
    pub fn host(self, buf: &[u8]) -> &[u8] {
        self.host.map_or(&[][..], |h| h.get(buf))
    }

    /// `true` if a body follows the head (chunked, or a non-zero `Content-Length`).
    pub fn has_body(self) -> bool {
        self.chunked || self.content_length.is_some_and(|n| n > 0)
    }
}

/// Strips the optional `:port` from a host value (`example.com:8080` → `example.com`,
/// `[::1]:80` → `[::1]`). Used by the router to match `server_name`.
pub fn host_name(host: &[u8]) -> &[u8] {
    let end = if host.first() == Some(&b'[') {
        host.iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1)
    } else {
        host.iter().position(|&b| b == b':').unwrap_or(host.len())
    };
    host.get(..end).unwrap_or(host)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b));
    let end = s.iter().rposition(|&b| !is_ows(b));
    match (start, end) {
        (Some(a), Some(b)) => s.get(a..=b).unwrap_or(&[]),
        _ => &[],
    }
}

/// A qvalue (`0`, `0.5`, `1.000`) greater than zero; `false` for zero or malformed.
fn qvalue_accepts(q: &[u8]) -> bool {
    let (int, frac) = match q.iter().position(|&b| b == b'.') {
        Some(dot) => (q.get(..dot).unwrap_or(&[]), q.get(dot + 1..).unwrap_or(&[])),
        None => (q, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match int {
        b"1" => frac.iter().all(|&b| b == b'0'),
        b"0" => frac.iter().any(|&b| b != b'0'),
        _ => false,
    }
}

/// `true` if the comma-separated field `value` lists `token` (ASCII case-insensitive), with no
/// `q` parameter or a `q` greater than zero: `header_contains_token(b"br, gzip;q=0.8", b"gzip")`.
/// `q=0` (or a malformed q) means "not acceptable". `*` is not expanded. Used for
/// `Accept-Encoding: gzip` and `Connection: close`.
pub fn header_contains_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|element| {
        let mut parts = element.split(|&b| b == b';');
        let name = trim_ows(parts.next().unwrap_or(&[]));
        if name.is_empty() || !name.eq_ignore_ascii_case(token) {
            return false;
        }
        for param in parts {
            let param = trim_ows(param);
            let (key, val) = match param.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    trim_ows(param.get(..eq).unwrap_or(&[])),
                    trim_ows(param.get(eq + 1..).unwrap_or(&[])),
                ),
                None => (param, &[][..]),
            };
            if key.eq_ignore_ascii_case(b"q") {
                return qvalue_accepts(val);
            }
        }
        true
    })
}

/// The span of `part`, a sub-slice of `buf`, or 400 if it is not one (cannot happen with slices
/// httparse returns, but a span must never be built from a guess).
fn span_of(buf: &[u8], part: &[u8]) -> Result<Span, Status> {
    let start = (part.as_ptr() as usize)
        .checked_sub(buf.as_ptr() as usize)
        .ok_or(Status::BadRequest)?;
    let end = start.checked_add(part.len()).ok_or(Status::BadRequest)?;
    if end > buf.len() {
        return Err(Status::BadRequest);
    }
    Ok(Span::new(
        u32::try_from(start).map_err(|_| Status::BadRequest)?,
        u32::try_from(end).map_err(|_| Status::BadRequest)?,
    ))
}

/// Every CR is followed by LF: a line ends in CRLF or a bare LF (RFC 9112 section 2.2 lets a
/// recipient accept the bare LF, as nginx does), never in a bare CR.
fn no_bare_cr(head: &[u8]) -> bool {
    // Each byte with its successor, without branches or early exit (so the compiler compares
    // 16 bytes at a time); the last byte has no successor.
    let next = head.get(1..).unwrap_or(&[]);
    let pairs_ok = head
        .iter()
        .zip(next)
        .fold(true, |ok, (&b, &n)| ok & ((b != b'\r') | (n == b'\n')));
    pairs_ok && head.last() != Some(&b'\r')
}

/// The request line (after leading empty lines): its bytes, without its CRLF or LF, and whether
/// its line end was seen. Also what the access log shows of a request.
pub fn request_line(buf: &[u8]) -> (&[u8], bool) {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or(&[]);
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(end) => (rest.get(..end).unwrap_or(rest), true),
        None => (rest, false),
    }
}

/// Status for a version httparse refused: 505 for `HTTP/DIGIT.DIGIT` (or a prefix of it while the
/// line is incomplete), 400 for anything else.
fn version_error(buf: &[u8]) -> Status {
    let (line, complete) = request_line(buf);
    let mut fields = line.splitn(3, |&b| b == b' ');
    let version = fields.nth(2).unwrap_or(&[]);
    let rest = match version.strip_prefix(b"HTTP/") {
        Some(rest) => rest,
        None => return Status::BadRequest,
    };
    let shape: &[fn(u8) -> bool] = &[
        |b| b.is_ascii_digit(),
        |b| b == b'.',
        |b| b.is_ascii_digit(),
    ];
    let fits = rest.len() <= shape.len()
        && rest.iter().zip(shape).all(|(&b, ok)| ok(b))
        && (rest.len() == shape.len() || !complete);
    if fits && !rest.is_empty() {
        Status::HttpVersionNotSupported
    } else {
        Status::BadRequest
    }
}

/// Host syntax (see the module header), for the `Host` field and an absolute-form authority.
fn valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.windows(2).any(|w| w == b"..") {
        return false;
    }
    let (name, port) = if host.first() == Some(&b'[') {
        let close = match host.iter().position(|&b| b == b']') {
            Some(i) => i,
            None => return false,
        };
        let literal = host.get(1..close).unwrap_or(&[]);
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (&b"ipv6"[..], host.get(close + 1..).unwrap_or(&[]))
    } else {
        let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        (
            host.get(..colon).unwrap_or(&[]),
            host.get(colon..).unwrap_or(&[]),
        )
    };
    let name_ok = !name.is_empty()
        && name.first() != Some(&b'.')
        && !name.windows(2).any(|w| w == b"..")
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok
}

/// `true` for MSIE 4, 5 and 6 (not 6 with `SV1`, i.e. XP SP2's), never for Opera posing as
/// MSIE: nginx's `msie6` test, whose POSTs get `Connection: close` (`keepalive_disable msie6`,
/// nginx's default).
fn is_old_msie(user_agent: &[u8]) -> bool {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    if find(user_agent, b"Opera").is_some() {
        return false;
    }
    let Some(at) = find(user_agent, b"MSIE ") else {
        return false;
    };
    // "MSIE N.x" and at least one byte more, as nginx requires.
    let version = match user_agent.get(at..) {
        Some(v) if v.len() > 7 => v,
        _ => return false,
    };
    if version.get(6) != Some(&b'.') {
        return false;
    }
    match version.get(5) {
        Some(b'4') | Some(b'5') => true,
        Some(b'6') => find(version.get(8..).unwrap_or(&[]), b"SV1").is_none(),
        _ => false,
    }
}

/// Parses one `Content-Length` field value (`5` or the list form `5, 5`).
fn parse_content_length(value: &[u8]) -> Result<u64, Status> {
    let mut length: Option<u64> = None;
    for element in value.split(|&b| b == b',') {
        let digits = trim_ows(element);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Status::BadRequest);
        }
        let n = digits
            .iter()
            .try_fold(0u64, |acc, &b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .ok_or(Status::BadRequest)?;
        match length {
            Some(previous) if previous != n => return Err(Status::BadRequest),
            _ => length = Some(n),
        }
    }
    length.ok_or(Status::BadRequest)
}

/// What the request-target says: (form, path, query, absolute-form authority).
type Target<'a> = (TargetForm, &'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

/// (path, query) of `path?query`.
fn split_query(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == b'?') {
        Some(q) => (s.get(..q).unwrap_or(&[]), s.get(q + 1..)),
        None => (s, None),
    }
}

fn classify_target(method: Method, target: &[u8]) -> Result<Target<'_>, Status> {
    if target.contains(&b'#') {
        return Err(Status::BadRequest);
    }
    if target.first() == Some(&b'/') {
        let (path, query) = split_query(target);
        return Ok((TargetForm::Origin, path, query, None));
    }
    if target == b"*" {
        if method != Method::Options {
            return Err(Status::BadRequest);
        }
        return Ok((TargetForm::Asterisk, target, None, None));
    }
    let starts = |scheme: &[u8]| {
        target
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    };
    let scheme_len = if starts(b"http://") {
        7
    } else if starts(b"https://") {
        8
    } else {
        // Authority-form (`host:port`) belongs to CONNECT only; relative paths never appear.
        return Err(Status::BadRequest);
    };
    let rest = target.get(scheme_len..).unwrap_or(&[]);
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or(&[]);
    if authority.contains(&b'@') || !valid_host(authority) {
        return Err(Status::BadRequest);
    }
    let (path, query) = split_query(rest.get(authority_end..).unwrap_or(&[]));
    Ok((TargetForm::Absolute, path, query, Some(authority)))
}

/// Header facts gathered while walking the fields once.
#[derive(Default)]
struct Fields {
    host: Option<Span>,
    content_length: Option<u64>,
    transfer_encoding: bool,
    te_lines: usize,
    te_codings: usize,
    te_chunked: usize,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
    if_none_match: Option<Span>,
    if_modified_since: Option<Span>,
    if_match: Option<Span>,
    if_unmodified_since: Option<Span>,
    range: Option<Span>,
    if_range: Option<Span>,
    accept_encoding: Option<Span>,
    user_agent: Option<Span>,
    referer: Option<Span>,
    content_type: Option<Span>,
}

impl Fields {
    /// The rules that span fields, checked once all are in: Host on HTTP/1.1; one
    /// `Transfer-Encoding: chunked` and no Content-Length beside it; methods refused before the
    /// request is processed (TRACE, CONNECT: 405, as nginx); `Expect` other than 100-continue.
    fn check(&self, method: Method, version_minor: u8) -> Result<(), Status> {
        if version_minor == 1 && self.host.is_none() {
            return Err(Status::BadRequest);
        }
        if self.transfer_encoding {
            if self.content_length.is_some()
                || version_minor == 0
                || self.te_codings == 0
                || self.te_lines > 1
            {
                return Err(Status::BadRequest);
            }
            if self.te_codings != 1 || self.te_chunked != 1 {
                return Err(Status::NotImplemented);
            }
        }
        if matches!(method, Method::Connect | Method::Trace) {
            return Err(Status::MethodNotAllowed);
        }
        if self.expect_other {
            return Err(Status::ExpectationFailed);
        }
        Ok(())
    }

    fn add(&mut self, buf: &[u8], name: &[u8], value: &[u8]) -> Result<(), Status> {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let first = |slot: &mut Option<Span>| -> Result<(), Status> {
            if slot.is_none() {
                *slot = Some(span_of(buf, value)?);
            }
            Ok(())
        };
        if is(b"host") {
            if self.host.is_some() || !valid_host(value) {
                return Err(Status::BadRequest);
            }
            self.host = Some(span_of(buf, value)?);
        } else if is(b"content-length") {
            let n = parse_content_length(value)?;
            if self.content_length.is_some_and(|previous| previous != n) {
                return Err(Status::BadRequest);
            }
            self.content_length = Some(n);
        } else if is(b"transfer-encoding") {
            self.transfer_encoding = true;
            self.te_lines += 1;
            for coding in value.split(|&b| b == b',').map(trim_ows) {
                if coding.is_empty() {
                    continue;
                }
                self.te_codings += 1;
                if coding.eq_ignore_ascii_case(b"chunked") {
                    self.te_chunked += 1;
                }
            }
        } else if is(b"connection") {
            self.connection_close |= header_contains_token(value, b"close");
            self.connection_keep_alive |= header_contains_token(value, b"keep-alive");
        } else if is(b"expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        } else if is(b"if-none-match") {
            first(&mut self.if_none_match)?;
        } else if is(b"if-modified-since") {
            first(&mut self.if_modified_since)?;
        } else if is(b"if-match") {
            first(&mut self.if_match)?;
        } else if is(b"if-unmodified-since") {
            first(&mut self.if_unmodified_since)?;
        } else if is(b"range") {
            first(&mut self.range)?;
        } else if is(b"if-range") {
            first(&mut self.if_range)?;
        } else if is(b"accept-encoding") {
            first(&mut self.accept_encoding)?;
        } else if is(b"user-agent") {
            first(&mut self.user_agent)?;
        } else if is(b"referer") {
            first(&mut self.referer)?;
        } else if is(b"content-type") {
            first(&mut self.content_type)?;
        }
        Ok(())
    }
}

/// Parses the request head at the start of `buf` (the connection's header buffer).
/// Called by the connection after every read while it is reading a head, and again after each
/// response for pipelined requests already in the buffer.
///
/// `Ok(None)`: incomplete, read more (if `buf` is already full, answer
/// [`head_overflow_status`]). `Ok(Some(head))`: the body or next request starts at
/// `head.head_len`. `Err(status)`: answer `status` and close (see the module header for which
/// status each rule gives).
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Status> {
    // Spans are u32; a header buffer is far smaller, but never trust that.
    let buf = buf.get(..u32::MAX as usize).unwrap_or(buf);
    // Left uninitialized: httparse writes only the fields it finds (zeroing all 100 slots,
    // 3.2 KB, cost more than the rest of a small head's parse).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Status::RequestHeaderFieldsTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(Status::BadRequest),
    };
    let head = buf.get(..head_len).ok_or(Status::BadRequest)?;
    // httparse ends a line at CRLF or a bare LF (both accepted: uwgate re-encodes every request,
    // so no peer ever sees these line ends); a bare CR is refused, as a peer could read it as a
    // line end where we did not.
    if !no_bare_cr(head) {
        return Err(Status::BadRequest);
    }

    let method_token = req.method.ok_or(Status::BadRequest)?.as_bytes();
    let method = Method::from_token(method_token);
    let version_minor = req.version.ok_or(Status::BadRequest)?;
    let target = req.path.ok_or(Status::BadRequest)?.as_bytes();
    let (form, path, query, authority) = classify_target(method, target)?;

    let mut fields = Fields::default();
    for header in req.headers.iter() {
        fields.add(buf, header.name.as_bytes(), header.value)?;
    }

    fields.check(method, version_minor)?;

    let host = match authority {
        Some(authority) => Some(span_of(buf, authority)?),
        None => fields.host,
    };
    let keep_alive = !fields.connection_close
        && (version_minor == 1 || fields.connection_keep_alive)
        && !(method == Method::Post
            && fields.user_agent.is_some_and(|ua| is_old_msie(ua.get(buf))));
    // An absolute-form target without a path has an empty path span, read as "/".
    let path_span = if path.is_empty() {
        let at = span_of(buf, path)?.start();
        Span::new(at, at)
    } else {
        span_of(buf, path)?
    };
    let method_span = span_of(buf, method_token)?;
    Ok(Some(Head {
        method,
        method_span,
        target: span_of(buf, target)?,
        form,
        path: path_span,
        query: query.map(|q| span_of(buf, q)).transpose()?,
        version_minor,
        head_len: u32::try_from(head_len).map_err(|_| Status::BadRequest)?,
        host,
        content_length: fields.content_length,
        chunked: fields.transfer_encoding,
        keep_alive,
        expect_continue: fields.expect_continue && version_minor == 1,
        if_none_match: fields.if_none_match,
        if_modified_since: fields.if_modified_since,
        if_match: fields.if_match,
        if_unmodified_since: fields.if_unmodified_since,
        range: fields.range,
        if_range: fields.if_range,
        accept_encoding: fields.accept_encoding,
        user_agent: fields.user_agent,
        referer: fields.referer,
        content_type: fields.content_type,
    }))
}

/// The status for a head that filled the whole header buffer without completing: 414 if even
/// the request line has no line end in `buf`, else 431. Called by the connection when `buf` is
/// `client_header_buffer_size` bytes and [`parse_head`] still answers `Ok(None)`.
pub fn head_overflow_status(buf: &[u8]) -> Status {
    match request_line(buf) {
        (_, true) => Status::RequestHeaderFieldsTooLarge,
        (_, false) => Status::UriTooLong,
    }
}

/// The header fields `(name, value)` of a head that [`parse_head`] accepted (`head` is
/// `buf[..head_len]`), in order, duplicates included, values without surrounding whitespace.
/// This walks lines already validated, splitting at line ends and at each line's first colon;
/// it is not a second parse. The uwsgi packet encoder reads the fields through it.
pub fn fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty())
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = line.get(..colon)?;
            Some((name, trim_ows(line.get(colon + 1..)?)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<Head>, Status> {
        parse_head(raw)
    }

    fn head(raw: &[u8]) -> Head {
        match parse_head(raw) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn status(raw: &[u8]) -> Status {
        match parse_head(raw) {
            Err(s) => s,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn get_with(fields: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
    }

    fn post_with(fields: &str) -> Vec<u8> {
        format!("POST /upload HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
    }

    #[test]
    fn parses_a_simple_get() {
        let raw =
            b"GET /static/app.css?v=3 HTTP/1.1\r\nHost: django.blog\r\nUser-Agent: curl/8\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.method_bytes(raw), b"GET");
        assert_eq!(h.target.get(raw), b"/static/app.css?v=3");
        assert_eq!(h.form, TargetForm::Origin);
        assert_eq!(h.path(raw), b"/static/app.css");
        assert_eq!(h.query(raw), b"v=3");
        assert_eq!(h.version_minor, 1);
        assert_eq!(h.head_len as usize, raw.len());
        assert_eq!(h.host(raw), b"django.blog");
        assert_eq!(h.user_agent.unwrap().get(raw), b"curl/8");
        assert_eq!(h.content_length, None);
        assert!(!h.chunked && h.keep_alive && !h.expect_continue && !h.has_body());
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let raw = b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n";
        for len in 0..raw.len() {
            assert_eq!(parse(&raw[..len]), Ok(None), "{len}");
        }
        assert!(parse(raw).unwrap().is_some());
    }

    #[test]
    fn head_len_stops_before_the_body_and_pipelined_requests() {
        let raw = b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n";
        let h = head(raw);
        assert_eq!(&raw[h.head_len as usize..], b"abcGET / HTTP/1.1\r\n");
        assert_eq!(h.content_length, Some(3));
        assert!(h.has_body());
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.method_bytes(raw), b"GET");
        assert_eq!(h.head_len as usize, raw.len());
    }

    #[test]
    fn methods_are_recognised_case_sensitively() {
        for (token, method) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("PROPFIND", Method::Other),
            ("get", Method::Other),
            ("X-CUSTOM_1!", Method::Other),
        ] {
            let raw = format!("{token} / HTTP/1.1\r\nHost: a\r\n\r\n");
            let h = head(raw.as_bytes());
            assert_eq!(h.method, method, "{token}");
            assert_eq!(h.method_bytes(raw.as_bytes()), token.as_bytes());
        }
    }

    #[test]
    fn invalid_method_tokens_are_rejected() {
        for raw in [
            &b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn connect_and_trace_are_not_allowed() {
        for raw in [
            &b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"TRACE / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"TRACE / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::MethodNotAllowed,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn connect_and_trace_heads_are_validated_first() {
        // nginx answers a broken head 400 (or 501) before it looks at the method.
        assert_eq!(status(b"CONNECT / HTTP/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"TRACE / HTTP/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(
            status(b"TRACE / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Status::NotImplemented
        );
    }

    #[test]
    fn connect_with_an_authority_target_is_400() {
        for raw in [
            &b"CONNECT localhost HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"CONNECT localhost:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn authority_form_without_connect_is_rejected() {
        assert_eq!(
            status(b"GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Status::BadRequest
        );
    }

    #[test]
    fn asterisk_form_only_with_options() {
        let raw = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.form, TargetForm::Asterisk);
        assert_eq!(h.path(raw), b"*");
        assert_eq!(
            status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Status::BadRequest
        );
    }

    #[test]
    fn relative_and_odd_targets_are_rejected() {
        for target in [
            "index.html",
            "./x",
            "ftp://a/b",
            "http:/a/b",
            "//a/b#frag",
            "/a#frag",
            "http://a/b#c",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(status(raw.as_bytes()), Status::BadRequest, "{target}");
        }
    }

    #[test]
    fn query_is_split_at_the_first_question_mark() {
        let raw = b"GET /a?b=1?c=/d HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.path(raw), b"/a");
        assert_eq!(h.query(raw), b"b=1?c=/d");
        let raw = b"GET /a? HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.query.map(Span::len), Some(0));
        let raw = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(head(raw).query, None);
    }

    #[test]
    fn absolute_form_host_wins_over_the_host_field() {
        let raw = b"GET http://Example.COM:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.form, TargetForm::Absolute);
        assert_eq!(h.host(raw), b"Example.COM:8080");
        assert_eq!(h.path(raw), b"/p/q");
        assert_eq!(h.query(raw), b"x=1");
        assert_eq!(h.target.get(raw), b"http://Example.COM:8080/p/q?x=1");
    }

    #[test]
    fn absolute_form_without_path_means_root() {
        let raw = b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.path(raw), b"/");
        assert!(h.path.is_empty());
        assert_eq!(h.host(raw), b"example.com");
        let raw = b"GET http://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n";
        let h = head(raw);
        assert_eq!((h.path(raw), h.query(raw)), (&b"/"[..], &b"q"[..]));
    }

    #[test]
    fn absolute_form_still_needs_a_valid_authority_and_host_field() {
        for raw in [
            &b"GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET http://user@a/p HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a..b/p HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://a/p HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let raw = b"GET http://a/p HTTP/1.0\r\n\r\n";
        assert_eq!(head(raw).host(raw), b"a");
    }

    #[test]
    fn http_1_1_requires_exactly_one_host() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n"),
            Status::BadRequest
        );
        let raw = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(head(raw).host, None);
    }

    #[test]
    fn empty_host_is_400() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost:   \r\n\r\n",
            b"GET / HTTP/1.0\r\nHost:\r\n\r\n",
            b"GET http:///p HTTP/1.0\r\n\r\n",
            b"GET http://:80/p HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http://?q HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn ipv6_literal_with_a_double_dot_is_400() {
        for raw in [
            &b"GET http://[::1..]/ HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: [::1..]\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::ffff:1..2]:80\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let raw = b"GET http://[::ffff:1.2.3.4]/ HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(head(raw).host(raw), b"[::ffff:1.2.3.4]");
    }

    #[test]
    fn post_from_msie_6_closes_the_connection() {
        let post = |ua: &str| {
            let raw = post_with(&format!("User-Agent: {ua}\r\nContent-Length: 0\r\n"));
            head(&raw).keep_alive
        };
        for old in [
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            "Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)",
            "Mozilla/4.0 (compatible; MSIE 4.01; Windows 95)",
        ] {
            assert!(!post(old), "{old}");
        }
        for newer in [
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
            "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)",
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1) Opera 7.54",
            "MSIE 6.",
            "msie 6.0",
            "curl/8",
        ] {
            assert!(post(newer), "{newer}");
        }
        let get = get_with("User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n");
        assert!(head(&get).keep_alive);
    }

    #[test]
    fn valid_hosts_are_accepted() {
        for host in [
            "example.com",
            "EXAMPLE.com.",
            "a",
            "my_host-1.local",
            "127.0.0.1",
            "127.0.0.1:8080",
            "example.com:",
            "[::1]",
            "[::1]:443",
            "[2001:db8::ffff:192.0.2.1]:80",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(head(raw.as_bytes()).host(raw.as_bytes()), host.as_bytes());
        }
    }

    #[test]
    fn hosts_with_invalid_characters_are_rejected() {
        for host in [
            "a b",
            "a/b",
            "a\\b",
            "..",
            ".example.com",
            "a..b",
            "a:b",
            "a:123456",
            "a:80:80",
            "user@a",
            "a%2fb",
            "[::1",
            "[]",
            "[::g]",
            "[::1]x",
            "[::1]:x",
            "a\"b",
            "é.com",
            "a,b",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(status(raw.as_bytes()), Status::BadRequest, "{host}");
        }
    }

    #[test]
    fn host_name_strips_the_port() {
        assert_eq!(host_name(b"example.com:8080"), b"example.com");
        assert_eq!(host_name(b"example.com"), b"example.com");
        assert_eq!(host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(host_name(b"[::1]"), b"[::1]");
        assert_eq!(host_name(b""), b"");
        assert_eq!(host_name(b"[::1"), b"[::1");
    }

    #[test]
    fn lf_only_heads_are_accepted() {
        let raw = b"GET /a?b HTTP/1.1\nHost: a\nUser-Agent: busybox\nRange: bytes=0-1\n\n";
        let h = head(raw);
        assert_eq!(h.head_len as usize, raw.len());
        assert_eq!(h.path(raw), b"/a");
        assert_eq!(h.query(raw), b"b");
        assert_eq!(h.host(raw), b"a");
        assert_eq!(h.user_agent.unwrap().get(raw), b"busybox");
        assert_eq!(h.range.unwrap().get(raw), b"bytes=0-1");
        let raw = b"GET / HTTP/1.0\n\n";
        assert_eq!(head(raw).head_len as usize, raw.len());
        let raw = b"\n\nGET / HTTP/1.0\n\n";
        assert_eq!(head(raw).method_bytes(raw), b"GET");
        assert_eq!(head(raw).head_len as usize, raw.len());
        let raw = b"POST /u HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc";
        let h = head(raw);
        assert_eq!(&raw[h.head_len as usize..], b"abc");
        assert_eq!(h.content_length, Some(3));
    }

    #[test]
    fn mixed_crlf_and_lf_heads_are_accepted() {
        for raw in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\nHost: a\r\n\n",
        ] {
            let h = head(raw);
            assert_eq!(
                h.head_len as usize,
                raw.len(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(h.host(raw), b"a");
        }
        let raw = get_with("X-A: 1\nX-B: 2\r\n");
        let h = head(&raw);
        let seen: Vec<(&[u8], &[u8])> = fields(&raw[..h.head_len as usize]).collect();
        let want: Vec<(&[u8], &[u8])> = vec![(b"Host", b"a"), (b"X-A", b"1"), (b"X-B", b"2")];
        assert_eq!(seen, want);
        assert_fields_match_httparse(&raw);
    }

    #[test]
    fn lf_only_pipelined_requests_parse_one_after_the_other() {
        let raw =
            b"GET /one HTTP/1.1\nHost: a\n\nGET /two HTTP/1.1\nHost: b\nConnection: close\n\n";
        let first = head(raw);
        assert_eq!(first.path(raw), b"/one");
        assert!(first.keep_alive);
        let rest = &raw[first.head_len as usize..];
        let second = head(rest);
        assert_eq!(second.path(rest), b"/two");
        assert_eq!(second.host(rest), b"b");
        assert!(!second.keep_alive);
        assert_eq!(second.head_len as usize, rest.len());
    }

    #[test]
    fn incomplete_lf_heads_ask_for_more() {
        let raw = b"GET /index.html HTTP/1.1\nHost: a\n\n";
        for len in 0..raw.len() {
            assert_eq!(parse(&raw[..len]), Ok(None), "{len}");
        }
    }

    #[test]
    fn lf_line_ends_still_refuse_obs_fold_and_bad_fields() {
        for raw in [
            &b"GET / HTTP/1.1\nHost: a\nX-A: b\n c\n\n"[..],
            b"GET / HTTP/1.1\nHost: a\nX-A: b\n\tc\n\n",
            b"GET / HTTP/1.1\n Host: a\n\n",
            b"GET / HTTP/1.1\nHost : a\n\n",
            b"GET / HTTP/1.1\nHost: a\nNoColon\n\n",
            b"GET / HTTP/1.1\nHost: a\nX: a\rb\n\n",
            b"GET / HTTP/1.1\nHost: a\r\rX: b\n\n",
            b"GET / HTTP/1.1\n\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn request_line_stops_at_either_line_end() {
        assert_eq!(
            request_line(b"GET / HTTP/1.1\r\nHost: a"),
            (&b"GET / HTTP/1.1"[..], true)
        );
        assert_eq!(
            request_line(b"GET / HTTP/1.1\nHost: a"),
            (&b"GET / HTTP/1.1"[..], true)
        );
        assert_eq!(
            request_line(b"\r\n\nGET / HTTP/1.1\n"),
            (&b"GET / HTTP/1.1"[..], true)
        );
        assert_eq!(request_line(b"GET /x"), (&b"GET /x"[..], false));
    }

    #[test]
    fn bare_cr_is_rejected() {
        for raw in [
            &b"GET / HTTP/1.1\rHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
            b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn obs_fold_is_rejected() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            Status::BadRequest
        );
    }

    #[test]
    fn whitespace_before_the_colon_is_rejected() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n"),
            Status::BadRequest
        );
    }

    #[test]
    fn invalid_header_names_are_rejected() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn control_bytes_in_values_are_rejected_except_htab() {
        for ctl in (0u8..0x20).chain([0x7f]) {
            if ctl == b'\t' || ctl == b'\r' || ctl == b'\n' {
                continue;
            }
            let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b".to_vec();
            raw.push(ctl);
            raw.extend_from_slice(b"c\r\n\r\n");
            assert_eq!(status(&raw), Status::BadRequest, "ctl {ctl:#x}");
        }
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\tc\xffd\r\n\r\n";
        assert!(parse(raw).unwrap().is_some());
    }

    #[test]
    fn control_bytes_and_spaces_in_the_target_are_rejected() {
        for raw in [
            &b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn other_http_versions_are_505_and_garbage_is_400() {
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET / HTTP/3.0\r\n",
            b"GET / HTTP/2",
        ] {
            assert_eq!(
                status(raw),
                Status::HttpVersionNotSupported,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        for raw in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/10.0\r\nHost: a\r\n\r\n",
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTX/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",
            b"GET / HTTP/2.\r\nHost: a\r\n\r\n",
            b"GET / 1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                status(raw),
                Status::BadRequest,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn http_1_0_is_accepted() {
        let raw = b"GET /x HTTP/1.0\r\n\r\n";
        let h = head(raw);
        assert_eq!(h.version_minor, 0);
        assert!(!h.keep_alive);
    }

    #[test]
    fn keep_alive_defaults_follow_the_version() {
        assert!(head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive
        );
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n")
                .keep_alive
        );
        assert!(head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: te, keep-alive\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn content_length_is_parsed() {
        let h = head(&post_with("Content-Length: 0\r\n"));
        assert_eq!(h.content_length, Some(0));
        assert!(!h.has_body());
        let h = head(&post_with("Content-Length: 18446744073709551615\r\n"));
        assert_eq!(h.content_length, Some(u64::MAX));
        let h = head(&post_with("Content-Length: 007\r\n"));
        assert_eq!(h.content_length, Some(7));
    }

    #[test]
    fn malformed_content_length_is_rejected() {
        for value in [
            "",
            "-1",
            "+5",
            "5a",
            "0x5",
            "5 5",
            "1e3",
            "5.0",
            "18446744073709551616",
            "99999999999999999999999",
            ",",
            "5,",
            ",5",
            "5,,5",
        ] {
            let raw = post_with(&format!("Content-Length: {value}\r\n"));
            assert_eq!(status(&raw), Status::BadRequest, "{value:?}");
        }
    }

    #[test]
    fn repeated_content_length_must_agree() {
        assert_eq!(
            head(&post_with("Content-Length: 5\r\nContent-Length: 5\r\n")).content_length,
            Some(5)
        );
        assert_eq!(
            head(&post_with("Content-Length: 5, 5\r\n")).content_length,
            Some(5)
        );
        assert_eq!(
            head(&post_with("Content-Length: 5,5 ,\t5\r\n")).content_length,
            Some(5)
        );
        assert_eq!(
            status(&post_with("Content-Length: 5\r\nContent-Length: 6\r\n")),
            Status::BadRequest
        );
        assert_eq!(
            status(&post_with("Content-Length: 5, 6\r\n")),
            Status::BadRequest
        );
        assert_eq!(
            status(&post_with("Content-Length: 5\r\nContent-Length: 5, 6\r\n")),
            Status::BadRequest
        );
    }

    #[test]
    fn chunked_transfer_encoding_is_accepted() {
        let h = head(&post_with("Transfer-Encoding: chunked\r\n"));
        assert!(h.chunked && h.has_body());
        assert_eq!(h.content_length, None);
        assert!(head(&post_with("Transfer-Encoding: Chunked\r\n")).chunked);
        assert!(head(&post_with("Transfer-Encoding:  chunked , \r\n")).chunked);
    }

    #[test]
    fn content_length_with_transfer_encoding_is_rejected() {
        assert_eq!(
            status(&post_with(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
            )),
            Status::BadRequest
        );
        assert_eq!(
            status(&post_with(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
            )),
            Status::BadRequest
        );
        assert_eq!(
            status(&post_with(
                "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n"
            )),
            Status::BadRequest
        );
    }

    #[test]
    fn transfer_encoding_on_http_1_0_is_rejected() {
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BadRequest
        );
    }

    #[test]
    fn transfer_codings_other_than_plain_chunked_are_not_implemented() {
        for value in [
            "gzip, chunked",
            "gzip",
            "chunked, gzip",
            "chunked, chunked",
            "identity",
            "chunked;q=1",
            "xchunked",
            "chunked\u{0}",
        ] {
            let raw = post_with(&format!("Transfer-Encoding: {value}\r\n"));
            let want = if value.contains('\0') {
                Status::BadRequest
            } else {
                Status::NotImplemented
            };
            assert_eq!(status(&raw), want, "{value:?}");
        }
        assert_eq!(
            status(&post_with("Transfer-Encoding: chunked, chunked\r\n")),
            Status::NotImplemented
        );
        assert_eq!(
            status(&post_with("Transfer-Encoding:\r\n")),
            Status::BadRequest
        );
        assert_eq!(
            status(&post_with("Transfer-Encoding: ,\r\n")),
            Status::BadRequest
        );
    }

    #[test]
    fn transfer_encoding_on_two_lines_is_400() {
        for fields in [
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\nX-A: b\ntransfer-encoding: chunked\n",
        ] {
            assert_eq!(status(&post_with(fields)), Status::BadRequest, "{fields:?}");
        }
    }

    #[test]
    fn expect_100_continue_is_recognised() {
        let h = head(&post_with("Content-Length: 5\r\nExpect: 100-Continue\r\n"));
        assert!(h.expect_continue);
        let h = head(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn other_expectations_fail_with_417() {
        for value in ["", "200-ok", "100-continue, foo", "100-continuex"] {
            let raw = post_with(&format!("Expect: {value}\r\n"));
            assert_eq!(status(&raw), Status::ExpectationFailed, "{value:?}");
        }
    }

    #[test]
    fn framing_errors_win_over_expectation_failures() {
        assert_eq!(
            status(&post_with("Expect: foo\r\nContent-Length: x\r\n")),
            Status::BadRequest
        );
    }

    #[test]
    fn static_file_fields_are_captured_first_occurrence() {
        let raw = get_with(
            "If-None-Match: \"e1\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             If-Match: \"e2\"\r\nIf-Unmodified-Since: Mon, 07 Nov 1994 08:49:37 GMT\r\n\
             Range: bytes=0-1\r\nRange: bytes=5-6\r\nIf-Range: \"e1\"\r\n\
             Accept-Encoding: gzip, br\r\nReferer: http://r/\r\nContent-Type: text/plain\r\n\
             user-agent: UA \r\n",
        );
        let h = head(&raw);
        let get = |s: Option<Span>| s.unwrap().get(&raw);
        assert_eq!(get(h.if_none_match), b"\"e1\"");
        assert_eq!(get(h.if_modified_since), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(get(h.if_match), b"\"e2\"");
        assert_eq!(get(h.if_unmodified_since), b"Mon, 07 Nov 1994 08:49:37 GMT");
        assert_eq!(get(h.range), b"bytes=0-1");
        assert_eq!(get(h.if_range), b"\"e1\"");
        assert_eq!(get(h.accept_encoding), b"gzip, br");
        assert_eq!(get(h.referer), b"http://r/");
        assert_eq!(get(h.content_type), b"text/plain");
        assert_eq!(get(h.user_agent), b"UA");
        let plain = head(&get_with(""));
        assert_eq!(plain.range, None);
        assert_eq!(plain.if_none_match, None);
    }

    #[test]
    fn one_hundred_headers_fit_and_one_more_is_431() {
        let mut fields = String::new();
        for i in 0..99 {
            fields.push_str(&format!("X-{i}: v\r\n"));
        }
        assert!(parse(&get_with(&fields)).unwrap().is_some());
        fields.push_str("X-last: v\r\n");
        assert_eq!(
            status(&get_with(&fields)),
            Status::RequestHeaderFieldsTooLarge
        );
    }

    #[test]
    fn overflow_status_depends_on_the_request_line() {
        assert_eq!(
            head_overflow_status(b"GET /aaaaaaaaaaaaaaaaa"),
            Status::UriTooLong
        );
        assert_eq!(
            head_overflow_status(b"\r\n\r\nGET /aaaaaaaa"),
            Status::UriTooLong
        );
        assert_eq!(head_overflow_status(b""), Status::UriTooLong);
        assert_eq!(
            head_overflow_status(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: aaaaaaa"),
            Status::RequestHeaderFieldsTooLarge
        );
        assert_eq!(
            head_overflow_status(b"GET / HTTP/1.1\r"),
            Status::RequestHeaderFieldsTooLarge
        );
        assert_eq!(
            head_overflow_status(b"GET / HTTP/1.1\nHost: a\nX-Big: aaaaaaa"),
            Status::RequestHeaderFieldsTooLarge
        );
        assert_eq!(
            head_overflow_status(b"\n\nGET /aaaaaaaa"),
            Status::UriTooLong
        );
    }

    #[test]
    fn fields_visits_all_fields_in_order() {
        let raw = get_with("A: 1\r\nB:2\r\nA: 3 \r\nEmpty:\r\n");
        let h = head(&raw);
        let seen: Vec<(&[u8], &[u8])> = fields(&raw[..h.head_len as usize]).collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"Host", b"a"),
            (b"A", b"1"),
            (b"B", b"2"),
            (b"A", b"3"),
            (b"Empty", b""),
        ];
        assert_eq!(seen, want);
    }

    /// The walk sees exactly the fields httparse saw when the head was accepted.
    fn assert_fields_match_httparse(raw: &[u8]) {
        let Ok(Some(h)) = parse_head(raw) else {
            return;
        };
        let head_bytes = &raw[..h.head_len as usize];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(matches!(
            req.parse(head_bytes),
            Ok(httparse::Status::Complete(_))
        ));
        let parsed: Vec<(&[u8], &[u8])> = req
            .headers
            .iter()
            .map(|f| (f.name.as_bytes(), trim_ows(f.value)))
            .collect();
        let walked: Vec<(&[u8], &[u8])> = fields(head_bytes).collect();
        assert_eq!(walked, parsed, "{:?}", String::from_utf8_lossy(raw));
    }

    #[test]
    fn fields_agree_with_httparse_on_accepted_heads() {
        assert_fields_match_httparse(
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\nX:\t v \t\r\nY:z:w\r\n\r\nrest",
        );
        assert_fields_match_httparse(b"GET / HTTP/1.0\r\n\r\n");
        assert_fields_match_httparse(&get_with("Cookie: a=1\r\nCookie: b=2\r\n"));
    }

    #[test]
    fn spans_outside_the_buffer_read_as_empty() {
        let span = Span::new(5, 50);
        assert_eq!(span.get(b"short"), b"");
        let backwards = Span::new(3, 1);
        assert_eq!(backwards.get(b"short"), b"");
        assert_eq!(backwards.len(), 0);
    }

    #[test]
    fn token_lists_match_case_insensitively() {
        assert!(header_contains_token(b"gzip", b"gzip"));
        assert!(header_contains_token(b"GZIP", b"gzip"));
        assert!(header_contains_token(b"deflate, gzip, br", b"gzip"));
        assert!(header_contains_token(b" br ,\tgzip\t", b"gzip"));
        assert!(!header_contains_token(b"x-gzip", b"gzip"));
        assert!(!header_contains_token(b"gzipped", b"gzip"));
        assert!(!header_contains_token(b"", b"gzip"));
        assert!(!header_contains_token(b",,", b"gzip"));
        assert!(!header_contains_token(b"br, deflate", b"gzip"));
    }

    #[test]
    fn token_lists_honour_q_values() {
        assert!(header_contains_token(b"gzip;q=1", b"gzip"));
        assert!(header_contains_token(b"gzip;q=0.001", b"gzip"));
        assert!(header_contains_token(b"gzip; q=0.5", b"gzip"));
        assert!(header_contains_token(b"gzip ; Q = 1.000", b"gzip"));
        assert!(header_contains_token(b"gzip;level=1;q=0.5", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=0", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=0.0", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=0.000", b"gzip"));
        assert!(!header_contains_token(b"br, gzip;q=0", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=abc", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=1.5", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=0.0001", b"gzip"));
        assert!(!header_contains_token(b"gzip;q=", b"gzip"));
        assert!(header_contains_token(b"gzip;q=0, gzip", b"gzip"));
        assert!(!header_contains_token(b"*", b"gzip"));
    }

    #[test]
    fn head_is_small_and_copy() {
        fn assert_copy<T: Copy>() {}
        assert_copy::<Head>();
        assert!(
            core::mem::size_of::<Head>() <= 200,
            "{}",
            core::mem::size_of::<Head>()
        );
    }

    #[test]
    fn never_panics_on_mutated_requests() {
        let seed = b"POST http://h:1/p?q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
Content-Length: 1, 1\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\n";
        for i in 0..seed.len() {
            for b in [
                0u8, b'\r', b'\n', b' ', b'\t', b':', b',', b'/', b'?', b'#', b'*', 0x80, 0xff,
            ] {
                let mut raw = seed.to_vec();
                raw[i] = b;
                let _ = parse_head(&raw);
                let _ = head_overflow_status(&raw);
                raw.remove(i);
                if let Ok(Some(h)) = parse_head(&raw) {
                    assert!(h.head_len as usize <= raw.len());
                    assert_fields_match_httparse(&raw);
                    let _ = (h.path(&raw), h.query(&raw), h.host(&raw));
                }
            }
        }
    }
}
