//! The WSGI environ Django sees behind uwgate: nginx's uwsgi_params, decoded paths, raw queries,
//! headers named and merged as nginx does, `uwsgi_param` overrides and `uwsgi_script_name`.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::Client;
use uwsgi_support::{environ_is, environ_of, gate_ini, Json, Uwsgi};

/// `GET target` with `Host: localhost:PORT`, the given extra header lines, `Connection: close`.
fn get_req(port: u16, target: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!("GET {} HTTP/1.1\r\nHost: localhost:{}\r\n", target, port);
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

fn env_str<'j>(j: &'j Json, key: &str) -> Option<&'j str> {
    j.get("environ").get(key).as_str()
}

#[test]
fn environ_has_nginx_s_uwsgi_params() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let mut c = Client::connect(gate.port);
    let client_port = c.stream.local_addr().expect("local addr").port();
    c.send(&get_req(
        gate.port,
        "/environ?a=1",
        &["User-Agent: uwgate-test/1"],
    ));
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", uwsgi_support::logs(&gate, &up));
    let j = Json::parse(&r.text());
    let port = gate.port.to_string();
    for (key, want) in [
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", "a=1"),
        ("REQUEST_URI", "/environ?a=1"),
        ("PATH_INFO", "/environ"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_NAME", "localhost"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("HTTP_HOST", &format!("localhost:{}", gate.port)),
        ("HTTP_USER_AGENT", "uwgate-test/1"),
        ("HTTP_CONNECTION", "close"),
    ] {
        assert_eq!(env_str(&j, key), Some(want), "{}: {}", key, r.text());
    }
    assert_eq!(
        env_str(&j, "REMOTE_PORT"),
        Some(client_port.to_string().as_str()),
        "{}",
        r.text()
    );
    assert!(j.get("environ").has("DOCUMENT_ROOT"), "{}", r.text());
    assert!(
        !j.get("environ").has("HTTPS"),
        "HTTPS only when on: {}",
        r.text()
    );
    assert_eq!(j.get("scheme").str(), "http");
    assert_eq!(j.get("path").str(), "/environ");
    assert_eq!(j.get("full_path").str(), "/environ?a=1");
    assert_eq!(
        j.get("absolute_uri").str(),
        format!("http://localhost:{}/environ?a=1", gate.port)
    );
}

#[test]
fn http_1_0_requests_say_so() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let j = environ_of(
        gate.port,
        format!(
            "GET /environ HTTP/1.0\r\nHost: localhost:{}\r\n\r\n",
            gate.port
        )
        .as_bytes(),
    );
    assert_eq!(env_str(&j, "SERVER_PROTOCOL"), Some("HTTP/1.0"));
}

#[test]
fn without_host_django_falls_back_to_server_name_and_port() {
    // nginx sends SERVER_NAME = the server's first server_name (here "localhost"), so Django's
    // get_host() works for an HTTP/1.0 client that sends no Host.
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let r = common::request(gate.port, b"GET /environ HTTP/1.0\r\n\r\n");
    assert_eq!(
        r.status,
        200,
        "{}{}",
        r.text(),
        uwsgi_support::logs(&gate, &up)
    );
    let j = Json::parse(&r.text());
    assert_eq!(env_str(&j, "SERVER_NAME"), Some("localhost"));
    assert!(!j.get("environ").has("HTTP_HOST"), "{}", r.text());
    assert_eq!(j.get("host").str(), format!("localhost:{}", gate.port));
}

#[test]
fn encoded_spaces_and_unicode_are_decoded_in_path_info() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let target = "/environ/a%20b/caf%C3%A9/%E2%9C%93";
    let j = environ_of(gate.port, &get_req(gate.port, target, &[]));
    assert_eq!(j.get("path").str(), "/environ/a b/café/✓");
    let path_info = env_str(&j, "PATH_INFO").expect("PATH_INFO");
    assert!(
        environ_is(path_info, "/environ/a b/café/✓".as_bytes()),
        "{:?}",
        path_info
    );
    assert_eq!(
        env_str(&j, "REQUEST_URI"),
        Some(target),
        "REQUEST_URI stays raw"
    );
    assert_eq!(
        j.get("full_path").str(),
        "/environ/a%20b/caf%C3%A9/%E2%9C%93"
    );
}

#[test]
fn an_encoded_slash_is_a_slash_in_path_info_and_raw_in_request_uri() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let j = environ_of(gate.port, &get_req(gate.port, "/environ/a%2Fb", &[]));
    assert_eq!(env_str(&j, "PATH_INFO"), Some("/environ/a/b"));
    assert_eq!(env_str(&j, "REQUEST_URI"), Some("/environ/a%2Fb"));
}

