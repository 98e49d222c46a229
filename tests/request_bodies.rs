//! Request bodies where the server reads them: a `uwsgi_pass` location, which reads the whole
//! body before taking a worker. Static locations never read a body (they answer, then close), so
//! this is where issue 2's body rules are observable: chunked decoding and its malformations
//! (bad/empty sizes, LF in an extension, missing CRLF, overflow) → 400 and close,
//! client_max_body_size on chunked bodies → 413, `Expect: 100-continue` → 100 then the final
//! answer, client_body_timeout and client_body_min_rate cut stalled or trickling bodies; the
//! body limits are the uwsgi location's own when it sets them.
//! The upstream is a tiny fake uwsgi server owned by the test that echoes the body it got and
//! counts its connections, so "rejected before the upstream was contacted" is checked too.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fake uwsgi upstream: reads one packet (header, vars, CONTENT_LENGTH bytes of body) per
/// connection and answers `200` with the body it received, then closes.
struct FakeUwsgi {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUwsgi {
    fn start() -> FakeUwsgi {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind fake uwsgi");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        std::thread::spawn(move || serve_one(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeUwsgi {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUwsgi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut s: std::net::TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = [0u8; 4];
    if s.read_exact(&mut head).is_err() {
        return;
    }
    let size = u16::from_le_bytes([head[1], head[2]]) as usize;
    let mut vars = vec![0u8; size];
    if s.read_exact(&mut vars).is_err() {
        return;
    }
    let mut content_length = 0usize;
    let mut i = 0usize;
    while i + 2 <= vars.len() {
        let kl = u16::from_le_bytes([vars[i], vars[i + 1]]) as usize;
        let k = &vars[i + 2..(i + 2 + kl).min(vars.len())];
        i += 2 + kl;
        if i + 2 > vars.len() {
            break;
        }
        let vl = u16::from_le_bytes([vars[i], vars[i + 1]]) as usize;
        let v = &vars[i + 2..(i + 2 + vl).min(vars.len())];
        i += 2 + vl;
        if k == b"CONTENT_LENGTH" {
            content_length = String::from_utf8_lossy(v).parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length];
    if s.read_exact(&mut body).is_err() {
        return;
    }
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let _ = s.write_all(&out);
}

/// A server whose `/app/` forwards to `up`, plus `/static/` for the smuggling probe.
fn app(name: &str, up: &FakeUwsgi, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/other.txt", "OTHER-FILE");
    let text = ini(
        global_extra,
        &format!(
            "[location:/app/]\nuwsgi_pass = 127.0.0.1:{}\nuwsgi_connect_timeout = 60s\n\
             uwsgi_read_timeout = 60s\nuwsgi_send_timeout = 60s\n\n\
             [location:/static/]\nalias = {{DIR}}/static/\n",
            up.port
        ),
    );
    let s = Server::start_in(&t, &text);
    (t, s)
}

const SMUGGLED: &str = "GET /static/other.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
const CHUNKED_HEAD: &str =
    "POST /app/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Sends `CHUNKED_HEAD + chunked_body + SMUGGLED`; expects `status`, a close, no smuggled
/// answer, and the upstream never contacted.
fn assert_bad_body(s: &Server, up: &FakeUwsgi, chunked_body: &str, status: u16) {
    let raw = format!("{}{}{}", CHUNKED_HEAD, chunked_body, SMUGGLED);
    let mut c = Client::connect(s.port);
    let _ = c.try_send(raw.as_bytes());
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{:?}: no response: {}", chunked_body, e));
    let (rest, closed) = c.read_until_close(Duration::from_secs(3));
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("OTHER-FILE"),
        "SMUGGLED after body {:?}: {:?}",
        chunked_body,
        rest
    );
    assert!(closed.is_some(), "left open after body {:?}", chunked_body);
    assert_eq!(
        r.status, status,
        "body {:?} got {}",
        chunked_body, r.head_raw
    );
    assert_eq!(
        up.connections(),
        0,
        "upstream contacted for a malformed body {:?}",
        chunked_body
    );
}

#[test]
fn valid_chunked_body_is_decoded_exactly() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("chunked_ok", &up, "");
    let r = request(
        s.port,
        format!(
            "{}5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n",
            CHUNKED_HEAD.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"helloabcdefghijklmnopqrstuvwxyz");
}

#[test]
fn bare_lf_head_with_a_body_is_forwarded_exactly() {
    // A `printf 'POST ...\n...\n\n' | nc` client: head lines end in LF, the body is bytes.
    let up = FakeUwsgi::start();
    let (_t, s) = app("lf_head_body", &up, "");
    let mut c = Client::connect(s.port);
    c.send(b"POST /app/echo HTTP/1.1\nHost: localhost\nContent-Length: 7\n\nab\r\ncd\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"ab\r\ncd\n");
    // And the next LF request on the same connection.
    c.send(
        b"POST /app/echo HTTP/1.1\nHost: localhost\nContent-Length: 3\nConnection: close\n\nxyz",
    );
    assert_eq!(c.read_response().body, b"xyz");
    // A chunked body stays strict CRLF even after an LF head.
    let mut c = Client::connect(s.port);
    let _ = c.try_send(
        b"POST /app/echo HTTP/1.1\nHost: localhost\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
    );
    let r = c.try_read_response(false).expect("a response");
    assert_eq!(r.status, 400, "{}", r.head_raw);
}

#[test]
fn bad_chunk_size_is_400_and_closes() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("bad_chunk", &up, "");
    assert_bad_body(&s, &up, "zz\r\nhello\r\n0\r\n\r\n", 400);
    assert_bad_body(&s, &up, "-5\r\nhello\r\n0\r\n\r\n", 400);
    assert_bad_body(&s, &up, "0x5\r\nhello\r\n0\r\n\r\n", 400);
}

#[test]
fn empty_chunk_size_is_400() {
    // httparse's chunk-size parser accepts an empty size; the wrapper must not.
    let up = FakeUwsgi::start();
    let (_t, s) = app("empty_chunk", &up, "");
    assert_bad_body(&s, &up, "\r\nhello\r\n0\r\n\r\n", 400);
    assert_bad_body(&s, &up, ";ext\r\nhello\r\n0\r\n\r\n", 400);
}

#[test]
fn lf_inside_chunk_extension_is_400() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("lf_chunk_ext", &up, "");
    assert_bad_body(&s, &up, "5;a=b\nxx\r\nhello\r\n0\r\n\r\n", 400);
}

#[test]
fn bare_lf_after_chunk_size_is_400() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("lf_chunk_size", &up, "");
    assert_bad_body(&s, &up, "5\nhello\r\n0\r\n\r\n", 400);
}

