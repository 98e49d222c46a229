//! A hostile or buggy uwsgi backend (issue 11, sections 0 and 2), played by a scripted fake.
//!
//! - Bytes an upstream sends past the framed end of its response (after a Content-Length body,
//!   after the last chunk and trailers, or in the same packet as the head) never reach the
//!   client: the next request on the same keep-alive connection gets its own answer. They are
//!   logged once, with the upstream named.
//! - Broken chunked framing from the upstream ends the client's response at once, in a way the
//!   client sees as truncated (the connection closes; never a valid last chunk), logged with the
//!   upstream named; when it is seen before our response head has gone out, the client gets 502.
//!
//! Every wait is bounded by [`ANSWER_BOUND`], so a hang fails fast.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{Client, Closed};
use std::time::Duration;
use uwsgi_support::{gate_ini, Act, Fake, FakeUpstream};

/// How long any answer, or the end of a truncated one, may take.
const ANSWER_BOUND: Duration = Duration::from_secs(5);
/// Long enough for uwgate to send our response head before the script goes on.
const HEAD_GOES_OUT: Duration = Duration::from_millis(300);

/// What a compromised app appends to its response, hoping it answers the client's next request.
const SMUGGLED: &[u8] = b"HTTP/1.1 299 Smuggled\r\nContent-Length: 8\r\n\r\nSMUGGLED";

const HEAD_CL5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
const HEAD_CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A uwgate whose `/` is the scripted fake (and `/static/` the Django project's files).
fn gate_for(fake: &FakeUpstream) -> common::Server {
    common::Server::start(&gate_ini("", &[fake.pass()], ""))
}

fn site_css() -> Vec<u8> {
    std::fs::read(uwsgi_support::django_dir().join("collectedstatic/css/site.css"))
        .expect("read site.css")
}

fn get_keepalive(c: &mut Client, port: u16, path: &str) {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes());
}

/// Log lines that name `addr` and contain `words`.
fn log_lines(gate: &common::Server, addr: &str, words: &str) -> usize {
    gate.stderr()
        .lines()
        .filter(|l| l.contains(addr) && l.contains(words))
        .count()
}

/// Words of the line uwgate logs for bytes past the end of a response.
const PAST_THE_END: &str = "end of its response";
/// Words of every error line (a broken or truncated body is logged at this level).
const ERROR: &str = "[error]";

