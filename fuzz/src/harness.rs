//! The fuzz harness: one function per parser that takes arbitrary bytes, feeds them to the
//! parser and asserts what must hold for every input (spans inside the buffer, a canonical path
//! without dot segments, decoded chunks equal to the payload, a packet that decodes back to its
//! vars byte for byte, ...), not merely that nothing panicked.
//!
//! Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`, through the `uwgate_fuzz` crate)
//! and by the corpus replay test (`tests/fuzz_corpus.rs` includes this file with `#[path]`), so
//! `make test` runs exactly the checks `make fuzz` ran. It may use only uwgate's public API,
//! httparse and std: the main crate's test sees no other crate. A failed check panics, which
//! libFuzzer reports as a crash and the replay test as a failure naming the file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use uwgate::http::chunked::ChunkedDecoder;
use uwgate::http::date::{format_http_date, parse_http_date};
use uwgate::http::path::canonicalize;
use uwgate::http::proxy_protocol::{self as pp, Parsed};
use uwgate::http::range::{if_range_matches, parse_range, RangeSpec, MAX_RANGES};
use uwgate::http::realip::{forwarded_addr, parse_addr_port};
use uwgate::http::request::{
    fields as head_fields, head_overflow_status, header_contains_token, parse_head, Head, Method,
    Span, TargetForm,
};
use uwgate::http::response_head::{self as response, Framing, ResponseHead as UpstreamHead};
use uwgate::http::Status;
use uwgate::upstream::uwsgi::packet::{self, RequestInfo};

