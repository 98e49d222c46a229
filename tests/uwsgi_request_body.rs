//! Request bodies through uwgate to Django: sizes from 0 B to 50 MiB checked by sha256 in the
//! app, chunked uploads de-chunked with their real CONTENT_LENGTH, `Expect: 100-continue`, the
//! body limit, and a slow uploader that must not hold a uWSGI worker.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{pattern, Client};
use std::time::{Duration, Instant};
use uwsgi_support::{gate_ini, logs, sha256_hex, Json, Uwsgi, UwsgiOpts};

/// POSTs `body` to /upload with Content-Length and checks what Django read.
fn post_and_check(gate: &common::Server, up: &Uwsgi, body: &[u8]) {
    let mut c = Client::connect(gate.port);
    c.stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            gate.port,
            body.len()
        )
        .as_bytes(),
    );
    c.send(body);
    c.set_read_timeout(Duration::from_secs(60));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(gate, up));
    let j = Json::parse(&r.text());
    assert_eq!(j.get("len").u64(), body.len() as u64, "{}", r.text());
    assert_eq!(j.get("sha256").str(), sha256_hex(body), "{}", r.text());
    assert_eq!(
        j.get("content_length").str(),
        body.len().to_string(),
        "{}",
        r.text()
    );
    assert_eq!(j.get("content_type").str(), "application/octet-stream");
}

fn gate_with_limit(up: &Uwsgi, limit: &str) -> common::Server {
    common::Server::start(&gate_ini(
        &format!("client_max_body_size = {}", limit),
        &[up.pass()],
        "",
    ))
}

#[test]
fn an_empty_post_body_arrives_as_content_length_0() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "1m");
    post_and_check(&gate, &up, b"");
}

#[test]
fn a_one_byte_post_body_arrives_intact() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "1m");
    post_and_check(&gate, &up, b"x");
}

#[test]
fn a_one_mebibyte_post_body_arrives_intact() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "2m");
    post_and_check(&gate, &up, &pattern(1 << 20, 3));
}

#[test]
fn a_fifty_mebibyte_post_body_arrives_intact() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "100m");
    post_and_check(&gate, &up, &pattern(50 << 20, 7));
}

#[test]
fn a_chunked_upload_is_dechunked_and_sent_with_its_real_length() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "10m");
    let body = pattern(300_000, 11);
    let mut wire = Vec::new();
    let mut off = 0;
    // Odd chunk sizes, one with an extension, then a trailer field.
    for (i, size) in [1usize, 4095, 65536, 100_000, 7, 128_000, 2361]
        .iter()
        .enumerate()
    {
        let end = (off + size).min(body.len());
        if i == 2 {
            wire.extend_from_slice(format!("{:x};name=value\r\n", end - off).as_bytes());
        } else {
            wire.extend_from_slice(format!("{:X}\r\n", end - off).as_bytes());
        }
        wire.extend_from_slice(&body[off..end]);
        wire.extend_from_slice(b"\r\n");
        off = end;
    }
    assert_eq!(off, body.len());
    wire.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    // In pieces, so the de-chunker sees chunk boundaries split across reads.
    for piece in wire.chunks(9_999) {
        c.send(piece);
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    let j = Json::parse(&r.text());
    assert_eq!(j.get("len").u64(), 300_000, "{}", r.text());
    assert_eq!(j.get("sha256").str(), sha256_hex(&body));
    assert_eq!(
        j.get("content_length").str(),
        "300000",
        "real CONTENT_LENGTH"
    );
    assert_eq!(
        j.get("transfer_encoding"),
        &Json::Null,
        "not passed: {}",
        r.text()
    );
    // The keep-alive connection is still in step.
    c.send(
        format!(
            "GET /respond?body=ok HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().body, b"ok");
}

#[test]
fn a_large_chunked_upload_is_spooled_and_dechunked() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "20m");
    let body = pattern(5 << 20, 13);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    for chunk in body.chunks(50_000) {
        c.send(format!("{:x}\r\n", chunk.len()).as_bytes());
        c.send(chunk);
        c.send(b"\r\n");
    }
    c.send(b"0\r\n\r\n");
    c.set_read_timeout(Duration::from_secs(30));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    let j = Json::parse(&r.text());
    assert_eq!(j.get("len").u64(), body.len() as u64);
    assert_eq!(j.get("sha256").str(), sha256_hex(&body));
    assert_eq!(j.get("content_length").str(), body.len().to_string());
}

#[test]
fn expect_100_continue_gets_the_interim_response_before_the_body() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "1m");
    let body = pattern(100_000, 5);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\n\r\n",
            gate.port,
            body.len()
        )
        .as_bytes(),
    );
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "{}", interim.head_raw);
    c.send(&body);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    let j = Json::parse(&r.text());
    assert_eq!(j.get("len").u64(), body.len() as u64);
    assert_eq!(j.get("sha256").str(), sha256_hex(&body));
}

#[test]
fn a_body_over_client_max_body_size_is_413_and_never_reaches_uwsgi() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "1k");
    let r = common::request(
        gate.port,
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: 2000\r\n\
             Connection: close\r\n\r\n{}",
            gate.port,
            "z".repeat(2000)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.head_raw);
    // A chunked body that grows past the limit is refused as well.
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nTransfer-Encoding: chunked\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let _ = c.try_send(format!("800\r\n{}\r\n", "y".repeat(0x800)).as_bytes());
    let r = c.try_read_response(false).expect("a response");
    assert_eq!(r.status, 413, "{}", r.head_raw);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!up.log().contains("/upload"), "uWSGI saw it:\n{}", up.log());
}

#[test]
fn a_slow_uploader_holds_no_uwsgi_worker() {
    let up = Uwsgi::start(UwsgiOpts {
        processes: 1,
        ..UwsgiOpts::default()
    });
    let gate = gate_with_limit(&up, "1m");
    let body = pattern(100_000, 9);
    // Client A sends its head and a tenth of the body, then stalls.
    let mut a = Client::connect(gate.port);
    a.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: {}\r\n\r\n",
            gate.port,
            body.len()
        )
        .as_bytes(),
    );
    a.send(&body[..10_000]);
    std::thread::sleep(Duration::from_millis(500));
    // Client B is answered by the only worker meanwhile.
    let t = Instant::now();
    let r = uwsgi_support::get(gate.port, "/pid");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "B waited {:?} behind a slow upload",
        t.elapsed()
    );
    // A finishes and gets its answer.
    a.send(&body[10_000..]);
    let r = a.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    let j = Json::parse(&r.text());
    assert_eq!(j.get("sha256").str(), sha256_hex(&body));
}

#[test]
fn form_posts_reach_django_s_post_parser() {
    let up = Uwsgi::start_default();
    let gate = gate_with_limit(&up, "1m");
    let form = "a=1&b=two+words&c=%E2%9C%93";
    let j = uwsgi_support::environ_of(
        gate.port,
        format!(
            "POST /environ?q=1 HTTP/1.1\r\nHost: localhost:{}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{}",
            gate.port,
            form.len(),
            form
        )
        .as_bytes(),
    );
    assert_eq!(j.get("body_len").u64(), form.len() as u64);
    assert_eq!(
        j.get("environ").get("CONTENT_TYPE").str(),
        "application/x-www-form-urlencoded"
    );
}
