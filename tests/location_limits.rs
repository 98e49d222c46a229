//! nginx's limit directives with nginx's scopes: `client_max_body_size`, `client_body_timeout`,
//! `send_timeout`, `keepalive_timeout`, `keepalive_requests` and `max_ranges` set in `[uwgate]`,
//! `[server]` or `[location:*]`, the innermost winning, and applied per request once it is
//! routed (issue 10, section 3). uwsgi locations' bodies are in `request_bodies.rs`.

mod common;
use common::*;

use std::time::{Duration, Instant};

const HELLO: &str = "hello, world\n";

/// `/static/` with no limits of its own, `/strict/` and `/loose/` with `strict` and `loose`
/// keys, over `[server]` keys `server_extra` and `[uwgate]` keys `global_extra`.
fn site(
    name: &str,
    global_extra: &str,
    server_extra: &str,
    strict: &str,
    loose: &str,
) -> (TempTree, Server) {
    let t = TempTree::new(name);
    for dir in ["static", "strict", "loose"] {
        t.write(&format!("{dir}/hello.txt"), HELLO);
        t.write(&format!("{dir}/twenty.txt"), "0123456789abcdefghij");
    }
    let text = format!(
        "[uwgate]\nsyslog = stderr\ntemp_path = {{DIR}}/tmp\n{global_extra}\n\n\
         [server]\nlisten = 127.0.0.1:{{PORT}}\nserver_name = localhost\n{server_extra}\n\n\
         [location:/static/]\nalias = {{DIR}}/static/\n\n\
         [location:/strict/]\nalias = {{DIR}}/strict/\n{strict}\n\n\
         [location:/loose/]\nalias = {{DIR}}/loose/\n{loose}\n"
    );
    let s = Server::start_in(&t, &text);
    (t, s)
}

/// A GET carrying a `len`-byte body (static locations read and discard it).
fn get_with_body(port: u16, path: &str, len: usize) -> Response {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{}",
        "x".repeat(len)
    );
    let mut c = Client::connect(port);
    let _ = c.try_send(req.as_bytes());
    c.try_read_response(false)
        .unwrap_or_else(|e| panic!("{path}: no response: {e}"))
}

// --- client_max_body_size -----------------------------------------------------------------------

