//! Answers one parsed request head: canonical path, limits, routing, access rules, and the
//! handler (static file, stub_status; uwsgi comes through `upstream`). Writes the response
//! head into the connection's output region and leaves the connection in `Writing`.
//!
//! Never: reads from or writes to a socket (the loop does), or allocates.

use crate::config::{AccessRule, Config, Handler};
use crate::conn::{Body, Conn, Phase};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{Head, Method, Span};
use crate::http::response::{error_page, error_page_len, start, HeadWriter};
use crate::http::Status;
use crate::router::Router;
use crate::static_files::{self, connection_header, ReplyCtx, StaticRequest};
use std::net::IpAddr;
use std::time::Instant;

/// Connection counters, kept by the loop, read by stub_status.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub accepts: u64,
    pub handled: u64,
    pub requests: u64,
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// What the loop lends a request while it is answered.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub router: &'a Router,
    pub date: &'a [u8; 29],
    pub now: Instant,
    pub unix: i64,
    pub stats: Stats,
    /// Input may fill `buf[..head_limit]`; the output region is `buf[head_limit..]`.
    pub head_limit: usize,
    pub stopping: bool,
    /// The supervised programs, for the JSON status page.
    pub watchdog: &'a crate::watchdog::Watchdog,
    /// The open-file cache.
    pub files: &'a std::cell::RefCell<crate::file_cache::FileCache>,
    /// The loop's buffers for a request's canonical path and its filesystem path, reused
    /// rather than zeroed per request.
    pub uri_buf: &'a UriBuf,
    pub fs_path: &'a crate::static_files::FsPath,
}

/// A canonical request path (decoded, dot segments resolved) is at most this long.
pub type UriBuf = std::cell::RefCell<[u8; 4096]>;

/// Extra header an error response carries.
#[derive(Clone, Copy)]
pub enum Extra {
    None,
    /// `Allow: GET, HEAD` with 405 on a static location.
    AllowGetHead,
}

/// Statuses after which the request framing can't be trusted: answer and close.
fn loses_framing(status: Status) -> bool {
    matches!(
        status,
        Status::BadRequest
            | Status::RequestTimeout
            | Status::LengthRequired
            | Status::ContentTooLarge
            | Status::UriTooLong
            | Status::RequestHeaderFieldsTooLarge
            | Status::NotImplemented
            | Status::HttpVersionNotSupported
            | Status::ExpectationFailed
    )
}

/// Writes a complete error response (nginx-style HTML page) and enters `Writing`.
pub fn respond_error(conn: &mut Conn, buf: &mut [u8], ctx: &Ctx<'_>, status: Status, extra: Extra) {
    if loses_framing(status) {
        conn.keep_alive = false;
    }
    let tokens = ctx.cfg.global.server_tokens;
    let page_len = error_page_len(status, tokens);
    let base = ctx.head_limit;
    let len = {
        let mut w = HeadWriter::new(&mut buf[base..]);
        start(&mut w, status, tokens, ctx.date);
        w.header(b"Content-Type", b"text/html")
            .put(b"Content-Length: ")
            .num(page_len as u64)
            .put(b"\r\n");
        if let Extra::AllowGetHead = extra {
            w.header(b"Allow", b"GET, HEAD");
        }
        connection_header(&mut w, conn.keep_alive);
        w.put(b"\r\n");
        if !conn.head_only {
            error_page(&mut w, status, tokens);
        }
        w.len()
    };
    conn.body = Body::None;
    conn.inline_body = if conn.head_only { 0 } else { page_len };
    begin_writing(conn, base, len, status);
}

fn begin_writing(conn: &mut Conn, base: usize, len: usize, status: Status) {
    conn.out_pos = base;
    conn.out_end = base + len;
    conn.status = status.code();
    conn.body_sent = 0;
    conn.phase = Phase::Writing;
}

/// First match of allow/deny wins; no rule matching means allowed (nginx's access module).
pub fn access_allowed(rules: &[AccessRule], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    for rule in rules {
        let hit = match rule.net {
            None => true,
            Some((net, bits)) => in_net(ip, net, bits),
        };
        if hit {
            return rule.allow;
        }
    }
    true
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits.min(32) as u32)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits.min(128) as u32)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn span(buf: &[u8], r: Option<Span>) -> Option<&[u8]> {
    r.map(|s| s.get(buf))
}

