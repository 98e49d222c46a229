//! uWSGI on a unix socket (`uwsgi_pass = unix:/path`), the usual production set-up: the same
//! requests, bodies and streams as over TCP.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::{pattern, Client};
use uwsgi_support::{logs, sha256_hex, start_gate, Json, Listen, Uwsgi, UwsgiOpts};

fn unix_uwsgi() -> Uwsgi {
    let up = Uwsgi::start(UwsgiOpts {
        unix: true,
        ..UwsgiOpts::default()
    });
    assert!(matches!(up.listen, Listen::Unix(_)));
    assert!(up.pass().starts_with("unix:/"));
    up
}

#[test]
fn a_unix_socket_upstream_serves_pages_with_the_client_s_address() {
    let up = unix_uwsgi();
    let gate = start_gate(&[&up]);
    let r = uwsgi_support::get(gate.port, "/");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(r.text().contains("Django behind uwgate"));
    let j = uwsgi_support::environ_of(
        gate.port,
        format!(
            "GET /environ?x=1 HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    // The vars describe the client's TCP connection, not the unix socket.
    assert_eq!(j.get("environ").get("REMOTE_ADDR").str(), "127.0.0.1");
    assert_eq!(
        j.get("environ").get("SERVER_PORT").str(),
        gate.port.to_string()
    );
    assert_eq!(j.get("environ").get("QUERY_STRING").str(), "x=1");
}

#[test]
fn a_unix_socket_upstream_takes_a_one_mebibyte_post() {
    let up = unix_uwsgi();
    let gate = common::Server::start(&uwsgi_support::gate_ini(
        "client_max_body_size = 2m",
        &[up.pass()],
        "",
    ));
    let body = pattern(1 << 20, 21);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    let j = Json::parse(&r.text());
    assert_eq!(j.get("len").u64(), body.len() as u64);
    assert_eq!(j.get("sha256").str(), sha256_hex(&body));
}

#[test]
fn a_unix_socket_upstream_streams_3mb_over_keepalive() {
    let up = unix_uwsgi();
    let gate = start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /stream?size=3000000&seed=5 HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, 3_000_000, 5);
    c.send(
        format!(
            "GET /respond?body=more HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().body, b"more");
}