#[test]
fn dot_segments_and_double_slashes_are_resolved() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    for (target, path) in [
        ("/environ/x/../y", "/environ/y"),
        ("/environ/x/%2e%2e/y", "/environ/y"),
        ("/environ//a///b", "/environ/a/b"),
        ("/environ/./c/.", "/environ/c/"),
        ("/x/../environ/d", "/environ/d"),
    ] {
        let j = environ_of(gate.port, &get_req(gate.port, target, &[]));
        assert_eq!(env_str(&j, "PATH_INFO"), Some(path), "{}", target);
        assert_eq!(env_str(&j, "REQUEST_URI"), Some(target), "{}", target);
        assert_eq!(j.get("path").str(), path, "{}", target);
    }
}

#[test]
fn queries_pass_raw_and_django_parses_them() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let q = "a=1&a=2&empty=&plus=a+b&enc=%26%3D&flag&uni=%C3%A9&sp=x%20y";
    let target = format!("/environ?{}", q);
    let j = environ_of(gate.port, &get_req(gate.port, &target, &[]));
    assert_eq!(env_str(&j, "QUERY_STRING"), Some(q));
    assert_eq!(env_str(&j, "REQUEST_URI"), Some(target.as_str()));
    assert_eq!(j.get("full_path").str(), target);
    let g = j.get("GET");
    assert_eq!(g.get("a").strs(), ["1", "2"]);
    assert_eq!(g.get("empty").strs(), [""]);
    assert_eq!(g.get("plus").strs(), ["a b"]);
    assert_eq!(g.get("enc").strs(), ["&="]);
    assert_eq!(g.get("flag").strs(), [""]);
    assert_eq!(g.get("uni").strs(), ["é"]);
    assert_eq!(g.get("sp").strs(), ["x y"]);
    // A bare '?' is an empty query.
    let j = environ_of(gate.port, &get_req(gate.port, "/environ?", &[]));
    assert_eq!(env_str(&j, "QUERY_STRING"), Some(""));
    assert_eq!(env_str(&j, "REQUEST_URI"), Some("/environ?"));
}

#[test]
fn duplicate_headers_are_merged_like_nginx() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let j = environ_of(
        gate.port,
        &get_req(
            gate.port,
            "/environ",
            &[
                "X-Tag: one",
                "Cookie: a=1",
                "x-tag: two",
                "Cookie: b=2",
                "X-Tag: three",
                "Accept: text/html",
                "Accept: */*",
            ],
        ),
    );
    assert_eq!(env_str(&j, "HTTP_X_TAG"), Some("one, two, three"));
    assert_eq!(env_str(&j, "HTTP_COOKIE"), Some("a=1; b=2"));
    assert_eq!(env_str(&j, "HTTP_ACCEPT"), Some("text/html, */*"));
    let cookies = j.get("COOKIES");
    assert_eq!(cookies.get("a").str(), "1");
    assert_eq!(cookies.get("b").str(), "2");
}

#[test]
fn headers_with_underscores_are_dropped_so_they_cannot_spoof() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let j = environ_of(
        gate.port,
        &get_req(
            gate.port,
            "/environ",
            &[
                "X_Forwarded_For: 6.6.6.6",
                "X-Real-IP: 10.1.2.3",
                "Remote_Addr: 6.6.6.6",
            ],
        ),
    );
    let env = j.get("environ");
    assert!(!env.has("HTTP_X_FORWARDED_FOR"), "{:?}", env);
    assert!(!env.has("HTTP_REMOTE_ADDR"), "{:?}", env);
    assert_eq!(env_str(&j, "HTTP_X_REAL_IP"), Some("10.1.2.3"));
    assert_eq!(env_str(&j, "REMOTE_ADDR"), Some("127.0.0.1"));
}

#[test]
fn the_host_header_is_passed_as_sent_and_builds_absolute_urls() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let raw =
        b"GET /environ/p?q=1 HTTP/1.1\r\nHost: Example.TEST:8443\r\nConnection: close\r\n\r\n";
    let j = environ_of(gate.port, raw);
    assert_eq!(env_str(&j, "HTTP_HOST"), Some("Example.TEST:8443"));
    assert_eq!(j.get("host").str(), "Example.TEST:8443");
    assert_eq!(
        j.get("absolute_uri").str(),
        "http://Example.TEST:8443/environ/p?q=1"
    );
}