/// A harness function: takes any bytes, panics when a check fails.
pub type Harness = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/NAME.rs` binary and the `fuzz/corpus/NAME/`
/// directory) and its harness function.
pub const TARGETS: &[(&str, Harness)] = &[
    ("request_head", request_head),
    ("chunked", chunked),
    ("range", range),
    ("path", path),
    ("config", config),
    ("upstream_response", upstream_response),
    ("packet", packet),
    ("proxy_protocol", proxy_protocol),
    ("realip", realip),
];

// -------------------------------------------------------------------------------------------
// Request head, and the pipelined requests after it.

/// `http::request::parse_head` on the input as a connection's header buffer; after a complete
/// head its body (Content-Length bytes, or a chunked body through the real decoder) is skipped
/// and the next pipelined request parsed from there, as the connection does.
pub fn request_head(data: &[u8]) {
    let mut offset = 0usize;
    for _ in 0..16 {
        let buf = data.get(offset..).unwrap_or_default();
        let head = match parse_head(buf) {
            Ok(Some(head)) => head,
            Ok(None) => {
                let status = head_overflow_status(buf);
                assert!(
                    matches!(
                        status,
                        Status::UriTooLong | Status::RequestHeaderFieldsTooLarge
                    ),
                    "overflow status {status:?}"
                );
                return;
            }
            Err(status) => {
                assert!(
                    matches!(
                        status,
                        Status::BadRequest
                            | Status::MethodNotAllowed
                            | Status::ExpectationFailed
                            | Status::RequestHeaderFieldsTooLarge
                            | Status::NotImplemented
                            | Status::HttpVersionNotSupported
                    ),
                    "parse_head answered {status:?}"
                );
                return;
            }
        };
        check_request_head(buf, &head);
        let head_len = head.head_len as usize;
        offset += head_len;
        let rest = data.get(offset..).unwrap_or_default();
        if head.chunked {
            let mut body = rest.to_vec();
            let mut decoder = ChunkedDecoder::new();
            match decoder.decode_in_place(&mut body) {
                Ok(d) if d.done => offset += d.consumed,
                _ => return,
            }
        } else if let Some(n) = head.content_length {
            match usize::try_from(n) {
                Ok(n) if n <= rest.len() => offset += n,
                _ => return,
            }
        }
    }
}

fn check_span(span: Span, head_len: usize, what: &str) {
    assert!(
        span.start() <= span.end() && span.end() as usize <= head_len,
        "{what} {span:?} outside the head of {head_len} bytes"
    );
}

fn check_request_head(buf: &[u8], h: &Head) {
    let head_len = h.head_len as usize;
    assert!(
        head_len >= 1 && head_len <= buf.len(),
        "head_len {head_len} of {}",
        buf.len()
    );
    let head_bytes = &buf[..head_len];
    for (span, what) in [
        (Some(h.method_span), "method"),
        (Some(h.target), "target"),
        (Some(h.path), "path"),
        (h.query, "query"),
        (h.host, "host"),
        (h.if_none_match, "if-none-match"),
        (h.if_modified_since, "if-modified-since"),
        (h.if_match, "if-match"),
        (h.if_unmodified_since, "if-unmodified-since"),
        (h.range, "range"),
        (h.if_range, "if-range"),
        (h.accept_encoding, "accept-encoding"),
        (h.user_agent, "user-agent"),
        (h.referer, "referer"),
        (h.content_type, "content-type"),
    ] {
        if let Some(span) = span {
            check_span(span, head_len, what);
        }
    }

    // Line ends: CRLF or a bare LF, mixed freely (issue 10); never a bare CR. The head ends with
    // an empty line.
    assert!(no_bare_cr(head_bytes), "a bare CR in an accepted head");
    assert!(
        head_bytes.ends_with(b"\n\n") || head_bytes.ends_with(b"\n\r\n"),
        "an accepted head that does not end with an empty line"
    );

    // The request line and the framing decisions.
    let method = h.method_bytes(buf);
    assert!(!method.is_empty() && method.iter().all(|&b| is_tchar(b)));
    let known = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"POST" => Method::Post,
        b"PUT" => Method::Put,
        b"DELETE" => Method::Delete,
        b"OPTIONS" => Method::Options,
        b"PATCH" => Method::Patch,
        b"TRACE" => Method::Trace,
        b"CONNECT" => Method::Connect,
        _ => Method::Other,
    };
    assert_eq!(h.method, known);
    assert!(
        !matches!(h.method, Method::Connect | Method::Trace),
        "{:?} must be refused (405)",
        h.method
    );
    assert!(h.version_minor <= 1);
    assert!(
        h.host.is_some() || h.version_minor == 0,
        "HTTP/1.1 without Host"
    );
    if let Some(host) = h.host {
        let host = host.get(buf);
        assert!(valid_host(host), "host {:?}", String::from_utf8_lossy(host));
    }
    if h.chunked {
        assert_eq!(h.content_length, None, "chunked with a Content-Length");
        assert_eq!(h.version_minor, 1, "chunked on HTTP/1.0");
    }

    // The target and its parts.
    let target = h.target.get(buf);
    assert!(!target.is_empty());
    assert!(
        target.iter().all(|&b| b > b' ' && b != 0x7f && b != b'#'),
        "target {target:?}"
    );
    assert!(h.target.start() <= h.path.start() && h.path.end() <= h.target.end());
    let path = h.path(buf);
    assert!(!path.contains(&b'?'));
    if let Some(q) = h.query {
        assert!(h.path.end() <= q.start() && q.end() == h.target.end());
        assert_eq!(buf.get((q.start() as usize).wrapping_sub(1)), Some(&b'?'));
    }
    match h.form {
        TargetForm::Origin => assert!(target.starts_with(b"/") && path.starts_with(b"/")),
        TargetForm::Asterisk => {
            assert_eq!(target, b"*");
            assert_eq!(h.method, Method::Options);
        }
        TargetForm::Absolute => {
            // Never the authority form (`host:port`): only `http://` and `https://` targets.
            let scheme = |s: &[u8]| {
                target
                    .get(..s.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(s))
            };
            assert!(
                scheme(b"http://") || scheme(b"https://"),
                "target {target:?}"
            );
            assert!(path.starts_with(b"/"));
            let authority = h.host.expect("absolute form without its authority");
            assert!(h.target.start() < authority.start() && authority.end() <= h.path.start());
        }
    }
    if h.form != TargetForm::Asterisk {
        // An `out` as long as the raw path never gives 414.
        let mut out = vec![0u8; path.len()];
        match canonicalize(path, &mut out) {
            Ok(n) => check_canonical(&out[..n]),
            Err(status) => assert_eq!(status, Status::BadRequest),
        }
    }

    // The fields: `fields` walks exactly what httparse accepted; the spans are the first
    // occurrence of each, trimmed.
    let fields: Vec<(Vec<u8>, Vec<u8>)> = head_fields(head_bytes)
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_vec()))
        .collect();
    check_fields_match_httparse(head_bytes);
    let first = |name: &[u8]| {
        fields
            .iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.clone())
    };
    let all = |name: &'static [u8]| {
        fields
            .iter()
            .filter(move |(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.as_slice())
    };
    for (span, name) in [
        (h.if_none_match, &b"if-none-match"[..]),
        (h.if_modified_since, b"if-modified-since"),
        (h.if_match, b"if-match"),
        (h.if_unmodified_since, b"if-unmodified-since"),
        (h.range, b"range"),
        (h.if_range, b"if-range"),
        (h.accept_encoding, b"accept-encoding"),
        (h.user_agent, b"user-agent"),
        (h.referer, b"referer"),
        (h.content_type, b"content-type"),
    ] {
        assert_eq!(
            span.map(|s| s.get(buf).to_vec()),
            first(name),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    let hosts = all(b"host").count();
    assert!(hosts <= 1, "{hosts} Host fields accepted");
    if h.form == TargetForm::Origin {
        assert_eq!(h.host.map(|s| s.get(buf).to_vec()), first(b"host"));
    }
    if h.content_length.is_none() {
        assert_eq!(
            all(b"content-length").count(),
            0,
            "a Content-Length field was dropped"
        );
    }
    // Transfer-Encoding: one line whose only coding is `chunked`, or none at all.
    let te: Vec<&[u8]> = all(b"transfer-encoding").collect();
    if h.chunked {
        assert_eq!(
            te.len(),
            1,
            "Transfer-Encoding on {} lines accepted",
            te.len()
        );
        let codings: Vec<&[u8]> = te[0]
            .split(|&b| b == b',')
            .map(trim_ows)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
            "Transfer-Encoding {:?} accepted",
            String::from_utf8_lossy(te[0])
        );
    } else {
        assert!(te.is_empty(), "a Transfer-Encoding field was dropped");
    }
    // Expect: only `100-continue`, which matters on HTTP/1.1 only.
    let mut expect = all(b"expect").peekable();
    let continues = expect.peek().is_some();
    for value in expect {
        assert!(
            value.eq_ignore_ascii_case(b"100-continue"),
            "Expect {value:?} accepted"
        );
    }
    assert_eq!(h.expect_continue, continues && h.version_minor == 1);
    // Keep-alive: the version's default, `Connection` tokens, and nginx's `keepalive_disable
    // msie6` for a POST.
    let close = all(b"connection").any(|v| header_contains_token(v, b"close"));
    let keep = all(b"connection").any(|v| header_contains_token(v, b"keep-alive"));
    let old_msie = h.method == Method::Post && first(b"user-agent").is_some_and(|ua| is_msie6(&ua));
    assert_eq!(
        h.keep_alive,
        !close && (h.version_minor == 1 || keep) && !old_msie,
        "keep-alive"
    );

    // The same answer from exactly the head's bytes, and "incomplete" from any shorter prefix:
    // a head split across reads is parsed as it would be in one read.
    assert_eq!(
        parse_head(head_bytes),
        Ok(Some(*h)),
        "bytes after the head matter"
    );
    let cut = (fnv(head_bytes) % head_len as u64) as usize;
    assert_eq!(
        parse_head(&head_bytes[..cut]),
        Ok(None),
        "a prefix of {cut} bytes is not incomplete"
    );

    // TRACE and CONNECT are refused (405) once the head is otherwise valid: the same head with
    // either in place of an accepted GET.
    if h.method == Method::Get {
        let (start, end) = (h.method_span.start() as usize, h.method_span.end() as usize);
        for refused in [&b"TRACE"[..], b"CONNECT"] {
            let mut other = head_bytes[..start].to_vec();
            other.extend_from_slice(refused);
            other.extend_from_slice(&head_bytes[end..]);
            assert_eq!(
                parse_head(&other),
                Err(Status::MethodNotAllowed),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    // The line ends carry no meaning: the head with every line ending in LF, and with every one
    // ending in CRLF, is the same request.
    let meaning = Meaning::of(buf, h);
    let lf_only: Vec<u8> = head_bytes.iter().copied().filter(|&b| b != b'\r').collect();
    let mut crlf = Vec::with_capacity(head_len * 2);
    for (i, &b) in head_bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || head_bytes[i - 1] != b'\r') {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    for (what, other) in [("LF", &lf_only), ("CRLF", &crlf)] {
        match parse_head(other) {
            Ok(Some(o)) => {
                assert_eq!(o.head_len as usize, other.len(), "{what} only: head_len");
                assert_eq!(
                    Meaning::of(other, &o),
                    meaning,
                    "{what} only: another request"
                );
            }
            other => panic!("{what} only: {other:?}"),
        }
    }
}

/// What a [`Head`] says, as bytes rather than offsets: equal for two heads that differ only in
/// their line ends.
#[derive(Debug, PartialEq, Eq)]
struct Meaning {
    method: Method,
    form: TargetForm,
    version_minor: u8,
    content_length: Option<u64>,
    flags: (bool, bool, bool),
    parts: Vec<Option<Vec<u8>>>,
}

impl Meaning {
    fn of(buf: &[u8], h: &Head) -> Meaning {
        let bytes = |s: Option<Span>| s.map(|s| s.get(buf).to_vec());
        Meaning {
            method: h.method,
            form: h.form,
            version_minor: h.version_minor,
            content_length: h.content_length,
            flags: (h.chunked, h.keep_alive, h.expect_continue),
            parts: [
                Some(h.method_span),
                Some(h.target),
                Some(h.path),
                h.query,
                h.host,
                h.if_none_match,
                h.if_modified_since,
                h.if_match,
                h.if_unmodified_since,
                h.range,
                h.if_range,
                h.accept_encoding,
                h.user_agent,
                h.referer,
                h.content_type,
            ]
            .into_iter()
            .map(bytes)
            .collect(),
        }
    }
}

/// `http::request::fields` (what the uwsgi encoder walks) sees exactly the fields httparse
/// accepted, in order, values trimmed.
fn check_fields_match_httparse(head: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; uwgate::http::request::MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    assert_eq!(
        request.parse(head),
        Ok(httparse::Status::Complete(head.len())),
        "httparse on an accepted head"
    );
    let parsed: Vec<(&[u8], &[u8])> = request
        .headers
        .iter()
        .map(|f| (f.name.as_bytes(), trim_ows(f.value)))
        .collect();
    let walked: Vec<(&[u8], &[u8])> = head_fields(head).collect();
    assert_eq!(walked, parsed, "fields() and httparse disagree");
}

/// The Host rule (`http::request`'s module header), restated: `name[:port]` of letters, digits,
/// `-`, `.` and `_` not starting with `.`, or `[` hex digits, `:` and `.` `]`; never empty,
/// never `..`; a port of at most 5 digits.
fn valid_host(host: &[u8]) -> bool {
    let (name_ok, rest) = if let Some(after) = host.strip_prefix(b"[") {
        match after.iter().position(|&b| b == b']') {
            Some(close) => {
                let literal = &after[..close];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                (ok, &after[close + 1..])
            }
            None => (false, &b""[..]),
        }
    } else {
        let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        let name = &host[..colon];
        let ok = !name.is_empty()
            && name[0] != b'.'
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        (ok, &host[colon..])
    };
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok && !host.windows(2).any(|w| w == b"..")
}

/// nginx's `msie6` test (ngx_http_process_user_agent), read from its source: `MSIE ` followed by
/// more than 7 bytes counted from the `M`, `.` at offset 6, and a `4` or `5` at offset 5, or a
/// `6` without `SV1` after offset 8; never when `Opera` appears anywhere.
fn is_msie6(ua: &[u8]) -> bool {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    if find(ua, b"Opera").is_some() {
        return false;
    }
    let Some(at) = find(ua, b"MSIE ") else {
        return false;
    };
    let m = &ua[at..];
    if at + 7 >= ua.len() || m[6] != b'.' {
        return false;
    }
    match m[5] {
        b'4' | b'5' => true,
        b'6' => find(&m[8..], b"SV1").is_none(),
        _ => false,
    }
}

/// Every CR is followed by LF (the only line ends a request head may have are CRLF and LF).
fn no_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\r' || bytes.get(i + 1) == Some(&b'\n'))
}

/// Every line end is CRLF: what uwgate writes (a response head) must never hold a bare CR or LF.
fn crlf_only(bytes: &[u8]) -> bool {
    no_bare_cr(bytes)
        && bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r'))
}

// -------------------------------------------------------------------------------------------
// Chunked bodies.

/// `http::chunked`: (1) the input as raw wire bytes, decoded in one call, one byte per call and
/// in pieces chosen from the input, which must agree; (2) a valid chunked body built from the
/// input (sizes, hex case, leading zeros, extensions, trailers), which must decode to exactly
/// its payload and end exactly at its last CRLF, leaving the next request's bytes alone.
pub fn chunked(data: &[u8]) {
    let whole = decode_pieces(data, &mut std::iter::repeat(data.len().max(1)));
    let bytewise = decode_pieces(data, &mut std::iter::repeat(1));
    let mut seed = fnv(data);
    let mut random = std::iter::from_fn(|| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some((seed >> 59) as usize + 1)
    });
    let pieces = decode_pieces(data, &mut random);
    assert_eq!(whole, bytewise, "one call and one byte per call disagree");
    assert_eq!(whole, pieces, "one call and pieces disagree");
    assert_eq!(
        whole,
        reference_chunked(data),
        "the decoder and RFC 9112's grammar disagree on {:?}",
        String::from_utf8_lossy(data)
    );

    let (wire, payload) = build_chunked(&mut Input::new(data));
    let body_len = wire.len();
    let mut wire = wire;
    wire.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
    for step in [wire.len(), 1, 7] {
        let got = decode_pieces(&wire, &mut std::iter::repeat(step));
        assert_eq!(
            got,
            Decoding {
                payload: payload.clone(),
                end: Some(body_len),
                failed: false
            },
            "step {step}: {:?}",
            String::from_utf8_lossy(&wire)
        );
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Decoding {
    payload: Vec<u8>,
    /// Wire offset just after the final CRLF, once done.
    end: Option<usize>,
    failed: bool,
}

/// Feeds `wire` to a fresh decoder in pieces of the lengths `steps` yields, checking the
/// decoder's contract after every call.
fn decode_pieces(wire: &[u8], steps: &mut dyn Iterator<Item = usize>) -> Decoding {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Decoding {
        payload: Vec::new(),
        end: None,
        failed: false,
    };
    let mut pos = 0;
    while pos < wire.len() {
        let step = steps.next().unwrap_or(1).max(1);
        let piece = &wire[pos..wire.len().min(pos + step)];
        let mut buf = piece.to_vec();
        match decoder.decode_in_place(&mut buf) {
            Ok(d) => {
                assert!(
                    d.produced <= d.consumed && d.consumed <= piece.len(),
                    "{d:?} of {}",
                    piece.len()
                );
                out.payload.extend_from_slice(&buf[..d.produced]);
                assert_eq!(decoder.total(), out.payload.len() as u64);
                assert_eq!(
                    buf[d.consumed..],
                    piece[d.consumed..],
                    "bytes after the body"
                );
                if d.done {
                    assert!(decoder.is_done());
                    out.end = Some(pos + d.consumed);
                    let mut after = piece[d.consumed..].to_vec();
                    let again = decoder.decode_in_place(&mut after);
                    assert!(
                        matches!(again, Ok(a) if a.consumed == 0 && a.produced == 0 && a.done),
                        "a done decoder took more: {again:?}"
                    );
                    return out;
                }
                assert_eq!(d.consumed, piece.len(), "not done, yet bytes left");
                assert!(!decoder.is_done());
            }
            Err(status) => {
                assert_eq!(status, Status::BadRequest);
                assert!(
                    decoder.decode_in_place(&mut [b'0']).is_err(),
                    "a failed decoder recovered"
                );
                out.failed = true;
                out.payload.clear();
                return out;
            }
        }
        pos += piece.len();
    }
    out
}

/// RFC 9112 7.1's grammar read straight through, with uwgate's limits (sizes up to 2^60, size
/// lines up to 4096 bytes without the CR, trailer sections up to 8192 bytes, BWS only before
/// `;`): what the streaming decoder must make of the same bytes.
fn reference_chunked(wire: &[u8]) -> Decoding {
    const MAX_LINE: usize = uwgate::http::chunked::MAX_SIZE_LINE;
    const MAX_TRAILER: usize = uwgate::http::chunked::MAX_TRAILER_BYTES;
    let invalid = || Decoding {
        payload: Vec::new(),
        end: None,
        failed: true,
    };
    let incomplete = |payload: Vec<u8>| Decoding {
        payload,
        end: None,
        failed: false,
    };
    let is_text = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
    let mut payload = Vec::new();
    let mut i = 0;
    loop {
        // chunk-size [ BWS ; chunk-ext ] CRLF
        let line_start = i;
        let too_long = |i: usize| i + 1 - line_start > MAX_LINE;
        let mut size: u64 = 0;
        let mut digits = 0;
        let mut bws = false;
        let mut ext = false;
        loop {
            let Some(&b) = wire.get(i) else {
                return incomplete(payload);
            };
            if b == b'\r' {
                break;
            }
            if too_long(i) {
                return invalid();
            }
            let digit = (b as char).to_digit(16);
            match (digit, bws || ext) {
                (Some(d), false) => {
                    size = match size.checked_mul(16).map(|s| s + u64::from(d)) {
                        Some(s) if s <= 1 << 60 => s,
                        _ => return invalid(),
                    };
                    digits += 1;
                }
                _ if digits == 0 => return invalid(),
                _ if ext => {
                    if !is_text(b) {
                        return invalid();
                    }
                }
                _ if b == b' ' || b == b'\t' => bws = true,
                _ if b == b';' => ext = true,
                _ => return invalid(),
            }
            i += 1;
        }
        if digits == 0 || (bws && !ext) {
            return invalid();
        }
        i += 1; // the CR
        match wire.get(i) {
            None => return incomplete(payload),
            Some(b'\n') => i += 1,
            Some(_) => return invalid(),
        }
        if size == 0 {
            break;
        }
        // chunk-data CRLF
        let avail = (wire.len() - i).min(usize::try_from(size).unwrap_or(usize::MAX));
        payload.extend_from_slice(&wire[i..i + avail]);
        i += avail;
        if (avail as u64) < size {
            return incomplete(payload);
        }
        for want in [b'\r', b'\n'] {
            match wire.get(i) {
                None => return incomplete(payload),
                Some(&b) if b == want => i += 1,
                Some(_) => return invalid(),
            }
        }
    }
    // trailer-section CRLF: field lines `name:value`, then an empty line.
    let trailer_start = i;
    let next = |i: &mut usize| -> Option<Option<u8>> {
        let b = *wire.get(*i)?;
        *i += 1;
        Some((*i - trailer_start <= MAX_TRAILER).then_some(b))
    };
    loop {
        let mut b = match next(&mut i) {
            None => return incomplete(payload),
            Some(None) => return invalid(),
            Some(Some(b)) => b,
        };
        if b == b'\r' {
            return match next(&mut i) {
                None => incomplete(payload),
                Some(Some(b'\n')) => Decoding {
                    payload,
                    end: Some(i),
                    failed: false,
                },
                Some(_) => invalid(),
            };
        }
        let mut name = 0;
        while b != b':' {
            if !is_tchar(b) {
                return invalid();
            }
            name += 1;
            b = match next(&mut i) {
                None => return incomplete(payload),
                Some(None) => return invalid(),
                Some(Some(b)) => b,
            };
        }
        if name == 0 {
            return invalid();
        }
        loop {
            b = match next(&mut i) {
                None => return incomplete(payload),
                Some(None) => return invalid(),
                Some(Some(b)) => b,
            };
            if b == b'\r' {
                break;
            }
            if !is_text(b) {
                return invalid();
            }
        }
        match next(&mut i) {
            None => return incomplete(payload),
            Some(Some(b'\n')) => {}
            Some(_) => return invalid(),
        }
    }
}

/// A valid chunked body from `input`: (wire bytes, payload).
fn build_chunked(input: &mut Input<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut wire = Vec::new();
    let mut payload = Vec::new();
    let chunks = input.byte() % 8;
    for _ in 0..chunks {
        let style = input.byte();
        let data = input.sized();
        if data.is_empty() {
            continue; // a zero size would be the last chunk
        }
        size_line(&mut wire, data.len() as u64, style, input);
        wire.extend_from_slice(data);
        wire.extend_from_slice(b"\r\n");
        payload.extend_from_slice(data);
    }
    let style = input.byte();
    size_line(&mut wire, 0, style, input);
    for _ in 0..input.byte() % 3 {
        let name = token(input.bytes(8), b"X-T");
        let value: Vec<u8> = input
            .bytes(12)
            .iter()
            .map(|&b| {
                if b == b'\r' || b == b'\n' || (b < b' ' && b != b'\t') || b == 0x7f {
                    b'v'
                } else {
                    b
                }
            })
            .collect();
        wire.extend_from_slice(&name);
        wire.push(b':');
        wire.extend_from_slice(&value);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    (wire, payload)
}

/// A chunk-size line for `size`: `style` picks the hex case, up to 7 leading zeros and an
/// extension (with BWS before the `;` or not).
fn size_line(wire: &mut Vec<u8>, size: u64, style: u8, input: &mut Input<'_>) {
    for _ in 0..(style >> 5) {
        wire.push(b'0');
    }
    let hex = if style & 1 == 0 {
        format!("{size:x}")
    } else {
        format!("{size:X}")
    };
    wire.extend_from_slice(hex.as_bytes());
    if style & 2 != 0 {
        if style & 4 != 0 {
            wire.extend_from_slice(b" \t");
        }
        wire.push(b';');
        let ext: Vec<u8> = input
            .bytes(10)
            .iter()
            .map(|&b| {
                if b == b'\r' || b == b'\n' || (b < b' ' && b != b'\t') || b == 0x7f {
                    b'e'
                } else {
                    b
                }
            })
            .collect();
        wire.extend_from_slice(&ext);
    }
    wire.extend_from_slice(b"\r\n");
}

/// `raw` with every byte that is not a tchar replaced; `fallback` when that leaves nothing.
fn token(raw: &[u8], fallback: &[u8]) -> Vec<u8> {
    let t: Vec<u8> = raw
        .iter()
        .map(|&b| if is_tchar(b) { b } else { b'x' })
        .collect();
    if t.is_empty() {
        fallback.to_vec()
    } else {
        t
    }
}

// -------------------------------------------------------------------------------------------
// Range and If-Range.

/// `http::range::parse_range` against a reference reading of RFC 9110 14.2 with nginx's rules,
/// plus the result's own invariants; `if_range_matches` against the entity-tag rule and the
/// date round trip through `format_http_date` / `parse_http_date`.
pub fn range(data: &[u8]) {
    let mut input = Input::new(data);
    let size = match input.byte() % 4 {
        0 => u64::from(input.byte()),
        1 => u64::from(input.u16()),
        2 => input.u64(),
        _ => 0,
    };
    let if_range = input.short();
    let etag = input.short();
    let last_modified = input.u64() as i64;
    let max_ranges = match input.byte() % 4 {
        0 => 0,
        1 => 1,
        2 => usize::from(input.byte() % 20),
        _ => usize::MAX,
    };
    let header = input.rest();

    let got = parse_range(header, size, max_ranges);
    if let RangeSpec::Ranges(ranges) = &got {
        assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES.min(max_ranges));
        let mut covered = 0u64;
        for &(first, last) in ranges {
            assert!(first <= last && last < size, "({first}, {last}) of {size}");
            covered += last - first + 1;
        }
        assert!(covered <= size, "{covered} bytes of {size} served");
    }
    let got_plain = match &got {
        RangeSpec::Ignore => Ranges::Ignore,
        RangeSpec::Unsatisfiable => Ranges::Unsatisfiable,
        RangeSpec::Ranges(r) => Ranges::Serve(r.to_vec()),
    };
    assert_eq!(
        got_plain,
        reference_range(header, size, max_ranges),
        "{:?}",
        String::from_utf8_lossy(header)
    );

    // If-Range.
    let matches = if_range_matches(if_range, etag, last_modified);
    let value = trim_ows(if_range);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let strong = |t: &[u8]| t.len() >= 2 && t.starts_with(b"\"") && t.ends_with(b"\"");
        assert_eq!(matches, strong(value) && value == etag);
    } else {
        assert_eq!(matches, parse_http_date(value) == Some(last_modified));
    }
    const MIN_UNIX: i64 = -62_167_219_200;
    const MAX_UNIX: i64 = 253_402_300_799;
    if (MIN_UNIX..=MAX_UNIX).contains(&last_modified) {
        let mut text = [0u8; 29];
        format_http_date(last_modified, &mut text);
        assert_eq!(
            parse_http_date(&text),
            Some(last_modified),
            "{:?}",
            String::from_utf8_lossy(&text)
        );
        assert!(if_range_matches(&text, etag, last_modified));
    }
    if let Some(t) = parse_http_date(value) {
        assert!((MIN_UNIX..=MAX_UNIX).contains(&t), "{t}");
        let mut text = [0u8; 29];
        format_http_date(t, &mut text);
        assert_eq!(parse_http_date(&text), Some(t));
    }
}

/// [`RangeSpec`] without its fixed capacity.
#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    Ignore,
    Unsatisfiable,
    Serve(Vec<(u64, u64)>),
}

/// The reference for `parse_range`: nginx's range parser (see below), with uwgate's cap of
/// [`MAX_RANGES`] on top of `max_ranges`.
fn reference_range(header: &[u8], size: u64, max_ranges: usize) -> Ranges {
    // nginx's ngx_http_range_parse, read from its source: `bytes=` then a comma list of
    // `N-M`, `N-` or `-N`, spaces (only) around numbers and the dash but not after a suffix's
    // dash; any other byte is 416; a range is kept when it starts inside the file; a range
    // starting at 0 in an empty file, more than max_ranges ranges, or ranges covering more
    // than the file decline (the whole file); nothing kept is 416.
    let set = match header.get(..6) {
        Some(u) if u.eq_ignore_ascii_case(b"bytes=") && header.len() > 6 => &header[6..],
        _ => return Ranges::Ignore,
    };
    if max_ranges == 0 {
        return Ranges::Ignore;
    }
    let allowed = max_ranges.min(MAX_RANGES);
    let digits = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .filter(|&n| n <= i64::MAX as u64)
    };
    let spaces = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ').count() };
    let mut kept = Vec::new();
    let mut covered: u128 = 0;
    for element in set.split(|&b| b == b',') {
        let e = &element[spaces(element)..];
        let (start, end) = if let Some(rest) = e.strip_prefix(b"-") {
            let n_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let Some(n) = digits(&rest[..n_len]) else {
                return Ranges::Unsatisfiable;
            };
            if spaces(&rest[n_len..]) != rest.len() - n_len {
                return Ranges::Unsatisfiable;
            }
            (size.saturating_sub(n), size)
        } else {
            let a_len = e.iter().take_while(|b| b.is_ascii_digit()).count();
            let Some(first) = digits(&e[..a_len]) else {
                return Ranges::Unsatisfiable;
            };
            let after = &e[a_len..];
            let after = &after[spaces(after)..];
            let Some(rest) = after.strip_prefix(b"-") else {
                return Ranges::Unsatisfiable;
            };
            let rest = &rest[spaces(rest)..];
            if rest.is_empty() {
                (first, size)
            } else {
                let b_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                let Some(last) = digits(&rest[..b_len]) else {
                    return Ranges::Unsatisfiable;
                };
                if spaces(&rest[b_len..]) != rest.len() - b_len {
                    return Ranges::Unsatisfiable;
                }
                (first, last.saturating_add(1).min(size))
            }
        };
        if start < end {
            covered += u128::from(end - start);
            if covered > i64::MAX as u128 {
                return Ranges::Unsatisfiable;
            }
            if kept.len() == allowed {
                return Ranges::Ignore;
            }
            kept.push((start, end - 1));
        } else if start == 0 {
            return Ranges::Ignore;
        }
    }
    if kept.is_empty() {
        Ranges::Unsatisfiable
    } else if covered > u128::from(size) {
        Ranges::Ignore
    } else {
        Ranges::Serve(kept)
    }
}

