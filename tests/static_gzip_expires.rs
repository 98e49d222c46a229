//! `gzip_static` (serve FILE.gz with Content-Encoding and Vary when the client accepts gzip) and
//! `expires` (Cache-Control max-age and Expires).

mod common;
use common::*;

const PLAIN: &str = "console.log('plain');\n";
/// Not real gzip: the server must not care, it serves the bytes as they are on disk.
const GZ: &[u8] = b"\x1f\x8b\x08\x00fake-gzip-body";

fn site(name: &str) -> TempTree {
    let t = TempTree::new(name);
    t.write("static/app.js", PLAIN);
    t.write("static/app.js.gz", GZ);
    t.write("static/only-plain.css", "body{}");
    t
}

#[test]
fn gzip_static_serves_gz_when_client_accepts_gzip() {
    let t = site("gz_accept");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let r = get_with(
        s.port,
        "/static/app.js",
        &["Accept-Encoding: gzip, deflate, br"],
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, GZ, "served the plain file instead of app.js.gz");
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{}", r.head_raw);
    assert_eq!(
        r.header("content-length"),
        Some(GZ.len().to_string().as_str())
    );
    let vary = r.headers_all("vary").join(",").to_ascii_lowercase();
    assert!(vary.contains("accept-encoding"), "Vary: {:?}", vary);
    // The type is that of the original file, not application/gzip.
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.contains("javascript"), "Content-Type {:?}", ct);
}

#[test]
fn gzip_static_serves_plain_without_accept_encoding() {
    let t = site("gz_no_accept");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let r = s.get("/static/app.js");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, PLAIN.as_bytes());
    assert!(r.header("content-encoding").is_none(), "{}", r.head_raw);
}

#[test]
fn gzip_static_serves_plain_for_other_encodings() {
    let t = site("gz_other");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let r = get_with(s.port, "/static/app.js", &["Accept-Encoding: deflate, br"]);
    assert_eq!(r.body, PLAIN.as_bytes());
    assert!(r.header("content-encoding").is_none(), "{}", r.head_raw);
}

#[test]
fn gzip_static_honours_gzip_q_zero() {
    let t = site("gz_q0");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let r = get_with(s.port, "/static/app.js", &["Accept-Encoding: gzip;q=0, br"]);
    assert_eq!(r.body, PLAIN.as_bytes(), "gzip;q=0 means not acceptable");
    assert!(r.header("content-encoding").is_none(), "{}", r.head_raw);
}

#[test]
fn gzip_static_accepts_gzip_anywhere_in_the_list() {
    let t = site("gz_list");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let r = get_with(
        s.port,
        "/static/app.js",
        &["Accept-Encoding: br;q=1.0, GZIP;q=0.5"],
    );
    assert_eq!(r.body, GZ, "{}", r.head_raw);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn gzip_static_falls_back_to_plain_when_no_gz_exists() {
    let t = site("gz_missing");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let r = get_with(s.port, "/static/only-plain.css", &["Accept-Encoding: gzip"]);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"body{}");
    assert!(r.header("content-encoding").is_none(), "{}", r.head_raw);
}

