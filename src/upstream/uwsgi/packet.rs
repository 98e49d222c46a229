//! The uwsgi request packet: what uwgate sends uWSGI before the request body.
//!
//! Owns the wire format (modifier1 0, a 16-bit little-endian datasize, modifier2 0, then the
//! vars as `u16 LE key length, key, u16 LE value length, value`) and the choice of vars: nginx's
//! `uwsgi_params` set, `SCRIPT_NAME` for `uwsgi_script_name`, every request header as `HTTP_*`
//! the way nginx 1.23+ names and merges them, and the `uwsgi_param` lines of the location.
//!
//! Pure code: it writes into the caller's buffer and must never allocate, perform I/O, panic on
//! any input, or emit a packet uWSGI would misread — vars that do not fit 64 KiB (or `out`) are
//! refused with a status, never truncated.
//!
//! Decisions where nginx leaves room:
//! - Header names with `_` or any byte outside `[A-Za-z0-9-]` are dropped (nginx's defaults
//!   `underscores_in_headers off`, `ignore_invalid_headers on`), so `X_Forwarded_For` cannot
//!   spoof `HTTP_X_FORWARDED_FOR`.
//! - `Content-Type` and `Content-Length` travel as `CONTENT_TYPE` / `CONTENT_LENGTH` only (PEP
//!   3333); `Transfer-Encoding` is not passed at all, because uwgate de-chunks the body and sends
//!   its real length.
//! - A `uwsgi_param` whose name is a built-in var replaces that var in place (also the optional
//!   `HTTPS` and `SCRIPT_NAME`, which it forces out); one naming `HTTP_X` replaces the header
//!   `X`; any other is appended after the headers. When a name repeats, the last line wins.
//! - `SCRIPT_NAME` is sent only when the decoded path is the prefix itself or continues it at a
//!   `/`: `/app/x` → (`/app`, `/x`); `/app` → (`/app`, ``) — the empty PATH_INFO PEP 3333 names
//!   for the application root, which Django reads as `/`; `/application` keeps its whole path
//!   and gets no SCRIPT_NAME.
//! - An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`) is written as the IPv4 address.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::http::Status;

/// Bytes before the vars: modifier1, datasize (u16 LE), modifier2.
pub const HEADER_LEN: usize = 4;
/// Largest datasize the 16-bit field can carry.
pub const MAX_DATASIZE: usize = u16::MAX as usize;
/// Largest packet [`encode`] can write; an `out` this long fails only for vars over 64 KiB.
pub const MAX_PACKET: usize = HEADER_LEN + MAX_DATASIZE;
/// uWSGI's default `buffer-size`: it drops (and resets) a request whose datasize is larger.
pub const UWSGI_DEFAULT_BUFFER_SIZE: usize = 4096;
/// Header fields [`encode`] takes; at least the request parser's own limit.
pub const MAX_HEADERS: usize = 128;

/// What the request side knows about one request, for [`encode`]. Built by the upstream code
/// from the parsed head, the connection's addresses and the location.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// `GET`, `POST`, ... as sent.
    pub method: &'a [u8],
    /// The raw request-target as sent (nginx's `$request_uri`), query included.
    pub request_uri: &'a [u8],
    /// The raw query, without `?` (empty when there is none).
    pub query: &'a [u8],
    /// The decoded, canonical path (nginx's `$document_uri`).
    pub path_info: &'a [u8],
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'a [u8],
    /// The `Content-Type` value, empty when absent.
    pub content_type: &'a [u8],
    /// The real body length after de-chunking; `None` sends an empty CONTENT_LENGTH.
    pub content_length: Option<u64>,
    /// The client's address.
    pub remote_addr: IpAddr,
    /// The client's port; 0 (realip took an address without one) sends an empty REMOTE_PORT.
    pub remote_port: u16,
    /// The local address the request arrived on.
    pub server_addr: IpAddr,
    /// The local port the request arrived on.
    pub server_port: u16,
    /// The server's first `server_name` (nginx's `$server_name`).
    pub server_name: &'a [u8],
    /// nginx's `$document_root` (empty for a uwsgi location without `root`).
    pub document_root: &'a [u8],
    /// `uwsgi_script_name`: mount prefix, starting with `/`, not ending with `/`.
    pub script_name: Option<&'a [u8]>,
    /// The request came over TLS (uwgate terminates none today; a front TLS proxy may say so).
    pub https: bool,
}