// -------------------------------------------------------------------------------------------
// Path canonicalisation.

/// `http::path::canonicalize` against a reference (decode everything, split at `/`, fold the
/// segments on a stack), plus the traversal guard's invariants, idempotence, and the buffer
/// rule (an `out` as long as the input never gives 414; a shorter one gives the same or 414).
pub fn path(data: &[u8]) {
    let mut out = vec![0u8; data.len()];
    let got = canonicalize(data, &mut out).map(|n| out[..n].to_vec());
    assert_eq!(
        got,
        reference_canonical(data),
        "{:?}",
        String::from_utf8_lossy(data)
    );
    if let Ok(canonical) = &got {
        check_canonical(canonical);
        // Canonical already: canonicalising it again (its `%` escaped) changes nothing.
        let mut escaped = Vec::new();
        for &b in canonical {
            if b == b'%' {
                escaped.extend_from_slice(b"%25");
            } else {
                escaped.push(b);
            }
        }
        let mut again = vec![0u8; escaped.len()];
        let n = canonicalize(&escaped, &mut again).expect("a canonical path is refused");
        assert_eq!(&again[..n], &canonical[..]);
    }
    let short_len = (fnv(data) % (data.len() as u64 + 1)) as usize;
    let mut short = vec![0u8; short_len];
    let short_got = canonicalize(data, &mut short).map(|n| short[..n].to_vec());
    assert!(
        short_got == got || short_got == Err(Status::UriTooLong),
        "out of {short_len}: {short_got:?} against {got:?}"
    );
}

