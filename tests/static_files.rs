//! Static file serving: mapping (alias, root, longest prefix, index), status codes (200, 301, 403,
//! 404, 405), HEAD, Content-Type/charset, Content-Length, Date and Server headers, large files.

mod common;
use common::*;

use std::time::Duration;

const HELLO: &str = "hello, world\n";

/// The site most tests serve: `/static/` aliased to `{DIR}/static/`.
fn site(name: &str) -> TempTree {
    let t = TempTree::new(name);
    t.write("static/hello.txt", HELLO);
    t.write("static/dir/index.html", "<h1>dir index</h1>\n");
    t.write("static/noindex/a.txt", "a");
    t.write("static/a b.txt", "space in name");
    t.write("static/empty.txt", "");
    t
}

#[test]
fn serves_file_with_exact_body_and_content_length() {
    let t = site("serves_file");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/hello.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
    assert_eq!(r.header("content-length"), Some("13"), "{}", r.head_raw);
    assert_eq!(r.header("accept-ranges"), Some("bytes"), "{}", r.head_raw);
}

#[test]
fn response_carries_date_and_server_with_version() {
    let t = site("date_server");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("server"),
        Some(format!("uwgate/{}", version()).as_str()),
        "{}",
        r.head_raw
    );
    let date = r.header("date").expect("Date header");
    let secs =
        parse_imf_fixdate(date).unwrap_or_else(|| panic!("Date not IMF-fixdate: {:?}", date));
    assert!((secs - now_secs()).abs() <= 5, "Date {:?} is not now", date);
    // Error responses carry them too.
    let r = s.get("/static/missing.txt");
    assert_eq!(r.status, 404);
    assert!(
        r.header("date").is_some(),
        "404 without Date: {}",
        r.head_raw
    );
    assert!(
        r.header("server").is_some(),
        "404 without Server: {}",
        r.head_raw
    );
}

#[test]
fn server_tokens_off_hides_the_version() {
    let t = site("server_tokens");
    let s = Server::start_in(&t, &static_ini("server_tokens = off", ""));
    let r = s.get("/static/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("server"), Some("uwgate"), "{}", r.head_raw);
}

#[test]
fn missing_file_is_404_with_small_html_page() {
    let t = site("missing");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/nope.txt");
    assert_eq!(r.status, 404, "{}", r.head_raw);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{}",
        r.head_raw
    );
    let body = r.text();
    assert!(
        body.contains("404"),
        "error page should name the status: {:?}",
        body
    );
    assert!(
        body.to_ascii_lowercase().contains("<html"),
        "not HTML: {:?}",
        body
    );
    assert!(
        r.body.len() < 1024,
        "error page should be small, got {} bytes",
        r.body.len()
    );
}

#[test]
fn request_outside_every_location_is_404() {
    let t = site("no_location");
    let s = Server::start_in(&t, &static_ini("", ""));
    assert_eq!(s.get("/elsewhere/hello.txt").status, 404);
    assert_eq!(s.get("/").status, 404);
}

#[test]
fn file_as_a_directory_component_is_404() {
    let t = site("enotdir");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/hello.txt/more");
    assert_eq!(r.status, 404, "{}", r.head_raw);
}

#[test]
fn directory_with_trailing_slash_serves_its_index() {
    let t = site("dir_index");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/dir/");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"<h1>dir index</h1>\n");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{}",
        r.head_raw
    );
}

#[test]
fn index_directive_names_the_index_file() {
    let t = site("index_directive");
    t.write("static/dir/start.html", "<p>start</p>");
    let s = Server::start_in(&t, &static_ini("", "index = start.html"));
    let r = s.get("/static/dir/");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"<p>start</p>");
}

#[test]
fn several_index_files_are_tried_in_order() {
    let t = site("index_several");
    t.write("static/dir/second.htm", "<p>second</p>");
    t.write("static/other/third.txt", "third");
    t.write("static/other/second.htm", "second again");
    let s = Server::start_in(
        &t,
        &static_ini("", "index = missing.html second.htm index.html"),
    );
    let r = s.get("/static/dir/");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"<p>second</p>");
    assert_eq!(s.get("/static/other/").body, b"second again");
    assert_eq!(s.get("/static/noindex/").status, 403);
}

#[test]
fn directory_without_trailing_slash_redirects_301_to_slash() {
    let t = site("dir_redirect");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/dir");
    assert_eq!(r.status, 301, "{}", r.head_raw);
    let loc = r.header("location").expect("Location");
    let absolute = format!("http://127.0.0.1:{}/static/dir/", s.port);
    let absolute_host = "http://localhost/static/dir/".to_string();
    assert!(
        loc == "/static/dir/" || loc == absolute || loc == absolute_host,
        "Location {:?}",
        loc
    );
}