/// Writes the uwsgi packet header and vars for `info` into `out` and returns its length; the
/// body follows it on the wire. Called once per request by the upstream state machine, before
/// it connects. `head` is the request head `parse_head` accepted (request line to the blank
/// line), whose fields are walked with `http::request::fields`; `params` are the location's
/// `uwsgi_param` lines.
///
/// Errors: 431 when the vars exceed 65535 bytes, one key or value exceeds 65535 bytes, the head
/// has more than [`MAX_HEADERS`] fields, or `out` is too small (use [`MAX_PACKET`]).
pub fn encode(
    out: &mut [u8],
    info: &RequestInfo<'_>,
    head: &[u8],
    params: &[(String, String)],
) -> Result<usize, Status> {
    let mut headers: heapless::Vec<(&[u8], &[u8]), MAX_HEADERS> = heapless::Vec::new();
    for field in crate::http::request::fields(head) {
        headers
            .push(field)
            .map_err(|_| Status::RequestHeaderFieldsTooLarge)?;
    }
    let mut w = Writer {
        out,
        len: HEADER_LEN,
    };
    if w.out.len() < HEADER_LEN {
        return Err(Status::RequestHeaderFieldsTooLarge);
    }
    // 1. nginx's uwsgi_params, in its file's order; a uwsgi_param of the same name replaces one.
    builtin_vars(&mut w, info, params)?;
    // 2. Every header, in order of first appearance, merged per name as nginx 1.23+ does.
    header_vars(&mut w, &headers, params)?;
    // 3. The uwsgi_param lines that did not replace a built-in: last occurrence of each name.
    for (i, (k, v)) in params.iter().enumerate() {
        let later = params.get(i + 1..).unwrap_or(&[]);
        if BUILTIN.contains(&k.as_str()) || later.iter().any(|(l, _)| l == k) {
            continue;
        }
        w.var(k.as_bytes(), v.as_bytes())?;
    }
    // 4. The header, now that the size is known.
    let datasize = w.len - HEADER_LEN;
    let size = u16::try_from(datasize).map_err(|_| Status::RequestHeaderFieldsTooLarge)?;
    let [lo, hi] = size.to_le_bytes();
    let len = w.len;
    match w.out.get_mut(..HEADER_LEN) {
        Some(h) => h.copy_from_slice(&[0, lo, hi, 0]),
        None => return Err(Status::RequestHeaderFieldsTooLarge),
    }
    Ok(len)
}

/// The built-in vars (nginx's uwsgi_params), each replaced by a `uwsgi_param` of its name.
fn builtin_vars(
    w: &mut Writer<'_>,
    info: &RequestInfo<'_>,
    params: &[(String, String)],
) -> Result<(), Status> {
    let (script_name, path_info) = split_script_name(info.script_name, info.path_info);
    let mut num = Scratch::new();
    for &name in BUILTIN {
        if let Some(value) = param(params, name) {
            w.var(name.as_bytes(), value.as_bytes())?;
            continue;
        }
        let value: &[u8] = match name {
            "QUERY_STRING" => info.query,
            "REQUEST_METHOD" => info.method,
            "CONTENT_TYPE" => info.content_type,
            "CONTENT_LENGTH" => match info.content_length {
                Some(n) => num.display(n),
                None => b"",
            },
            "REQUEST_URI" => info.request_uri,
            "PATH_INFO" => path_info,
            "DOCUMENT_ROOT" => info.document_root,
            "SERVER_PROTOCOL" => info.protocol,
            "REQUEST_SCHEME" if info.https => b"https",
            "REQUEST_SCHEME" => b"http",
            // nginx: `uwsgi_param HTTPS $https if_not_empty`.
            "HTTPS" if info.https => b"on",
            "REMOTE_ADDR" => num.display(info.remote_addr.to_canonical()),
            // nginx's $remote_port is empty when realip took an address without a port.
            "REMOTE_PORT" if info.remote_port == 0 => b"",
            "REMOTE_PORT" => num.display(info.remote_port),
            "SERVER_ADDR" => num.display(info.server_addr.to_canonical()),
            "SERVER_PORT" => num.display(info.server_port),
            "SERVER_NAME" => info.server_name,
            "SCRIPT_NAME" => match script_name {
                Some(s) => s,
                None => continue,
            },
            _ => continue,
        };
        w.var(name.as_bytes(), value)?;
    }
    Ok(())
}

