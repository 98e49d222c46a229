//! Answers one parsed request head: canonical path, routing, access rules, and the handler —
//! a static file, the status page, an error page, or forwarding to a uwsgi location.
//!
//! Owns the choice of handler and the responses written for it into a connection's output
//! region. Called by the connection (`conn`) once per request, and again for an
//! X-Accel-Redirect. Never: reads from or writes to a socket, changes a connection's state
//! (it returns an [`Outcome`] the connection applies), or allocates.

use super::status;
use super::Ctx;
use crate::config::{AccessRule, Handler, Location, StaticConf, NO_ROUTE};
use crate::http::request::{header_contains_token, Head, Method, Span};
use crate::http::response::{error_page, error_page_len, start, HeadWriter};
use crate::http::Status;
use crate::static_files::body::Body;
use crate::static_files::{self, connection_header, ReplyCtx, StaticRequest};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

/// Extra header an error response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    None,
    /// `Allow: GET, HEAD` with 405 on a static location.
    AllowGetHead,
}

/// A response written into the output region: the head (and any inline body bytes), then
/// `body`.
pub struct Answer {
    pub status: Status,
    /// Bytes written at the start of the output region.
    pub len: usize,
    /// Body bytes among those (an error page, a small cached file), for the access log.
    pub inline: usize,
    pub body: Body,
    /// What the `Connection` header promised.
    pub keep_alive: bool,
    /// (server, location) the request was routed to, as far as it got (`NO_ROUTE` before):
    /// whose limits apply to the rest of the exchange.
    pub route: (u16, u16),
}

/// What a parsed head becomes.
pub enum Outcome {
    /// A complete answer is in the output region.
    Answer(Answer),
    /// The answer does not fit the output region (the caller retries with a larger one).
    TooBig,
    /// Forward to uwsgi location `location` of server `server`; the canonical path (for
    /// PATH_INFO) was copied to the front of the output region, `path_len` bytes.
    Forward {
        server: u16,
        location: u16,
        path_len: usize,
        /// Whether the connection may stay open after the answer.
        keep_alive: bool,
    },
}

/// The request as the connection knows it.
pub struct Request<'a> {
    pub head: &'a Head,
    pub peer: SocketAddr,
    /// The source address of the PROXY protocol header the connection began with.
    pub proxied: Option<SocketAddr>,
    /// Set by [`answer`] once the request is routed: the client address realip finds (the
    /// peer's unless a trusted peer names another). The connection keeps it for the access log
    /// and REMOTE_ADDR.
    pub client: Cell<SocketAddr>,
    pub local: SocketAddr,
    /// The client asks for keep-alive and uwgate is not stopping; the route's
    /// `keepalive_timeout` and `keepalive_requests` decide the rest.
    pub wants_keep_alive: bool,
    /// Requests on this connection, this one included.
    pub requests: u32,
    pub head_only: bool,
}

impl Request<'_> {
    /// Whether the connection stays open after this request, routed to `route`.
    fn keep_alive(&self, ctx: &Ctx<'_>, route: (u16, u16)) -> bool {
        self.wants_keep_alive && ctx.cfg.limits(route.0, route.1).keeps_alive(self.requests)
    }
}