/// Answers the request whose head is at `buf[..head.head_len]`. Returns the (server,
/// location) to forward to when the location is a uwsgi one; the loop starts the proxy.
pub fn on_head(
    conn: &mut Conn,
    buf: &mut [u8],
    head: &Head,
    ctx: &Ctx<'_>,
) -> Option<(usize, usize)> {
    let g = &ctx.cfg.global;
    conn.head_len = head.head_len as usize;
    conn.req_len = conn.head_len;
    conn.requests = conn.requests.saturating_add(1);
    conn.head_only = head.method == Method::Head;
    conn.keep_alive = head.keep_alive
        && !g.keepalive_timeout.is_zero()
        && conn.requests < g.keepalive_requests
        && !ctx.stopping;
    let has_body = head.chunked || head.content_length.is_some_and(|n| n > 0);
    conn.unread_body = has_body;

    if let Some(cl) = head.content_length {
        if g.client_max_body_size > 0 && cl > g.client_max_body_size {
            conn.keep_alive = false;
            respond_error(conn, buf, ctx, Status::ContentTooLarge, Extra::None);
            return None;
        }
    }
    let forward = answer(conn, buf, head, ctx);
    if forward.is_none() && has_body && conn.phase == Phase::Writing {
        if head.expect_continue {
            // The client holds its body back for a 100 we will not send: answer, then close.
            conn.keep_alive = false;
            rewrite_connection_close(conn, buf);
        } else {
            // Read and discard the body first (validating its framing), then answer, so the
            // connection stays usable, as nginx's discard_request_body does.
            conn.unread_body = false;
            conn.phase = Phase::Discarding;
            conn.discard_left = head.content_length.unwrap_or(0);
            conn.discard_started = ctx.now;
            conn.discard_seen = 0;
            conn.discard_chunked = head.chunked.then(ChunkedDecoder::new);
        }
    }
    forward
}

/// A head already written with `Connection: keep-alive` becomes `Connection: close      `
/// in place (same length, padded), so the bytes promised stay the same.
fn rewrite_connection_close(conn: &mut Conn, buf: &mut [u8]) {
    let region = &mut buf[conn.out_pos..conn.out_end];
    let needle = b"Connection: keep-alive";
    if let Some(at) = region.windows(needle.len()).position(|w| w == needle) {
        region[at..at + needle.len()].copy_from_slice(b"Connection: close     ");
    }
}

/// Body deadline: `client_body_timeout` between reads, and overall a minimum average rate
/// (`client_body_min_rate` bytes/s after a grace of `client_body_timeout`), so a client that
/// trickles a byte per timeout period is still cut off.
pub fn body_deadline(ctx: &Ctx<'_>, started: Instant, received: u64) -> Instant {
    let g = &ctx.cfg.global;
    let per_read = ctx.now + g.client_body_timeout;
    if g.client_body_min_rate == 0 {
        return per_read;
    }
    let earned =
        std::time::Duration::from_secs_f64(received as f64 / g.client_body_min_rate as f64);
    per_read.min(started + g.client_body_timeout + earned)
}

/// Discards body bytes of a request we answer without forwarding. `Ok(true)` when the whole
/// body is gone; bytes after it (pipelined input) stay in the buffer after the head.
pub fn discard_body(conn: &mut Conn, buf: &mut [u8], ctx: &Ctx<'_>) -> Result<bool, Status> {
    let head_len = conn.head_len;
    let max = ctx.cfg.global.client_max_body_size;
    loop {
        let have = conn.in_len - head_len;
        if have > 0 {
            if let Some(dec) = &mut conn.discard_chunked {
                let d = dec.decode_in_place(&mut buf[head_len..conn.in_len])?;
                if max > 0 && dec.total() > max {
                    return Err(Status::ContentTooLarge);
                }
                let rest = head_len + d.consumed;
                buf.copy_within(rest..conn.in_len, head_len);
                conn.in_len -= d.consumed;
                if d.done {
                    conn.discard_chunked = None;
                    return Ok(true);
                }
            } else {
                let take = (have as u64).min(conn.discard_left) as usize;
                buf.copy_within(head_len + take..conn.in_len, head_len);
                conn.in_len -= take;
                conn.discard_left -= take as u64;
            }
        }
        if conn.discard_chunked.is_none() && conn.discard_left == 0 {
            return Ok(true);
        }
        if !conn.readable {
            return Ok(false);
        }
        let limit = match conn.discard_chunked {
            Some(_) => ctx.head_limit,
            None => ctx
                .head_limit
                .min(head_len + conn.discard_left.min(ctx.head_limit as u64) as usize),
        };
        match conn.read_into(buf, limit) {
            Ok(0) => return Err(Status::BadRequest),
            Ok(n) => conn.discard_seen += n as u64,
            Err(e) if crate::sys::would_block(&e) => return Ok(false),
            Err(_) => return Err(Status::BadRequest),
        }
    }
}