/// Every header as `HTTP_*`, in order of first appearance, repeated fields merged into the
/// first (`; ` for Cookie, `, ` otherwise); a `uwsgi_param HTTP_<NAME>` replaces the header.
fn header_vars(
    w: &mut Writer<'_>,
    headers: &[(&[u8], &[u8])],
    params: &[(String, String)],
) -> Result<(), Status> {
    for (i, &(name, value)) in headers.iter().enumerate() {
        if !passable_header(name) {
            continue;
        }
        let earlier = headers.get(..i).unwrap_or(&[]);
        if earlier.iter().any(|e| e.0.eq_ignore_ascii_case(name)) {
            continue; // already sent, merged into its first occurrence
        }
        if params
            .iter()
            .any(|(k, _)| is_header_var(k.as_bytes(), name))
        {
            continue; // a uwsgi_param HTTP_<NAME> replaces it (written in step 3)
        }
        let sep: &[u8] = if name.eq_ignore_ascii_case(b"cookie") {
            b"; "
        } else {
            b", "
        };
        let later = headers.get(i + 1..).unwrap_or(&[]);
        let same = || later.iter().filter(move |l| l.0.eq_ignore_ascii_case(name));
        let value_len = same().fold(value.len(), |len, l| {
            len.saturating_add(sep.len()).saturating_add(l.1.len())
        });
        w.key_len(HTTP_PREFIX.len().saturating_add(name.len()))?;
        w.put(HTTP_PREFIX)?;
        for &b in name {
            w.put(&[header_var_byte(b)])?;
        }
        w.key_len(value_len)?;
        w.put(value)?;
        for l in same() {
            w.put(sep)?;
            w.put(l.1)?;
        }
    }
    Ok(())
}

/// True when uWSGI with `buffer-size = buffer_size` accepts a packet of `packet_len` bytes (as
/// returned by [`encode`]); uWSGI resets the connection otherwise. The upstream code uses it to
/// name `buffer-size` in the log line of a 502 (the most common cause of 502s behind nginx).
pub fn fits_uwsgi_buffer(packet_len: usize, buffer_size: usize) -> bool {
    packet_len.saturating_sub(HEADER_LEN) <= buffer_size
}

/// The built-in vars in the order they are written: nginx's `uwsgi_params` file plus
/// SERVER_ADDR (beside SERVER_PORT) and SCRIPT_NAME (when mounted). Optional ones (HTTPS,
/// SCRIPT_NAME) are written only with a value or a `uwsgi_param`.
const BUILTIN: &[&str] = &[
    "QUERY_STRING",
    "REQUEST_METHOD",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "REQUEST_URI",
    "PATH_INFO",
    "DOCUMENT_ROOT",
    "SERVER_PROTOCOL",
    "REQUEST_SCHEME",
    "HTTPS",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_ADDR",
    "SERVER_PORT",
    "SERVER_NAME",
    "SCRIPT_NAME",
];

const HTTP_PREFIX: &[u8] = b"HTTP_";

/// The last `uwsgi_param` named `name`.
fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// (SCRIPT_NAME, PATH_INFO) for a mount prefix; see the module header.
fn split_script_name<'a>(script: Option<&'a [u8]>, path: &'a [u8]) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(mut s) = script else {
        return (None, path);
    };
    while let Some(rest) = s.strip_suffix(b"/") {
        s = rest;
    }
    if s.is_empty() {
        return (None, path);
    }
    match path.strip_prefix(s) {
        Some(rest) if rest.is_empty() || rest.first() == Some(&b'/') => (Some(s), rest),
        _ => (None, path),
    }
}

/// A header passed as `HTTP_*`: a valid nginx name (letters, digits, `-`) that is not one of
/// the fields uwgate passes otherwise or consumes itself.
fn passable_header(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.eq_ignore_ascii_case(b"content-type")
        && !name.eq_ignore_ascii_case(b"content-length")
        && !name.eq_ignore_ascii_case(b"transfer-encoding")
}

