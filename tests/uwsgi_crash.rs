//! A uWSGI worker that dies after its response began (OOM killer, harakiri, segfault): the
//! client must see a broken response and a closed connection, never a response that looks
//! complete on a connection that stays open.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{Client, Closed};
use std::time::Duration;
use uwsgi_support::{logs, start_gate, Json, Uwsgi, UwsgiOpts};

/// Reads everything until the server closes (bounded); panics if it keeps the connection open.
fn read_to_close(c: &mut Client, what: &str) -> Vec<u8> {
    let (raw, closed) = c.read_until_close(Duration::from_secs(20));
    assert!(
        matches!(closed, Some(Closed::Eof) | Some(Closed::Reset)),
        "{}: the connection stayed open after the worker died ({} bytes received)",
        what,
        raw.len()
    );
    raw
}

/// The response must be a 502, or a 200 whose body is visibly cut short.
fn assert_broken(raw: &[u8], declared: usize, sent: usize) {
    let head_end = common::find(raw, b"\r\n\r\n").map(|i| i + 4);
    let Some(head_end) = head_end else {
        return; // closed before any head: the client sees the failure
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    if head.starts_with("http/1.1 502") {
        return;
    }
    assert!(head.starts_with("http/1.1 200"), "{}", head);
    let body = &raw[head_end..];
    if head.contains("transfer-encoding: chunked") {
        assert!(
            !body.ends_with(b"0\r\n\r\n"),
            "a cut-short body got the last chunk: looks complete"
        );
    } else {
        assert!(
            head.contains(&format!("content-length: {}", declared)),
            "the declared length is kept, so the client can tell: {}",
            head
        );
        assert!(
            body.len() < declared,
            "{} of {} bytes",
            body.len(),
            declared
        );
    }
    assert!(body.len() <= sent + 64, "more bytes than the app sent");
}

#[test]
fn a_worker_killed_mid_response_closes_the_client_connection() {
    let up = Uwsgi::start(UwsgiOpts {
        processes: 1,
        ..UwsgiOpts::default()
    });
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /crash?declared=1000000&sent=100000 HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let raw = read_to_close(&mut c, "keep-alive client");
    assert_broken(&raw, 1_000_000, 100_000);
    // uWSGI's master respawns the worker; the site keeps working.
    assert!(
        up.wait_log_contains("respawn", Duration::from_secs(10)),
        "{}",
        logs(&gate, &up)
    );
    let r = uwsgi_support::get(gate.port, "/pid");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(Json::parse(&r.text()).get("pid").u64() > 0);
}

#[test]
fn a_worker_killed_mid_response_on_http_1_0_also_closes() {
    let up = Uwsgi::start(UwsgiOpts {
        processes: 1,
        ..UwsgiOpts::default()
    });
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /crash?declared=500000&sent=20000 HTTP/1.0\r\nHost: localhost:{}\r\nConnection: keep-alive\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let raw = read_to_close(&mut c, "HTTP/1.0 keep-alive client");
    assert_broken(&raw, 500_000, 20_000);
}

#[test]
fn a_pipelined_request_after_a_crash_is_not_answered_on_the_broken_connection() {
    let up = Uwsgi::start(UwsgiOpts {
        processes: 2,
        ..UwsgiOpts::default()
    });
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /crash?declared=300000&sent=1000 HTTP/1.1\r\nHost: localhost:{p}\r\n\r\n\
             GET /respond?body=after HTTP/1.1\r\nHost: localhost:{p}\r\n\r\n",
            p = gate.port
        )
        .as_bytes(),
    );
    let (raw, _) = c.read_until_close(Duration::from_secs(20));
    if raw.starts_with(b"HTTP/1.1 502") {
        return; // the failure was caught before the head: a complete 502, then anything goes
    }
    assert!(
        common::find(&raw, b"after").is_none(),
        "the second response was sent after a truncated first one"
    );
}