#[test]
fn chunk_data_not_followed_by_crlf_is_400() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("chunk_no_crlf", &up, "");
    assert_bad_body(&s, &up, "5\r\nhelloXX0\r\n\r\n", 400);
}

#[test]
fn chunk_size_overflow_is_400() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("chunk_overflow", &up, "client_max_body_size = 0");
    assert_bad_body(
        &s,
        &up,
        &format!("1{}\r\nhello\r\n0\r\n\r\n", "0".repeat(20)),
        400,
    );
}

#[test]
fn chunked_body_over_client_max_body_size_is_413() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("chunked_413", &up, "client_max_body_size = 1k");
    let mut body = String::new();
    for _ in 0..5 {
        body.push_str(&format!("400\r\n{}\r\n", "y".repeat(1024)));
    }
    body.push_str("0\r\n\r\n");
    let mut c = Client::connect(s.port);
    let _ = c.try_send(format!("{}{}", CHUNKED_HEAD, body).as_bytes());
    let r = c.try_read_response(false).expect("a 413 response");
    assert_eq!(r.status, 413, "{}", r.head_raw);
    assert_eq!(
        up.connections(),
        0,
        "upstream contacted for an oversized body"
    );
}

/// A server whose `/app/` and `/upload/` both forward to `up`; `/upload/` has `upload_keys`.
fn app_with_upload(
    name: &str,
    up: &FakeUwsgi,
    global_extra: &str,
    upload_keys: &str,
) -> (TempTree, Server) {
    let t = TempTree::new(name);
    let text = ini(
        global_extra,
        &format!(
            "[location:/app/]\nuwsgi_pass = 127.0.0.1:{port}\n\n\
             [location:/upload/]\nuwsgi_pass = 127.0.0.1:{port}\n{upload_keys}\n",
            port = up.port
        ),
    );
    let s = Server::start_in(&t, &text);
    (t, s)
}

#[test]
fn client_max_body_size_of_a_uwsgi_location_applies_to_its_bodies() {
    let up = FakeUwsgi::start();
    let (_t, s) = app_with_upload(
        "body_size_upload",
        &up,
        "client_max_body_size = 1k",
        "client_max_body_size = 8k",
    );
    let chunked = |path: &str, len: usize| {
        request(
            s.port,
            format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{}\r\n0\r\n\r\n",
                "u".repeat(len)
            )
            .as_bytes(),
        )
    };
    let sized = |path: &str, len: usize| {
        request(
            s.port,
            format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{}",
                "u".repeat(len)
            )
            .as_bytes(),
        )
    };
    let r = chunked("/upload/x", 5000);
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body.len(), 5000);
    assert_eq!(sized("/upload/x", 5000).body.len(), 5000);
    assert_eq!(chunked("/upload/x", 9000).status, 413);
    assert_eq!(sized("/upload/x", 9000).status, 413);
    assert_eq!(chunked("/app/x", 2000).status, 413);
    assert_eq!(sized("/app/x", 2000).status, 413);
}

