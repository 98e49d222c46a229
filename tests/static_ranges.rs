//! Range requests on static files: single ranges (206), suffix and open ranges, clamping,
//! unsatisfiable ranges (416 with `Content-Range: bytes */SIZE`), multiple ranges
//! (multipart/byteranges), and ranges deep inside a large file (sendfile offsets).

mod common;
use common::*;

const SIZE: usize = 1000;

fn site(name: &str) -> TempTree {
    let t = TempTree::new(name);
    t.write_pattern("static/f.txt", SIZE, 11);
    t
}

fn content() -> Vec<u8> {
    pattern(SIZE, 11)
}

fn range(port: u16, spec: &str) -> Response {
    get_with(port, "/static/f.txt", &[&format!("Range: {}", spec)])
}

#[test]
fn single_range_is_206_with_content_range_and_slice() {
    let t = site("single");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=0-99");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(
        r.header("content-range"),
        Some("bytes 0-99/1000"),
        "{}",
        r.head_raw
    );
    assert_eq!(r.header("content-length"), Some("100"), "{}", r.head_raw);
    assert_eq!(r.body, &content()[0..100]);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
}

#[test]
fn middle_range_is_exact() {
    let t = site("middle");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=123-456");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes 123-456/1000"));
    assert_eq!(r.body, &content()[123..457]);
}

#[test]
fn suffix_range_is_the_last_n_bytes() {
    let t = site("suffix");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=-100");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes 900-999/1000"));
    assert_eq!(r.body, &content()[900..]);
}

#[test]
fn suffix_longer_than_file_is_the_whole_file() {
    let t = site("suffix_long");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=-5000");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes 0-999/1000"));
    assert_eq!(r.body, content());
}

#[test]
fn open_ended_range_runs_to_the_end() {
    let t = site("open");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=900-");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes 900-999/1000"));
    assert_eq!(r.body, &content()[900..]);
}

#[test]
fn range_end_past_the_file_is_clamped() {
    let t = site("clamp");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=990-5000");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(r.body, &content()[990..]);
}

#[test]
fn last_byte_range() {
    let t = site("last_byte");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=999-999");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes 999-999/1000"));
    assert_eq!(r.body, &content()[999..]);
}

#[test]
fn range_starting_at_size_is_416_with_star_content_range() {
    let t = site("unsat");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=1000-1100");
    assert_eq!(r.status, 416, "{}", r.head_raw);
    assert_eq!(
        r.header("content-range"),
        Some("bytes */1000"),
        "{}",
        r.head_raw
    );
    assert!(
        !r.body.windows(50).any(|w| w == &content()[..50]),
        "416 leaked the file"
    );
}

#[test]
fn suffix_of_zero_is_416() {
    let t = site("suffix_zero");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=-0");
    assert_eq!(r.status, 416, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
}

#[test]
fn reversed_range_is_not_served_as_206() {
    // bytes=500-100 is invalid (last < first); RFC 9110 says ignore, nginx says 416.
    let t = site("reversed");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=500-100");
    assert!(r.status == 416 || r.status == 200, "{}", r.head_raw);
    if r.status == 200 {
        assert_eq!(r.body, content());
    }
}

#[test]
fn malformed_range_header_is_not_served_as_206() {
    let t = site("malformed");
    let s = Server::start_in(&t, &static_ini("", ""));
    for spec in [
        "bytes=abc",
        "bytes=1-2-3",
        "bytes=",
        "bytes=--5",
        "bytes=99999999999999999999999-",
    ] {
        let r = range(s.port, spec);
        assert!(
            r.status == 416 || r.status == 200,
            "Range: {} -> {}",
            spec,
            r.head_raw
        );
        if r.status == 200 {
            assert_eq!(r.body, content(), "Range: {}", spec);
        }
    }
}

#[test]
fn non_bytes_unit_is_ignored() {
    let t = site("items");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "items=0-1");
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, content());
}

/// One part of a multipart/byteranges body.
struct Part {
    content_type: Option<String>,
    content_range: String,
    data: Vec<u8>,
}