/// What the traversal guard promises about its output.
fn check_canonical(canonical: &[u8]) {
    assert!(canonical.starts_with(b"/"), "{canonical:?}");
    assert!(!canonical.contains(&0), "NUL in {canonical:?}");
    let inner = &canonical[1..];
    let segments: Vec<&[u8]> = inner.split(|&b| b == b'/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(
            !segment.is_empty() || last,
            "empty segment in {:?}",
            String::from_utf8_lossy(canonical)
        );
        assert!(
            *segment != b"." && *segment != b"..",
            "dot segment in {:?}",
            String::from_utf8_lossy(canonical)
        );
    }
}

fn reference_canonical(raw: &[u8]) -> Result<Vec<u8>, Status> {
    if raw.first() != Some(&b'/') {
        return Err(Status::BadRequest);
    }
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or(Status::BadRequest)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(Status::BadRequest);
            }
            let text = std::str::from_utf8(hex).map_err(|_| Status::BadRequest)?;
            decoded.push(u8::from_str_radix(text, 16).map_err(|_| Status::BadRequest)?);
            i += 3;
        } else {
            decoded.push(raw[i]);
            i += 1;
        }
    }
    if decoded.contains(&0) {
        return Err(Status::BadRequest);
    }
    let mut stack: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let mut trailing_slash = false;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *part {
            b"" | b"." => trailing_slash = last,
            b".." => {
                stack.pop().ok_or(Status::BadRequest)?;
                trailing_slash = last;
            }
            segment => {
                stack.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = vec![b'/'];
    out.extend_from_slice(&stack.join(&b'/'));
    if trailing_slash && !stack.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

// -------------------------------------------------------------------------------------------
// Configuration.

/// The ini file read: `config::parse_bytes` on the input with a fixed environment and a
/// resolver that answers from memory (so nothing outside the input is read), then
/// `Program::processes` (the second `%(process_num)d` expansion) for every program. Errors name
/// the file and a line of it, on one line; a valid config holds its documented invariants, and
/// reading it twice gives the same result.
pub fn config(data: &[u8]) {
    const FILE: &str = "/fuzz/etc/uwgate.ini";
    let env = |name: &str| match name {
        "HOME" => Some("/home/fuzz".to_string()),
        "PORT" => Some("8000".to_string()),
        "EMPTY" => Some(String::new()),
        "PERCENT" => Some("50%(here)s".to_string()),
        _ => None,
    };
    let resolve = |host: &str, port: u16| match host {
        "localhost" => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        _ => Err(format!("'{host}' is not in the fuzz resolver")),
    };
    let parsed = uwgate::config::parse_bytes(data, Path::new(FILE), &env, &resolve);
    let lines = data.split(|&b| b == b'\n').count();
    match &parsed {
        Err(e) => {
            assert_eq!(e.file, FILE);
            assert!(e.line <= lines, "line {} of {lines}", e.line);
            assert!(!e.message.is_empty());
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "a message on two lines: {shown:?}");
            let prefix = if e.line == 0 {
                format!("{FILE}: ")
            } else {
                format!("{FILE}:{}: ", e.line)
            };
            assert!(shown.starts_with(&prefix), "{shown:?}");
        }
        Ok(c) => {
            let g = &c.global;
            assert!(g.worker_connections >= 1 && g.buffer_pool >= 1);
            assert!(g.temp_path.is_absolute());
            assert!(g.pidfile.as_ref().is_none_or(|p| p.is_absolute()));
            for warning in &c.warnings {
                assert!(warning.starts_with(&format!("{FILE}:")), "{warning:?}");
                assert!(!warning.contains('\n'));
            }
            check_limits(&g.limits);
            let no_route = uwgate::config::NO_ROUTE;
            assert_eq!(c.limits(no_route, no_route), &g.limits);
            for (i, server) in c.servers.iter().enumerate() {
                assert!(!server.listen.is_empty());
                for addr in &server.proxy_protocol {
                    assert!(
                        server.listen.contains(addr),
                        "proxy_protocol on {addr}, not listened on"
                    );
                }
                check_realip(&server.realip);
                check_server_names(&server.server_name);
                check_limits(&server.limits);
                let i = u16::try_from(i).expect("a server index");
                assert_eq!(c.limits(i, no_route), &server.limits);
                for (j, location) in server.locations.iter().enumerate() {
                    check_realip(&location.realip);
                    assert!(location.prefix.starts_with('/'), "{:?}", location.prefix);
                    check_limits(&location.limits);
                    let j = u16::try_from(j).expect("a location index");
                    assert_eq!(c.limits(i, j), &location.limits);
                    match &location.handler {
                        uwgate::config::Handler::Static(s) => {
                            let (uwgate::config::StaticBase::Alias(p)
                            | uwgate::config::StaticBase::Root(p)) = &s.base;
                            assert!(p.is_absolute(), "{p:?}");
                            assert!(!s.index.is_empty());
                            for name in &s.index {
                                assert!(
                                    !name.is_empty()
                                        && !name.contains('/')
                                        && name != "."
                                        && name != "..",
                                    "index {name:?}"
                                );
                            }
                        }
                        uwgate::config::Handler::Uwsgi(u) => {
                            assert!(!u.upstreams.is_empty());
                            if let Some(s) = &u.script_name {
                                assert!(s.starts_with('/') && !s.ends_with('/'), "{s:?}");
                            }
                        }
                        uwgate::config::Handler::StubStatus | uwgate::config::Handler::Health => {}
                    }
                }
            }
            // `processes` never fails for a program that came from the parser, and process
            // names are unique across the file.
            let mut names = std::collections::HashSet::new();
            for program in &c.programs {
                assert!(program.directory.as_ref().is_none_or(|d| d.is_absolute()));
                let processes = program
                    .processes()
                    .unwrap_or_else(|e| panic!("[program:{}] parsed, then: {e}", program.name));
                assert_eq!(processes.len() as u64, u64::from(program.numprocs));
                for p in &processes {
                    assert!(!p.argv.is_empty(), "{p:?}");
                    assert!(
                        names.insert(p.name.clone()),
                        "process name {:?} twice",
                        p.name
                    );
                }
            }
        }
    }
    let again = uwgate::config::parse_bytes(data, Path::new(FILE), &env, &resolve);
    assert_eq!(parsed, again, "two readings differ");
}

/// A section's realip settings: networks with their host bits cleared, within their family's
/// prefix length, none twice.
fn check_realip(r: &uwgate::config::RealIp) {
    for (i, c) in r.from.iter().enumerate() {
        let max = if c.net.is_ipv4() { 32 } else { 128 };
        assert!(c.bits <= max, "{c:?}");
        assert!(c.contains(c.net), "{c:?} does not contain its own network");
        assert!(!r.from[..i].contains(c), "{c:?} twice");
    }
}

/// What every resolved set of limits holds: `max_ranges` within nginx's int range.
fn check_limits(limits: &uwgate::config::Limits) {
    assert!(
        limits.max_ranges.is_none_or(|n| n <= i32::MAX as u32),
        "{limits:?}"
    );
}

/// `server_name`: lowercased, no duplicates, no regular expression, a `*` only as a whole first
/// or last label (`*.example.com`, `www.example.*`).
fn check_server_names(names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        assert!(!name.is_empty() && !name.starts_with('~'), "{name:?}");
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(!names[..i].contains(name), "{name:?} twice");
        assert!(!name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/'));
        match name.matches('*').count() {
            0 => {}
            1 => assert!(
                (name.starts_with("*.") || name.ends_with(".*")) && name.len() > 2,
                "{name:?}"
            ),
            _ => panic!("server_name {name:?}"),
        }
    }
}

// -------------------------------------------------------------------------------------------
// The uwsgi response head.

/// `http::response_head::parse` on the input (its first byte picks the request's method,
/// version and keep-alive): spans inside the head, the same answer from the head's bytes alone
/// and "incomplete" from a prefix; then the client head written from it must be one valid
/// HTTP/1.1 head (httparse) with exactly one framing field that matches the framing chosen.
pub fn upstream_response(data: &[u8]) {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let head = match response::parse(buf) {
        Ok(Some(head)) => head,
        Ok(None) | Err(()) => {
            let mut line = [0u8; response::CHUNK_HEADER_MAX];
            let n = response::chunk_header(&mut line, buf.len());
            check_chunk_header(&line[..n], buf.len());
            return;
        }
    };
    let head_len = head.head_len as usize;
    assert!(head_len <= buf.len());
    let head_bytes = &buf[..head_len];
    assert!((200..=999).contains(&head.status), "status {}", head.status);
    check_span(head.reason, head_len, "reason");
    assert!(!head.reason(buf).contains(&b'\n') && !head.reason(buf).contains(&b'\r'));
    if let Some(x) = head.x_accel_redirect {
        check_span(x, head_len, "x-accel-redirect");
        assert!(!x.is_empty());
    }
    assert!(!(head.chunked && head.content_length.is_some()));
    assert_eq!(
        response::parse(head_bytes),
        Ok(Some(head)),
        "bytes after the head matter"
    );
    let cut = (fnv(head_bytes) % head_len as u64) as usize;
    assert_eq!(
        response::parse(&head_bytes[..cut]),
        Ok(None),
        "prefix of {cut}"
    );

    for (name, value) in response::header_fields(buf, &head) {
        assert!(!name.is_empty() && name.iter().all(|&b| is_tchar(b)));
        assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    }

    let head_request = flags & 1 != 0;
    let http11 = flags & 2 != 0;
    let keep_alive = flags & 4 != 0;
    let (framing, keep) = response::client_framing(&head, head_request, http11, keep_alive);
    if framing == Framing::Close {
        assert!(!keep);
    }
    let mut date = [0u8; 29];
    format_http_date(784_111_777, &mut date);
    let server: &[u8] = if flags & 8 != 0 { b"uwgate" } else { b"" };
    let mut out = vec![0u8; 3 * buf.len() + 256];
    let n = response::write_client_head(&mut out, buf, &head, &date, server, framing, keep)
        .expect("an out three times the upstream head is too small");
    check_client_head(&out[..n], &head, framing, keep);
    // A smaller `out`: the same bytes or `None`, never a cut head.
    let small_len = (fnv(buf) % (n as u64 + 1)) as usize;
    let mut small = vec![0u8; small_len];
    if let Some(m) =
        response::write_client_head(&mut small, buf, &head, &date, server, framing, keep)
    {
        assert_eq!(small[..m], out[..n]);
    }
    let mut kept = vec![0u8; out.len()];
    let k = response::write_fields_where(&mut kept, buf, &head, response::kept_on_accel_redirect)
        .expect("fields fit");
    assert!(k <= head_len * 2 + 2);

    let mut line = [0u8; response::CHUNK_HEADER_MAX];
    let len = head.content_length.unwrap_or(head_len as u64) as usize;
    let n = response::chunk_header(&mut line, len);
    check_chunk_header(&line[..n], len);
}

fn check_client_head(written: &[u8], head: &UpstreamHead, framing: Framing, keep_alive: bool) {
    // As many header slots as lines: the upstream may send any number of fields.
    let lines = written.iter().filter(|&&b| b == b'\n').count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Response::new(&mut headers);
    let status = parsed.parse(written);
    assert_eq!(
        status,
        Ok(httparse::Status::Complete(written.len())),
        "{:?}",
        String::from_utf8_lossy(written)
    );
    assert!(crlf_only(written), "a bare CR or LF in a written head");
    assert_eq!(parsed.version, Some(1));
    assert_eq!(parsed.code, Some(head.status));
    let count = |name: &str| {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    let value = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    assert_eq!(count("date"), 1);
    assert!(count("server") <= 1);
    assert_eq!(count("connection"), 1);
    assert_eq!(count("status"), 0);
    assert_eq!(count("keep-alive") + count("upgrade") + count("trailer"), 0);
    let keep_alive = keep_alive && framing != Framing::Close;
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    assert_eq!(value("connection"), Some(connection));
    match framing {
        Framing::Length(n) => {
            assert_eq!(count("content-length"), 1);
            assert_eq!(count("transfer-encoding"), 0);
            assert_eq!(value("content-length"), Some(n.to_string().as_bytes()));
        }
        Framing::Chunked => {
            assert_eq!(count("content-length"), 0);
            assert_eq!(count("transfer-encoding"), 1);
            assert_eq!(value("transfer-encoding"), Some(&b"chunked"[..]));
        }
        Framing::Close | Framing::NoBody => {
            assert_eq!(count("content-length") + count("transfer-encoding"), 0);
        }
    }
    for h in parsed.headers.iter() {
        assert!(
            !h.name.to_ascii_lowercase().starts_with("x-accel-"),
            "{} passed to the client",
            h.name
        );
    }
}

fn check_chunk_header(line: &[u8], len: usize) {
    assert!(line.len() <= response::CHUNK_HEADER_MAX && line.ends_with(b"\r\n"));
    let hex = std::str::from_utf8(&line[..line.len() - 2]).expect("hex digits");
    assert_eq!(usize::from_str_radix(hex, 16), Ok(len), "{hex:?}");
}

// -------------------------------------------------------------------------------------------
// The uwsgi request packet.

/// `upstream::uwsgi::packet::encode` on a request built from the input (every `RequestInfo` field,
/// header fields with CRLF or bare LF line ends, `uwsgi_param` lines, the size of `out`), for
/// heads `parse_head` accepts (the encoder's contract), decoded by an independent decoder:
/// the framing must be exact and the vars must be byte for byte the ones nginx's rules give
/// (computed here from the same inputs), or the encoder must refuse with 431 exactly when they
/// do not fit.
pub fn packet(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let method = input.short();
    let request_uri = input.short();
    let query = input.short();
    let path_info = input.short();
    let protocol: &[u8] = if flags & 1 != 0 {
        b"HTTP/1.1"
    } else {
        b"HTTP/1.0"
    };
    let content_type = input.short();
    let content_length = (flags & 2 != 0).then(|| input.u64());
    let remote_addr = ip(&mut input);
    let remote_port = input.u16();
    let server_addr = ip(&mut input);
    let server_port = input.u16();
    let server_name = input.short();
    let document_root = input.short();
    let script_name = (flags & 4 != 0).then(|| input.short());
    let https = flags & 8 != 0;
    let big = flags & 16 != 0;

    let mut params: Vec<(String, String)> = Vec::new();
    for _ in 0..input.byte() % 6 {
        let pick = input.byte();
        let key = match pick % 4 {
            0 => BUILTIN[usize::from(pick / 4) % BUILTIN.len()].to_string(),
            1 => format!("HTTP_{}", String::from_utf8_lossy(input.bytes(8))),
            _ => String::from_utf8_lossy(input.bytes(12)).into_owned(),
        };
        let mut value = String::from_utf8_lossy(input.short()).into_owned();
        if big && pick & 1 != 0 {
            value = value.repeat(1 << 11); // values near the 64 KiB limits
        }
        params.push((key, value));
    }
    // Each line ends in CRLF or a bare LF, as a client may send them (issue 10).
    let eol = |lf: bool| -> &'static [u8] {
        if lf {
            b"\n"
        } else {
            b"\r\n"
        }
    };
    let mut head = b"GET / HTTP/1.1".to_vec();
    head.extend_from_slice(eol(flags & 64 != 0));
    for _ in 0..input.byte() % 12 {
        let pick = input.byte();
        let name: &[u8] = match pick % 8 {
            0 => b"Cookie",
            1 => b"Host",
            2 => b"X-Forwarded-For",
            3 => b"Content-Type",
            4 => b"x_under_score",
            _ => input.bytes(10),
        };
        let value = input.short();
        head.extend_from_slice(name);
        head.extend_from_slice(b":");
        head.extend_from_slice(value);
        head.extend_from_slice(eol(pick & 0x80 != 0));
    }
    head.extend_from_slice(eol(flags & 128 != 0));
    let out_len = if flags & 32 != 0 {
        usize::from(input.u16())
    } else {
        packet::MAX_PACKET
    };

    let info = RequestInfo {
        method,
        request_uri,
        query,
        path_info,
        protocol,
        content_type,
        content_length,
        remote_addr,
        remote_port,
        server_addr,
        server_port,
        server_name,
        document_root,
        script_name,
        https,
    };
    // The encoder's contract: a head the request parser accepted.
    if !matches!(parse_head(&head), Ok(Some(h)) if h.head_len as usize == head.len()) {
        return;
    }
    let mut out = vec![0u8; out_len];
    let got = packet::encode(&mut out, &info, &head, &params);

    // What the encoder must have written.
    let mut headers = [httparse::EMPTY_HEADER; packet::MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let fields: Vec<(&[u8], &[u8])> = match request.parse(&head) {
        Ok(httparse::Status::Complete(_)) => request
            .headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value))
            .collect(),
        Ok(httparse::Status::Partial) | Err(_) => {
            panic!("httparse refuses a head parse_head accepted");
        }
    };
    let want = expected_vars(&info, &fields, &params);
    let fits_u16 = want
        .iter()
        .all(|(k, v)| k.len() <= 0xffff && v.len() <= 0xffff);
    let datasize: usize = want.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let fits = fits_u16 && datasize <= 0xffff && 4 + datasize <= out_len;
    match got {
        Ok(n) => {
            assert!(fits, "encoded {n} bytes that do not fit");
            assert_eq!(n, 4 + datasize);
            let vars = decode_packet(&out[..n]).expect("the packet does not decode");
            assert_eq!(vars.len(), want.len());
            for (i, ((k, v), (wk, wv))) in vars.iter().zip(&want).enumerate() {
                assert_eq!(
                    (k, v),
                    (&wk.as_slice(), &wv.as_slice()),
                    "var {i}: {:?} = {:?}, want {:?} = {:?}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v),
                    String::from_utf8_lossy(wk),
                    String::from_utf8_lossy(wv)
                );
            }
        }
        Err(status) => {
            assert_eq!(status, Status::RequestHeaderFieldsTooLarge);
            assert!(
                !fits,
                "refused vars that fit: {datasize} bytes in {out_len}"
            );
        }
    }
}

