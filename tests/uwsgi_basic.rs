//! Plain forwarding to a real uWSGI + Django: GET, HEAD, status and header rules, static files
//! beside the app, keep-alive and pipelining across proxied responses.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{Client, Response};
use std::time::Duration;
use uwsgi_support::{get, start_gate, Uwsgi};

fn get_keepalive(c: &mut Client, port: u16, path: &str) -> Response {
    c.send(format!("GET {} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", path, port).as_bytes());
    c.read_response()
}

#[test]
fn harness_helpers_work() {
    uwsgi_support::self_check();
}

#[test]
fn plain_get_of_the_home_page_comes_from_django() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(gate.port, "/");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert!(r.text().contains("Django behind uwgate"), "{}", r.text());
    assert!(r.text().contains("href=\"/static/css/site.css\""));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // Django's own headers pass through.
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    // Ours replace the upstream's: exactly one Server (uwgate) and one valid Date.
    let servers = r.headers_all("server");
    assert_eq!(servers.len(), 1, "{}", r.head_raw);
    assert!(servers[0].starts_with("uwgate"), "{}", r.head_raw);
    let dates = r.headers_all("date");
    assert_eq!(dates.len(), 1, "{}", r.head_raw);
    let date = common::parse_imf_fixdate(dates[0]).expect("IMF-fixdate");
    assert!((date - common::now_secs()).abs() < 10);
    assert_eq!(
        r.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(r.body.len())
    );
    assert!(r.version == "HTTP/1.1");
}

#[test]
fn static_files_beside_the_app_are_served_by_uwgate_not_django() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let css = std::fs::read(uwsgi_support::django_dir().join("collectedstatic/css/site.css"))
        .expect("demo css");
    let r = get(gate.port, "/static/css/site.css");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, css);
    assert!(
        r.header("etag").is_some(),
        "static handler answers: {}",
        r.head_raw
    );
    assert!(
        r.header("x-frame-options").is_none(),
        "not Django: {}",
        r.head_raw
    );
    assert!(
        !up.log().contains("/static/css/site.css"),
        "uWSGI saw it:\n{}",
        up.log()
    );
}

#[test]
fn head_has_get_s_headers_no_body_and_the_connection_stays_usable() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let full = get(gate.port, "/");
    let mut c = Client::connect(gate.port);
    c.send(format!("HEAD / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", gate.port).as_bytes());
    let h = c.read_head_response();
    assert_eq!(h.status, 200, "{}", h.head_raw);
    assert_eq!(h.header("content-type"), full.header("content-type"));
    // As nginx: the upstream's Content-Length describes the GET body and is kept.
    assert_eq!(
        h.header("content-length"),
        full.header("content-length"),
        "{}",
        h.head_raw
    );
    // uWSGI sends the body even for HEAD; none of it may reach the client.
    assert!(
        c.is_silent_for(Duration::from_millis(500)),
        "bytes after a HEAD response: {:?}",
        String::from_utf8_lossy(c.pending())
    );
    let again = get_keepalive(&mut c, gate.port, "/");
    assert_eq!(again.status, 200);
    assert_eq!(again.body, full.body);
}

#[test]
fn django_404_passes_through_with_its_page() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(gate.port, "/no/such/page");
    assert_eq!(r.status, 404, "{}", r.head_raw);
    assert!(
        r.text().contains("<h1>Not Found</h1>"),
        "Django's page: {}",
        r.text()
    );
}

#[test]
fn status_and_reason_from_the_app_pass_through() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(
        gate.port,
        "/respond?status=418&reason=Short+And+Stout&body=tea",
    );
    assert_eq!(r.status, 418, "{}", r.head_raw);
    assert_eq!(r.reason, "Short And Stout");
    assert_eq!(r.body, b"tea");
    let r = get(gate.port, "/respond?status=503&body=later");
    assert_eq!(
        r.status, 503,
        "an app's 503 is not uwgate's error page: {}",
        r.head_raw
    );
    assert_eq!(r.body, b"later");
}

#[test]
fn no_content_from_the_app_has_no_body_and_keeps_the_connection() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    let r = get_keepalive(&mut c, gate.port, "/respond?status=204");
    assert_eq!(r.status, 204, "{}", r.head_raw);
    assert!(r.body.is_empty());
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head_raw);
    let r = get_keepalive(&mut c, gate.port, "/respond?status=200&body=next");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"next");
}

#[test]
fn hop_by_hop_and_x_accel_headers_from_the_app_are_dropped() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(
        gate.port,
        "/respond?body=x&h=Connection:X-Private&h=X-Private:secret&h=Keep-Alive:timeout%3D99\
         &h=X-Accel-Buffering:no&h=X-Accel-Expires:10&h=Upgrade:h2c&h=X-Public:ok",
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.header("x-public"), Some("ok"), "{}", r.head_raw);
    for dropped in [
        "x-private",
        "keep-alive",
        "x-accel-buffering",
        "x-accel-expires",
        "upgrade",
    ] {
        assert!(
            r.header(dropped).is_none(),
            "{} passed: {}",
            dropped,
            r.head_raw
        );
    }
    let conn = r.headers_all("connection");
    assert!(
        conn.iter()
            .all(|v| v.eq_ignore_ascii_case("close") || v.eq_ignore_ascii_case("keep-alive")),
        "Connection is ours: {}",
        r.head_raw
    );
    assert_eq!(r.body, b"x");
}

#[test]
fn several_set_cookie_fields_stay_separate() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let r = get(gate.port, "/respond?cookie=first=1&cookie=second=2");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    let cookies = r.headers_all("set-cookie");
    assert_eq!(cookies.len(), 2, "{}", r.head_raw);
    assert!(cookies[0].starts_with("first=1"), "{}", r.head_raw);
    assert!(cookies[1].starts_with("second=2"), "{}", r.head_raw);
}

#[test]
fn a_hundred_response_headers_pass_through_in_order() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    // About 11.5 KB of head: more than nginx's default uwsgi_buffer_size (4k/8k), less than
    // uwgate's default buffer_size (16k).
    let r = get(gate.port, "/big-headers?n=100&size=100");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, gate.stderr());
    let big: Vec<&(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-big-"))
        .collect();
    assert_eq!(big.len(), 100, "{}", r.head_raw);
    for (i, (k, v)) in big.iter().enumerate() {
        assert!(
            k.eq_ignore_ascii_case(&format!("x-big-{}", i)),
            "{} at {}",
            k,
            i
        );
        assert_eq!(v.len(), 100);
        assert!(v.starts_with(&format!("{}-", i)));
    }
    assert_eq!(r.body, b"big headers\n");
}

#[test]
fn keepalive_requests_and_pipelining_reach_the_app_in_order() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    for i in 0..3 {
        let r = get_keepalive(&mut c, gate.port, &format!("/respond?body=seq{}", i));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("seq{}", i));
    }
    let reqs: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "GET /respond?body=pipe{} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
                i, gate.port
            )
        })
        .collect();
    let refs: Vec<&[u8]> = reqs.iter().map(|s| s.as_bytes()).collect();
    let rs = common::request_pipelined(gate.port, &refs);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("pipe{}", i));
    }
}

#[test]
fn keepalive_survives_a_post_to_the_app() {
    let up = Uwsgi::start_default();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: 5\r\n\r\nhello",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = uwsgi_support::Json::parse(&r.text());
    assert_eq!(j.get("len").u64(), 5);
    let r = get_keepalive(&mut c, gate.port, "/respond?body=after");
    assert_eq!(r.text(), "after");
}