fn answer(conn: &mut Conn, buf: &mut [u8], head: &Head, ctx: &Ctx<'_>) -> Option<(usize, usize)> {
    // 1. Canonical path into the loop's buffer (decoded once, dot segments resolved).
    let Ok(mut path_buf) = ctx.uri_buf.try_borrow_mut() else {
        respond_error(conn, buf, ctx, Status::InternalServerError, Extra::None);
        return None;
    };
    let raw_path = head.path(buf);
    let path_len = match crate::http::path::canonicalize(raw_path, &mut path_buf[..]) {
        Ok(n) => n,
        Err(status) => {
            respond_error(conn, buf, ctx, status, Extra::None);
            return None;
        }
    };
    let path = &path_buf[..path_len];

    // 2. Server by listening address and Host, then the longest-prefix location.
    let host = span(buf, head.host);
    let Some(si) = ctx.router.server(ctx.cfg, conn.local, host) else {
        respond_error(conn, buf, ctx, Status::NotFound, Extra::None);
        return None;
    };
    let Some((li, loc)) = ctx.router.location(ctx.cfg, si, path, false) else {
        respond_error(conn, buf, ctx, Status::NotFound, Extra::None);
        return None;
    };
    if !access_allowed(&loc.access, conn.peer.ip()) {
        respond_error(conn, buf, ctx, Status::Forbidden, Extra::None);
        return None;
    }

    match &loc.handler {
        Handler::Static(sc) => {
            if !matches!(head.method, Method::Get | Method::Head) {
                respond_error(
                    conn,
                    buf,
                    ctx,
                    Status::MethodNotAllowed,
                    Extra::AllowGetHead,
                );
                return None;
            }
            let target = StaticTarget {
                path,
                prefix: loc.prefix.as_bytes(),
                head: Some(head),
                extra_headers: b"",
            };
            serve_static(conn, buf, ctx, sc, target);
            None
        }
        Handler::StubStatus => {
            let json = query_has_param(head.query(buf), b"format", b"json");
            stub_status(conn, buf, ctx, json);
            None
        }
        Handler::Uwsgi(_) => Some((si, li)),
    }
}

/// What to serve from a static location.
struct StaticTarget<'a> {
    /// Canonical path and the matched location's prefix.
    path: &'a [u8],
    prefix: &'a [u8],
    /// The client's head (conditional and range headers); `None` for an internal redirect
    /// (X-Accel-Redirect), which gets the plain file.
    head: Option<&'a Head>,
    /// Header lines carried over from the app.
    extra_headers: &'a [u8],
}

/// Serves a file from a static location into the output region.
fn serve_static(
    conn: &mut Conn,
    buf: &mut [u8],
    ctx: &Ctx<'_>,
    sc: &crate::config::StaticConf,
    target: StaticTarget<'_>,
) {
    let g = &ctx.cfg.global;
    let StaticTarget {
        path,
        prefix,
        head,
        extra_headers,
    } = target;
    let (input, output) = buf.split_at_mut(ctx.head_limit);
    let field = |f: fn(&Head) -> Option<Span>| head.and_then(|h| span(input, f(h)));
    let req = StaticRequest {
        path,
        query: field(|h| h.query),
        location_prefix: prefix,
        if_none_match: field(|h| h.if_none_match),
        if_modified_since: field(|h| h.if_modified_since),
        range: head
            .filter(|h| h.method == Method::Get)
            .and_then(|h| span(input, h.range)),
        if_range: field(|h| h.if_range),
        accepts_gzip: field(|h| h.accept_encoding)
            .is_some_and(|v| crate::http::request::header_contains_token(v, b"gzip")),
        extra_headers,
    };
    let rctx = ReplyCtx {
        date: ctx.date,
        now: ctx.unix,
        server_tokens: g.server_tokens,
        keep_alive: conn.keep_alive,
        head_only: conn.head_only,
        files: Some(ctx.files),
        fs_path: ctx.fs_path,
        mono: ctx.now,
    };
    let mut w = HeadWriter::new(output);
    match static_files::serve(sc, &req, &rctx, &mut w) {
        Ok(body) if !w.overflowed() => {
            let len = w.len();
            let status = status_of(output);
            // serve() writes the page itself after a 301 or 416 head, and a cached small
            // file's bytes after a 200 head.
            let inline = matches!(
                status,
                Status::MovedPermanently | Status::RangeNotSatisfiable
            );
            conn.inline_body = match body {
                Body::Inline(n) => n,
                _ if inline && !conn.head_only => error_page_len(status, g.server_tokens),
                _ => 0,
            };
            conn.body = match body {
                Body::Inline(_) => Body::None,
                other => other,
            };
            begin_writing(conn, ctx.head_limit, len, status);
        }
        Ok(_) => respond_error(conn, buf, ctx, Status::InternalServerError, Extra::None),
        Err(status) => respond_error(conn, buf, ctx, status, Extra::None),
    }
}

