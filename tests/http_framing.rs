//! HTTP/1.1 message framing and validation (RFC 9112/9110): Host, 414/431 limits, bare LF (served,
//! as nginx), bare CR, obs-fold, Content-Length vs Transfer-Encoding, bad chunks, 413, 505, 417,
//! `Expect: 100-continue`. Every rejected request must also close the connection so the bytes
//! after it can never be read as another request (request smuggling).

mod common;
use common::*;

use std::time::Duration;

const HELLO: &str = "hello, world\n";

fn site(name: &str, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/hello.txt", HELLO);
    t.write("static/other.txt", "OTHER-FILE");
    let s = Server::start_in(&t, &static_ini(global_extra, ""));
    (t, s)
}

/// Sends `raw`, expects one response with `status`, then expects the server to close.
/// Returns the response.
fn expect_status_and_close(port: u16, raw: &[u8], status: u16) -> Response {
    let mut c = Client::connect(port);
    let _ = c.try_send(raw);
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{:?}: no response: {}", String::from_utf8_lossy(raw), e));
    assert_eq!(
        r.status,
        status,
        "request {:?} got {}",
        String::from_utf8_lossy(raw),
        r.head_raw
    );
    assert!(
        c.wait_closed(Duration::from_secs(3)).is_some(),
        "connection left open after {} for {:?}",
        status,
        String::from_utf8_lossy(raw)
    );
    assert!(
        !String::from_utf8_lossy(c.pending()).contains("HTTP/1.1 200"),
        "a second response followed the {}: {:?}",
        status,
        String::from_utf8_lossy(c.pending())
    );
    r
}

/// The server still answers a normal request.
fn assert_alive(port: u16) {
    let r = get(port, "/static/hello.txt");
    assert_eq!(
        r.status, 200,
        "server no longer serves after the bad request"
    );
    assert_eq!(r.body, HELLO.as_bytes());
}

// --- Host -----------------------------------------------------------------------------------

#[test]
fn http11_request_without_host_is_400() {
    let (_t, s) = site("no_host", "");
    expect_status_and_close(s.port, b"GET /static/hello.txt HTTP/1.1\r\n\r\n", 400);
    assert_alive(s.port);
}