#[test]
fn gzip_static_off_never_serves_gz() {
    let t = site("gz_off");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(s.port, "/static/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(r.body, PLAIN.as_bytes());
    assert!(r.header("content-encoding").is_none(), "{}", r.head_raw);
}

#[test]
fn gzip_variant_has_its_own_etag() {
    // A cache must not confuse the two representations.
    let t = site("gz_etag");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let plain = s.get("/static/app.js");
    let gz = get_with(s.port, "/static/app.js", &["Accept-Encoding: gzip"]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_ne!(
        plain.header("etag"),
        gz.header("etag"),
        "same ETag for plain and gzip"
    );
}

#[test]
fn gzip_static_head_reports_gz_length_without_body() {
    let t = site("gz_head");
    let s = Server::start_in(&t, &static_ini("", "gzip_static = on"));
    let rs = request_pipelined(
        s.port,
        &[
            b"HEAD /static/app.js HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n",
            b"GET /static/app.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert_eq!(rs[0].header("content-encoding"), Some("gzip"));
    assert_eq!(
        rs[0].header("content-length"),
        Some(GZ.len().to_string().as_str())
    );
    assert_eq!(rs[1].status, 200, "HEAD leaked a body: {}", rs[1].head_raw);
    assert_eq!(rs[1].body, PLAIN.as_bytes());
}

fn expires_site(name: &str, expires: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/a.css", "a{}");
    let s = Server::start_in(&t, &static_ini("", &format!("expires = {}", expires)));
    (t, s)
}

fn date_of(r: &Response, name: &str) -> i64 {
    let v = r
        .header(name)
        .unwrap_or_else(|| panic!("no {} in {}", name, r.head_raw));
    parse_imf_fixdate(v).unwrap_or_else(|| panic!("{}: not IMF-fixdate: {:?}", name, v))
}

#[test]
fn expires_30d_sets_max_age_and_expires() {
    let (_t, s) = expires_site("exp_30d", "30d");
    let r = s.get("/static/a.css");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=2592000"),
        "{}",
        r.head_raw
    );
    let exp = date_of(&r, "expires");
    let date = date_of(&r, "date");
    assert!(
        (exp - date - 2_592_000).abs() <= 1,
        "Expires {} vs Date {}",
        exp,
        date
    );
}

#[test]
fn expires_1h_sets_max_age_3600() {
    let (_t, s) = expires_site("exp_1h", "1h");
    let r = s.get("/static/a.css");
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=3600"),
        "{}",
        r.head_raw
    );
    let exp = date_of(&r, "expires");
    let date = date_of(&r, "date");
    assert!((exp - date - 3600).abs() <= 1);
}

#[test]
fn expires_max_uses_nginx_constants() {
    let (_t, s) = expires_site("exp_max", "max");
    let r = s.get("/static/a.css");
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=315360000"),
        "{}",
        r.head_raw
    );
    assert_eq!(r.header("expires"), Some("Thu, 31 Dec 2037 23:55:55 GMT"));
}

#[test]
fn expires_epoch_means_no_cache() {
    let (_t, s) = expires_site("exp_epoch", "epoch");
    let r = s.get("/static/a.css");
    assert_eq!(
        r.header("expires"),
        Some("Thu, 01 Jan 1970 00:00:01 GMT"),
        "{}",
        r.head_raw
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
}

#[test]
fn negative_expires_is_in_the_past_and_no_cache() {
    let (_t, s) = expires_site("exp_neg", "-1h");
    let r = s.get("/static/a.css");
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache"),
        "{}",
        r.head_raw
    );
    let exp = date_of(&r, "expires");
    let date = date_of(&r, "date");
    assert!(
        (date - exp - 3600).abs() <= 1,
        "Expires {} vs Date {}",
        exp,
        date
    );
}

#[test]
fn expires_off_sends_no_cache_headers() {
    let (_t, s) = expires_site("exp_off", "off");
    let r = s.get("/static/a.css");
    assert_eq!(r.status, 200);
    assert!(r.header("expires").is_none(), "{}", r.head_raw);
    assert!(r.header("cache-control").is_none(), "{}", r.head_raw);
}

#[test]
fn expires_is_not_added_to_errors() {
    // nginx adds expires only to 200, 201, 204, 206, 301, 302, 303, 304, 307, 308.
    let (_t, s) = expires_site("exp_404", "30d");
    let r = s.get("/static/missing.css");
    assert_eq!(r.status, 404);
    assert!(r.header("expires").is_none(), "{}", r.head_raw);
    assert!(r.header("cache-control").is_none(), "{}", r.head_raw);
}

#[test]
fn expires_applies_to_304() {
    let (t, s) = expires_site("exp_304", "30d");
    let etag = nginx_etag(&t.join("static/a.css"));
    let r = get_with(
        s.port,
        "/static/a.css",
        &[&format!("If-None-Match: {}", etag)],
    );
    assert_eq!(r.status, 304, "{}", r.head_raw);
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=2592000"),
        "{}",
        r.head_raw
    );
}
