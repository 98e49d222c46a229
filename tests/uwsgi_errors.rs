//! Upstream failures: 502 when uWSGI is down or answers garbage, 504 on connect/read/send
//! timeouts, uWSGI's `buffer-size` refusal named in the log — each logged with the upstream's
//! address, as nginx does.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use std::time::{Duration, Instant};
use uwsgi_support::{gate_ini, get, logs, Fake, FakeUpstream, Uwsgi, UwsgiOpts};

/// `GET /pid` with a header that makes the uwsgi vars about `bytes` long.
fn get_with_big_vars(port: u16, bytes: usize) -> common::Response {
    common::request(
        port,
        format!(
            "GET /pid HTTP/1.1\r\nHost: localhost:{}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            port,
            "p".repeat(bytes)
        )
        .as_bytes(),
    )
}

#[test]
fn uwsgi_down_gives_502_and_the_log_names_the_address() {
    let dead = common::free_port(); // nothing listens there
    let addr = format!("127.0.0.1:{}", dead);
    let gate = common::Server::start(&gate_ini("", std::slice::from_ref(&addr), ""));
    let r = get(gate.port, "/pid");
    assert_eq!(r.status, 502, "{}{}", r.head_raw, gate.stderr());
    assert!(
        gate.wait_stderr_contains(&addr, Duration::from_secs(3)),
        "no log line names {}:\n{}",
        addr,
        gate.stderr()
    );
    // The server keeps serving: static files still work.
    let r = get(gate.port, "/static/css/site.css");
    assert_eq!(r.status, 200);
}

#[test]
fn a_missing_unix_socket_gives_502_and_the_log_names_the_path() {
    let tree = common::TempTree::new("nosock");
    let sock = tree.join("nothing-here.sock");
    let gate = common::Server::start(&gate_ini("", &[format!("unix:{}", sock.display())], ""));
    let r = get(gate.port, "/pid");
    assert_eq!(r.status, 502, "{}{}", r.head_raw, gate.stderr());
    let path = sock.to_string_lossy().into_owned();
    assert!(
        gate.wait_stderr_contains(&path, Duration::from_secs(3)),
        "no log line names {}:\n{}",
        path,
        gate.stderr()
    );
}

#[test]
fn a_view_slower_than_uwsgi_read_timeout_gives_504() {
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], "uwsgi_read_timeout = 1s\n"));
    let t = Instant::now();
    let r = get(gate.port, "/slow?secs=5");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3500),
        "504 after {:?}, read timeout is 1s",
        took
    );
    assert!(
        gate.wait_stderr_contains(&up.pass(), Duration::from_secs(3)),
        "no log line names {}:\n{}",
        up.pass(),
        gate.stderr()
    );
    // A fast view on the same location is unaffected.
    let r = get(gate.port, "/slow?secs=0.1");
    assert_eq!(r.status, 200, "{}", r.head_raw);
}

/// A listener on 127.0.0.1 whose accept queue is full: the kernel drops further SYNs, so a
/// connect() to it hangs until the queue drains. Returns it, its port, and the queued clients.
fn full_listener() -> (std::net::TcpListener, u16, Vec<std::net::TcpStream>) {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor nobody else owns; the listener closes it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in of the right length on a socket we own.
    let rc = unsafe {
        libc::bind(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: listen(2) on our socket.
    assert_eq!(unsafe { libc::listen(fd, 0) }, 0);
    let port = listener.local_addr().unwrap().port();
    // Fill the accept queue (backlog 0 admits one or two) with connections never accepted.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", port).parse().unwrap(),
            Duration::from_millis(300),
        ) {
            fillers.push(s);
        }
    }
    (listener, port, fillers)
}

#[test]
fn an_upstream_that_never_accepts_gives_504_after_uwsgi_connect_timeout() {
    let (listener, port, fillers) = full_listener();
    let pass = format!("127.0.0.1:{}", port);
    let gate = common::Server::start(&gate_ini(
        "",
        std::slice::from_ref(&pass),
        "uwsgi_connect_timeout = 1s\n",
    ));
    let t = Instant::now();
    let r = get(gate.port, "/pid");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}{}", r.head_raw, gate.stderr());
    assert!(took < Duration::from_secs(4), "504 after {:?}", took);
    assert!(
        gate.wait_stderr_contains(&pass, Duration::from_secs(3)),
        "no log line names {}:\n{}",
        pass,
        gate.stderr()
    );
    drop(fillers);
    drop(listener);
}