/// X-Accel-Redirect from the app: serve `uri` from an `internal = on` static location of the
/// request's server, as nginx does for Django's protected downloads.
pub fn serve_internal(conn: &mut Conn, buf: &mut [u8], uri: &[u8], extra: &[u8], ctx: &Ctx<'_>) {
    let raw_path = match uri.iter().position(|&b| b == b'?') {
        Some(q) => &uri[..q],
        None => uri,
    };
    let Ok(mut path_buf) = ctx.uri_buf.try_borrow_mut() else {
        return respond_error(conn, buf, ctx, Status::InternalServerError, Extra::None);
    };
    let path = match crate::http::path::canonicalize(raw_path, &mut path_buf[..]) {
        Ok(n) => &path_buf[..n],
        Err(status) => return respond_error(conn, buf, ctx, status, Extra::None),
    };
    let si = conn.server as usize;
    match ctx.router.location(ctx.cfg, si, path, true) {
        Some((_, loc)) => match &loc.handler {
            Handler::Static(sc) => {
                let target = StaticTarget {
                    path,
                    prefix: loc.prefix.as_bytes(),
                    head: None,
                    extra_headers: extra,
                };
                serve_static(conn, buf, ctx, sc, target)
            }
            _ => {
                log::error!(
                    "X-Accel-Redirect to a non-static location: {}",
                    String::from_utf8_lossy(uri)
                );
                respond_error(conn, buf, ctx, Status::InternalServerError, Extra::None)
            }
        },
        None => respond_error(conn, buf, ctx, Status::NotFound, Extra::None),
    }
}

/// Reads the status code back from a head we just wrote (`HTTP/1.1 NNN …`).
fn status_of(out: &[u8]) -> Status {
    let code = out
        .get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(500);
    Status::from_code(code).unwrap_or(Status::InternalServerError)
}

/// True when the query string has `name=value` (no decoding: these are plain words).
fn query_has_param(query: &[u8], name: &[u8], value: &[u8]) -> bool {
    query.split(|&b| b == b'&').any(|kv| {
        let mut it = kv.splitn(2, |&b| b == b'=');
        it.next() == Some(name) && it.next() == Some(value)
    })
}

/// nginx's stub_status text, byte for byte, so existing monitors parse it; with
/// `?format=json`, the same counters plus the programs (`supervisorctl status` as JSON).
fn stub_status(conn: &mut Conn, buf: &mut [u8], ctx: &Ctx<'_>, json: bool) {
    let s = ctx.stats;
    let mut body = [0u8; 8192];
    let (body_len, overflow) = {
        let mut w = HeadWriter::new(&mut body);
        if json {
            status_json(&mut w, ctx);
        } else {
            w.put(b"Active connections: ")
                .num(s.active)
                .put(b" \nserver accepts handled requests\n ")
                .num(s.accepts)
                .put(b" ")
                .num(s.handled)
                .put(b" ")
                .num(s.requests)
                .put(b" \nReading: ")
                .num(s.reading)
                .put(b" Writing: ")
                .num(s.writing)
                .put(b" Waiting: ")
                .num(s.waiting)
                .put(b" \n");
        }
        (w.len(), w.overflowed())
    };
    if overflow {
        log::error!("the status page does not fit its 8 KiB buffer");
        return respond_error(conn, buf, ctx, Status::InternalServerError, Extra::None);
    }
    let base = ctx.head_limit;
    let (len, overflow) = {
        let mut w = HeadWriter::new(&mut buf[base..]);
        start(&mut w, Status::Ok, ctx.cfg.global.server_tokens, ctx.date);
        let ctype: &[u8] = if json {
            b"application/json"
        } else {
            b"text/plain"
        };
        w.header(b"Content-Type", ctype)
            .put(b"Content-Length: ")
            .num(body_len as u64)
            .put(b"\r\n")
            .header(b"Cache-Control", b"no-cache");
        connection_header(&mut w, conn.keep_alive);
        w.put(b"\r\n");
        if !conn.head_only {
            w.put(&body[..body_len]);
        }
        (w.len(), w.overflowed())
    };
    if overflow {
        log::error!("the status page does not fit the output region (raise buffer_size)");
        return respond_error(conn, buf, ctx, Status::InternalServerError, Extra::None);
    }
    conn.body = Body::None;
    conn.inline_body = if conn.head_only { 0 } else { body_len };
    begin_writing(conn, base, len, Status::Ok);
}