/// The built-in vars in nginx's `uwsgi_params` order (plus SERVER_ADDR and SCRIPT_NAME).
const BUILTIN: &[&str] = &[
    "QUERY_STRING",
    "REQUEST_METHOD",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "REQUEST_URI",
    "PATH_INFO",
    "DOCUMENT_ROOT",
    "SERVER_PROTOCOL",
    "REQUEST_SCHEME",
    "HTTPS",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_ADDR",
    "SERVER_PORT",
    "SERVER_NAME",
    "SCRIPT_NAME",
];

fn ip(input: &mut Input<'_>) -> IpAddr {
    match input.byte() % 3 {
        0 => IpAddr::V4(Ipv4Addr::from(input.u64() as u32)),
        1 => {
            let hi = u128::from(input.u64());
            IpAddr::V6(Ipv6Addr::from(hi << 64 | u128::from(input.u64())))
        }
        _ => IpAddr::V6(Ipv4Addr::from(input.u64() as u32).to_ipv6_mapped()),
    }
}

/// The vars nginx's rules give for a request (see `upstream::packet`'s module header).
fn expected_vars(
    info: &RequestInfo<'_>,
    fields: &[(&[u8], &[u8])],
    params: &[(String, String)],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let last_param = |name: &str| params.iter().rev().find(|(k, _)| k == name);
    let show_ip = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    };
    let (script, path_info) = match info.script_name {
        Some(s) => {
            let mut s = s;
            while let Some(shorter) = s.strip_suffix(b"/") {
                s = shorter;
            }
            match info.path_info.strip_prefix(s) {
                Some(rest) if !s.is_empty() && (rest.is_empty() || rest[0] == b'/') => {
                    (Some(s), rest)
                }
                _ => (None, info.path_info),
            }
        }
        None => (None, info.path_info),
    };
    for &name in BUILTIN {
        if let Some((_, v)) = last_param(name) {
            vars.push((name.into(), v.clone().into_bytes()));
            continue;
        }
        let value: Option<Vec<u8>> = match name {
            "QUERY_STRING" => Some(info.query.to_vec()),
            "REQUEST_METHOD" => Some(info.method.to_vec()),
            "CONTENT_TYPE" => Some(info.content_type.to_vec()),
            "CONTENT_LENGTH" => Some(
                info.content_length
                    .map_or(String::new(), |n| n.to_string())
                    .into_bytes(),
            ),
            "REQUEST_URI" => Some(info.request_uri.to_vec()),
            "PATH_INFO" => Some(path_info.to_vec()),
            "DOCUMENT_ROOT" => Some(info.document_root.to_vec()),
            "SERVER_PROTOCOL" => Some(info.protocol.to_vec()),
            "REQUEST_SCHEME" => Some(if info.https { &b"https"[..] } else { b"http" }.to_vec()),
            "HTTPS" => info.https.then(|| b"on".to_vec()),
            "REMOTE_ADDR" => Some(show_ip(info.remote_addr).into_bytes()),
            // nginx's $remote_port is empty when realip took an address without a port.
            "REMOTE_PORT" if info.remote_port == 0 => Some(Vec::new()),
            "REMOTE_PORT" => Some(info.remote_port.to_string().into_bytes()),
            "SERVER_ADDR" => Some(show_ip(info.server_addr).into_bytes()),
            "SERVER_PORT" => Some(info.server_port.to_string().into_bytes()),
            "SERVER_NAME" => Some(info.server_name.to_vec()),
            "SCRIPT_NAME" => script.map(<[u8]>::to_vec),
            _ => None,
        };
        if let Some(value) = value {
            vars.push((name.into(), value));
        }
    }
    let var_name = |name: &[u8]| -> Vec<u8> {
        let mut key = b"HTTP_".to_vec();
        key.extend(name.iter().map(|&b| {
            if b == b'-' {
                b'_'
            } else {
                b.to_ascii_uppercase()
            }
        }));
        key
    };
    for (i, (name, value)) in fields.iter().enumerate() {
        let passable = !name.is_empty()
            && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && !["content-type", "content-length", "transfer-encoding"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        if !passable
            || fields[..i]
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let key = var_name(name);
        if params.iter().any(|(k, _)| k.as_bytes() == key.as_slice()) {
            continue;
        }
        let sep: &[u8] = if name.eq_ignore_ascii_case(b"cookie") {
            b"; "
        } else {
            b", "
        };
        let mut merged = trim_ows(value).to_vec();
        for (_, later) in fields[i + 1..]
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            merged.extend_from_slice(sep);
            merged.extend_from_slice(trim_ows(later));
        }
        vars.push((key, merged));
    }
    for (i, (k, v)) in params.iter().enumerate() {
        if BUILTIN.contains(&k.as_str()) || params[i + 1..].iter().any(|(l, _)| l == k) {
            continue;
        }
        vars.push((k.clone().into_bytes(), v.clone().into_bytes()));
    }
    vars
}