/// Statuses after which the request framing can't be trusted: answer and close.
pub fn loses_framing(status: Status) -> bool {
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

/// A complete error response (nginx-style HTML page) in `out`. A status that loses the
/// request's framing also closes the connection.
pub fn error(
    status: Status,
    extra: Extra,
    keep_alive: bool,
    head_only: bool,
    out: &mut [u8],
    ctx: &Ctx<'_>,
) -> Answer {
    let keep_alive = keep_alive && !loses_framing(status);
    let tokens = ctx.cfg.global.server_tokens;
    let page_len = error_page_len(status, tokens);
    let mut w = HeadWriter::new(out);
    start(&mut w, status, tokens, ctx.date);
    w.header(b"Content-Type", b"text/html")
        .put(b"Content-Length: ")
        .num(page_len as u64)
        .put(b"\r\n");
    if let Extra::AllowGetHead = extra {
        w.header(b"Allow", b"GET, HEAD");
    }
    connection_header(&mut w, keep_alive);
    w.put(b"\r\n");
    if !head_only {
        error_page(&mut w, status, tokens);
    }
    Answer {
        status,
        len: w.len(),
        inline: if head_only { 0 } else { page_len },
        body: Body::None,
        keep_alive,
        route: (NO_ROUTE, NO_ROUTE),
    }
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

/// Answers the request whose head is in `input`, writing into `out` (the output region).
/// Routing decides which limits apply: keep-alive and `client_max_body_size` (413, checked
/// before the access rules, as nginx) are the location's.
pub fn answer(req: &Request<'_>, input: &[u8], out: &mut [u8], ctx: &Ctx<'_>) -> Outcome {
    let unrouted = (NO_ROUTE, NO_ROUTE);
    // 1. Canonical path into the loop's buffer (decoded once, dot segments resolved).
    let Ok(mut path_buf) = ctx.uri_buf.try_borrow_mut() else {
        return refuse(
            req,
            Status::InternalServerError,
            Extra::None,
            unrouted,
            out,
            ctx,
        );
    };
    let path_len = match crate::http::path::canonicalize(req.head.path(input), &mut path_buf[..]) {
        Ok(n) => n,
        Err(status) => return refuse(req, status, Extra::None, unrouted, out, ctx),
    };
    let path = path_buf.get(..path_len).unwrap_or(&[]);
    match route(req, input, path, ctx) {
        Ok(routed) => serve(req, input, path, routed, out, ctx),
        Err((status, route)) => refuse(req, status, Extra::None, route, out, ctx),
    }
}

/// Where a routed request goes: (server, location) indexes and the location.
struct Routed<'c> {
    route: (u16, u16),
    loc: &'c Location,
}

/// Step 2: the server by listening address and Host, then the longest-prefix location; sets
/// the request's client address (realip) once the server is known. Then the location's
/// gates: the body size (413), then the access rules (403). `Err` has the status to answer
/// with the route as far as it got.
fn route<'c>(
    req: &Request<'_>,
    input: &[u8],
    path: &[u8],
    ctx: &Ctx<'c>,
) -> Result<Routed<'c>, (Status, (u16, u16))> {
    let head = req.head;
    let mut route = (NO_ROUTE, NO_ROUTE);
    let host = span(input, head.host);
    let Some(si) = ctx.router.server(ctx.cfg, req.local, host) else {
        return Err((Status::NotFound, route));
    };
    route.0 = si as u16;
    let sources = super::realip::Sources {
        head: input.get(..head.head_len as usize).unwrap_or(&[]),
        peer: req.peer,
        proxied: req.proxied,
    };
    let Some((li, loc)) = ctx.router.location(ctx.cfg, si, path, false) else {
        req.client
            .set(super::realip::client_addr(ctx.cfg, si, None, sources));
        return Err((Status::NotFound, route));
    };
    route.1 = li as u16;
    let client = super::realip::client_addr(ctx.cfg, si, Some(li), sources);
    req.client.set(client);
    if head
        .content_length
        .is_some_and(|n| loc.limits.body_too_large(n))
    {
        return Err((Status::ContentTooLarge, route));
    }
    if !access_allowed(&loc.access, client.ip()) {
        return Err((Status::Forbidden, route));
    }
    Ok(Routed { route, loc })
}

