//! Where nginx and uwgate used to differ (issue 10, section 2), each row pinned to what nginx 1.22
//! answers (checked against a real nginx on the same requests): TRACE and CONNECT, empty hosts,
//! a double dot in an IPv6 literal, Transfer-Encoding on two lines, syntactically invalid ranges,
//! If-Match / If-Unmodified-Since on static files, and nginx's `keepalive_disable msie6`.

mod common;
use common::*;

use std::time::Duration;

const HELLO: &str = "hello, world\n";

fn site(name: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/hello.txt", HELLO);
    t.write("static/twenty.txt", "0123456789abcdefghij");
    t.write("static/empty.txt", "");
    let s = Server::start_in(&t, &static_ini("", ""));
    (t, s)
}

/// Sends `raw` on a keep-alive connection, expects `status`, then the server's close.
fn expect_status_then_close(port: u16, raw: &[u8], status: u16) -> Response {
    let mut c = Client::connect(port);
    c.send(raw);
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{:?}: no response: {e}", String::from_utf8_lossy(raw)));
    assert_eq!(
        r.status,
        status,
        "{:?} got {}",
        String::from_utf8_lossy(raw),
        r.head_raw
    );
    assert!(r.connection_has("close"), "{}", r.head_raw);
    assert!(
        c.wait_closed(Duration::from_secs(3)).is_some(),
        "connection left open after {status} for {:?}",
        String::from_utf8_lossy(raw)
    );
    r
}

/// The server still answers a normal request.
fn assert_alive(port: u16) {
    let r = get(port, "/static/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HELLO.as_bytes());
}

// --- methods ----------------------------------------------------------------------------------

#[test]
fn trace_is_405_and_closes_a_keep_alive_connection() {
    let (_t, s) = site("trace");
    expect_status_then_close(
        s.port,
        b"TRACE /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        405,
    );
    expect_status_then_close(
        s.port,
        b"TRACE / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        405,
    );
    assert_alive(s.port);
}

#[test]
fn connect_to_an_authority_is_400_with_or_without_a_port() {
    let (_t, s) = site("connect");
    for raw in [
        &b"CONNECT localhost HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        expect_status_then_close(s.port, raw, 400);
    }
    // A path target parses, and CONNECT is then refused as nginx does.
    expect_status_then_close(
        s.port,
        b"CONNECT /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        405,
    );
    assert_alive(s.port);
}

// --- hosts --------------------------------------------------------------------------------------

#[test]
fn empty_host_is_400_in_http_1_0_and_1_1() {
    let (_t, s) = site("empty_host");
    for raw in [
        &b"GET /static/hello.txt HTTP/1.1\r\nHost:\r\n\r\n"[..],
        b"GET /static/hello.txt HTTP/1.1\r\nHost:   \r\n\r\n",
        b"GET /static/hello.txt HTTP/1.0\r\nHost:\r\nConnection: keep-alive\r\n\r\n",
    ] {
        expect_status_then_close(s.port, raw, 400);
    }
    assert_alive(s.port);
}

#[test]
fn absolute_uri_with_an_empty_host_is_400() {
    let (_t, s) = site("empty_abs_host");
    for raw in [
        &b"GET http:///static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"GET http://:80/static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET http:///static/hello.txt HTTP/1.0\r\n\r\n",
    ] {
        expect_status_then_close(s.port, raw, 400);
    }
}

#[test]
fn ipv6_literal_with_a_double_dot_is_400() {
    let (_t, s) = site("ipv6_dots");
    expect_status_then_close(
        s.port,
        b"GET http://[::1..]/static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        400,
    );
    expect_status_then_close(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: [::1..]\r\n\r\n",
        400,
    );
    let r = request(
        s.port,
        b"GET http://[::1]/static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
}

// --- framing ------------------------------------------------------------------------------------

#[test]
fn transfer_encoding_on_two_lines_is_400() {
    let (_t, s) = site("te_twice");
    for raw in [
        &b"POST /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        expect_status_then_close(s.port, raw, 400);
    }
    assert_alive(s.port);
}

// --- ranges -------------------------------------------------------------------------------------

fn get_range(port: u16, path: &str, range: &str) -> Response {
    get_with(port, path, &[&format!("Range: {range}")])
}

#[test]
fn syntactically_invalid_range_is_416_with_the_file_size() {
    let (_t, s) = site("range_invalid");
    for range in [
        "bytes=a-10",
        "bytes=0-a",
        "bytes=10",
        "bytes=0-1 2-3",
        "bytes=0-1,",
        "bytes=-",
    ] {
        let r = get_range(s.port, "/static/twenty.txt", range);
        assert_eq!(r.status, 416, "{range}: {}", r.head_raw);
        assert_eq!(r.header("Content-Range"), Some("bytes */20"), "{range}");
        assert!(r.text().contains("416"), "{range}: an error page");
    }
}

#[test]
fn range_in_another_unit_or_empty_is_ignored() {
    let (_t, s) = site("range_other_unit");
    for range in ["items=0-1", "bytes = 0-1", "bytes="] {
        let r = get_range(s.port, "/static/twenty.txt", range);
        assert_eq!(r.status, 200, "{range}: {}", r.head_raw);
        assert_eq!(r.body, b"0123456789abcdefghij");
    }
}

#[test]
fn valid_ranges_with_spaces_are_served_as_nginx_does() {
    let (_t, s) = site("range_spaces");
    let r = get_range(s.port, "/static/twenty.txt", "bytes=  2 - 4");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("Content-Range"), Some("bytes 2-4/20"));
    assert_eq!(r.body, b"234");
    let r = get_range(s.port, "/static/twenty.txt", "bytes=0-0,-0");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"0");
}