/// Decoded vars, borrowed from the packet.
type Vars<'p> = Vec<(&'p [u8], &'p [u8])>;

/// The independent decoder: modifier1 0, datasize (u16 LE) equal to the rest, modifier2 0,
/// then `u16 LE length, key, u16 LE length, value` pairs that end exactly at the end.
fn decode_packet(p: &[u8]) -> Result<Vars<'_>, String> {
    let (header, mut rest) = p.split_at_checked(4).ok_or("shorter than its header")?;
    if header[0] != 0 || header[3] != 0 {
        return Err(format!("modifiers {} and {}", header[0], header[3]));
    }
    let datasize = usize::from(u16::from_le_bytes([header[1], header[2]]));
    if datasize != rest.len() {
        return Err(format!("datasize {datasize} for {} bytes", rest.len()));
    }
    let mut vars = Vec::new();
    fn field<'p>(rest: &mut &'p [u8]) -> Result<&'p [u8], String> {
        let (len, after) = rest.split_at_checked(2).ok_or("a cut length")?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let (bytes, after) = after.split_at_checked(len).ok_or("a cut field")?;
        *rest = after;
        Ok(bytes)
    }
    while !rest.is_empty() {
        let key = field(&mut rest)?;
        let value = field(&mut rest)?;
        vars.push((key, value));
    }
    Ok(vars)
}

