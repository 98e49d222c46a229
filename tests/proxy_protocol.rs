//! `listen = … proxy_protocol`: every connection begins with a PROXY protocol header (v1 text
//! or v2 binary), read before the HTTP request behind it, with its own timeout
//! (`proxy_protocol_timeout`) and a clear refusal — closed without an answer, one log line —
//! of a missing or malformed header. With `real_ip_header = proxy_protocol` the header's
//! source address is the client address (access log, allow/deny) when the peer is trusted
//! (`set_real_ip_from`), and it is what `limit_conn_per_ip` counts.

#[path = "common/mod.rs"]
mod common;

use common::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A server whose `{PORT}` takes PROXY headers, trusting 127.0.0.1, with `/static/` and a
/// `/private/` only 203.0.113.0/24 may see; `global_extra` goes into `[uwgate]`.
fn proxied_server(tree: &TempTree, global_extra: &str) -> Server {
    tree.write("static/a.txt", "hello\n");
    tree.write("private/p.txt", "secret\n");
    let ini = format!(
        "[uwgate]\nsyslog = stderr\ntemp_path = {{DIR}}/tmp\naccess_log = on\n{global_extra}\n\
         [server]\nlisten = 127.0.0.1:{{PORT}} proxy_protocol\nserver_name = localhost\n\
         set_real_ip_from = 127.0.0.1\nreal_ip_header = proxy_protocol\n\n\
         [location:/static/]\nalias = {{DIR}}/static/\n\n\
         [location:/private/]\nalias = {{DIR}}/private/\nallow = 203.0.113.0/24\ndeny = all\n"
    );
    Server::start_in(tree, &ini)
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// A v2 PROXY header for TCP over IPv4.
fn v2_tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

/// A v2 PROXY header for TCP over IPv6.
fn v2_tcp6(src: std::net::Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0, 36]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

/// Whether an access line for `marker` (a unique query) names `client`.
fn logged_as(s: &Server, marker: &str, client: &str) -> bool {
    s.wait_stderr_contains(marker, Duration::from_secs(3));
    s.stderr()
        .lines()
        .any(|l| l.contains(marker) && l.contains(&format!("{client} - - [")))
}

#[test]
fn a_v1_header_then_requests_on_one_connection_are_served_as_the_named_client() {
    let tree = TempTree::new("pp_v1");
    let s = proxied_server(&tree, "");
    let mut c = s.connect();
    c.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 80\r\n");
    c.send(get_request("/static/a.txt?v1-first").as_bytes());
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
    // Keep-alive: the next request on the same connection is the same client.
    c.send(get_request("/private/p.txt?v1-second").as_bytes());
    let r = c.read_response();
    assert_eq!(
        r.status, 200,
        "allow = 203.0.113.0/24 sees the header's address"
    );
    assert!(logged_as(&s, "v1-first", "203.0.113.7"), "{}", s.stderr());
    assert!(logged_as(&s, "v1-second", "203.0.113.7"), "{}", s.stderr());
}

#[test]
fn a_v2_header_with_the_request_in_the_same_packet_is_served() {
    let tree = TempTree::new("pp_v2");
    let s = proxied_server(&tree, "");
    let mut c = s.connect();
    let mut bytes = v2_tcp4([203, 0, 113, 9], 40000, [127, 0, 0, 1], 80);
    bytes.extend_from_slice(get_request("/private/p.txt?v2-one").as_bytes());
    c.send(&bytes);
    let r = c.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "secret\n"));
    assert!(logged_as(&s, "v2-one", "203.0.113.9"), "{}", s.stderr());
    // IPv6 sources too; a client outside the allowed network is refused by allow/deny.
    let mut c = s.connect();
    let mut bytes = v2_tcp6("2001:db8::42".parse().unwrap(), 5555);
    bytes.extend_from_slice(get_request("/private/p.txt?v2-six").as_bytes());
    c.send(&bytes);
    assert_eq!(c.read_response().status, 403);
    assert!(logged_as(&s, "v2-six", "2001:db8::42"), "{}", s.stderr());
}

#[test]
fn a_header_sent_a_byte_at_a_time_is_assembled() {
    let tree = TempTree::new("pp_slow");
    let s = proxied_server(&tree, "");
    let mut c = s.connect();
    for b in b"PROXY TCP4 203.0.113.8 127.0.0.1 1 80\r\n" {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.send(get_request("/static/a.txt?bytewise").as_bytes());
    assert_eq!(c.read_response().status, 200);
    assert!(logged_as(&s, "bytewise", "203.0.113.8"), "{}", s.stderr());
}

#[test]
fn local_and_unknown_headers_keep_the_connection_address() {
    let tree = TempTree::new("pp_local");
    let s = proxied_server(&tree, "");
    // v2 LOCAL (a balancer's health check) and v1 UNKNOWN.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    for (header, marker) in [
        (local, "pp-local"),
        (b"PROXY UNKNOWN\r\n".to_vec(), "pp-unknown"),
    ] {
        let mut c = s.connect();
        c.send(&header);
        c.send(get_request(&format!("/static/a.txt?{marker}")).as_bytes());
        assert_eq!(c.read_response().status, 200);
        assert!(logged_as(&s, marker, "127.0.0.1"), "{}", s.stderr());
    }
}

#[test]
fn an_untrusted_peers_header_is_read_but_not_believed() {
    let tree = TempTree::new("pp_untrusted");
    let s = proxied_server(&tree, "");
    let stream = connect_from(s.port, Ipv4Addr::new(127, 0, 0, 2), |_| {});
    let mut c = Client::from_stream(stream);
    c.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 80\r\n");
    c.send(get_request("/private/p.txt?untrusted").as_bytes());
    assert_eq!(
        c.read_response().status,
        403,
        "the peer's own address is checked"
    );
    assert!(logged_as(&s, "untrusted", "127.0.0.2"), "{}", s.stderr());
}