#[test]
fn range_from_zero_on_an_empty_file_serves_it_whole() {
    let (_t, s) = site("range_empty");
    let r = get_range(s.port, "/static/empty.txt", "bytes=0-0");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.header("Content-Length"), Some("0"));
    let r = get_range(s.port, "/static/empty.txt", "bytes=1-2");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */0"));
}

// --- preconditions ------------------------------------------------------------------------------

#[test]
fn if_match_with_another_etag_is_412() {
    let (t, s) = site("if_match_other");
    let etag = nginx_etag(&t.join("static/hello.txt"));
    for value in [
        "\"other\"".to_string(),
        format!("W/{etag}"),
        format!("{etag};"),
    ] {
        let r = get_with(
            s.port,
            "/static/hello.txt",
            &[&format!("If-Match: {value}")],
        );
        assert_eq!(r.status, 412, "If-Match: {value}: {}", r.head_raw);
        assert!(r.text().contains("412 Precondition Failed"));
        assert_eq!(r.header("ETag"), None);
    }
}

#[test]
fn if_match_with_the_etag_or_a_star_is_served() {
    let (t, s) = site("if_match_same");
    let etag = nginx_etag(&t.join("static/hello.txt"));
    for value in [
        etag.clone(),
        "*".to_string(),
        format!("\"other\", {etag}"),
        format!("\"other\",{etag}"),
    ] {
        let r = get_with(
            s.port,
            "/static/hello.txt",
            &[&format!("If-Match: {value}")],
        );
        assert_eq!(r.status, 200, "If-Match: {value}: {}", r.head_raw);
        assert_eq!(r.body, HELLO.as_bytes());
    }
}

#[test]
fn if_unmodified_since_before_the_file_is_412() {
    let (t, s) = site("if_unmodified_old");
    let mtime = mtime_secs(&t.join("static/hello.txt")) as i64;
    for value in [
        imf_fixdate(mtime - 1),
        imf_fixdate(0),
        "garbage".to_string(),
    ] {
        let r = get_with(
            s.port,
            "/static/hello.txt",
            &[&format!("If-Unmodified-Since: {value}")],
        );
        assert_eq!(
            r.status, 412,
            "If-Unmodified-Since: {value}: {}",
            r.head_raw
        );
    }
    for value in [imf_fixdate(mtime), imf_fixdate(mtime + 3600)] {
        let r = get_with(
            s.port,
            "/static/hello.txt",
            &[&format!("If-Unmodified-Since: {value}")],
        );
        assert_eq!(r.status, 200, "If-Unmodified-Since: {value}");
    }
}

#[test]
fn failed_preconditions_win_over_ranges_and_not_modified() {
    let (t, s) = site("if_match_range");
    let etag = nginx_etag(&t.join("static/twenty.txt"));
    let r = get_with(
        s.port,
        "/static/twenty.txt",
        &["If-Match: \"other\"", "Range: bytes=0-1"],
    );
    assert_eq!(r.status, 412);
    let r = get_with(
        s.port,
        "/static/twenty.txt",
        &["If-Match: \"other\"", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(r.status, 412);
    let r = get_with(
        s.port,
        "/static/twenty.txt",
        &[&format!("If-Match: {etag}"), "Range: bytes=0-1"],
    );
    assert_eq!(r.status, 206);
}

#[test]
fn preconditions_are_ignored_on_404() {
    let (_t, s) = site("if_match_404");
    let r = get_with(
        s.port,
        "/static/missing.txt",
        &["If-Match: \"other\"", "If-Unmodified-Since: garbage"],
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_412_keeps_the_connection_alive() {
    let (_t, s) = site("if_match_keepalive");
    let mut c = Client::connect(s.port);
    c.send(b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nIf-Match: \"x\"\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 412);
    assert!(r.connection_has("keep-alive"), "{}", r.head_raw);
    c.send(b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(c.read_response().body, HELLO.as_bytes());
}

// --- keepalive_disable msie6 --------------------------------------------------------------------

#[test]
fn post_from_msie_6_gets_connection_close() {
    let (_t, s) = site("msie6");
    let post = |ua: &str| {
        let mut c = Client::connect(s.port);
        c.send(
            format!(
                "POST /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {ua}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, 405, "{}", r.head_raw);
        (r, c)
    };
    let (r, mut c) = post("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)");
    assert!(r.connection_has("close"), "{}", r.head_raw);
    assert!(c.wait_closed(Duration::from_secs(3)).is_some());
    let (r, _c) = post("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)");
    assert!(r.connection_has("keep-alive"), "{}", r.head_raw);
    let (r, _c) = post("Mozilla/5.0 (X11; Linux x86_64) Firefox/115.0");
    assert!(r.connection_has("keep-alive"), "{}", r.head_raw);
    // A GET from MSIE 6 keeps its connection.
    let r = request(
        s.port,
        b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\
          User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n\r\n",
    );
    assert!(r.connection_has("keep-alive"), "{}", r.head_raw);
}
