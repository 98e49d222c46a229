//! Virtual servers: `[server]` sections selected by Host (`server_name`: several names, exact,
//! `*.example.com`, `.example.com`, `www.example.*`, in nginx's precedence), the first one being
//! the default; each `[location:*]` belongs to the `[server]` above it.

mod common;
use common::*;

fn two_servers(t: &TempTree, second_listen: &str) -> Server {
    t.write("a/x.txt", "site A");
    t.write("b/x.txt", "site B");
    t.write("b/only-b.txt", "only in B");
    let text = format!(
        "[uwgate]\nsyslog = stderr\ntemp_path = {{DIR}}/tmp\n\n\
         [server]\nlisten = 127.0.0.1:{{PORT}}\nserver_name = a.test\n\n\
         [location:/]\nalias = {{DIR}}/a/\n\n\
         [server]\nlisten = {}\nserver_name = b.test\n\n\
         [location:/]\nalias = {{DIR}}/b/\n",
        second_listen
    );
    Server::start_in(t, &text)
}

fn get_host(port: u16, host: &str, path: &str) -> Response {
    request(
        port,
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            path, host
        )
        .as_bytes(),
    )
}

#[test]
fn host_header_selects_the_server() {
    let t = TempTree::new("vhost_select");
    let s = two_servers(&t, "127.0.0.1:{PORT}");
    assert_eq!(get_host(s.port, "a.test", "/x.txt").body, b"site A");
    assert_eq!(get_host(s.port, "b.test", "/x.txt").body, b"site B");
}

#[test]
fn host_match_ignores_case_and_port() {
    let t = TempTree::new("vhost_case_port");
    let s = two_servers(&t, "127.0.0.1:{PORT}");
    assert_eq!(get_host(s.port, "B.TEST", "/x.txt").body, b"site B");
    assert_eq!(
        get_host(s.port, &format!("b.test:{}", s.port), "/x.txt").body,
        b"site B"
    );
}

#[test]
fn unknown_host_goes_to_the_first_server() {
    let t = TempTree::new("vhost_default");
    let s = two_servers(&t, "127.0.0.1:{PORT}");
    assert_eq!(get_host(s.port, "unknown.test", "/x.txt").body, b"site A");
    let r = request(s.port, b"GET /x.txt HTTP/1.0\r\n\r\n");
    assert_eq!(r.body, b"site A");
}

#[test]
fn locations_belong_to_their_own_server() {
    let t = TempTree::new("vhost_locations");
    let s = two_servers(&t, "127.0.0.1:{PORT}");
    assert_eq!(get_host(s.port, "b.test", "/only-b.txt").status, 200);
    // Site A's location maps to a/, where only-b.txt does not exist.
    assert_eq!(get_host(s.port, "a.test", "/only-b.txt").status, 404);
}

#[test]
fn servers_on_different_ports_each_serve_their_own_site() {
    let t = TempTree::new("vhost_ports");
    let other = free_port();
    let s = two_servers(&t, &format!("127.0.0.1:{}", other));
    assert_eq!(get_host(s.port, "whatever", "/x.txt").body, b"site A");
    assert_eq!(get_host(other, "whatever", "/x.txt").body, b"site B");
}

#[test]
fn absolute_form_host_wins_over_the_host_header() {
    // RFC 9112 3.2.2: with an absolute-form target, the Host header is ignored.
    let t = TempTree::new("vhost_absolute");
    let s = two_servers(&t, "127.0.0.1:{PORT}");
    let r = request(
        s.port,
        b"GET http://b.test/x.txt HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.body, b"site B");
}

/// Five servers on one port, each serving its own directory name in `x.txt`.
fn wildcard_servers(t: &TempTree) -> Server {
    let mut text = String::from("[uwgate]\nsyslog = stderr\ntemp_path = {DIR}/tmp\n\n");
    for (dir, names) in [
        ("default", "default.test"),
        ("trailing", "www.example.*"),
        ("dot", ".example.com"),
        ("star", "*.api.example.com"),
        ("exact", "www.example.com other.test"),
    ] {
        t.write(&format!("{dir}/x.txt"), dir);
        text.push_str(&format!(
            "[server]\nlisten = 127.0.0.1:{{PORT}}\nserver_name = {names}\n\
             [location:/]\nalias = {{DIR}}/{dir}/\n\n"
        ));
    }
    Server::start_in(t, &text)
}

#[test]
fn several_names_and_wildcards_select_servers_as_nginx_does() {
    let t = TempTree::new("vhost_wildcards");
    let s = wildcard_servers(&t);
    for (host, want) in [
        ("www.example.com", "exact"),
        ("other.test", "exact"),
        ("www.example.com.", "exact"),
        ("example.com", "dot"),
        ("mail.example.com", "dot"),
        ("v1.api.example.com", "star"),
        ("api.example.com", "dot"),
        ("www.example.org", "trailing"),
        ("nothing.test", "default"),
    ] {
        let r = get_host(s.port, host, "/x.txt");
        assert_eq!(r.text(), want, "Host: {host}");
    }
}