#[test]
fn directory_redirect_keeps_the_query_string() {
    let t = site("dir_redirect_query");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/dir?q=1");
    assert_eq!(r.status, 301, "{}", r.head_raw);
    let loc = r.header("location").expect("Location");
    assert!(loc.ends_with("/static/dir/?q=1"), "Location {:?}", loc);
}

#[test]
fn directory_without_index_is_403() {
    let t = site("dir_noindex");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/noindex/");
    assert_eq!(r.status, 403, "{}", r.head_raw);
    assert!(!r.text().contains("a.txt"), "must not list the directory");
}

#[test]
fn post_to_static_is_405_with_allow_get_head() {
    let t = site("post_405");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = request(
        s.port,
        b"POST /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(r.status, 405, "{}", r.head_raw);
    let allow = r.header("allow").expect("Allow header on 405");
    let mut methods: Vec<String> = allow.split(',').map(|m| m.trim().to_string()).collect();
    methods.sort();
    assert_eq!(methods, vec!["GET", "HEAD"], "Allow: {:?}", allow);
}

#[test]
fn put_delete_and_options_to_static_are_405() {
    let t = site("other_methods_405");
    let s = Server::start_in(&t, &static_ini("", ""));
    for m in ["PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = request(
            s.port,
            format!(
                "{} /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                m
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 405, "{} -> {}", m, r.head_raw);
        assert!(r.header("allow").is_some(), "{} 405 without Allow", m);
    }
    // And the file is still there after a DELETE.
    assert_eq!(s.get("/static/hello.txt").body, HELLO.as_bytes());
}

#[test]
fn post_with_body_is_405_and_keepalive_stays_in_sync() {
    // The 405's request body must be consumed, not parsed as the next request.
    let t = site("post_405_sync");
    let s = Server::start_in(&t, &static_ini("", ""));
    let body = "GET /static/dir/ HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let first = format!(
        "POST /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    );
    let second = b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut c = s.connect();
    c.send(first.as_bytes());
    c.send(second);
    let r1 = c.read_response();
    assert_eq!(r1.status, 405, "{}", r1.head_raw);
    if r1.connection_has("close") {
        return; // closing after a 405 is allowed; smuggling is not
    }
    let r2 = c.read_response();
    assert_eq!(r2.status, 200, "{}", r2.head_raw);
    assert_eq!(
        r2.body,
        HELLO.as_bytes(),
        "body of POST was parsed as a request"
    );
}

#[test]
fn head_has_headers_and_content_length_but_no_body() {
    let t = site("head");
    let s = Server::start_in(&t, &static_ini("", ""));
    let (raw, closed) = request_raw(
        s.port,
        b"HEAD /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        closed.is_some(),
        "server did not close after Connection: close"
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{:?}", text);
    let end = find(&raw, b"\r\n\r\n").expect("complete head") + 4;
    assert_eq!(end, raw.len(), "HEAD response carried a body: {:?}", text);
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\ncontent-length: 13\r\n"),
        "{:?}",
        text
    );
    assert!(
        text.to_ascii_lowercase().contains("\r\netag: "),
        "{:?}",
        text
    );
    assert!(
        text.to_ascii_lowercase().contains("\r\nlast-modified: "),
        "{:?}",
        text
    );
}

#[test]
fn head_keeps_the_connection_usable() {
    let t = site("head_keepalive");
    let s = Server::start_in(&t, &static_ini("", ""));
    let rs = request_pipelined(
        s.port,
        &[
            b"HEAD /static/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /static/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert_eq!(rs[0].status, 200);
    assert!(rs[0].body.is_empty());
    assert_eq!(rs[1].status, 200, "{}", rs[1].head_raw);
    assert_eq!(rs[1].body, HELLO.as_bytes());
}

#[test]
fn empty_file_is_200_with_content_length_zero() {
    let t = site("empty");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/empty.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.header("content-length"), Some("0"), "{}", r.head_raw);
    assert!(r.body.is_empty());
}

#[test]
fn percent_encoded_name_is_decoded_once() {
    let t = site("percent_name");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/a%20b.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"space in name");
    let r = s.get("/static/%68ello.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

#[test]
fn query_string_is_not_part_of_the_file_name() {
    let t = site("query");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/hello.txt?v=3&x=%2e%2e");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, HELLO.as_bytes());
}

#[test]
fn root_appends_the_whole_uri_to_the_root() {
    let t = TempTree::new("root");
    t.write("www/docs/page.txt", "via root");
    let s = Server::start_in(&t, &ini("", "[location:/docs/]\nroot = {DIR}/www\n"));
    let r = s.get("/docs/page.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"via root");
}

#[test]
fn longest_prefix_location_wins() {
    let t = TempTree::new("longest_prefix");
    t.write("a/special/x.txt", "from a");
    t.write("b/x.txt", "from b");
    t.write("c/index.html", "from c");
    // Declared shortest first, and the longest last, so order of declaration cannot be what wins.
    let s = Server::start_in(
        &t,
        &ini(
            "",
            "[location:/]\nalias = {DIR}/c/\n\n\
             [location:/static/]\nalias = {DIR}/a/\n\n\
             [location:/static/special/]\nalias = {DIR}/b/\n",
        ),
    );
    let r = s.get("/static/special/x.txt");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"from b");
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"from c");
}

#[test]
fn internal_location_is_404_to_clients() {
    let t = site("internal");
    let s = Server::start_in(&t, &static_ini("", "internal = on"));
    let r = s.get("/static/hello.txt");
    assert_eq!(r.status, 404, "{}", r.head_raw);
    assert!(!r.text().contains("hello, world"));
}

#[test]
fn content_type_comes_from_the_extension() {
    let t = TempTree::new("mime");
    let cases: &[(&str, &str)] = &[
        ("a.html", "text/html"),
        ("a.htm", "text/html"),
        ("a.css", "text/css"),
        ("a.txt", "text/plain"),
        ("a.xml", "text/xml"),
        ("a.json", "application/json"),
        ("a.png", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.gif", "image/gif"),
        ("a.svg", "image/svg+xml"),
        ("a.webp", "image/webp"),
        ("a.ico", "image/x-icon"),
        ("a.woff", "font/woff"),
        ("a.woff2", "font/woff2"),
        ("a.pdf", "application/pdf"),
        ("a.zip", "application/zip"),
        ("a.wasm", "application/wasm"),
        ("a.mp4", "video/mp4"),
        ("a.mp3", "audio/mpeg"),
        ("a.unknownext", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
        ("UPPER.PNG", "image/png"),
    ];
    for (name, _) in cases {
        t.write(&format!("static/{}", name), "x");
    }
    t.write("static/a.js", "x");
    let s = Server::start_in(&t, &static_ini("", ""));
    for (name, want) in cases {
        let r = s.get(&format!("/static/{}", name));
        assert_eq!(r.status, 200, "{}: {}", name, r.head_raw);
        let ct = r.header("content-type").unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        assert_eq!(mime, *want, "{}: Content-Type {:?}", name, ct);
    }
    // nginx's table says application/javascript; RFC 9239 says text/javascript.
    let r = s.get("/static/a.js");
    let ct = r.header("content-type").unwrap_or("").to_string();
    assert!(
        ct.starts_with("application/javascript") || ct.starts_with("text/javascript"),
        "a.js: {:?}",
        ct
    );
}

#[test]
fn text_types_get_charset_utf8_and_binary_types_do_not() {
    let t = TempTree::new("charset");
    for n in ["a.html", "a.css", "a.txt", "a.png", "a.woff2"] {
        t.write(&format!("static/{}", n), "x");
    }
    let s = Server::start_in(&t, &static_ini("", ""));
    for n in ["a.html", "a.css", "a.txt"] {
        let r = s.get(&format!("/static/{}", n));
        let ct = r.header("content-type").unwrap_or("").to_ascii_lowercase();
        assert!(ct.ends_with("; charset=utf-8"), "{}: {:?}", n, ct);
    }
    for n in ["a.png", "a.woff2"] {
        let r = s.get(&format!("/static/{}", n));
        let ct = r.header("content-type").unwrap_or("").to_ascii_lowercase();
        assert!(!ct.contains("charset"), "{}: {:?}", n, ct);
    }
}

#[test]
fn charset_off_drops_the_charset_parameter() {
    let t = TempTree::new("charset_off");
    t.write("static/a.txt", "x");
    let s = Server::start_in(&t, &static_ini("", "charset = off"));
    let r = s.get("/static/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain"),
        "{}",
        r.head_raw
    );
}

#[test]
fn large_file_arrives_intact() {
    let t = TempTree::new("large");
    let len = 5 * 1024 * 1024 + 12345;
    t.write_pattern("static/big.bin", len, 3);
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/big.bin");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    assert_eq!(r.body.len(), len);
    assert!(r.body == pattern(len, 3), "body differs from the file");
}

#[test]
fn unreadable_file_is_403() {
    if unsafe_geteuid_is_root() {
        eprintln!("skipped: root reads any file");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = site("unreadable");
    let p = t.write("static/locked.txt", "locked");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/locked.txt");
    assert_eq!(r.status, 403, "{}", r.head_raw);
}

fn unsafe_geteuid_is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