fn parse_multipart(body: &[u8], boundary: &str) -> Vec<Part> {
    let delim = format!("--{}", boundary);
    let mut pos = find(body, delim.as_bytes()).expect("first boundary") + delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return parts; // close delimiter
        }
        assert!(
            body[pos..].starts_with(b"\r\n"),
            "no CRLF after boundary at {}",
            pos
        );
        pos += 2;
        let head_end = find(&body[pos..], b"\r\n\r\n").expect("part head") + pos;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let mut ct = None;
        let mut cr = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').expect("part header");
            if k.eq_ignore_ascii_case("content-type") {
                ct = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("content-range") {
                cr = Some(v.trim().to_string());
            }
        }
        let cr = cr.expect("Content-Range in part");
        let spec = cr.strip_prefix("bytes ").expect("bytes unit");
        let (range, _) = spec.split_once('/').expect("range/size");
        let (a, b) = range.split_once('-').expect("first-last");
        let a: usize = a.parse().expect("first");
        let b: usize = b.parse().expect("last");
        let start = head_end + 4;
        let data = body[start..start + (b - a + 1)].to_vec();
        pos = start + data.len();
        assert!(
            body[pos..].starts_with(format!("\r\n{}", delim).as_bytes()),
            "part data not followed by CRLF--boundary"
        );
        pos += 2 + delim.len();
        parts.push(Part {
            content_type: ct,
            content_range: cr,
            data,
        });
    }
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    let t = site("multi");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=0-9,20-29,-5");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    let ct = r.header("content-type").expect("Content-Type").to_string();
    assert!(
        ct.starts_with("multipart/byteranges; boundary="),
        "{:?}",
        ct
    );
    assert!(
        r.header("content-range").is_none(),
        "top-level Content-Range on multipart"
    );
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"');
    assert_eq!(
        r.header("content-length")
            .map(|v| v.parse::<usize>().unwrap_or(0)),
        Some(r.body.len()),
        "Content-Length must match the multipart body"
    );
    let parts = parse_multipart(&r.body, boundary);
    assert_eq!(parts.len(), 3);
    let c = content();
    let want = [
        ("bytes 0-9/1000", &c[0..10]),
        ("bytes 20-29/1000", &c[20..30]),
        ("bytes 995-999/1000", &c[995..]),
    ];
    for (p, (cr, data)) in parts.iter().zip(want.iter()) {
        assert_eq!(p.content_range, *cr);
        assert_eq!(p.data, *data, "part {}", cr);
        assert!(
            p.content_type
                .as_deref()
                .unwrap_or("")
                .starts_with("text/plain"),
            "part Content-Type {:?}",
            p.content_type
        );
    }
}

#[test]
fn multipart_response_survives_keepalive() {
    // The next pipelined response must start exactly where the multipart body ends.
    let t = site("multi_pipeline");
    let s = Server::start_in(&t, &static_ini("", ""));
    let rs = request_pipelined(
        s.port,
        &[
            b"GET /static/f.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1-2,5-6\r\n\r\n",
            b"GET /static/f.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert_eq!(rs[0].status, 206);
    assert_eq!(rs[1].status, 200, "{}", rs[1].head_raw);
    assert_eq!(rs[1].body, content());
}

#[test]
fn multiple_ranges_one_unsatisfiable_serves_the_rest() {
    // RFC 9110 14.1.1: satisfiable if any range is.
    let t = site("multi_partial");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=0-4,5000-6000");
    assert_eq!(r.status, 206, "{}", r.head_raw);
    let ct = r.header("content-type").unwrap_or("").to_string();
    if ct.starts_with("multipart/byteranges") {
        let b = ct
            .split("boundary=")
            .nth(1)
            .expect("boundary")
            .trim_matches('"')
            .to_string();
        let parts = parse_multipart(&r.body, &b);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data, &content()[0..5]);
    } else {
        assert_eq!(r.header("content-range"), Some("bytes 0-4/1000"));
        assert_eq!(r.body, &content()[0..5]);
    }
}

#[test]
fn all_ranges_unsatisfiable_is_416() {
    let t = site("multi_unsat");
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = range(s.port, "bytes=1000-1001,2000-");
    assert_eq!(r.status, 416, "{}", r.head_raw);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
}

#[test]
fn range_deep_in_a_large_file_is_exact() {
    let t = TempTree::new("large_range");
    let len = 3 * 1024 * 1024 + 77;
    t.write_pattern("static/big.bin", len, 5);
    let s = Server::start_in(&t, &static_ini("", ""));
    let r = get_with(s.port, "/static/big.bin", &["Range: bytes=1000001-2500000"]);
    assert_eq!(r.status, 206, "{}", r.head_raw);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000001-2500000/{}", len).as_str())
    );
    assert!(
        r.body == pattern(len, 5)[1_000_001..2_500_001],
        "range body differs"
    );
}

#[test]
fn head_with_range_has_no_body() {
    let t = site("head_range");
    let s = Server::start_in(&t, &static_ini("", ""));
    let rs = request_pipelined(
        s.port,
        &[
            b"HEAD /static/f.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9\r\n\r\n",
            b"GET /static/f.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert!(
        rs[0].status == 206 || rs[0].status == 200,
        "{}",
        rs[0].head_raw
    );
    assert_eq!(
        rs[1].status, 200,
        "HEAD sent a body: next response {}",
        rs[1].head_raw
    );
    assert_eq!(rs[1].body, content());
}