// -------------------------------------------------------------------------------------------
// Shared helpers.

/// Reads a structured input from fuzz bytes; past the end it yields zeros and empty slices, so
/// every input is some valid recipe.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    /// Up to `n` bytes.
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// A length byte (0..48), then up to that many bytes.
    fn short(&mut self) -> &'a [u8] {
        let n = self.byte() % 48;
        self.bytes(n.into())
    }

    /// A 10-bit length, then up to that many bytes.
    fn sized(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()) | usize::from(self.byte() & 0x3) << 8;
        self.bytes(n)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// FNV-1a: a deterministic choice (a split point, a buffer size) from the input itself.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

// -------------------------------------------------------------------------------------------
// The PROXY protocol header.

/// `http::proxy_protocol::parse` on the input as the first bytes of a connection; the first byte
/// picks the most the caller can hold (as small as 16 bytes, as large as a head buffer). A
/// complete header lies within the input and the limit, every shorter prefix of it is
/// "partial", the bytes after it change nothing, and its addresses written back in the
/// header's own format give the header's bytes (a reference encoder for v1 TCP4 and for v2).
pub fn proxy_protocol(data: &[u8]) {
    let Some((&size, input)) = data.split_first() else {
        return;
    };
    let max_len = 16 + usize::from(size) * 8;
    let h = match pp::parse(input, max_len) {
        Ok(Parsed::Complete(h)) => h,
        Ok(Parsed::Partial) => {
            // Partial means a valid beginning: never longer than a header may be.
            assert!(
                input.len() < max_len,
                "partial at {} of {max_len}",
                input.len()
            );
            return;
        }
        Err(_) => return,
    };
    assert!(
        h.len <= input.len() && h.len <= max_len,
        "{h:?} of {}",
        input.len()
    );
    let head = &input[..h.len];
    assert_eq!(
        pp::parse(head, max_len),
        Ok(Parsed::Complete(h)),
        "the header alone"
    );
    for cut in 0..h.len {
        assert_eq!(
            pp::parse(&head[..cut], max_len),
            Ok(Parsed::Partial),
            "prefix {cut} of {h:?}"
        );
    }
    match h.version {
        1 => {
            assert!(head.starts_with(b"PROXY ") && head.ends_with(b"\r\n") && h.len <= pp::V1_MAX);
            let line = &head[6..h.len - 2];
            assert!(!line.contains(&b'\r') && !line.contains(&b'\n'), "one line");
            match h.addresses {
                None => assert!(
                    line.starts_with(b"UNKNOWN"),
                    "{:?}",
                    String::from_utf8_lossy(line)
                ),
                Some((src, dst)) if src.is_ipv4() => {
                    let want = format!(
                        "TCP4 {} {} {} {}",
                        src.ip(),
                        dst.ip(),
                        src.port(),
                        dst.port()
                    );
                    assert_eq!(line, want.as_bytes(), "TCP4 is canonical text");
                }
                Some((src, dst)) => {
                    assert!(line.starts_with(b"TCP6 ") && dst.is_ipv6(), "{src} {dst}");
                    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
                    assert_eq!(words.len(), 5);
                    assert_eq!(words[3], src.port().to_string().as_bytes());
                    assert_eq!(words[4], dst.port().to_string().as_bytes());
                }
            }
        }
        _ => {
            assert!(head.starts_with(&pp::V2_SIGNATURE) && h.len >= 16);
            assert_eq!(
                h.len,
                16 + usize::from(u16::from_be_bytes([head[14], head[15]]))
            );
            assert_eq!(head[12] >> 4, 2);
            let block = &head[16..];
            match (head[12] & 0x0f, h.addresses) {
                (0, addresses) => assert_eq!(addresses, None, "LOCAL names no address"),
                (_, None) => assert!(matches!(head[13], 0x00 | 0x31 | 0x32), "{:#x}", head[13]),
                (_, Some((src, dst))) => {
                    let mut want = Vec::new();
                    match (src.ip(), dst.ip()) {
                        (IpAddr::V4(s), IpAddr::V4(d)) => {
                            assert!(matches!(head[13], 0x11 | 0x12));
                            want.extend_from_slice(&s.octets());
                            want.extend_from_slice(&d.octets());
                        }
                        (IpAddr::V6(s), IpAddr::V6(d)) => {
                            assert!(matches!(head[13], 0x21 | 0x22));
                            want.extend_from_slice(&s.octets());
                            want.extend_from_slice(&d.octets());
                        }
                        _ => panic!("mixed families {src} {dst}"),
                    }
                    want.extend_from_slice(&src.port().to_be_bytes());
                    want.extend_from_slice(&dst.port().to_be_bytes());
                    assert!(block.starts_with(&want), "the address block re-encodes");
                }
            }
        }
    }
    let mut longer = input.to_vec();
    longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        pp::parse(&longer, max_len),
        Ok(Parsed::Complete(h)),
        "bytes after it"
    );
}