/// Step 3: the location's handler: a static file (GET and HEAD only), the status page, the
/// health page, or forwarding to uwsgi with the canonical `path` copied to the start of `out`.
fn serve(
    req: &Request<'_>,
    input: &[u8],
    path: &[u8],
    routed: Routed<'_>,
    out: &mut [u8],
    ctx: &Ctx<'_>,
) -> Outcome {
    let Routed { route, loc } = routed;
    let head = req.head;
    let keep_alive = req.keep_alive(ctx, route);
    let routed = |a: Answer| Outcome::Answer(Answer { route, ..a });
    match &loc.handler {
        Handler::Static(sc) => {
            if !matches!(head.method, Method::Get | Method::Head) {
                return refuse(
                    req,
                    Status::MethodNotAllowed,
                    Extra::AllowGetHead,
                    route,
                    out,
                    ctx,
                );
            }
            let target = StaticTarget {
                path,
                prefix: loc.prefix.as_bytes(),
                head: Some(head),
                input,
                extra_headers: b"",
                max_ranges: loc.limits.max_ranges(),
            };
            serve_static(keep_alive, req.head_only, out, ctx, sc, target)
                .map_or(Outcome::TooBig, routed)
        }
        Handler::StubStatus => {
            let json = query_has_param(head.query(input), b"format", b"json");
            status_page(keep_alive, req.head_only, out, ctx, json).map_or(Outcome::TooBig, routed)
        }
        Handler::Health => {
            super::health::page(keep_alive, req.head_only, out, ctx).map_or(Outcome::TooBig, routed)
        }
        Handler::Uwsgi(_) => match out.get_mut(..path.len()) {
            Some(dst) => {
                dst.copy_from_slice(path);
                Outcome::Forward {
                    server: route.0,
                    location: route.1,
                    path_len: path.len(),
                    keep_alive,
                }
            }
            None => refuse(req, Status::UriTooLong, Extra::None, route, out, ctx),
        },
    }
}

/// An error answer for a request routed as far as `route`, whose limits decide keep-alive.
fn refuse(
    req: &Request<'_>,
    status: Status,
    extra: Extra,
    route: (u16, u16),
    out: &mut [u8],
    ctx: &Ctx<'_>,
) -> Outcome {
    let keep_alive = req.keep_alive(ctx, route);
    let mut a = error(status, extra, keep_alive, req.head_only, out, ctx);
    a.route = route;
    Outcome::Answer(a)
}

/// What to serve from a static location.
struct StaticTarget<'a> {
    /// Canonical path and the matched location's prefix.
    path: &'a [u8],
    prefix: &'a [u8],
    /// The client's head (conditional and range headers) with the buffer it was parsed from;
    /// `None` for an internal redirect (X-Accel-Redirect), which gets the plain file.
    head: Option<&'a Head>,
    input: &'a [u8],
    /// Header lines carried over from the app.
    extra_headers: &'a [u8],
    /// The location's `max_ranges`.
    max_ranges: usize,
}

/// What a static location needs of the request, from the head's spans.
fn static_request<'a>(target: &StaticTarget<'a>) -> StaticRequest<'a> {
    let (head, input) = (target.head, target.input);
    let field = |f: fn(&Head) -> Option<Span>| head.and_then(|h| span(input, f(h)));
    StaticRequest {
        path: target.path,
        query: field(|h| h.query),
        location_prefix: target.prefix,
        if_none_match: field(|h| h.if_none_match),
        if_modified_since: field(|h| h.if_modified_since),
        if_match: field(|h| h.if_match),
        if_unmodified_since: field(|h| h.if_unmodified_since),
        max_ranges: target.max_ranges,
        range: head
            .filter(|h| h.method == Method::Get)
            .and_then(|h| span(input, h.range)),
        if_range: field(|h| h.if_range),
        accepts_gzip: field(|h| h.accept_encoding)
            .is_some_and(|v| header_contains_token(v, b"gzip")),
        extra_headers: target.extra_headers,
    }
}

/// Serves a file from a static location into `out`; `None` when the head does not fit.
fn serve_static(
    keep_alive: bool,
    head_only: bool,
    out: &mut [u8],
    ctx: &Ctx<'_>,
    sc: &StaticConf,
    target: StaticTarget<'_>,
) -> Option<Answer> {
    let g = &ctx.cfg.global;
    let req = static_request(&target);
    let rctx = ReplyCtx {
        date: ctx.date,
        now: ctx.unix,
        server_tokens: g.server_tokens,
        keep_alive,
        head_only,
        files: Some(ctx.files),
        fs_path: ctx.fs_path,
        multiparts: Some(ctx.multiparts),
        mono: ctx.now,
    };
    let mut w = HeadWriter::new(out);
    let served = static_files::serve(sc, &req, &rctx, &mut w);
    let (len, overflowed) = (w.len(), w.overflowed());
    match served {
        Ok(body) if !overflowed => {
            let status = status_of(out);
            // serve() writes the page itself after a 301 or 416 head, and a cached small
            // file's bytes after a 200 head.
            let page = matches!(
                status,
                Status::MovedPermanently | Status::RangeNotSatisfiable
            );
            let inline = match body {
                Body::Inline(n) => n,
                _ if page && !head_only => error_page_len(status, g.server_tokens),
                _ => 0,
            };
            let body = match body {
                Body::Inline(_) => Body::None,
                other => other,
            };
            Some(Answer {
                status,
                len,
                inline,
                body,
                keep_alive,
                route: (NO_ROUTE, NO_ROUTE),
            })
        }
        Ok(_) => None,
        Err(status) => Some(error(status, Extra::None, keep_alive, head_only, out, ctx)),
    }
}