/// The §0 check: the app's answer is `hello`, then the same connection's next request (a static
/// file) gets the real file; the extra bytes are logged once, naming the upstream.
fn extra_bytes_never_reach_the_client(script: Vec<Act>) {
    let fake = FakeUpstream::start(Fake::Script(script));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    c.set_read_timeout(ANSWER_BOUND);
    get_keepalive(&mut c, gate.port, "/app");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}\n{}", r.head_raw, gate.stderr());
    assert_eq!(r.text(), "hello", "{}", gate.stderr());
    assert!(!r.connection_has("close"), "{}", r.head_raw);
    get_keepalive(&mut c, gate.port, "/static/css/site.css");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, site_css().as_slice()),
        "the second request got someone else's answer: {}{}\n{}",
        r.head_raw,
        r.text(),
        gate.stderr()
    );
    assert!(
        c.is_silent_for(Duration::from_millis(300)),
        "bytes after the static file: {:?}",
        String::from_utf8_lossy(c.pending())
    );
    assert!(
        common::wait_until(ANSWER_BOUND, || log_lines(
            &gate,
            &fake.pass(),
            PAST_THE_END
        ) > 0),
        "no log line names {} and says {PAST_THE_END:?}:\n{}",
        fake.pass(),
        gate.stderr()
    );
    assert_eq!(
        log_lines(&gate, &fake.pass(), PAST_THE_END),
        1,
        "logged more than once:\n{}",
        gate.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// 0. Bytes past the framed end
// ---------------------------------------------------------------------------------------------

#[test]
fn bytes_after_a_content_length_body_in_the_head_packet_never_reach_the_client() {
    extra_bytes_never_reach_the_client(vec![Act::Write(cat(&[HEAD_CL5, b"hello", SMUGGLED]))]);
}

#[test]
fn bytes_after_a_content_length_body_in_a_later_packet_never_reach_the_client() {
    extra_bytes_never_reach_the_client(vec![
        Act::Write(HEAD_CL5.to_vec()),
        Act::Pause(HEAD_GOES_OUT),
        Act::Write(cat(&[b"hello", SMUGGLED])),
        Act::Hold,
    ]);
}

#[test]
fn bytes_after_the_last_chunk_never_reach_the_client() {
    extra_bytes_never_reach_the_client(vec![
        Act::Write(HEAD_CHUNKED.to_vec()),
        Act::Pause(HEAD_GOES_OUT),
        Act::Write(cat(&[b"5\r\nhello\r\n0\r\n\r\n", SMUGGLED])),
    ]);
}

#[test]
fn bytes_after_the_last_chunk_and_trailers_never_reach_the_client_while_the_upstream_holds_on() {
    extra_bytes_never_reach_the_client(vec![
        Act::Write(HEAD_CHUNKED.to_vec()),
        Act::Pause(HEAD_GOES_OUT),
        Act::Write(cat(&[b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", SMUGGLED])),
        Act::Hold,
    ]);
}

#[test]
fn bytes_after_a_whole_chunked_response_in_the_head_packet_never_reach_the_client() {
    extra_bytes_never_reach_the_client(vec![Act::Write(cat(&[
        HEAD_CHUNKED,
        b"5\r\nhello\r\n0\r\n\r\n",
        SMUGGLED,
    ]))]);
}

#[test]
fn bytes_after_a_bodiless_204_never_reach_the_client() {
    let fake = FakeUpstream::start(Fake::Script(vec![Act::Write(cat(&[
        b"HTTP/1.1 204 No Content\r\n\r\n",
        SMUGGLED,
    ]))]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    c.set_read_timeout(ANSWER_BOUND);
    get_keepalive(&mut c, gate.port, "/app");
    assert_eq!(c.read_response().status, 204, "{}", gate.stderr());
    get_keepalive(&mut c, gate.port, "/static/css/site.css");
    let r = c.read_response();
    assert_eq!((r.status, r.body), (200, site_css()), "{}", r.head_raw);
    assert!(
        common::wait_until(ANSWER_BOUND, || log_lines(
            &gate,
            &fake.pass(),
            PAST_THE_END
        ) == 1),
        "{}",
        gate.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Broken chunked framing from the upstream
// ---------------------------------------------------------------------------------------------

/// Decodes a chunked body strictly; `true` only if it reaches a valid last chunk and the CRLF
/// that ends the trailer section.
fn is_complete_chunked(mut body: &[u8]) -> bool {
    loop {
        let Some(eol) = common::find(body, b"\r\n") else {
            return false;
        };
        let line = &body[..eol];
        let size_hex = line.split(|&b| b == b';').next().unwrap_or(b"");
        let Some(size) = std::str::from_utf8(size_hex)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            return false;
        };
        body = &body[eol + 2..];
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let Some(eol) = common::find(body, b"\r\n") else {
                    return false;
                };
                if eol == 0 {
                    return true;
                }
                body = &body[eol + 2..];
            }
        }
        let Some(rest) = usize::try_from(size).ok().and_then(|s| body.get(s..)) else {
            return false;
        };
        if !rest.starts_with(b"\r\n") {
            return false;
        }
        body = &rest[2..];
    }
}

/// The §2 check after our head went out: the client gets `200`, then the connection closes
/// within the bound without a valid end of the chunked body; a log line names the upstream.
fn broken_framing_truncates_the_response(body: &[u8], then: Act) {
    let fake = FakeUpstream::start(Fake::Script(vec![
        Act::Write(HEAD_CHUNKED.to_vec()),
        Act::Pause(HEAD_GOES_OUT),
        Act::Write(body.to_vec()),
        then,
    ]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    get_keepalive(&mut c, gate.port, "/app");
    let (raw, closed) = c.read_until_close(ANSWER_BOUND);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{text}\n{}",
        gate.stderr()
    );
    assert!(
        closed.is_some(),
        "the client was left hanging for {ANSWER_BOUND:?} after {text:?}\n{}",
        gate.stderr()
    );
    let head_end = common::find(&raw, b"\r\n\r\n").expect("a head") + 4;
    assert!(
        !is_complete_chunked(&raw[head_end..]),
        "a truncated response ended as a valid chunked body: {text:?}"
    );
    assert!(
        common::wait_until(ANSWER_BOUND, || log_lines(&gate, &fake.pass(), ERROR) > 0),
        "no error line names {}:\n{}",
        fake.pass(),
        gate.stderr()
    );
}

/// The §2 check before our head went out (head and broken body in one packet): `502`, and the
/// client's connection serves the next request.
fn broken_framing_in_the_head_packet_gives_502(body: &[u8]) {
    let fake = FakeUpstream::start(Fake::Script(vec![
        Act::Write(cat(&[HEAD_CHUNKED, body])),
        Act::Hold,
    ]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    c.set_read_timeout(ANSWER_BOUND);
    get_keepalive(&mut c, gate.port, "/app");
    let r = c.read_response();
    assert_eq!(
        r.status,
        502,
        "{}{}\n{}",
        r.head_raw,
        r.text(),
        gate.stderr()
    );
    assert!(
        common::wait_until(ANSWER_BOUND, || log_lines(&gate, &fake.pass(), ERROR) > 0),
        "no error line names {}:\n{}",
        fake.pass(),
        gate.stderr()
    );
    if !r.connection_has("close") {
        get_keepalive(&mut c, gate.port, "/static/css/site.css");
        let r = c.read_response();
        assert_eq!((r.status, r.body), (200, site_css()), "{}", r.head_raw);
    }
}

#[test]
fn lf_only_chunk_lines_truncate_the_response() {
    broken_framing_truncates_the_response(b"5\nhello\n0\n\n", Act::Hold);
}

#[test]
fn lf_only_chunk_lines_in_the_head_packet_give_502() {
    broken_framing_in_the_head_packet_gives_502(b"5\nhello\n0\n\n");
}

#[test]
fn a_chunk_larger_than_the_body_before_close_truncates_the_response() {
    broken_framing_truncates_the_response(b"100\r\nhello", Act::Pause(Duration::ZERO));
}

#[test]
fn a_chunk_size_of_2_pow_64_minus_1_truncates_the_response() {
    broken_framing_truncates_the_response(b"ffffffffffffffff\r\nhello", Act::Hold);
}

#[test]
fn a_chunk_size_of_2_pow_64_minus_1_in_the_head_packet_gives_502() {
    broken_framing_in_the_head_packet_gives_502(b"ffffffffffffffff\r\nhello");
}

#[test]
fn a_chunk_size_past_64_bits_truncates_the_response() {
    broken_framing_truncates_the_response(b"10000000000000000\r\nhello", Act::Hold);
}

#[test]
fn garbage_instead_of_a_chunk_size_truncates_the_response() {
    broken_framing_truncates_the_response(b"hello world\r\n\r\n", Act::Hold);
}

#[test]
fn garbage_instead_of_a_chunk_size_in_the_head_packet_gives_502() {
    broken_framing_in_the_head_packet_gives_502(b"hello world\r\n\r\n");
}

#[test]
fn no_last_chunk_before_close_truncates_the_response() {
    broken_framing_truncates_the_response(b"5\r\nhello\r\n", Act::Pause(Duration::ZERO));
}

#[test]
fn chunk_data_not_followed_by_crlf_truncates_the_response() {
    broken_framing_truncates_the_response(b"5\r\nhelloXX0\r\n\r\n", Act::Hold);
}

#[test]
fn a_malformed_trailer_truncates_the_response() {
    broken_framing_truncates_the_response(b"5\r\nhello\r\n0\r\nno colon\r\n\r\n", Act::Hold);
}

#[test]
fn a_close_inside_the_trailers_truncates_the_response() {
    broken_framing_truncates_the_response(
        b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n",
        Act::Pause(Duration::ZERO),
    );
}

// ---------------------------------------------------------------------------------------------
// Valid chunked responses: decoded and re-framed by uwgate
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_upstream_chunks_with_extensions_and_trailers_reach_the_client_re_chunked() {
    let fake = FakeUpstream::start(Fake::Script(vec![
        Act::Write(cat(&[HEAD_CHUNKED, b"3;ext=1\r\nhel\r\n"])),
        Act::Pause(HEAD_GOES_OUT),
        Act::Write(b"2\r\nlo\r\n0\r\nX-Sum: 5\r\n\r\n".to_vec()),
        Act::Hold,
    ]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    c.set_read_timeout(ANSWER_BOUND);
    get_keepalive(&mut c, gate.port, "/app");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "{}",
        gate.stderr()
    );
    // Ended at the last chunk, though the upstream still holds its connection open.
    get_keepalive(&mut c, gate.port, "/static/css/site.css");
    let r = c.read_response();
    assert_eq!((r.status, r.body), (200, site_css()), "{}", r.head_raw);
}

#[test]
fn a_chunked_upstream_response_reaches_an_http_1_0_client_decoded_and_close_delimited() {
    let fake = FakeUpstream::start(Fake::Script(vec![Act::Write(cat(&[
        HEAD_CHUNKED,
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ]))]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    c.send(b"GET /app HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let (raw, closed) = c.read_until_close(ANSWER_BOUND);
    assert_eq!(
        closed,
        Some(Closed::Eof),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let head_end = common::find(&raw, b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        !head.contains("transfer-encoding"),
        "chunked to HTTP/1.0: {head}"
    );
    assert_eq!(&raw[head_end..], b"hello world");
}

/// A 16 MiB chunked upstream body (more than the loopback socket buffers hold, so part of it
/// is spooled) with chunk sizes from `next_size`, to a client that starts reading late: every
/// byte arrives, in order, re-chunked, and the connection serves the next request.
fn large_chunked_response_reaches_a_slow_client(next_size: impl Fn(usize) -> usize, seed: u8) {
    let len = 16 << 20;
    let body = common::pattern(len, seed);
    let mut wire = HEAD_CHUNKED.to_vec();
    let (mut at, mut size) = (0, next_size(0));
    while at < len {
        let n = size.min(len - at);
        wire.extend_from_slice(format!("{n:X};n={size}\r\n").as_bytes());
        wire.extend_from_slice(&body[at..at + n]);
        wire.extend_from_slice(b"\r\n");
        at += n;
        size = next_size(size);
    }
    wire.extend_from_slice(b"0\r\nX-Sum: done\r\n\r\n");
    let fake = FakeUpstream::start(Fake::Script(vec![Act::Write(wire), Act::Hold]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    get_keepalive(&mut c, gate.port, "/app");
    // uwgate drains the upstream into its spool while the client reads nothing, so a slow
    // client never holds the app's worker.
    assert!(
        common::wait_until(ANSWER_BOUND, || fake.scripts_done() == 1),
        "the upstream could not send its whole response while the client was not reading\n{}",
        gate.stderr()
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}\n{}", r.head_raw, gate.stderr());
    assert!(r.header("transfer-encoding").is_some(), "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, len, seed);
    get_keepalive(&mut c, gate.port, "/static/css/site.css");
    let r = c.read_response();
    assert_eq!((r.status, r.body), (200, site_css()), "{}", r.head_raw);
}

#[test]
fn a_large_chunked_upstream_response_of_uneven_chunks_reaches_a_slow_client_whole() {
    // Chunk boundaries fall anywhere in the reads.
    large_chunked_response_reaches_a_slow_client(|size| (size * 7 + 3) % 70_000 + 1, 8);
}

#[test]
fn a_large_chunked_upstream_response_of_10k_chunks_reaches_a_slow_client_whole() {
    // With a client that does not read, the buffer fills until a read has room for a few
    // bytes only, which may be chunk framing alone: a read that yields no payload is still
    // progress (the socket is edge-triggered: stopping there would wait for an event that
    // never comes).
    large_chunked_response_reaches_a_slow_client(|_| 10_000, 9);
}

#[test]
fn head_of_a_chunked_upstream_response_sends_no_body_and_keeps_the_connection() {
    let fake = FakeUpstream::start(Fake::Script(vec![
        Act::Write(cat(&[HEAD_CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"])),
        Act::Hold,
    ]));
    let gate = gate_for(&fake);
    let mut c = Client::connect(gate.port);
    c.set_read_timeout(ANSWER_BOUND);
    c.send(
        format!(
            "HEAD /app HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_head_response();
    assert_eq!(r.status, 200, "{}\n{}", r.head_raw, gate.stderr());
    get_keepalive(&mut c, gate.port, "/static/css/site.css");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body),
        (200, site_css()),
        "{}\n{}",
        r.head_raw,
        gate.stderr()
    );
}