#[test]
fn a_connect_that_completes_late_still_carries_the_request() {
    // The gate's SYN is dropped while the queue is full; it sends nothing until the handshake
    // ends (the kernel retransmits the SYN after 1 s), then the packet must go at once.
    let (listener, port, fillers) = full_listener();
    let pass = format!("127.0.0.1:{}", port);
    let gate = common::Server::start(&gate_ini(
        "",
        std::slice::from_ref(&pass),
        "uwsgi_connect_timeout = 10s\n",
    ));
    let gport = gate.port;
    let t = Instant::now();
    let client = std::thread::spawn(move || get(gport, "/late"));
    std::thread::sleep(Duration::from_millis(400));
    // Drain the queue; the retransmitted SYN then gets in.
    listener.set_nonblocking(true).unwrap();
    while listener.accept().is_ok() {}
    drop(fillers);
    listener.set_nonblocking(false).unwrap();
    let (mut up, _) = listener.accept().unwrap();
    up.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hdr = [0u8; 4];
    std::io::Read::read_exact(&mut up, &mut hdr).unwrap();
    let mut vars = vec![0u8; u16::from_le_bytes([hdr[1], hdr[2]]) as usize];
    std::io::Read::read_exact(&mut up, &mut vars).unwrap();
    assert!(
        vars.windows(5).any(|w| w == b"/late"),
        "the packet carries the request's path"
    );
    std::io::Write::write_all(&mut up, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
    drop(up);
    let r = client.join().unwrap();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, gate.stderr());
    assert_eq!(r.body, b"ok");
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "answered after {:?}: the connect was not held up, so this tested nothing",
        t.elapsed()
    );
}

#[test]
fn an_upstream_that_stops_reading_the_body_gives_504_after_uwsgi_send_timeout() {
    let fake = FakeUpstream::start(Fake::Hold);
    let gate = common::Server::start(&gate_ini(
        "client_max_body_size = 100m",
        &[fake.pass()],
        "uwsgi_send_timeout = 1s\n",
    ));
    let body = common::pattern(40 << 20, 1);
    let mut c = common::Client::connect(gate.port);
    c.stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    c.set_read_timeout(Duration::from_secs(20));
    let t = Instant::now();
    let r = c.read_response();
    assert_eq!(r.status, 504, "{}{}", r.head_raw, gate.stderr());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "504 after {:?}",
        t.elapsed()
    );
    assert!(
        gate.wait_stderr_contains(&fake.pass(), Duration::from_secs(3)),
        "no log line names {}:\n{}",
        fake.pass(),
        gate.stderr()
    );
}

#[test]
fn vars_over_uwsgi_s_default_buffer_size_give_502_and_the_log_says_buffer_size() {
    let up = Uwsgi::start(UwsgiOpts {
        buffer_size: None, // uWSGI's default: 4096
        processes: 1,
        ..UwsgiOpts::default()
    });
    let gate = common::Server::start(&gate_ini("", &[up.pass()], ""));
    // Small vars pass.
    assert_eq!(get_with_big_vars(gate.port, 100).status, 200);
    let r = get_with_big_vars(gate.port, 5000);
    assert_eq!(r.status, 502, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        up.wait_log_contains("invalid request block size", Duration::from_secs(3)),
        "uWSGI did not refuse it:\n{}",
        up.log()
    );
    assert!(
        gate.wait_stderr_contains("buffer-size", Duration::from_secs(3)),
        "the log does not name buffer-size:\n{}",
        gate.stderr()
    );
    let line = gate
        .stderr()
        .lines()
        .find(|l| l.contains("buffer-size"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains(&up.pass()), "names the upstream: {}", line);
}

#[test]
fn the_same_vars_pass_when_uwsgi_s_buffer_size_is_raised() {
    let up = Uwsgi::start(UwsgiOpts {
        buffer_size: Some(32768),
        processes: 1,
        ..UwsgiOpts::default()
    });
    let gate = common::Server::start(&gate_ini("", &[up.pass()], ""));
    let r = get_with_big_vars(gate.port, 5000);
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(!gate.stderr().contains("buffer-size"), "{}", gate.stderr());
}

#[test]
fn garbage_from_the_upstream_gives_502_and_is_logged() {
    let fake = FakeUpstream::start(Fake::Answer(b"<html>not http</html>\r\n\r\n".to_vec()));
    let gate = common::Server::start(&gate_ini("", &[fake.pass()], ""));
    let r = get(gate.port, "/");
    assert_eq!(r.status, 502, "{}{}", r.head_raw, gate.stderr());
    assert!(
        gate.wait_stderr_contains(&fake.pass(), Duration::from_secs(3)),
        "{}",
        gate.stderr()
    );
}

#[test]
fn an_ambiguous_upstream_head_gives_502() {
    // Two different Content-Lengths: a response that could be read two ways is refused.
    let fake = FakeUpstream::start(Fake::Answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ));
    let gate = common::Server::start(&gate_ini("", &[fake.pass()], ""));
    let r = get(gate.port, "/");
    assert_eq!(r.status, 502, "{}{}", r.head_raw, gate.stderr());
}

