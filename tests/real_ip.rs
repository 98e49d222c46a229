//! nginx's realip module: `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`. A trusted
//! peer (a balancer) names the client in `X-Forwarded-For`, `X-Real-IP` or the PROXY protocol
//! header, and that address is what Django gets as REMOTE_ADDR (and REMOTE_PORT when the
//! header gives one), what the access log shows and what `allow`/`deny` check; a header from
//! an untrusted peer changes nothing.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::*;
use std::net::Ipv4Addr;
use std::time::Duration;
use uwsgi_support::{Json, Uwsgi};

/// `GET /environ` with `extra` header lines, on `c`; Django's view of the request.
fn environ_on(c: &mut Client, extra: &str) -> Json {
    c.send(format!("GET /environ HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    Json::parse(&r.text())
}

/// REMOTE_ADDR and REMOTE_PORT as Django saw them.
fn remote(j: &Json) -> (String, String) {
    let env = j.get("environ");
    (
        env.get("REMOTE_ADDR").str().to_string(),
        env.get("REMOTE_PORT").str().to_string(),
    )
}

fn from_127_0_0_2(port: u16) -> Client {
    Client::from_stream(connect_from(port, Ipv4Addr::new(127, 0, 0, 2), |_| {}))
}

#[test]
fn django_sees_the_client_address_a_trusted_peer_names() {
    let up = Uwsgi::start_default();
    let pass = up.pass();
    let (recursive, x_real_ip, proxied) = (free_port(), free_port(), free_port());
    let server = |listen: String, realip: &str| {
        format!("[server]\nlisten = {listen}\n{realip}\n[location:/]\nuwsgi_pass = {pass}\n\n")
    };
    let trust = "set_real_ip_from = 127.0.0.1\nset_real_ip_from = 10.0.0.0/8\n";
    let ini = format!(
        "[uwgate]\nsyslog = stderr\ntemp_path = {{DIR}}/tmp\n\n{}{}{}{}",
        server(
            "127.0.0.1:{PORT}".to_string(),
            &format!("{trust}real_ip_header = X-Forwarded-For\n")
        ),
        server(
            format!("127.0.0.1:{recursive}"),
            &format!("{trust}real_ip_header = X-Forwarded-For\nreal_ip_recursive = on\n")
        ),
        server(format!("127.0.0.1:{x_real_ip}"), trust),
        server(
            format!("127.0.0.1:{proxied} proxy_protocol"),
            &format!("{trust}real_ip_header = proxy_protocol\n")
        ),
    );
    let s = Server::start(&ini);
    let xff = "X-Forwarded-For: 203.0.113.5, 10.0.0.3\r\n";

    // X-Forwarded-For, not recursive: the last element (a trusted proxy here, still taken).
    let j = environ_on(&mut s.connect(), xff);
    assert_eq!(remote(&j), ("10.0.0.3".into(), "".into()));
    // A port in the element becomes REMOTE_PORT; the header itself reaches Django unchanged.
    let j = environ_on(&mut s.connect(), "X-Forwarded-For: 203.0.113.5:4711\r\n");
    assert_eq!(remote(&j), ("203.0.113.5".into(), "4711".into()));
    assert_eq!(
        j.get("environ").get("HTTP_X_FORWARDED_FOR").str(),
        "203.0.113.5:4711"
    );
    // Several X-Forwarded-For fields are one list, the last field last.
    let j = environ_on(
        &mut s.connect(),
        "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.6\r\n",
    );
    assert_eq!(remote(&j).0, "203.0.113.6");
    // No header: the peer.
    let j = environ_on(&mut s.connect(), "");
    assert_eq!(remote(&j).0, "127.0.0.1");

    // An untrusted peer's header changes nothing; its own port stays REMOTE_PORT.
    let mut c = from_127_0_0_2(s.port);
    let local_port = c.stream.local_addr().expect("local addr").port();
    let j = environ_on(&mut c, xff);
    assert_eq!(remote(&j), ("127.0.0.2".into(), local_port.to_string()));

    // Recursive: trusted elements are skipped from the right.
    let j = environ_on(&mut Client::connect(recursive), xff);
    assert_eq!(remote(&j).0, "203.0.113.5");
    let j = environ_on(
        &mut Client::connect(recursive),
        "X-Forwarded-For: 10.1.1.1, 10.0.0.3\r\n",
    );
    assert_eq!(remote(&j).0, "10.1.1.1", "all trusted: the leftmost");

    // X-Real-IP is nginx's default header; X-Forwarded-For is not read there.
    let j = environ_on(
        &mut Client::connect(x_real_ip),
        &format!("{xff}X-Real-IP: 2001:db8::7\r\n"),
    );
    assert_eq!(remote(&j).0, "2001:db8::7");

    // The PROXY protocol header's address and port, on every request of the connection.
    let mut c = Client::connect(proxied);
    c.send(b"PROXY TCP4 192.0.2.99 127.0.0.1 50123 80\r\n");
    let j = environ_on(&mut c, xff);
    assert_eq!(remote(&j), ("192.0.2.99".into(), "50123".into()));
    let j = environ_on(&mut c, "");
    assert_eq!(remote(&j), ("192.0.2.99".into(), "50123".into()));
    drop(s);
}

#[test]
fn allow_deny_and_the_access_log_see_the_real_address() {
    let tree = TempTree::new("realip_access");
    tree.write("private/p.txt", "secret\n");
    tree.write("open/o.txt", "open\n");
    let ini = "[uwgate]\nsyslog = stderr\ntemp_path = {DIR}/tmp\naccess_log = on\n\
               [server]\nlisten = 127.0.0.1:{PORT}\n\
               [location:/private/]\nalias = {DIR}/private/\n\
               set_real_ip_from = 127.0.0.1\nreal_ip_header = X-Forwarded-For\n\
               allow = 203.0.113.0/24\ndeny = all\n\
               [location:/open/]\nalias = {DIR}/open/\n";
    let s = Server::start_in(&tree, ini);
    let get = |c: &mut Client, path: &str, xff: &str| {
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {xff}\r\n\r\n")
                .as_bytes(),
        );
        c.read_response().status
    };
    assert_eq!(
        get(&mut s.connect(), "/private/p.txt?a1", "203.0.113.5"),
        200
    );
    assert_eq!(
        get(&mut s.connect(), "/private/p.txt?a2", "198.51.100.1"),
        403
    );
    assert_eq!(
        get(
            &mut from_127_0_0_2(s.port),
            "/private/p.txt?a3",
            "203.0.113.5"
        ),
        403,
        "an untrusted peer's header is ignored"
    );
    // The realip settings are the location's: /open/ logs the peer.
    assert_eq!(get(&mut s.connect(), "/open/o.txt?a4", "203.0.113.5"), 200);
    s.wait_stderr_contains("a4", Duration::from_secs(3));
    let log = s.stderr();
    for (marker, client) in [
        ("?a1", "203.0.113.5"),
        ("?a2", "198.51.100.1"),
        ("?a3", "127.0.0.2"),
        ("?a4", "127.0.0.1"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(marker) && l.contains(&format!("{client} - - ["))),
            "{marker} logged as {client}:\n{log}"
        );
    }
}