#[test]
fn a_missing_or_malformed_header_is_refused_and_logged() {
    let tree = TempTree::new("pp_refused");
    let s = proxied_server(&tree, "");
    for (bytes, why) in [
        (
            get_request("/static/a.txt").into_bytes(),
            "no PROXY protocol header",
        ),
        (
            b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 80\r\n".to_vec(),
            "not TCP4/TCP6/UNKNOWN",
        ),
        (
            b"PROXY TCP4 203.0.113.7 127.0.0.1 1 80\n".to_vec(),
            "LF without CR",
        ),
        (
            [b"\r\n\r\n\0\r\nQUIT\n".as_slice(), &[0x31, 0x11, 0, 12]].concat(),
            "version other than 2",
        ),
    ] {
        let mut c = s.connect();
        let _ = c.try_send(&bytes);
        let (got, closed) = c.read_until_close(Duration::from_secs(3));
        assert!(
            got.is_empty(),
            "no answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(closed.is_some(), "closed at once for {why}");
        assert!(
            s.wait_stderr_contains(why, Duration::from_secs(2)),
            "log names {why:?}:\n{}",
            s.stderr()
        );
    }
    assert!(s.stderr().contains("refused on a proxy_protocol address"));
    // The server still serves proper connections.
    let mut c = s.connect();
    c.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 80\r\n");
    c.send(get_request("/static/a.txt").as_bytes());
    assert_eq!(c.read_response().status, 200);
}

#[test]
fn a_header_that_does_not_come_in_time_closes_the_connection() {
    let tree = TempTree::new("pp_timeout");
    let s = proxied_server(&tree, "proxy_protocol_timeout = 1s");
    let started = Instant::now();
    let mut silent = s.connect();
    let mut partial = s.connect();
    partial.send(b"PROXY TCP4 203.0.1");
    for c in [&mut silent, &mut partial] {
        let (got, closed) = c.read_until_close(Duration::from_secs(5));
        assert!(got.is_empty() && closed.is_some());
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?} (proxy_protocol_timeout = 1s, sweep every 250 ms)"
    );
    assert!(
        s.wait_stderr_contains(
            "no complete PROXY protocol header in time",
            Duration::from_secs(1)
        ),
        "{}",
        s.stderr()
    );
}

#[test]
fn limit_conn_per_ip_counts_the_header_address_not_the_trusted_balancer() {
    let tree = TempTree::new("pp_limit");
    let s = proxied_server(&tree, "limit_conn_per_ip = 2");
    let open = |src: &str| {
        let mut c = s.connect();
        c.send(format!("PROXY TCP4 {src} 127.0.0.1 1000 80\r\n").as_bytes());
        c.send(get_request("/static/a.txt").as_bytes());
        c
    };
    // The balancer (127.0.0.1, trusted) holds five connections: not counted as itself.
    let mut a1 = open("198.51.100.1");
    let mut a2 = open("198.51.100.1");
    let mut b1 = open("198.51.100.2");
    let mut b2 = open("198.51.100.2");
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(c.read_response().status, 200);
    }
    // A third connection for 198.51.100.1 is over its limit: closed without an answer.
    let mut a3 = open("198.51.100.1");
    let (got, closed) = a3.read_until_close(Duration::from_secs(3));
    assert!(
        got.is_empty() && closed.is_some(),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        s.wait_stderr_contains(
            "limiting connections by address 198.51.100.1",
            Duration::from_secs(2)
        ),
        "{}",
        s.stderr()
    );
    // Once one closes, its count is released.
    drop(a1);
    let ok = wait_until(Duration::from_secs(3), || {
        let mut c = open("198.51.100.1");
        c.try_read_response(false).is_ok_and(|r| r.status == 200)
    });
    assert!(ok, "a slot freed for 198.51.100.1:\n{}", s.stderr());
}

#[test]
fn a_plain_listener_does_not_count_a_trusted_peer_but_counts_others() {
    let tree = TempTree::new("pp_plain_limit");
    tree.write("static/a.txt", "hello\n");
    let ini = "[uwgate]\nsyslog = stderr\ntemp_path = {DIR}/tmp\nlimit_conn_per_ip = 2\n\
               set_real_ip_from = 127.0.0.1\nreal_ip_header = X-Forwarded-For\n\
               [server]\nlisten = 127.0.0.1:{PORT}\n\
               [location:/static/]\nalias = {DIR}/static/\n";
    let s = Server::start_in(&tree, ini);
    let mut trusted: Vec<Client> = (0..4).map(|_| s.connect()).collect();
    for c in &mut trusted {
        c.send(get_request("/static/a.txt").as_bytes());
        assert_eq!(
            c.read_response().status,
            200,
            "a trusted balancer is not limited"
        );
    }
    let from2 = || Client::from_stream(connect_from(s.port, Ipv4Addr::new(127, 0, 0, 2), |_| {}));
    let mut held: Vec<Client> = (0..2).map(|_| from2()).collect();
    for c in &mut held {
        c.send(get_request("/static/a.txt").as_bytes());
        assert_eq!(c.read_response().status, 200);
    }
    let mut third = from2();
    let _ = third.try_send(get_request("/static/a.txt").as_bytes());
    let (got, closed) = third.read_until_close(Duration::from_secs(3));
    assert!(
        got.is_empty() && closed.is_some(),
        "an untrusted address is limited"
    );
}