#[test]
fn http10_request_without_host_is_served() {
    let (_t, s) = site("http10_no_host", "");
    let r = request(s.port, b"GET /static/hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

#[test]
fn duplicate_host_is_400() {
    // RFC 9112 3.2: more than one Host field line -> 400.
    let (_t, s) = site("dup_host", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    );
}

#[test]
fn absolute_form_request_target_is_served() {
    // RFC 9112 3.2.2: a server MUST accept the absolute-form.
    let (_t, s) = site("absolute_form", "");
    let r = request(
        s.port,
        b"GET http://localhost/static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

// --- size limits ------------------------------------------------------------------------------

#[test]
fn overlong_request_line_is_414() {
    let (_t, s) = site("414", "client_header_buffer_size = 1k");
    let req = format!(
        "GET /static/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(2000)
    );
    expect_status_and_close(s.port, req.as_bytes(), 414);
    assert_alive(s.port);
}

#[test]
fn head_larger_than_client_header_buffer_is_431() {
    let (_t, s) = site("431", "client_header_buffer_size = 1k");
    let mut req = String::from("GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..30 {
        req.push_str(&format!("X-Filler-{}: {}\r\n", i, "v".repeat(80)));
    }
    req.push_str("\r\n");
    expect_status_and_close(s.port, req.as_bytes(), 431);
    assert_alive(s.port);
}

#[test]
fn head_just_under_client_header_buffer_is_served() {
    let (_t, s) = site("under_431", "client_header_buffer_size = 1k");
    let mut req =
        String::from("GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    while req.len() < 900 {
        req.push_str("X-Pad: 0123456789\r\n");
    }
    req.push_str("\r\n");
    assert!(req.len() < 1024);
    let r = request(s.port, req.as_bytes());
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

#[test]
fn very_many_small_headers_do_not_crash() {
    let (_t, s) = site("many_headers", "client_header_buffer_size = 16k");
    let mut req = String::from("GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..500 {
        req.push_str(&format!("X{}: y\r\n", i));
    }
    req.push_str("Connection: close\r\n\r\n");
    let r = request(s.port, req.as_bytes());
    assert!(
        r.status == 200 || r.status == 431 || r.status == 400,
        "{}",
        r.head_raw
    );
    assert_alive(s.port);
}

#[test]
fn content_length_over_client_max_body_size_is_413() {
    let (_t, s) = site("413_cl", "client_max_body_size = 1k");
    let req = format!(
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n{}",
        "x".repeat(5000)
    );
    let mut c = Client::connect(s.port);
    let _ = c.try_send(req.as_bytes());
    let r = c.try_read_response(false).expect("a 413 response");
    assert_eq!(r.status, 413, "{}", r.head_raw);
    assert_alive(s.port);
}

#[test]
fn the_rest_of_a_refused_body_arriving_in_a_burst_is_drained_without_the_step_cap() {
    // After the 413 uwgate drains what the client still sends before closing; a fast client's
    // backlog (here queued while uwgate is stopped, as it would be behind a busy loop) is many
    // 1 KiB reads long, and that drain once counted each read against the per-turn step cap.
    let (_t, s) = site(
        "413_burst",
        "client_max_body_size = 1k\nclient_header_buffer_size = 1k",
    );
    let mut c = Client::connect(s.port);
    c.send(
        b"POST /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8388608\r\n\r\n",
    );
    let r = c.try_read_response(false).expect("a 413 response");
    assert_eq!(r.status, 413, "{}", r.head_raw);
    s.signal(libc::SIGSTOP);
    c.stream.set_nonblocking(true).expect("nonblocking");
    let chunk = [b'x'; 65536];
    let mut queued = 0;
    while let Ok(n) = std::io::Write::write(&mut c.stream, &chunk) {
        queued += n;
    }
    c.stream.set_nonblocking(false).expect("blocking");
    s.signal(libc::SIGCONT);
    assert!(queued > 64 << 10, "only {queued} bytes queued");
    assert!(
        c.wait_closed(Duration::from_secs(5)).is_some(),
        "still open after the 413"
    );
    assert!(
        !s.stderr().contains("did not settle"),
        "the step cap fired:\n{}",
        s.stderr()
    );
    assert_alive(s.port);
}

#[test]
fn body_at_client_max_body_size_is_accepted() {
    let (_t, s) = site("413_edge", "client_max_body_size = 1k");
    let req = format!(
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
        "x".repeat(1024)
    );
    let r = request(s.port, req.as_bytes());
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

#[test]
fn absurd_content_length_does_not_overflow() {
    let (_t, s) = site("cl_overflow", "client_max_body_size = 1m");
    for cl in [
        "99999999999999999999999999",
        "18446744073709551616",
        "18446744073709551615",
    ] {
        let req = format!(
            "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            cl
        );
        let mut c = Client::connect(s.port);
        c.send(req.as_bytes());
        let r = c.try_read_response(false).expect("a response");
        assert!(
            r.status == 400 || r.status == 413,
            "CL {}: {}",
            cl,
            r.head_raw
        );
    }
    assert_alive(s.port);
}

// --- line endings and field syntax ------------------------------------------------------------

#[test]
fn bare_lf_line_endings_are_served() {
    // busybox wget, printf | nc scripts and old probes end head lines in a bare LF; nginx
    // serves them (RFC 9112 section 2.2), and so do we, keep-alive included.
    let (_t, s) = site("bare_lf", "");
    let mut c = Client::connect(s.port);
    c.send(b"GET /static/hello.txt HTTP/1.1\nHost: localhost\n\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
    c.send(b"GET /static/other.txt HTTP/1.1\nHost: localhost\nConnection: close\n\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"OTHER-FILE");
    assert!(c.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn mixed_crlf_and_bare_lf_line_endings_are_served() {
    let (_t, s) = site("bare_lf_one", "");
    for raw in [
        &b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n"[..],
        b"GET /static/hello.txt HTTP/1.1\nHost: localhost\r\n\r\n",
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\n",
        b"\nGET /static/hello.txt HTTP/1.0\n\n",
    ] {
        let r = request(s.port, raw);
        assert_eq!(
            r.status,
            200,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            r.head_raw
        );
        assert_eq!(r.body, HELLO.as_bytes());
    }
}

#[test]
fn bare_lf_pipelined_requests_are_each_answered() {
    let (_t, s) = site("bare_lf_pipe", "");
    let rs = request_pipelined(
        s.port,
        &[
            b"GET /static/hello.txt HTTP/1.1\nHost: localhost\n\n",
            b"GET /static/other.txt HTTP/1.1\nHost: localhost\n\n",
            b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\n\n",
        ],
    );
    assert_eq!(rs[0].body, HELLO.as_bytes());
    assert_eq!(rs[1].body, b"OTHER-FILE");
    assert_eq!(rs[2].body, HELLO.as_bytes());
}

#[test]
fn bare_lf_obs_fold_is_still_400() {
    let (_t, s) = site("bare_lf_fold", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\nHost: localhost\nX-A: first\n  continued\n\n",
        400,
    );
    assert_alive(s.port);
}

#[test]
fn bare_cr_is_400() {
    let (_t, s) = site("bare_cr", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n",
        400,
    );
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\rHost: localhost\r\n\r\n",
        400,
    );
}

#[test]
fn obs_fold_is_400() {
    let (_t, s) = site("obs_fold", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: first\r\n  continued\r\n\r\n",
        400,
    );
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: first\r\n\tcontinued\r\n\r\n",
        400,
    );
}

#[test]
fn whitespace_before_colon_is_400() {
    // RFC 9112 5.1: MUST reject with 400.
    let (_t, s) = site("ws_colon", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost : localhost\r\n\r\n",
        400,
    );
}

#[test]
fn nul_in_header_is_400() {
    let (_t, s) = site("nul_header", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
        400,
    );
}

#[test]
fn invalid_method_token_is_400() {
    let (_t, s) = site("bad_method", "");
    expect_status_and_close(
        s.port,
        b"G(T /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
}

#[test]
fn request_line_without_version_is_400() {
    let (_t, s) = site("no_version", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt\r\nHost: localhost\r\n\r\n",
        400,
    );
    expect_status_and_close(s.port, b"GET\r\n\r\n", 400);
}

#[test]
fn lowercase_protocol_name_is_400() {
    let (_t, s) = site("lower_http", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt http/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
}

#[test]
fn tls_client_hello_on_plain_port_is_400_and_closed() {
    let (_t, s) = site("tls_hello", "");
    let hello: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x11\x22\x33\x44\r\n\r\n";
    let mut c = Client::connect(s.port);
    let _ = c.try_send(hello);
    let (out, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(
        closed.is_some(),
        "connection left open after a TLS ClientHello"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || text.starts_with("HTTP/1.1 400"),
        "unexpected answer {:?}",
        text
    );
    assert_alive(s.port);
}

// --- versions -------------------------------------------------------------------------------

#[test]
fn http_major_version_2_and_3_are_505() {
    let (_t, s) = site("505", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n",
        505,
    );
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/3.0\r\nHost: localhost\r\n\r\n",
        505,
    );
}

#[test]
fn malformed_version_is_400() {
    let (_t, s) = site("bad_version", "");
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTX/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
    expect_status_and_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1x\r\nHost: localhost\r\n\r\n",
        400,
    );
}

// --- body framing -----------------------------------------------------------------------------

/// A second request smuggled after a malformed body: it must never be answered.
const SMUGGLED: &str = "GET /static/other.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn assert_rejected_without_smuggling(port: u16, first: &str, status: u16) {
    let raw = format!("{}{}", first, SMUGGLED);
    let mut c = Client::connect(port);
    let _ = c.try_send(raw.as_bytes());
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{:?}: no response: {}", first, e));
    // Safety first (checked before the status so a failure says which property broke):
    // nothing after the malformed message may be answered, and the connection must close.
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("OTHER-FILE"),
        "SMUGGLED: the request after {:?} was served: {:?}",
        first,
        rest
    );
    assert!(
        closed.is_some(),
        "connection left open after {} for {:?}",
        r.status,
        first
    );
    assert_eq!(r.status, status, "{:?} got {}", first, r.head_raw);
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_closes() {
    let (_t, s) = site("cl_te", "");
    assert_rejected_without_smuggling(
        s.port,
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_rejected_without_smuggling(
        s.port,
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
    assert_alive(s.port);
}

#[test]
fn duplicate_differing_content_length_is_400() {
    let (_t, s) = site("dup_cl", "");
    assert_rejected_without_smuggling(
        s.port,
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
        400,
    );
    assert_rejected_without_smuggling(
        s.port,
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0, 5\r\n\r\n",
        400,
    );
}

#[test]
fn invalid_content_length_values_are_400() {
    let (_t, s) = site("bad_cl", "");
    for v in ["abc", "-1", "+5", "1 2", "0x10", ""] {
        assert_rejected_without_smuggling(
            s.port,
            &format!(
                "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                v
            ),
            400,
        );
    }
    assert_alive(s.port);
}

/// Static locations never read a body (they answer, say `Connection: close`, and close), so a
/// malformed or oversized chunked body there must simply never be parsed as a request. The 400
/// and 413 these bodies earn where a body IS read are in request_bodies.rs.
#[test]
fn malformed_or_oversized_chunked_body_on_static_is_never_parsed_as_a_request() {
    let (_t, s) = site("static_bad_chunks", "client_max_body_size = 1k");
    let big: String = (0..5)
        .map(|_| format!("400\r\n{}\r\n", "y".repeat(1024)))
        .collect::<String>()
        + "0\r\n\r\n";
    let bodies = [
        "zz\r\nhello\r\n0\r\n\r\n".to_string(),
        "-5\r\nhello\r\n0\r\n\r\n".to_string(),
        "\r\nhello\r\n0\r\n\r\n".to_string(),
        ";ext\r\nhello\r\n0\r\n\r\n".to_string(),
        "5;a=b\nxx\r\nhello\r\n0\r\n\r\n".to_string(),
        "5\nhello\r\n0\r\n\r\n".to_string(),
        "5\r\nhelloXX0\r\n\r\n".to_string(),
        format!("1{}\r\nhello\r\n0\r\n\r\n", "0".repeat(20)),
        big,
    ];
    for body in &bodies {
        let raw = format!(
            "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{}{}",
            body, SMUGGLED
        );
        let mut c = Client::connect(s.port);
        let _ = c.try_send(raw.as_bytes());
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("{:?}: no response: {}", body, e));
        let (rest, closed) = c.read_until_close(Duration::from_secs(4));
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            !rest.contains("OTHER-FILE"),
            "SMUGGLED after chunked body {:?}: {:?}",
            body,
            rest
        );
        assert!(closed.is_some(), "left open after chunked body {:?}", body);
        assert!(
            [400, 413].contains(&r.status) || (r.status == 200 && r.connection_has("close")),
            "chunked body {:?} got {}",
            body,
            r.head_raw
        );
    }
    assert_alive(s.port);
}

/// After a request with a body the server either skipped the body and serves the next request
/// (nginx discards the body and keeps the connection), or said `Connection: close` and closed
/// (RFC 9112 9.6 allows closing instead of reading an unwanted body). It must never parse the
/// body as a request.
fn assert_body_skipped_or_closed(c: &mut Client, r1: &Response, next_body: &[u8]) {
    if r1.connection_has("close") {
        let (rest, closed) = c.read_until_close(Duration::from_secs(4));
        assert!(closed.is_some(), "said Connection: close but stayed open");
        assert!(
            rest.is_empty(),
            "answered more after Connection: close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    } else {
        let r2 = c
            .try_read_response(false)
            .expect("kept alive (no Connection: close) but the next request was not answered");
        assert_eq!(r2.status, 200, "{}", r2.head_raw);
        assert_eq!(r2.body, next_body, "the body was parsed as a request");
        assert!(
            c.wait_closed(Duration::from_secs(2)).is_some(),
            "Connection: close request left open"
        );
    }
}

#[test]
fn valid_chunked_body_is_never_parsed_as_a_request() {
    let (_t, s) = site("good_chunked", "");
    let mut c = Client::connect(s.port);
    c.send(
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n\
          GET /static/other.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let r1 = c.read_response();
    assert_eq!(r1.status, 200, "{}", r1.head_raw);
    assert_eq!(r1.body, HELLO.as_bytes());
    assert_body_skipped_or_closed(&mut c, &r1, b"OTHER-FILE");
}

#[test]
fn content_length_body_is_never_parsed_as_a_request() {
    let (_t, s) = site("good_cl_body", "");
    let mut c = Client::connect(s.port);
    // The body looks like a request: it must be skipped as data, not parsed.
    let body = "GET /static/other.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(
        format!(
            "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{}\
             GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            body.len(),
            body
        )
        .as_bytes(),
    );
    let r1 = c.read_response();
    assert_eq!(r1.body, HELLO.as_bytes());
    assert_body_skipped_or_closed(&mut c, &r1, HELLO.as_bytes());
}

#[test]
fn unknown_transfer_encoding_is_rejected() {
    // RFC 9112 6.1: a server that receives a transfer coding it does not understand
    // SHOULD respond 501; nginx does. Either way not served and closed.
    let (_t, s) = site("te_unknown", "");
    let raw = format!(
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n{}",
        SMUGGLED
    );
    let mut c = Client::connect(s.port);
    let _ = c.try_send(raw.as_bytes());
    let r = c.try_read_response(false).expect("a response");
    assert!(r.status == 501 || r.status == 400, "{}", r.head_raw);
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(closed.is_some());
    assert!(!String::from_utf8_lossy(&rest).contains("OTHER-FILE"));
}

#[test]
fn chunked_not_last_is_400() {
    // RFC 9112 6.3: chunked must be the final coding of a request.
    let (_t, s) = site("te_chunked_not_last", "");
    let raw = format!(
        "GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{}",
        SMUGGLED
    );
    let mut c = Client::connect(s.port);
    let _ = c.try_send(raw.as_bytes());
    let r = c.try_read_response(false).expect("a response");
    assert!(r.status == 400 || r.status == 501, "{}", r.head_raw);
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(closed.is_some());
    assert!(!String::from_utf8_lossy(&rest).contains("OTHER-FILE"));
}

#[test]
fn transfer_encoding_on_http10_is_400() {
    let (_t, s) = site("te_http10", "");
    assert_rejected_without_smuggling(
        s.port,
        "GET /static/hello.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn error_pages_are_small_html() {
    let (_t, s) = site("error_html", "");
    let r = expect_status_and_close(s.port, b"GET /static/hello.txt HTTP/1.1\r\n\r\n", 400);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/html"), "{:?}", ct);
    assert!(r.text().contains("400"), "{:?}", r.text());
    assert_eq!(
        r.header("content-length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(r.body.len())
    );
}

// --- Expect -----------------------------------------------------------------------------------

#[test]
fn expect_100_continue_client_is_never_left_waiting() {
    // RFC 9110 10.1.1: the server either invites the body with 100 (Continue) or answers with
    // a final status at once; what it must not do is sit waiting for a body the client holds
    // back until it hears 100.
    let (_t, s) = site("expect_100", "");
    let mut c = Client::connect(s.port);
    c.send(
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    );
    c.set_read_timeout(Duration::from_secs(3));
    let first = c
        .try_read_response(false)
        .expect("neither 100 Continue nor a final answer while the client held its body back");
    let r = if first.status == 100 {
        c.send(b"hello");
        c.set_read_timeout(IO_TIMEOUT);
        c.read_response()
    } else {
        first
    };
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

#[test]
fn expect_100_continue_over_body_limit_gets_413_without_100() {
    let (_t, s) = site("expect_413", "client_max_body_size = 1k");
    let mut c = Client::connect(s.port);
    c.send(
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(
        r.status, 413,
        "must refuse before inviting the body: {}",
        r.head_raw
    );
}

#[test]
fn expect_100_continue_is_not_sent_to_http10_clients() {
    // RFC 9110 10.1.1: a server MUST NOT send 100 to an HTTP/1.0 client.
    let (_t, s) = site("expect_http10", "");
    let mut c = Client::connect(s.port);
    c.send(
        b"GET /static/hello.txt HTTP/1.0\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    // Wait as a client would before sending the body anyway; nothing may arrive meanwhile.
    let _ = c.is_silent_for(Duration::from_millis(500));
    let early = String::from_utf8_lossy(c.pending()).into_owned();
    assert!(
        !early.contains(" 100 "),
        "sent 100 to HTTP/1.0: {:?}",
        early
    );
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

#[test]
fn unknown_expectation_is_417() {
    let (_t, s) = site("expect_417", "");
    let mut c = Client::connect(s.port);
    c.send(
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nExpect: something-else\r\nConnection: close\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 417, "{}", r.head_raw);
    assert_alive(s.port);
}