/// `-` → `_`, letters upper-cased.
fn header_var_byte(b: u8) -> u8 {
    if b == b'-' {
        b'_'
    } else {
        b.to_ascii_uppercase()
    }
}

/// True if `var` is `HTTP_` followed by header `name` converted.
fn is_header_var(var: &[u8], name: &[u8]) -> bool {
    match var.strip_prefix(HTTP_PREFIX) {
        Some(rest) => {
            rest.len() == name.len()
                && rest
                    .iter()
                    .zip(name)
                    .all(|(&r, &n)| r == header_var_byte(n))
        }
        None => false,
    }
}

/// Appends into the caller's buffer; every failure is "does not fit" (431).
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Status> {
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(Status::RequestHeaderFieldsTooLarge)?;
        if end > MAX_PACKET {
            return Err(Status::RequestHeaderFieldsTooLarge);
        }
        let dst = self
            .out
            .get_mut(self.len..end)
            .ok_or(Status::RequestHeaderFieldsTooLarge)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn key_len(&mut self, n: usize) -> Result<(), Status> {
        let n = u16::try_from(n).map_err(|_| Status::RequestHeaderFieldsTooLarge)?;
        self.put(&n.to_le_bytes())
    }

    fn var(&mut self, key: &[u8], value: &[u8]) -> Result<(), Status> {
        self.key_len(key.len())?;
        self.put(key)?;
        self.key_len(value.len())?;
        self.put(value)
    }
}

