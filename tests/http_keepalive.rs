//! Persistent connections: HTTP/1.1 keep-alive by default, `Connection: close`, HTTP/1.0 with and
//! without `Connection: keep-alive`, pipelining (in order, across split writes, with HEAD and big
//! bodies), keepalive_timeout and keepalive_requests.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn site(name: &str, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/a.txt", "AAAA");
    t.write("static/b.txt", "BBBBBBBB");
    t.write("static/c.txt", "CCCCCCCCCCCC");
    let s = Server::start_in(&t, &static_ini(global_extra, ""));
    (t, s)
}

fn get_req(path: &str) -> String {
    format!("GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", path)
}

#[test]
fn http11_connection_is_kept_alive_by_default() {
    let (_t, s) = site("default_keepalive", "");
    let mut c = s.connect();
    c.send(get_req("/static/a.txt").as_bytes());
    let r1 = c.read_response();
    assert_eq!(r1.status, 200);
    assert!(!r1.connection_has("close"), "{}", r1.head_raw);
    assert_eq!(r1.body, b"AAAA");
    c.send(get_req("/static/b.txt").as_bytes());
    let r2 = c.read_response();
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, b"BBBBBBBB");
    assert!(
        c.is_silent_for(Duration::from_millis(300)),
        "closed or chatty while idle"
    );
}

#[test]
fn connection_close_request_is_answered_then_closed() {
    let (_t, s) = site("conn_close", "");
    let mut c = s.connect();
    c.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.body, b"AAAA");
    assert!(r.connection_has("close"), "{}", r.head_raw);
    assert!(
        c.wait_closed(Duration::from_secs(3)).is_some(),
        "not closed"
    );
}

