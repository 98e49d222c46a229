//! Conditional requests on static files: ETag in nginx's format, Last-Modified, If-None-Match,
//! If-Modified-Since (304), and If-Range.

mod common;
use common::*;

use std::time::Duration;

/// 2023-11-14T22:13:20Z, a Tuesday.
const MTIME: u64 = 1_700_000_000;
const MTIME_HTTP: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz\n"; // 37 bytes

fn site(name: &str) -> TempTree {
    let t = TempTree::new(name);
    t.write("static/f.txt", BODY);
    t.set_mtime("static/f.txt", MTIME);
    t
}

fn etag() -> String {
    format!("\"{:x}-{:x}\"", MTIME, BODY.len())
}

#[test]
fn etag_is_nginx_format_mtime_hex_dash_size_hex() {
    let t = site("etag_format");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/f.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag().as_str()), "{}", r.head_raw);
    assert_eq!(etag(), "\"6553f100-25\"");
    assert_eq!(nginx_etag(&t.join("static/f.txt")), etag());
}

#[test]
fn last_modified_is_the_mtime_as_imf_fixdate() {
    let t = site("last_modified");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = s.get("/static/f.txt");
    assert_eq!(
        r.header("last-modified"),
        Some(MTIME_HTTP),
        "{}",
        r.head_raw
    );
    assert_eq!(imf_fixdate(MTIME as i64), MTIME_HTTP);
}

#[test]
fn if_none_match_with_current_etag_is_304_without_body() {
    let t = site("inm_304");
    let s = Server::start_in(&t, &static_ini("", ""));
    let req = format!(
        "GET /static/f.txt HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {}\r\nConnection: close\r\n\r\n",
        etag()
    );
    let (raw, closed) = request_raw(s.port, req.as_bytes(), Duration::from_secs(5));
    assert!(closed.is_some(), "no close after Connection: close");
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 304"), "{:?}", text);
    let end = find(&raw, b"\r\n\r\n").expect("head") + 4;
    assert_eq!(end, raw.len(), "304 carried a body: {:?}", text);
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("\r\netag: {}\r\n", etag())),
        "304 must repeat the ETag: {:?}",
        text
    );
}

#[test]
fn if_none_match_list_containing_current_etag_is_304() {
    let t = site("inm_list");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[&format!(
            "If-None-Match: \"nope-1\", {} , \"other-2\"",
            etag()
        )],
    );
    assert_eq!(r.status, 304, "{}", r.head_raw);
}

#[test]
fn if_none_match_star_is_304() {
    let t = site("inm_star");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(s.port, "/static/f.txt", &["If-None-Match: *"]);
    assert_eq!(r.status, 304, "{}", r.head_raw);
}

#[test]
fn if_none_match_weak_comparison_matches_w_prefix() {
    // RFC 9110 13.1.2: If-None-Match uses the weak comparison.
    let t = site("inm_weak");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[&format!("If-None-Match: W/{}", etag())],
    );
    assert_eq!(r.status, 304, "{}", r.head_raw);
}

#[test]
fn if_none_match_with_other_etag_is_200() {
    let t = site("inm_200");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(s.port, "/static/f.txt", &["If-None-Match: \"6553f100-26\""]);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, BODY.as_bytes());
}

#[test]
fn if_modified_since_equal_to_mtime_is_304() {
    let t = site("ims_304");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[&format!("If-Modified-Since: {}", MTIME_HTTP)],
    );
    assert_eq!(r.status, 304, "{}", r.head_raw);
    assert!(r.body.is_empty());
}

#[test]
fn if_modified_since_before_mtime_is_200() {
    let t = site("ims_200");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[&format!(
            "If-Modified-Since: {}",
            imf_fixdate(MTIME as i64 - 3600)
        )],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, BODY.as_bytes());
}

#[test]
fn if_modified_since_garbage_is_ignored() {
    let t = site("ims_garbage");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &["If-Modified-Since: yesterday-ish"],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

#[test]
fn if_none_match_mismatch_overrides_matching_if_modified_since() {
    // RFC 9110 13.2.2: If-Modified-Since is evaluated only without If-None-Match.
    let t = site("inm_over_ims");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[
            "If-None-Match: \"stale-1\"",
            &format!("If-Modified-Since: {}", MTIME_HTTP),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

#[test]
fn head_with_matching_if_none_match_is_304() {
    let t = site("head_304");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = request(
        s.port,
        format!(
            "HEAD /static/f.txt HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {}\r\nConnection: close\r\n\r\n",
            etag()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 304, "{}", r.head_raw);
}

#[test]
fn changed_file_no_longer_matches_old_etag() {
    let t = site("changed");
    let s = Server::start_in(&t, &static_ini("", ""));
    let old = etag();
    t.write("static/f.txt", "new content, new size\n");
    t.set_mtime("static/f.txt", MTIME + 60);
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[&format!("If-None-Match: {}", old)],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"new content, new size\n");
    assert_eq!(
        r.header("etag"),
        Some(nginx_etag(&t.join("static/f.txt")).as_str())
    );
}

#[test]
fn if_range_with_current_etag_gives_206() {
    let t = site("if_range_etag");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &["Range: bytes=0-9", &format!("If-Range: {}", etag())],
    );
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.body, b"0123456789");
}

#[test]
fn if_range_with_stale_etag_gives_full_200() {
    let t = site("if_range_stale_etag");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &["Range: bytes=0-9", "If-Range: \"6553f0ff-25\""],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, BODY.as_bytes());
}

#[test]
fn if_range_with_last_modified_date_gives_206() {
    let t = site("if_range_date");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &["Range: bytes=10-19", &format!("If-Range: {}", MTIME_HTTP)],
    );
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.body, b"abcdefghij");
}

#[test]
fn if_range_with_other_date_gives_full_200() {
    let t = site("if_range_old_date");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &[
            "Range: bytes=10-19",
            &format!("If-Range: {}", imf_fixdate(MTIME as i64 - 1)),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, BODY.as_bytes());
}

#[test]
fn if_range_weak_etag_never_matches() {
    // RFC 9110 13.1.5: If-Range uses the strong comparison; a weak validator never matches.
    let t = site("if_range_weak");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(
        s.port,
        "/static/f.txt",
        &["Range: bytes=0-9", &format!("If-Range: W/{}", etag())],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, BODY.as_bytes());
}