/// A stack buffer for numbers and addresses (an IPv6 address is at most 45 bytes).
struct Scratch {
    buf: [u8; 48],
    len: usize,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            buf: [0; 48],
            len: 0,
        }
    }

    /// `v` formatted, valid until the next call.
    fn display(&mut self, v: impl std::fmt::Display) -> &[u8] {
        self.len = 0;
        if write!(self, "{}", v).is_err() {
            self.len = 0;
        }
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl std::fmt::Write for Scratch {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Parses a packet back into (key, value) pairs, checking the framing exactly.
    fn decode(packet: &[u8]) -> Vec<(String, String)> {
        assert!(packet.len() >= 4, "short packet");
        assert_eq!(packet[0], 0, "modifier1");
        assert_eq!(packet[3], 0, "modifier2");
        let size = u16::from_le_bytes([packet[1], packet[2]]) as usize;
        assert_eq!(size, packet.len() - 4, "datasize");
        let mut vars = Vec::new();
        let mut i = 4;
        let field = |i: &mut usize| {
            let n = u16::from_le_bytes([packet[*i], packet[*i + 1]]) as usize;
            let s = String::from_utf8_lossy(&packet[*i + 2..*i + 2 + n]).into_owned();
            *i += 2 + n;
            s
        };
        while i < packet.len() {
            let k = field(&mut i);
            let v = field(&mut i);
            vars.push((k, v));
        }
        assert_eq!(i, packet.len(), "vars overrun the packet");
        vars
    }

    fn get<'v>(vars: &'v [(String, String)], key: &str) -> Option<&'v str> {
        let mut found = vars.iter().filter(|(k, _)| k == key);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{key} sent twice: {vars:?}");
        first
    }

    fn info<'a>() -> RequestInfo<'a> {
        RequestInfo {
            method: b"GET",
            request_uri: b"/a?x=1",
            query: b"x=1",
            path_info: b"/a",
            protocol: b"HTTP/1.1",
            content_type: b"",
            content_length: None,
            remote_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            remote_port: 40000,
            server_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            server_port: 8080,
            server_name: b"localhost",
            document_root: b"",
            script_name: None,
            https: false,
        }
    }

    fn encode_vec(
        info: &RequestInfo<'_>,
        head: &[u8],
        params: &[(String, String)],
    ) -> Result<Vec<(String, String)>, Status> {
        let mut out = vec![0u8; MAX_PACKET];
        let n = encode(&mut out, info, head, params)?;
        Ok(decode(&out[..n]))
    }

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn var(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }

    #[test]
    fn simple_get_is_byte_exact() {
        let head = b"GET /a?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n";
        let mut out = [0u8; 1024];
        let n = encode(&mut out, &info(), head, &[]).unwrap();

        let mut vars = Vec::new();
        var(&mut vars, b"QUERY_STRING", b"x=1");
        var(&mut vars, b"REQUEST_METHOD", b"GET");
        var(&mut vars, b"CONTENT_TYPE", b"");
        var(&mut vars, b"CONTENT_LENGTH", b"");
        var(&mut vars, b"REQUEST_URI", b"/a?x=1");
        var(&mut vars, b"PATH_INFO", b"/a");
        var(&mut vars, b"DOCUMENT_ROOT", b"");
        var(&mut vars, b"SERVER_PROTOCOL", b"HTTP/1.1");
        var(&mut vars, b"REQUEST_SCHEME", b"http");
        var(&mut vars, b"REMOTE_ADDR", b"10.0.0.7");
        var(&mut vars, b"REMOTE_PORT", b"40000");
        var(&mut vars, b"SERVER_ADDR", b"127.0.0.1");
        var(&mut vars, b"SERVER_PORT", b"8080");
        var(&mut vars, b"SERVER_NAME", b"localhost");
        var(&mut vars, b"HTTP_HOST", b"localhost:8080");
        var(&mut vars, b"HTTP_ACCEPT", b"*/*");
        let mut expected = vec![0u8];
        expected.extend_from_slice(&(vars.len() as u16).to_le_bytes());
        expected.push(0);
        expected.extend_from_slice(&vars);

        assert_eq!(&out[..n], &expected[..]);
    }

    #[test]
    fn content_length_and_type_are_cgi_vars_not_headers() {
        let mut i = info();
        i.method = b"POST";
        i.content_type = b"application/json";
        i.content_length = Some(1_048_576);
        let head = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\n";
        let v = encode_vec(&i, head, &[]).unwrap();
        assert_eq!(get(&v, "CONTENT_LENGTH"), Some("1048576"));
        assert_eq!(get(&v, "CONTENT_TYPE"), Some("application/json"));
        assert_eq!(get(&v, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&v, "HTTP_CONTENT_LENGTH"), None);
        assert_eq!(get(&v, "HTTP_TRANSFER_ENCODING"), None);
    }

    #[test]
    fn duplicate_headers_merge_with_comma_and_cookies_with_semicolon() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Tag: a\r\nCookie: c=1\r\nAccept: x\r\n\
                     x-tag: b\r\nCOOKIE: d=2\r\nX-Tag: c\r\n\r\n";
        let v = encode_vec(&info(), head, &[]).unwrap();
        assert_eq!(get(&v, "HTTP_X_TAG"), Some("a, b, c"));
        assert_eq!(get(&v, "HTTP_COOKIE"), Some("c=1; d=2"));
        // Position of the first occurrence, as nginx.
        let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
        let pos = |k: &str| keys.iter().position(|x| *x == k).unwrap();
        assert!(pos("HTTP_HOST") < pos("HTTP_X_TAG"));
        assert!(pos("HTTP_X_TAG") < pos("HTTP_COOKIE"));
        assert!(pos("HTTP_COOKIE") < pos("HTTP_ACCEPT"));
    }

    #[test]
    fn header_names_with_underscores_or_odd_bytes_are_dropped() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\n\
                     X-Forwarded-For: 1.2.3.4\r\nX.Dot: 1\r\nX!Bang: 1\r\n\r\n";
        let v = encode_vec(&info(), head, &[]).unwrap();
        assert_eq!(get(&v, "HTTP_X_FORWARDED_FOR"), Some("1.2.3.4"));
        assert!(
            v.iter().all(|(k, _)| !k.contains('.') && !k.contains('!')),
            "{v:?}"
        );
    }

    #[test]
    fn header_names_are_upper_cased_with_dashes_as_underscores() {
        let head = b"GET / HTTP/1.1\r\nhost: h:81\r\nuser-AGENT: t/1\r\nX-A-B-9: z\r\n\r\n";
        let v = encode_vec(&info(), head, &[]).unwrap();
        assert_eq!(get(&v, "HTTP_HOST"), Some("h:81"));
        assert_eq!(get(&v, "HTTP_USER_AGENT"), Some("t/1"));
        assert_eq!(get(&v, "HTTP_X_A_B_9"), Some("z"));
    }

    #[test]
    fn header_values_lose_surrounding_whitespace_only() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad:   a  b \t\r\nX-Empty:\r\n\r\n";
        let v = encode_vec(&info(), head, &[]).unwrap();
        assert_eq!(get(&v, "HTTP_X_PAD"), Some("a  b"));
        assert_eq!(get(&v, "HTTP_X_EMPTY"), Some(""));
    }

    #[test]
    fn param_replaces_a_builtin_in_place() {
        let p = params(&[("REQUEST_SCHEME", "https"), ("SERVER_NAME", "example.org")]);
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let v = encode_vec(&info(), head, &p).unwrap();
        assert_eq!(get(&v, "REQUEST_SCHEME"), Some("https"));
        assert_eq!(get(&v, "SERVER_NAME"), Some("example.org"));
        let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys[8], "REQUEST_SCHEME");
    }

    #[test]
    fn param_replaces_a_header_var() {
        let p = params(&[("HTTP_HOST", "forced.example")]);
        let head = b"GET / HTTP/1.1\r\nHost: client.example\r\n\r\n";
        let v = encode_vec(&info(), head, &p).unwrap();
        assert_eq!(get(&v, "HTTP_HOST"), Some("forced.example"));
    }

    #[test]
    fn unknown_params_are_appended_and_the_last_of_a_name_wins() {
        let p = params(&[
            ("UWSGI_SCHEME", "http"),
            ("X_APP", "1"),
            ("UWSGI_SCHEME", "https"),
        ]);
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let v = encode_vec(&info(), head, &p).unwrap();
        assert_eq!(get(&v, "UWSGI_SCHEME"), Some("https"));
        assert_eq!(get(&v, "X_APP"), Some("1"));
        let n = v.len();
        assert_eq!(v[n - 2].0, "X_APP");
        assert_eq!(v[n - 1].0, "UWSGI_SCHEME");
    }

    #[test]
    fn https_is_sent_only_when_on() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let v = encode_vec(&info(), head, &[]).unwrap();
        assert_eq!(get(&v, "HTTPS"), None);
        assert_eq!(get(&v, "REQUEST_SCHEME"), Some("http"));
        let mut i = info();
        i.https = true;
        let v = encode_vec(&i, head, &[]).unwrap();
        assert_eq!(get(&v, "HTTPS"), Some("on"));
        assert_eq!(get(&v, "REQUEST_SCHEME"), Some("https"));
        // A param forces it out even on plain HTTP.
        let v = encode_vec(&info(), head, &params(&[("HTTPS", "on")])).unwrap();
        assert_eq!(get(&v, "HTTPS"), Some("on"));
    }

    #[test]
    fn script_name_is_stripped_from_path_info() {
        let head = b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut i = info();
        i.script_name = Some(b"/app");
        for (path, script, rest) in [
            (&b"/app/x/y"[..], Some("/app"), "/x/y"),
            (b"/app/", Some("/app"), "/"),
            (b"/app", Some("/app"), ""),
            (b"/application", None, "/application"),
            (b"/other", None, "/other"),
        ] {
            i.path_info = path;
            let v = encode_vec(&i, head, &[]).unwrap();
            assert_eq!(get(&v, "SCRIPT_NAME"), script, "{:?}", path);
            assert_eq!(get(&v, "PATH_INFO"), Some(rest), "{:?}", path);
        }
    }

    #[test]
    fn script_name_trailing_slash_and_root_are_tolerated() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut i = info();
        i.path_info = b"/app/x";
        i.script_name = Some(b"/app/");
        let v = encode_vec(&i, head, &[]).unwrap();
        assert_eq!(get(&v, "SCRIPT_NAME"), Some("/app"));
        assert_eq!(get(&v, "PATH_INFO"), Some("/x"));
        i.script_name = Some(b"/");
        let v = encode_vec(&i, head, &[]).unwrap();
        assert_eq!(get(&v, "SCRIPT_NAME"), None);
        assert_eq!(get(&v, "PATH_INFO"), Some("/app/x"));
    }

    #[test]
    fn addresses_are_canonical_text() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut i = info();
        i.remote_addr = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        i.server_addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        i.server_port = 443;
        let v = encode_vec(&i, head, &[]).unwrap();
        assert_eq!(get(&v, "REMOTE_ADDR"), Some("192.0.2.1"));
        assert_eq!(get(&v, "SERVER_ADDR"), Some("2001:db8::1"));
        assert_eq!(get(&v, "SERVER_PORT"), Some("443"));
    }

    #[test]
    fn a_client_port_of_zero_is_an_empty_remote_port() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut i = info();
        i.remote_port = 0;
        let v = encode_vec(&i, head, &[]).unwrap();
        assert_eq!(get(&v, "REMOTE_PORT"), Some(""));
    }

    #[test]
    fn vars_over_64_kib_are_refused_not_truncated() {
        let big = "v".repeat(40_000);
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\nX-A: {big}\r\nX-B: {big}\r\n\r\n");
        let mut out = vec![0u8; 2 * MAX_PACKET];
        assert_eq!(
            encode(&mut out, &info(), head.as_bytes(), &[]),
            Err(Status::RequestHeaderFieldsTooLarge)
        );
        // One value alone over 65535 bytes (a merged header) is refused as well.
        let half = "v".repeat(33_000);
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\nX-A: {half}\r\nX-A: {half}\r\n\r\n");
        assert_eq!(
            encode(&mut out, &info(), head.as_bytes(), &[]),
            Err(Status::RequestHeaderFieldsTooLarge)
        );
    }

    #[test]
    fn vars_just_under_64_kib_fit_exactly() {
        let head0 = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut out = vec![0u8; MAX_PACKET];
        let base = encode(&mut out, &info(), head0, &[]).unwrap();
        // One more var "HTTP_X_F" (2 + 8 + 2 + len) fills the datasize to exactly 65535.
        let room = MAX_PACKET - base - 2 - 8 - 2;
        let head = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-F: {}\r\n\r\n",
            "f".repeat(room)
        );
        let n = encode(&mut out, &info(), head.as_bytes(), &[]).unwrap();
        assert_eq!(n, MAX_PACKET);
        assert_eq!(
            get(&decode(&out[..n]), "HTTP_X_F").map(str::len),
            Some(room)
        );
        let head = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-F: {}\r\n\r\n",
            "f".repeat(room + 1)
        );
        assert_eq!(
            encode(&mut out, &info(), head.as_bytes(), &[]),
            Err(Status::RequestHeaderFieldsTooLarge)
        );
    }

    #[test]
    fn a_small_out_buffer_is_refused_at_every_size() {
        let head = b"GET /a?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n";
        let mut big = [0u8; 1024];
        let n = encode(&mut big, &info(), head, &[]).unwrap();
        for size in 0..n {
            let mut out = vec![0u8; size];
            assert_eq!(
                encode(&mut out, &info(), head, &[]),
                Err(Status::RequestHeaderFieldsTooLarge),
                "{size}"
            );
        }
        let mut out = vec![0u8; n];
        assert_eq!(encode(&mut out, &info(), head, &[]), Ok(n));
        assert_eq!(&out[..], &big[..n]);
    }

    #[test]
    fn fits_uwsgi_buffer_matches_uwsgi_s_datasize_check() {
        // uWSGI 2.0.30: "invalid request block size: 4097 (max 4096)" for datasize 4097.
        assert!(fits_uwsgi_buffer(4 + 4096, UWSGI_DEFAULT_BUFFER_SIZE));
        assert!(!fits_uwsgi_buffer(4 + 4097, UWSGI_DEFAULT_BUFFER_SIZE));
        assert!(fits_uwsgi_buffer(0, UWSGI_DEFAULT_BUFFER_SIZE));
    }

    #[test]
    fn a_head_without_fields_still_gets_the_builtin_vars() {
        let mut out = [0u8; 1024];
        let n = encode(&mut out, &info(), b"GET / HTTP/1.0\r\n\r\n", &[]).unwrap();
        assert!(n > HEADER_LEN);
        assert!(encode(&mut out, &info(), b"\x00\x01garbage\r\n\r\n", &[]).is_ok());
    }

    #[test]
    fn too_many_header_fields_are_431() {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let mut out = vec![0u8; MAX_PACKET];
        assert_eq!(
            encode(&mut out, &info(), head.as_bytes(), &[]),
            Err(Status::RequestHeaderFieldsTooLarge)
        );
    }

    #[test]
    fn bytes_after_the_head_are_ignored() {
        let head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcX-Not: header\r\n";
        let v = encode_vec(&info(), head, &[]).unwrap();
        assert_eq!(get(&v, "HTTP_X_NOT"), None);
    }
}