#[test]
fn content_type_and_length_are_cgi_vars_not_http_ones() {
    let up = Uwsgi::start_default();
    let gate = uwsgi_support::start_gate(&[&up]);
    let raw = format!(
        "POST /environ HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 3\r\nConnection: close\r\n\r\nabc",
        gate.port
    );
    let j = environ_of(gate.port, raw.as_bytes());
    assert_eq!(env_str(&j, "REQUEST_METHOD"), Some("POST"));
    assert_eq!(
        env_str(&j, "CONTENT_TYPE"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(env_str(&j, "CONTENT_LENGTH"), Some("3"));
    assert!(!j.get("environ").has("HTTP_CONTENT_TYPE"));
    assert!(!j.get("environ").has("HTTP_CONTENT_LENGTH"));
    assert_eq!(j.get("body_len").u64(), 3);
}

#[test]
fn uwsgi_param_overrides_builtins_and_headers_and_adds_vars() {
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini(
        "",
        &[up.pass()],
        "uwsgi_param = UWSGI_SCHEME https\n\
         uwsgi_param = SERVER_NAME forced.example\n\
         uwsgi_param = X_APP_ENV staging\n\
         uwsgi_param = HTTP_USER_AGENT fixed-agent\n",
    ));
    let j = environ_of(
        gate.port,
        &get_req(gate.port, "/environ", &["User-Agent: client-agent"]),
    );
    assert_eq!(env_str(&j, "SERVER_NAME"), Some("forced.example"));
    assert_eq!(env_str(&j, "X_APP_ENV"), Some("staging"));
    assert_eq!(env_str(&j, "HTTP_USER_AGENT"), Some("fixed-agent"));
    // uWSGI turns UWSGI_SCHEME into wsgi.url_scheme: Django builds https URLs.
    assert_eq!(j.get("scheme").str(), "https");
    assert_eq!(
        j.get("absolute_uri").str(),
        format!("https://localhost:{}/environ", gate.port)
    );
}

#[test]
fn script_name_mounts_the_app_under_a_prefix() {
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], "uwsgi_script_name = /app\n"));
    let j = environ_of(gate.port, &get_req(gate.port, "/app/environ/x?y=1", &[]));
    assert_eq!(
        env_str(&j, "SCRIPT_NAME"),
        Some("/app"),
        "{}",
        uwsgi_support::logs(&gate, &up)
    );
    assert_eq!(env_str(&j, "PATH_INFO"), Some("/environ/x"));
    assert_eq!(env_str(&j, "REQUEST_URI"), Some("/app/environ/x?y=1"));
    assert_eq!(j.get("path").str(), "/app/environ/x");
    assert_eq!(j.get("path_info").str(), "/environ/x");
    assert_eq!(j.get("full_path").str(), "/app/environ/x?y=1");
    assert_eq!(
        j.get("absolute_uri").str(),
        format!("http://localhost:{}/app/environ/x?y=1", gate.port)
    );
    // The mount point itself is the app's root: PATH_INFO empty, which Django reads as "/".
    let r = uwsgi_support::get(gate.port, "/app");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert!(r.text().contains("Django behind uwgate"));
    // Django's reverse() sees the prefix: the admin redirects inside the mount.
    let r = uwsgi_support::get(gate.port, "/app/admin/");
    assert_eq!(r.status, 302, "{}", r.head_raw);
    assert_eq!(
        r.header("location"),
        Some("/app/admin/login/?next=/app/admin/")
    );
}

#[test]
fn script_name_is_not_applied_to_a_path_that_only_shares_its_letters() {
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], "uwsgi_script_name = /env\n"));
    let j = environ_of(gate.port, &get_req(gate.port, "/environ", &[]));
    assert_eq!(env_str(&j, "PATH_INFO"), Some("/environ"));
    assert_ne!(env_str(&j, "SCRIPT_NAME"), Some("/env"));
    assert_eq!(j.get("path").str(), "/environ");
}

#[test]
fn vars_that_do_not_fit_64_kib_get_a_clear_4xx_not_a_broken_packet() {
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini(
        "client_header_buffer_size = 256k\nbuffer_size = 512k\nbuffer_pool = 8",
        &[up.pass()],
        "",
    ));
    let a = "a".repeat(40_000);
    let b = "b".repeat(40_000);
    let raw = get_req(
        gate.port,
        "/environ",
        &[&format!("X-A: {}", a), &format!("X-B: {}", b)],
    );
    let r = common::request(gate.port, &raw);
    assert!(
        (400..500).contains(&r.status),
        "expected a 4xx, got {}{}",
        r.head_raw,
        uwsgi_support::logs(&gate, &up)
    );
    assert!(
        !up.log().contains("GET /environ"),
        "uWSGI was contacted:\n{}",
        up.log()
    );
    // The same server still forwards normal requests.
    let j = environ_of(gate.port, &get_req(gate.port, "/environ", &[]));
    assert_eq!(env_str(&j, "PATH_INFO"), Some("/environ"));
}