#[test]
fn client_max_body_size_of_the_location_wins_over_the_global_one() {
    let (_t, s) = site(
        "body_size_location",
        "client_max_body_size = 1k",
        "",
        "client_max_body_size = 100",
        "client_max_body_size = 10k",
    );
    assert_eq!(get_with_body(s.port, "/static/hello.txt", 1024).status, 200);
    assert_eq!(get_with_body(s.port, "/static/hello.txt", 1025).status, 413);
    assert_eq!(get_with_body(s.port, "/strict/hello.txt", 101).status, 413);
    assert_eq!(get_with_body(s.port, "/strict/hello.txt", 100).status, 200);
    let r = get_with_body(s.port, "/loose/hello.txt", 5000);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

#[test]
fn client_max_body_size_of_the_server_is_inherited_and_zero_is_unlimited() {
    let (_t, s) = site(
        "body_size_server",
        "client_max_body_size = 1k",
        "client_max_body_size = 0",
        "client_max_body_size = 100",
        "",
    );
    assert_eq!(
        get_with_body(s.port, "/loose/hello.txt", 50_000).status,
        200
    );
    assert_eq!(
        get_with_body(s.port, "/static/hello.txt", 50_000).status,
        200
    );
    assert_eq!(get_with_body(s.port, "/strict/hello.txt", 101).status, 413);
}

#[test]
fn chunked_body_over_the_location_limit_is_413() {
    let (_t, s) = site(
        "body_size_chunked",
        "",
        "",
        "client_max_body_size = 100",
        "",
    );
    let mut c = Client::connect(s.port);
    let chunk = "y".repeat(150);
    c.send(
        format!(
            "GET /strict/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             96\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.head_raw);
    // The same body under the default 1m is read, discarded, and the file served.
    let mut c = Client::connect(s.port);
    c.send(
        format!(
            "GET /loose/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             96\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().body, HELLO.as_bytes());
}

// --- keepalive_requests and keepalive_timeout ---------------------------------------------------

/// Sends `n` GETs of `path` one after another on one connection; returns how many responses
/// said keep-alive before one said close (and checks the close).
fn requests_until_close(port: u16, path: &str, n: usize) -> usize {
    let mut c = Client::connect(port);
    for i in 0..n {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 200);
        if r.connection_has("close") {
            assert!(c.wait_closed(Duration::from_secs(3)).is_some());
            return i + 1;
        }
    }
    n + 1
}

#[test]
fn keepalive_requests_applies_per_server_and_location() {
    let (_t, s) = site(
        "keepalive_requests",
        "keepalive_requests = 100",
        "keepalive_requests = 3",
        "keepalive_requests = 1",
        "keepalive_requests = 6",
    );
    assert_eq!(requests_until_close(s.port, "/static/hello.txt", 10), 3);
    assert_eq!(requests_until_close(s.port, "/strict/hello.txt", 10), 1);
    assert_eq!(requests_until_close(s.port, "/loose/hello.txt", 10), 6);
}

#[test]
fn keepalive_timeout_zero_in_a_location_closes_after_its_response() {
    let (_t, s) = site(
        "keepalive_off",
        "keepalive_timeout = 0",
        "",
        "",
        "keepalive_timeout = 60s",
    );
    let r = get_with(s.port, "/static/hello.txt", &["Connection: keep-alive"]);
    assert!(r.connection_has("close"), "{}", r.head_raw);
    assert_eq!(requests_until_close(s.port, "/loose/hello.txt", 4), 5);
    // keep-alive is decided per request: a /loose/ request then a /static/ one.
    let mut c = Client::connect(s.port);
    c.send(b"GET /loose/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.read_response().connection_has("keep-alive"));
    c.send(b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.read_response().connection_has("close"));
}

/// Seconds an idle keep-alive connection lives after one request for `path`.
fn idle_life(port: u16, path: &str, bound: Duration) -> Option<Duration> {
    let mut c = Client::connect(port);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().status, 200);
    let start = Instant::now();
    c.wait_closed(bound).map(|_| start.elapsed())
}

#[test]
fn keepalive_timeout_of_the_location_sets_the_idle_time() {
    let (_t, s) = site(
        "keepalive_timeout",
        "keepalive_timeout = 60s",
        "keepalive_timeout = 30s",
        "keepalive_timeout = 1s",
        "",
    );
    let strict = idle_life(s.port, "/strict/hello.txt", Duration::from_secs(5));
    let took = strict.expect("the 1s location's idle connection was not closed within 5s");
    assert!(took >= Duration::from_millis(700), "closed after {took:?}");
    assert_eq!(
        idle_life(s.port, "/loose/hello.txt", Duration::from_secs(3)),
        None,
        "the server's 30s keepalive_timeout closed an idle connection within 3s"
    );
}

// --- client_body_timeout and send_timeout --------------------------------------------------------

#[test]
fn client_body_timeout_of_the_location_cuts_a_stalled_body() {
    let (_t, s) = site(
        "body_timeout",
        "client_body_timeout = 60s\nclient_body_min_rate = 0",
        "",
        "client_body_timeout = 1s",
        "",
    );
    let stalled = |path: &str, bound: Duration| {
        let mut c = Client::connect(s.port);
        c.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789"
            )
            .as_bytes(),
        );
        let start = Instant::now();
        c.wait_closed(bound).map(|_| start.elapsed())
    };
    let took =
        stalled("/strict/hello.txt", Duration::from_secs(6)).expect("stalled body kept open");
    assert!(took <= Duration::from_millis(3500), "closed after {took:?}");
    assert_eq!(
        stalled("/loose/hello.txt", Duration::from_secs(3)),
        None,
        "the global 60s client_body_timeout cut a body within 3s"
    );
}

#[test]
fn send_timeout_of_the_location_drops_a_reader_that_stops() {
    let t = TempTree::new("send_timeout_location");
    let len = 32 * 1024 * 1024;
    t.write_pattern("slow/big.bin", len, 3);
    t.write_pattern("static/big.bin", len, 3);
    let text = ini(
        "send_timeout = 60s",
        "[location:/slow/]\nalias = {DIR}/slow/\nsend_timeout = 1s\n\n\
         [location:/static/]\nalias = {DIR}/static/\n",
    );
    let s = Server::start_in(&t, &text);
    let stall = |path: &str| {
        let mut c = s.connect();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        std::thread::sleep(Duration::from_secs(3));
        c.read_until_close(Duration::from_secs(10))
    };
    let (got, closed) = stall("/slow/big.bin");
    assert!(closed.is_some(), "stalled reader of /slow/ still connected");
    assert!(
        got.len() < len,
        "whole file delivered: the reader never stalled"
    );
    // Under the global 60s the same stall is survived: the whole file arrives.
    let mut c = s.connect();
    c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    std::thread::sleep(Duration::from_secs(3));
    let r = c.read_response();
    assert_eq!(r.body.len(), len);
}

// --- max_ranges ---------------------------------------------------------------------------------

fn range(port: u16, path: &str, value: &str) -> Response {
    get_with(port, path, &[&format!("Range: {value}")])
}

#[test]
fn max_ranges_zero_ignores_range_and_drops_accept_ranges() {
    let (_t, s) = site("max_ranges_zero", "", "", "max_ranges = 0", "");
    let r = range(s.port, "/strict/twenty.txt", "bytes=0-1");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.header("Accept-Ranges"), None);
    assert_eq!(r.body, b"0123456789abcdefghij");
    // Even an invalid range: nginx does not look at it.
    assert_eq!(range(s.port, "/strict/twenty.txt", "bytes=a").status, 200);
    let r = range(s.port, "/static/twenty.txt", "bytes=0-1");
    assert_eq!(r.status, 206);
}

#[test]
fn more_ranges_than_max_ranges_serve_the_whole_file() {
    let (_t, s) = site("max_ranges_one", "", "max_ranges = 2", "max_ranges = 1", "");
    let r = range(s.port, "/strict/twenty.txt", "bytes=0-1");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"01");
    let r = range(s.port, "/strict/twenty.txt", "bytes=0-1,4-5");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(r.body, b"0123456789abcdefghij");
    // The server's 2 is inherited by /loose/.
    let r = range(s.port, "/loose/twenty.txt", "bytes=0-1,4-5");
    assert_eq!(r.status, 206);
    let r = range(s.port, "/loose/twenty.txt", "bytes=0-1,4-5,8-9");
    assert_eq!(r.status, 200);
}
