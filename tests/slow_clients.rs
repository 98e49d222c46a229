//! Slow and stalled clients: client_header_timeout is a total deadline (a byte every 500 ms does
//! not keep a head alive), client_body_timeout and client_body_min_rate cut stalled or trickling
//! bodies, send_timeout drops readers that stop reading, and many big downloads to slow readers
//! never block a fast client.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn site(name: &str, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/a.txt", "AAAA");
    let s = Server::start_in(&t, &static_ini(global_extra, ""));
    (t, s)
}

/// Sends `data` one byte every `interval` until the server closes the connection or `max`
/// passes. Returns how long it took (from `start`) and whether it closed.
fn trickle_until_closed(
    c: &mut Client,
    data: &[u8],
    interval: Duration,
    start: Instant,
    max: Duration,
) -> (Duration, bool) {
    let mut i = 0usize;
    loop {
        if start.elapsed() > max {
            return (start.elapsed(), false);
        }
        let byte = data[i % data.len()];
        i += 1;
        if c.try_send(&[byte]).is_err() {
            return (start.elapsed(), true);
        }
        if c.wait_closed(interval).is_some() {
            return (start.elapsed(), true);
        }
    }
}

#[test]
fn client_header_timeout_is_a_total_deadline_for_a_trickling_head() {
    let (_t, s) = site("header_trickle", "client_header_timeout = 2s");
    let start = Instant::now();
    let mut c = s.connect();
    c.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n");
    // A header line that never ends, one byte every 500 ms: each read is well inside the
    // timeout, so only a total deadline stops it.
    let (took, closed) = trickle_until_closed(
        &mut c,
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Duration::from_millis(500),
        start,
        Duration::from_secs(8),
    );
    assert!(
        closed,
        "head trickling a byte every 500 ms was still open after {:?}",
        took
    );
    assert!(
        took <= Duration::from_millis(4500),
        "closed after {:?}; client_header_timeout = 2s must be a total deadline",
        took
    );
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {:?}",
        took
    );
    let got = String::from_utf8_lossy(c.pending()).into_owned();
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 408"),
        "unexpected answer to a timed-out head: {:?}",
        got
    );
}

#[test]
fn client_header_timeout_closes_a_silent_connection() {
    let (_t, s) = site("header_silent", "client_header_timeout = 2s");
    let start = Instant::now();
    let mut c = s.connect();
    let closed = c.wait_closed(Duration::from_secs(6));
    let took = start.elapsed();
    assert!(
        closed.is_some(),
        "silent connection still open after {:?}",
        took
    );
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {:?}",
        took
    );
    assert!(
        took <= Duration::from_millis(4500),
        "closed late: {:?}",
        took
    );
}

#[test]
fn client_header_timeout_covers_the_next_head_on_a_keepalive_connection() {
    let (_t, s) = site(
        "header_keepalive",
        "client_header_timeout = 2s\nkeepalive_timeout = 60s",
    );
    let mut c = s.connect();
    c.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(c.read_response().body, b"AAAA");
    let start = Instant::now();
    c.send(b"GET /static/a.txt HTTP/1.1\r\n");
    let (took, closed) = trickle_until_closed(
        &mut c,
        b"X-Slow: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        Duration::from_millis(500),
        start,
        Duration::from_secs(8),
    );
    assert!(
        closed,
        "second head trickling was still open after {:?}",
        took
    );
    assert!(
        took <= Duration::from_millis(4500),
        "closed after {:?}",
        took
    );
}

