//! Streamed responses without Content-Length (Django's StreamingHttpResponse): re-framed as
//! chunked for HTTP/1.1 keep-alive clients, close-delimited for HTTP/1.0, every byte intact.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{Client, Closed};
use std::time::Duration;
use uwsgi_support::{logs, start_gate, Uwsgi};

const SIZE: usize = 3_000_000;

#[test]
fn a_streamed_3mb_response_is_chunked_to_http_1_1_and_keepalive_survives() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /stream?size={} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            SIZE, gate.port
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "{}",
        r.head_raw
    );
    assert!(r.header("content-length").is_none(), "{}", r.head_raw);
    assert!(!r.connection_has("close"), "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, SIZE, 0);
    // The same connection serves the next request.
    c.send(format!("GET /pid HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", gate.port).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert!(r.text().contains("\"pid\""));
}

#[test]
fn a_streamed_response_to_http_1_0_is_close_delimited() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /stream?size={}&seed=4 HTTP/1.0\r\nHost: localhost:{}\r\nConnection: keep-alive\r\n\r\n",
            SIZE, gate.port
        )
        .as_bytes(),
    );
    let (raw, closed) = c.read_until_close(Duration::from_secs(30));
    assert_eq!(
        closed,
        Some(Closed::Eof),
        "the server must close to end the body"
    );
    let head_end = common::find(&raw, b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "{}{}",
        head,
        logs(&gate, &up)
    );
    assert!(
        !head.contains("transfer-encoding"),
        "no chunked to 1.0: {}",
        head
    );
    assert!(!head.contains("content-length"), "{}", head);
    assert!(!head.contains("connection: keep-alive"), "{}", head);
    let body = &raw[head_end..];
    uwsgi_support::assert_pattern(body, SIZE, 4);
}

#[test]
fn a_streamed_response_with_connection_close_ends_cleanly() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = common::request(
        gate.port,
        format!(
            "GET /stream?size={}&seed=9&chunk=1000 HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            SIZE, gate.port
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert!(r.connection_has("close"), "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, SIZE, 9);
}

#[test]
fn a_streamed_response_with_content_length_keeps_it() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /stream?size=1000000&seed=2&cl=1 HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(
        r.header("content-length"),
        Some("1000000"),
        "{}",
        r.head_raw
    );
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, 1_000_000, 2);
    c.send(
        format!(
            "GET /respond?body=z HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().body, b"z");
}

#[test]
fn head_of_a_streamed_response_sends_no_body() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "HEAD /stream?size={} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            SIZE, gate.port
        )
        .as_bytes(),
    );
    let r = c.read_head_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        c.is_silent_for(Duration::from_millis(800)),
        "{} bytes after a HEAD response",
        c.pending().len()
    );
    c.send(
        format!(
            "GET /respond?body=next HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"next");
}

#[test]
fn a_slowly_produced_stream_arrives_complete() {
    // 40 pieces 50 ms apart: uwgate must forward as the app produces, over a keep-alive
    // connection, without reading the end of the stream into a truncated response.
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /stream?size=400000&chunk=10000&delay=0.05&seed=6 HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, 400_000, 6);
}