#[test]
fn http10_without_keepalive_is_closed_after_the_response() {
    let (_t, s) = site("http10_close", "");
    let mut c = s.connect();
    c.send(b"GET /static/a.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"AAAA");
    assert!(
        r.header("transfer-encoding").is_none(),
        "chunked to HTTP/1.0"
    );
    assert!(
        c.wait_closed(Duration::from_secs(3)).is_some(),
        "HTTP/1.0 connection kept open"
    );
}

#[test]
fn http10_with_keepalive_stays_open_and_says_so() {
    let (_t, s) = site("http10_keepalive", "");
    let mut c = s.connect();
    c.send(b"GET /static/a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r1 = c.read_response();
    assert_eq!(r1.status, 200, "{}", r1.head_raw);
    assert!(r1.connection_has("keep-alive"), "{}", r1.head_raw);
    assert!(r1.header("content-length").is_some());
    c.send(b"GET /static/b.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r2 = c.read_response();
    assert_eq!(r2.body, b"BBBBBBBB");
    c.send(b"GET /static/c.txt HTTP/1.0\r\n\r\n");
    let r3 = c.read_response();
    assert_eq!(r3.body, b"CCCCCCCCCCCC");
    assert!(c.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_t, s) = site("pipeline", "");
    let rs = request_pipelined(
        s.port,
        &[
            b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"HEAD /static/b.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /static/missing.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /static/b.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /static/c.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert_eq!(rs[0].body, b"AAAA");
    assert_eq!(rs[1].status, 200);
    assert_eq!(rs[1].header("content-length"), Some("8"));
    assert_eq!(rs[2].status, 404);
    assert_eq!(rs[3].body, b"BBBBBBBB");
    assert_eq!(rs[4].body, b"CCCCCCCCCCCC");
}

#[test]
fn many_pipelined_requests_in_one_packet_are_all_answered() {
    // Edge-triggered readiness: requests already in the buffer raise no new event.
    let (_t, s) = site("pipeline_many", "");
    let mut all = Vec::new();
    for i in 0..50 {
        let p = ["/static/a.txt", "/static/b.txt", "/static/c.txt"][i % 3];
        all.extend_from_slice(get_req(p).as_bytes());
    }
    let mut c = s.connect();
    c.send(&all);
    for i in 0..50 {
        let want: &[u8] = [&b"AAAA"[..], &b"BBBBBBBB"[..], &b"CCCCCCCCCCCC"[..]][i % 3];
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("response #{}: {}", i, e));
        assert_eq!(r.body, want, "response #{}", i);
    }
}

#[test]
fn pipelined_large_responses_stay_in_order() {
    let t = TempTree::new("pipeline_large");
    let len = 1024 * 1024 + 3;
    t.write_pattern("static/one.bin", len, 1);
    t.write_pattern("static/two.bin", len, 2);
    let s = Server::start_in(&t, &static_ini("", ""));
    let rs = request_pipelined(
        s.port,
        &[
            b"GET /static/one.bin HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /static/two.bin HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /static/one.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert!(rs[0].body == pattern(len, 1), "first body wrong");
    assert!(rs[1].body == pattern(len, 2), "second body wrong");
    assert!(rs[2].body == pattern(len, 1), "third body wrong");
}

#[test]
fn pipelined_requests_split_at_odd_points_are_parsed() {
    let (_t, s) = site("pipeline_split", "");
    let all = format!(
        "{}{}GET /static/c.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        get_req("/static/a.txt"),
        get_req("/static/b.txt")
    );
    let mut c = s.connect();
    for piece in all.as_bytes().chunks(7) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(c.read_response().body, b"AAAA");
    assert_eq!(c.read_response().body, b"BBBBBBBB");
    assert_eq!(c.read_response().body, b"CCCCCCCCCCCC");
}

#[test]
fn request_head_sent_byte_by_byte_is_parsed() {
    let (_t, s) = site("byte_by_byte", "");
    let mut c = s.connect();
    for b in b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read_response().body, b"AAAA");
}

#[test]
fn request_after_connection_close_is_not_answered() {
    let (_t, s) = site("after_close", "");
    let mut c = s.connect();
    c.send(
        b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n\
          GET /static/b.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.body, b"AAAA");
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(closed.is_some(), "not closed");
    assert!(
        rest.is_empty(),
        "answered after Connection: close: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn not_found_keeps_the_connection_alive() {
    let (_t, s) = site("404_keepalive", "");
    let mut c = s.connect();
    c.send(get_req("/static/missing").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 404);
    assert!(!r.connection_has("close"), "{}", r.head_raw);
    c.send(get_req("/static/a.txt").as_bytes());
    assert_eq!(c.read_response().body, b"AAAA");
}

#[test]
fn client_half_close_after_request_still_gets_the_response() {
    let (_t, s) = site("half_close", "");
    let mut c = s.connect();
    c.send(get_req("/static/c.txt").as_bytes());
    c.shutdown_write();
    let r = c.read_response();
    assert_eq!(r.body, b"CCCCCCCCCCCC");
    assert!(c.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn keepalive_timeout_closes_an_idle_connection() {
    let (_t, s) = site("ka_timeout", "keepalive_timeout = 1s");
    let mut c = s.connect();
    c.send(get_req("/static/a.txt").as_bytes());
    assert_eq!(c.read_response().body, b"AAAA");
    let idle_since = Instant::now();
    let closed = c.wait_closed(Duration::from_secs(5));
    let waited = idle_since.elapsed();
    assert!(
        closed.is_some(),
        "idle connection still open after 5 s with keepalive_timeout = 1s"
    );
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {:?}, before keepalive_timeout",
        waited
    );
    assert!(
        c.pending().is_empty(),
        "sent bytes on idle close: {:?}",
        c.pending()
    );
}

#[test]
fn keepalive_connection_is_reused_within_the_timeout() {
    let (_t, s) = site("ka_reuse", "keepalive_timeout = 2s");
    let mut c = s.connect();
    for _ in 0..3 {
        c.send(get_req("/static/a.txt").as_bytes());
        assert_eq!(c.read_response().body, b"AAAA");
        std::thread::sleep(Duration::from_millis(600));
    }
}

#[test]
fn keepalive_timeout_zero_disables_keepalive() {
    let (_t, s) = site("ka_zero", "keepalive_timeout = 0");
    let mut c = s.connect();
    c.send(get_req("/static/a.txt").as_bytes());
    let r = c.read_response();
    assert_eq!(r.body, b"AAAA");
    assert!(r.connection_has("close"), "{}", r.head_raw);
    assert!(c.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn keepalive_requests_caps_requests_per_connection() {
    let (_t, s) = site("ka_requests", "keepalive_requests = 3");
    let mut c = s.connect();
    for i in 1..=2 {
        c.send(get_req("/static/a.txt").as_bytes());
        let r = c.read_response();
        assert!(
            !r.connection_has("close"),
            "request {} closed early: {}",
            i,
            r.head_raw
        );
    }
    c.send(get_req("/static/b.txt").as_bytes());
    let r = c.read_response();
    assert_eq!(r.body, b"BBBBBBBB");
    assert!(
        r.connection_has("close"),
        "third request should carry Connection: close: {}",
        r.head_raw
    );
    assert!(
        c.wait_closed(Duration::from_secs(3)).is_some(),
        "not closed after keepalive_requests"
    );
}

#[test]
fn keepalive_requests_applies_to_pipelined_requests() {
    let (_t, s) = site("ka_requests_pipe", "keepalive_requests = 2");
    let mut c = s.connect();
    let all = format!(
        "{}{}{}",
        get_req("/static/a.txt"),
        get_req("/static/b.txt"),
        get_req("/static/c.txt")
    );
    c.send(all.as_bytes());
    assert_eq!(c.read_response().body, b"AAAA");
    let r2 = c.read_response();
    assert_eq!(r2.body, b"BBBBBBBB");
    assert!(r2.connection_has("close"), "{}", r2.head_raw);
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(closed.is_some());
    assert!(
        rest.is_empty(),
        "third request answered: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn many_idle_keepalive_connections_do_not_block_new_requests() {
    let (_t, s) = site("many_idle", "");
    let mut idle = Vec::new();
    for _ in 0..30 {
        let mut c = s.connect();
        c.send(get_req("/static/a.txt").as_bytes());
        assert_eq!(c.read_response().body, b"AAAA");
        idle.push(c);
    }
    let start = Instant::now();
    let r = s.get("/static/b.txt");
    assert_eq!(r.body, b"BBBBBBBB");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "slow with idle connections open"
    );
    // And each idle one is still usable.
    for c in idle.iter_mut().take(5) {
        c.send(get_req("/static/c.txt").as_bytes());
        assert_eq!(c.read_response().body, b"CCCCCCCCCCCC");
    }
}