#[test]
fn slow_heads_do_not_delay_other_clients() {
    let (_t, s) = site("slow_heads_others", "client_header_timeout = 30s");
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut c = s.connect();
        c.send(b"GET /static/a.txt HTTP/1.1\r\nHost: loc");
        slow.push(c);
    }
    let start = Instant::now();
    let r = s.get("/static/a.txt");
    assert_eq!(r.body, b"AAAA");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn client_body_timeout_cuts_a_stalled_body() {
    let (_t, s) = site("body_stalled", "client_body_timeout = 1s");
    let mut c = s.connect();
    let start = Instant::now();
    c.send(
        b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    let closed = c.wait_closed(Duration::from_secs(6));
    let took = start.elapsed();
    assert!(closed.is_some(), "stalled body still open after {:?}", took);
    assert!(
        took <= Duration::from_millis(3500),
        "closed after {:?}",
        took
    );
}

#[test]
fn client_body_min_rate_cuts_a_trickling_body() {
    // 20 bytes every 200 ms = 100 B/s: every read is far inside client_body_timeout, but the
    // average is far below client_body_min_rate.
    let (_t, s) = site(
        "body_min_rate",
        "client_body_timeout = 1s\nclient_body_min_rate = 1000\nclient_max_body_size = 1m",
    );
    let mut c = s.connect();
    let start = Instant::now();
    c.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n");
    let mut sent = 0usize;
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(8) {
        if c.try_send(&[b'z'; 20]).is_err() {
            closed = true;
            break;
        }
        sent += 20;
        if c.wait_closed(Duration::from_millis(200)).is_some() {
            closed = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        closed,
        "trickling body (100 B/s, {} bytes) still open after {:?}",
        sent, took
    );
    assert!(
        took <= Duration::from_millis(5000),
        "closed only after {:?}",
        took
    );
}

#[test]
fn body_above_min_rate_is_not_cut() {
    // 1000 bytes every 200 ms = 5000 B/s for 2 s, with min rate 1000 B/s and a 1 s grace.
    let (_t, s) = site(
        "body_above_min_rate",
        "client_body_timeout = 1s\nclient_body_min_rate = 1000\nclient_max_body_size = 1m",
    );
    let mut c = s.connect();
    c.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000\r\nConnection: close\r\n\r\n");
    for _ in 0..10 {
        c.send(&[b'q'; 1000]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"AAAA");
}

#[test]
fn send_timeout_drops_a_client_that_stops_reading() {
    let t = TempTree::new("send_timeout");
    let len = 32 * 1024 * 1024;
    t.write_pattern("static/big.bin", len, 9);
    let s = Server::start_in(&t, &static_ini("send_timeout = 1s", ""));
    let mut c = s.connect();
    // Default buffers: a client that never reads stalls the server after a few MiB (the receive
    // window only grows while the application reads), and drains fast once it reads again.
    c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // Stop reading for well over send_timeout.
    std::thread::sleep(Duration::from_secs(3));
    let (got, closed) = c.read_until_close(Duration::from_secs(10));
    assert!(
        closed.is_some(),
        "stalled reader still connected ({} bytes so far)",
        got.len()
    );
    assert!(
        got.len() < len,
        "whole file delivered ({} bytes): the reader never stalled the server",
        got.len()
    );
    // And the server is fine.
    assert_eq!(s.get("/static/big.bin").body.len(), len);
}

#[test]
fn slow_readers_of_big_files_do_not_block_a_fast_client() {
    let t = TempTree::new("slow_readers");
    let len = 16 * 1024 * 1024;
    t.write_pattern("static/big.bin", len, 4);
    t.write("static/small.txt", "small");
    let s = Server::start_in(&t, &static_ini("send_timeout = 60s", ""));
    let mut slow = Vec::new();
    for _ in 0..6 {
        // Not reading: each stalls once the kernel buffers (a few MiB) are full.
        let mut c = s.connect();
        c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        slow.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));

    let start = Instant::now();
    let r = s.get("/static/small.txt");
    assert_eq!(r.body, b"small");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "small file took {:?} behind 6 stalled downloads",
        start.elapsed()
    );

    let start = Instant::now();
    let r = s.get("/static/big.bin");
    assert_eq!(r.body.len(), len);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "fast 16 MiB download took {:?} beside stalled ones",
        start.elapsed()
    );
    let want = pattern(len, 4);
    assert!(r.body == want, "fast download corrupted");

    // The stalled downloads resume and complete intact.
    for (i, c) in slow.iter_mut().enumerate() {
        c.set_read_timeout(IO_TIMEOUT);
        let r = c.read_response();
        assert_eq!(r.body.len(), len, "slow reader #{}", i);
        assert!(r.body == want, "slow reader #{} got corrupted data", i);
    }
}

#[test]
fn client_vanishing_mid_download_does_not_hurt_the_server() {
    let t = TempTree::new("vanish");
    let len = 16 * 1024 * 1024;
    t.write_pattern("static/big.bin", len, 8);
    let s = Server::start_in(&t, &static_ini("", ""));
    for _ in 0..5 {
        let mut c = s.connect();
        c.set_recv_buffer(4096);
        c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let mut buf = [0u8; 1000];
        let _ = std::io::Read::read(&mut c.stream, &mut buf);
        drop(c); // close with unread data: the server gets RST / EPIPE
    }
    std::thread::sleep(Duration::from_millis(200));
    let r = s.get("/static/big.bin");
    assert_eq!(r.body.len(), len);
}