#[test]
fn client_body_timeout_of_a_uwsgi_location_cuts_its_stalled_bodies() {
    let up = FakeUwsgi::start();
    let (_t, s) = app_with_upload(
        "body_timeout_upload",
        &up,
        "client_body_timeout = 60s\nclient_body_min_rate = 0",
        "client_body_timeout = 1s",
    );
    let stalled = |path: &str, bound: Duration| {
        let mut c = Client::connect(s.port);
        c.send(
            format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789"
            )
            .as_bytes(),
        );
        let start = Instant::now();
        c.wait_closed(bound).map(|_| start.elapsed())
    };
    let took = stalled("/upload/x", Duration::from_secs(6)).expect("stalled upload kept open");
    assert!(took <= Duration::from_millis(3500), "closed after {took:?}");
    assert_eq!(stalled("/app/x", Duration::from_secs(3)), None);
    assert_eq!(up.connections(), 0);
}

#[test]
fn chunked_body_at_client_max_body_size_is_forwarded() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("chunked_at_limit", &up, "client_max_body_size = 1k");
    let r = request(
        s.port,
        format!(
            "POST /app/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n400\r\n{}\r\n0\r\n\r\n",
            "z".repeat(1024)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body.len(), 1024);
}

#[test]
fn expect_100_continue_gets_interim_100_then_final_response() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("expect_100", &up, "");
    let mut c = Client::connect(s.port);
    c.send(
        b"POST /app/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    );
    c.set_read_timeout(Duration::from_secs(3));
    let interim = c
        .try_read_response(false)
        .expect("no 100 Continue while the client held its body back");
    assert_eq!(interim.status, 100, "{}", interim.head_raw);
    c.send(b"hello");
    c.set_read_timeout(IO_TIMEOUT);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"hello");
}

#[test]
fn expect_100_continue_over_body_limit_gets_413_without_100() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("expect_413", &up, "client_max_body_size = 1k");
    let mut c = Client::connect(s.port);
    c.send(
        b"POST /app/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(
        r.status, 413,
        "must refuse before inviting the body: {}",
        r.head_raw
    );
}

#[test]
fn expect_100_continue_is_not_sent_to_http10_clients() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("expect_http10", &up, "");
    let mut c = Client::connect(s.port);
    c.send(b"POST /app/echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let _ = c.is_silent_for(Duration::from_millis(500));
    let early = String::from_utf8_lossy(c.pending()).into_owned();
    assert!(
        !early.contains(" 100 "),
        "sent 100 to HTTP/1.0: {:?}",
        early
    );
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, b"hello");
}

#[test]
fn client_body_timeout_cuts_a_stalled_body() {
    let up = FakeUwsgi::start();
    let (_t, s) = app("body_stalled", &up, "client_body_timeout = 1s");
    let mut c = Client::connect(s.port);
    let start = Instant::now();
    c.send(b"POST /app/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789");
    let closed = c.wait_closed(Duration::from_secs(8));
    let took = start.elapsed();
    assert!(closed.is_some(), "stalled body still open after {:?}", took);
    assert!(
        took >= Duration::from_millis(700),
        "closed before the timeout: {:?}",
        took
    );
    assert!(
        took <= Duration::from_millis(3500),
        "closed after {:?}",
        took
    );
    let got = String::from_utf8_lossy(c.pending()).into_owned();
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 408"),
        "unexpected answer: {:?}",
        got
    );
    assert_eq!(
        up.connections(),
        0,
        "upstream contacted for an incomplete body"
    );
}

#[test]
fn client_body_min_rate_cuts_a_trickling_body() {
    // 20 bytes every 200 ms = 100 B/s: every read is far inside client_body_timeout (1 s), but
    // the average is far below client_body_min_rate (1000 B/s).
    let up = FakeUwsgi::start();
    let (_t, s) = app(
        "body_min_rate",
        &up,
        "client_body_timeout = 1s\nclient_body_min_rate = 1000\nclient_max_body_size = 1m",
    );
    let mut c = Client::connect(s.port);
    let start = Instant::now();
    c.send(b"POST /app/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n");
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(10) {
        if c.try_send(&[b'z'; 20]).is_err() {
            closed = true;
            break;
        }
        if c.wait_closed(Duration::from_millis(200)).is_some() {
            closed = true;
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        closed,
        "trickling body (100 B/s) still open after {:?}",
        took
    );
    assert!(
        took <= Duration::from_millis(5000),
        "closed only after {:?}",
        took
    );
    assert_eq!(
        up.connections(),
        0,
        "upstream contacted for an incomplete body"
    );
}

#[test]
fn body_above_client_body_min_rate_is_not_cut() {
    // 1000 bytes every 200 ms = 5000 B/s for 2 s, min rate 1000 B/s, grace 1 s.
    let up = FakeUwsgi::start();
    let (_t, s) = app(
        "body_above_min_rate",
        &up,
        "client_body_timeout = 1s\nclient_body_min_rate = 1000\nclient_max_body_size = 1m",
    );
    let mut c = Client::connect(s.port);
    c.send(
        b"POST /app/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..10 {
        c.send(&[b'q'; 1000]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    assert_eq!(r.body, vec![b'q'; 10000]);
}