fn status_json(w: &mut HeadWriter<'_>, ctx: &Ctx<'_>) {
    let s = ctx.stats;
    w.put(b"{\"connections\":{\"active\":")
        .num(s.active)
        .put(b",\"accepts\":")
        .num(s.accepts)
        .put(b",\"handled\":")
        .num(s.handled)
        .put(b",\"requests\":")
        .num(s.requests)
        .put(b",\"reading\":")
        .num(s.reading)
        .put(b",\"writing\":")
        .num(s.writing)
        .put(b",\"waiting\":")
        .num(s.waiting)
        .put(b"},");
    #[cfg(feature = "count-alloc")]
    w.put(b"\"allocations\":")
        .num(crate::alloc_count::allocations())
        .put(b",");
    w.put(b"\"log_dropped\":")
        .num(crate::logging::dropped())
        .put(b",\"programs\":[");
    for (i, p) in ctx.watchdog.status().enumerate() {
        if i > 0 {
            w.put(b",");
        }
        w.put(b"{\"name\":");
        json_str(w, p.name.as_bytes());
        w.put(b",\"group\":");
        json_str(w, p.group.as_bytes());
        w.put(b",\"state\":\"")
            .put(p.state.as_bytes())
            .put(b"\",\"pid\":");
        match p.pid {
            Some(pid) => w.num(pid as u64),
            None => w.put(b"null"),
        };
        w.put(b",\"uptime\":")
            .num(p.uptime_secs)
            .put(b",\"restarts\":")
            .num(p.restarts as u64)
            .put(b",\"last_exit\":");
        match p.last_exit {
            Some(e) => {
                let mut text = heapless::String::<64>::new();
                use std::fmt::Write as _;
                let _ = write!(text, "{e}");
                json_str(w, text.as_bytes());
            }
            None => {
                w.put(b"null");
            }
        }
        w.put(b"}");
    }
    w.put(b"]}\n");
}

/// A JSON string literal (names are ini words, but escape anyway).
fn json_str(w: &mut HeadWriter<'_>, s: &[u8]) {
    w.put(b"\"");
    for &b in s {
        match b {
            b'"' => w.put(b"\\\""),
            b'\\' => w.put(b"\\\\"),
            0..=0x1f => {
                let hex = b"0123456789abcdef";
                w.put(b"\\u00")
                    .put(&[hex[(b >> 4) as usize], hex[(b & 15) as usize]])
            }
            _ => w.put(&[b]),
        };
    }
    w.put(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRule;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut b = [0u8; 64];
        let mut w = HeadWriter::new(&mut b);
        json_str(&mut w, b"a\"b\\c\x01\x1f");
        let n = w.len();
        assert_eq!(&b[..n], br#""a\"b\\c\u0001\u001f""#);
    }

    #[test]
    fn format_json_is_found_among_query_parameters() {
        assert!(query_has_param(b"x=1&format=json", b"format", b"json"));
        assert!(!query_has_param(b"format=jsonx", b"format", b"json"));
        assert!(!query_has_param(b"", b"format", b"json"));
    }

    #[test]
    fn first_matching_access_rule_wins() {
        let rules = [
            AccessRule {
                allow: true,
                net: Some(("127.0.0.1".parse().unwrap(), 32)),
            },
            AccessRule {
                allow: false,
                net: None,
            },
        ];
        assert!(access_allowed(&rules, "127.0.0.1".parse().unwrap()));
        assert!(!access_allowed(&rules, "10.1.2.3".parse().unwrap()));
        assert!(access_allowed(&rules, "::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn cidr_masks_compare_network_bits_only() {
        assert!(in_net(
            "10.9.8.7".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            8
        ));
        assert!(!in_net(
            "11.0.0.1".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            8
        ));
        assert!(in_net(
            "fd00::1".parse().unwrap(),
            "fd00::".parse().unwrap(),
            8
        ));
        assert!(in_net(
            "1.2.3.4".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }
}