#[test]
fn an_upstream_that_closes_without_answering_gives_502() {
    let fake = FakeUpstream::start(Fake::CloseSilently);
    let gate = common::Server::start(&gate_ini("", &[fake.pass()], ""));
    let r = get(gate.port, "/");
    assert_eq!(r.status, 502, "{}{}", r.head_raw, gate.stderr());
    assert!(
        gate.wait_stderr_contains(&fake.pass(), Duration::from_secs(3)),
        "{}",
        gate.stderr()
    );
}

#[test]
fn a_response_head_larger_than_the_buffer_gives_502_and_is_logged() {
    // About 40 KB of response head against buffer_size 16k (nginx: "upstream sent too big
    // header").
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini("buffer_size = 16k", &[up.pass()], ""));
    let r = get(gate.port, "/big-headers?n=400&size=100");
    assert_eq!(r.status, 502, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        gate.wait_stderr_contains(&up.pass(), Duration::from_secs(3)),
        "no log line names {}:\n{}",
        up.pass(),
        gate.stderr()
    );
}

#[test]
fn a_re_chunked_response_whose_head_nearly_fills_the_buffer_is_served_whole() {
    // No Content-Length from the app and a keep-alive client: uwgate frames chunks behind the
    // head it writes. Heads growing a byte at a time across the end of the buffer must give
    // either the whole response or, once the head no longer fits, a 502: never a silent close.
    let fake = FakeUpstream::start(Fake::PaddedHead);
    let gate = common::Server::start(&gate_ini("", &[fake.pass()], ""));
    let (mut ok, mut too_big) = (0, 0);
    for pad in 15_900..16_400 {
        let mut c = common::Client::connect(gate.port);
        c.send(format!("GET /p?pad={pad} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("pad {pad}: no whole response ({e})\n{}", gate.stderr()));
        match r.status {
            200 => {
                assert_eq!(r.body, b"hello world", "pad {pad}");
                assert!(r
                    .head_raw
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked"));
                ok += 1;
            }
            502 => too_big += 1,
            s => panic!("pad {pad}: status {s}"),
        }
    }
    assert!(
        ok > 0 && too_big > 0,
        "the sweep missed the buffer's end: {ok} ok, {too_big} 502"
    );
}

/// Sends `method /upload` with a `len`-byte body through `port`; the response.
fn upload(port: u16, method: &str, len: usize) -> common::Response {
    let body = common::pattern(len, 7);
    let mut c = common::Client::connect(port);
    c.stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    c.send(
        format!(
            "{method} /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    c.send(&body);
    c.set_read_timeout(Duration::from_secs(30));
    c.read_response()
}

/// A fake peer that reads the packet's vars and closes with the body unread, then a real
/// uWSGI, behind a gate taking bodies up to 100 MB.
fn cut_off_peers() -> (FakeUpstream, Uwsgi, common::Server) {
    let fake = FakeUpstream::start(Fake::CloseSilently);
    let up = Uwsgi::start_default();
    let gate = common::Server::start(&gate_ini(
        "client_max_body_size = 100m",
        &[fake.pass(), up.pass()],
        "",
    ));
    (fake, up, gate)
}

#[test]
fn a_put_whose_body_a_peer_cut_off_goes_whole_to_the_next_peer() {
    // The fake reads the packet's vars and closes with the body unread (a reset), so the
    // send fails part-way through 48 MB; PUT is idempotent: nginx passes it on, whole.
    let (fake, up, gate) = cut_off_peers();
    let len = 48 << 20;
    for _ in 0..4 {
        let r = upload(gate.port, "PUT", len);
        assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains(&format!("\"len\": {len}")),
            "the next peer did not get the whole body: {body}"
        );
        if fake.accepted() > 0 {
            assert!(gate.stderr().contains("sending the request to upstream"));
            return;
        }
    }
    panic!("round robin never chose the failing peer");
}

#[test]
fn a_post_whose_body_a_peer_cut_off_is_not_sent_to_another() {
    // nginx's rule without `non_idempotent`: a POST that began to reach one upstream is
    // answered 502, not replayed on the next.
    let (fake, up, gate) = cut_off_peers();
    let len = 48 << 20;
    for _ in 0..4 {
        let before = fake.accepted();
        let r = upload(gate.port, "POST", len);
        if fake.accepted() > before {
            assert_eq!(r.status, 502, "{}{}", r.head_raw, logs(&gate, &up));
            return;
        }
        assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    }
    panic!("round robin never chose the failing peer");
}