// -------------------------------------------------------------------------------------------
// realip: the client address a trusted peer names.

/// `http::realip::forwarded_addr` on header values from the input (lines after the first
/// byte, which picks `recursive` and whom the peer trusts), checked against a reference walk
/// written here from nginx's rules: the rightmost element while the current address is
/// trusted, one step unless recursive, fields walked last to first.
pub fn realip(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let recursive = flags & 1 == 1;
    let trust_v6 = flags & 2 == 2;
    let trusted = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 10 || v4.is_loopback(),
        IpAddr::V6(v6) => trust_v6 && (v6.is_loopback() || v6.segments()[0] == 0xfd00),
    };
    let values: Vec<&[u8]> = rest.split(|&b| b == b'\n').take(40).collect();
    let peer = if flags & 4 == 4 {
        SocketAddr::from(([192, 0, 2, 1], 1))
    } else {
        SocketAddr::from(([10, 0, 0, 1], 1))
    };
    let got = forwarded_addr(peer, &values, &trusted, recursive);
    assert_eq!(
        got,
        reference_realip(peer, &values, &trusted, recursive),
        "{values:?}"
    );
    if let Some(addr) = got {
        // Every answer is an element of some value, as written.
        let text = addr.ip().to_string();
        assert!(
            values.iter().any(|v| v
                .split(|&b| b == b',' || b == b' ')
                .any(|e| parse_addr_port(e) == Some(addr) || e == text.as_bytes())),
            "{addr} is not an element"
        );
    }
}

/// nginx's walk, written over lists: each field split at ',' and ' ' (empty pieces between
/// elements skipped, as nginx skips runs of separators), elements taken from the right while
/// the current address is trusted; a field that begins with a separator ends the walk once its
/// elements are taken (nginx then reads the separator as an element and stops there).
fn reference_realip(
    peer: SocketAddr,
    values: &[&[u8]],
    trusted: &dyn Fn(IpAddr) -> bool,
    recursive: bool,
) -> Option<SocketAddr> {
    if !trusted(peer.ip()) {
        return None;
    }
    let is_sep = |b: &u8| *b == b',' || *b == b' ';
    let walked: &[&[u8]] = if recursive {
        values
    } else {
        values.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let mut current = peer;
    let mut found = false;
    for value in walked.iter().rev() {
        let pieces: Vec<&[u8]> = value.split(is_sep).filter(|p| !p.is_empty()).collect();
        if pieces.is_empty() {
            return found.then_some(current);
        }
        for piece in pieces.iter().rev() {
            if !trusted(current.ip()) {
                return found.then_some(current);
            }
            match parse_addr_port(piece) {
                Some(a) => {
                    current = a;
                    found = true;
                }
                None => return found.then_some(current),
            }
            if !recursive {
                return Some(current);
            }
        }
        if value.first().is_some_and(is_sep) {
            return Some(current);
        }
    }
    found.then_some(current)
}