/// X-Accel-Redirect from the app: serve `uri` from an `internal = on` static location of
/// server `server`, as nginx does for Django's protected downloads, carrying `extra` header
/// lines of the app's over.
pub fn internal(
    uri: &[u8],
    extra: &[u8],
    server: usize,
    keep_alive: bool,
    head_only: bool,
    out: &mut [u8],
    ctx: &Ctx<'_>,
) -> Answer {
    let fail = |status, out: &mut [u8]| error(status, Extra::None, keep_alive, head_only, out, ctx);
    let raw_path = match uri.iter().position(|&b| b == b'?') {
        Some(q) => uri.get(..q).unwrap_or(uri),
        None => uri,
    };
    let Ok(mut path_buf) = ctx.uri_buf.try_borrow_mut() else {
        return fail(Status::InternalServerError, out);
    };
    let path = match crate::http::path::canonicalize(raw_path, &mut path_buf[..]) {
        Ok(n) => path_buf.get(..n).unwrap_or(&[]),
        Err(status) => return fail(status, out),
    };
    match ctx.router.location(ctx.cfg, server, path, true) {
        Some((_, loc)) => match &loc.handler {
            Handler::Static(sc) => {
                let target = StaticTarget {
                    path,
                    prefix: loc.prefix.as_bytes(),
                    head: None,
                    input: &[],
                    extra_headers: extra,
                    max_ranges: loc.limits.max_ranges(),
                };
                serve_static(keep_alive, head_only, out, ctx, sc, target).unwrap_or_else(|| {
                    log::error!("an X-Accel-Redirect answer does not fit the output region (raise buffer_size)");
                    fail(Status::InternalServerError, out)
                })
            }
            _ => {
                log::error!(
                    "X-Accel-Redirect to a non-static location: {}",
                    crate::logging::Escaped(uri)
                );
                fail(Status::InternalServerError, out)
            }
        },
        None => fail(Status::NotFound, out),
    }
}

/// Reads the status code back from a head just written (`HTTP/1.1 NNN …`).
fn status_of(out: &[u8]) -> Status {
    // Three ASCII digits, read directly (no str validation and parse on every answer).
    let code = out
        .get(9..12)
        .and_then(|d| {
            d.iter().try_fold(0u16, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u16::from(b - b'0'))
            })
        })
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

/// The status page (see `status`) as a complete response; `None` when it does not fit `out`.
fn status_page(
    keep_alive: bool,
    head_only: bool,
    out: &mut [u8],
    ctx: &Ctx<'_>,
    json: bool,
) -> Option<Answer> {
    let mut body = [0u8; status::PAGE_MAX];
    let (body_len, overflow) = {
        let mut w = HeadWriter::new(&mut body);
        status::write_page(&mut w, ctx, json);
        (w.len(), w.overflowed())
    };
    let fail = |out: &mut [u8]| {
        error(
            crate::http::Status::InternalServerError,
            Extra::None,
            keep_alive,
            head_only,
            out,
            ctx,
        )
    };
    if overflow {
        log::error!("the status page does not fit its 8 KiB buffer");
        return Some(fail(out));
    }
    let mut w = HeadWriter::new(out);
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
    connection_header(&mut w, keep_alive);
    w.put(b"\r\n");
    if !head_only {
        w.put(body.get(..body_len).unwrap_or(&[]));
    }
    let (len, overflow) = (w.len(), w.overflowed());
    if overflow {
        return None;
    }
    Some(Answer {
        status: Status::Ok,
        len,
        inline: if head_only { 0 } else { body_len },
        body: Body::None,
        keep_alive,
        route: (NO_ROUTE, NO_ROUTE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRule;

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
