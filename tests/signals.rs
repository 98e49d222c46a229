//! Signals through the loop: SIGHUP re-reads the config (a bad new one is logged and the old one
//! kept), SIGTERM/SIGINT stop gracefully (stop accepting, finish in-flight responses up to
//! shutdown_timeout, exit 0), SIGUSR1 (reconnect syslog) is survived.

mod common;
use common::*;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn one_location() -> String {
    ini("", "[location:/a/]\nalias = {DIR}/a/\n")
}

fn two_locations() -> String {
    ini(
        "",
        "[location:/a/]\nalias = {DIR}/a/\nexpires = 1h\n\n[location:/b/]\nalias = {DIR}/b/\n",
    )
}

fn reload_site(name: &str) -> TempTree {
    let t = TempTree::new(name);
    t.write("a/x.txt", "from a");
    t.write("b/x.txt", "from b");
    t
}

#[test]
fn sighup_reload_picks_up_a_changed_location() {
    let t = reload_site("hup_reload");
    let s = Server::start_in(&t, &one_location());
    assert_eq!(s.get("/b/x.txt").status, 404);
    assert!(s.get("/a/x.txt").header("cache-control").is_none());

    s.rewrite_ini(&two_locations());
    s.signal(libc::SIGHUP);
    let ok = wait_until(Duration::from_secs(3), || s.get("/b/x.txt").status == 200);
    assert!(
        ok,
        "new [location:/b/] not served 3 s after SIGHUP; log:\n{}",
        s.stderr()
    );
    assert_eq!(s.get("/b/x.txt").body, b"from b");
    let r = s.get("/a/x.txt");
    assert_eq!(r.body, b"from a");
    assert_eq!(
        r.header("cache-control"),
        Some("max-age=3600"),
        "changed key not applied"
    );
}

#[test]
fn sighup_with_a_bad_config_logs_the_error_and_keeps_the_old_one() {
    let t = reload_site("hup_bad");
    let mut s = Server::start_in(&t, &one_location());
    let bad = format!("{}\n[location:/b/]\nalais = {{DIR}}/b/\n", one_location());
    let bad_line = bad
        .lines()
        .position(|l| l.starts_with("alais"))
        .expect("line")
        + 1;
    s.rewrite_ini(&bad);
    s.signal(libc::SIGHUP);
    let logged =
        s.wait_stderr_contains(&format!("uwgate.ini:{}:", bad_line), Duration::from_secs(3));
    assert!(
        logged,
        "bad reload not logged as FILE:LINE; log:\n{}",
        s.stderr()
    );
    assert!(s.is_running(), "a bad reload killed the server");
    let r = s.get("/a/x.txt");
    assert_eq!(r.status, 200, "old config not kept: {}", r.head_raw);
    assert_eq!(r.body, b"from a");
    assert_eq!(s.get("/b/x.txt").status, 404);

    // Fixing the file and reloading again works.
    s.rewrite_ini(&two_locations());
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(3), || s.get("/b/x.txt").status == 200),
        "good reload after a bad one not applied"
    );
}

#[test]
fn sighup_keeps_open_keepalive_connections_working() {
    let t = reload_site("hup_keepalive");
    let s = Server::start_in(&t, &one_location());
    let mut c = s.connect();
    c.send(b"GET /a/x.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(c.read_response().body, b"from a");
    s.rewrite_ini(&two_locations());
    s.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(3), || s
        .get("/b/x.txt")
        .status
        == 200));
    c.send(b"GET /a/x.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = c
        .try_read_response(false)
        .expect("keep-alive connection dropped by reload");
    assert_eq!(r.body, b"from a");
}

#[test]
fn repeated_sighups_are_survived() {
    let t = reload_site("hup_repeat");
    let mut s = Server::start_in(&t, &one_location());
    for _ in 0..10 {
        s.signal(libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.is_running());
    assert_eq!(s.get("/a/x.txt").body, b"from a");
}

fn big_site(name: &str, len: usize, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write_pattern("static/big.bin", len, 6);
    t.write("static/small.txt", "small");
    let s = Server::start_in(&t, &static_ini(global_extra, ""));
    (t, s)
}

#[test]
fn sigterm_lets_an_inflight_download_finish_then_exits_0() {
    let len = 16 * 1024 * 1024;
    let (_t, mut s) = big_site("term_inflight", len, "shutdown_timeout = 30s");
    // Default buffers: 16 MiB cannot sit in the kernel buffers of a client that does not read,
    // so the response is still in flight at SIGTERM, yet it drains fast once we read.
    let mut c = s.connect();
    c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // Wait for the download to be under way.
    let mut first = [0u8; 4096];
    let n = c.stream.read(&mut first).expect("first bytes");
    assert!(n > 0);
    s.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.is_running(),
        "exited with a download in flight: {:?}",
        s.try_wait()
    );

    // New connections are not served any more.
    match TcpStream::connect_timeout(
        &format!("127.0.0.1:{}", s.port).parse().expect("addr"),
        Duration::from_millis(500),
    ) {
        Err(_) => {}
        Ok(mut late) => {
            late.set_read_timeout(Some(Duration::from_millis(800))).ok();
            let _ = std::io::Write::write_all(
                &mut late,
                b"GET /static/small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
            );
            let mut buf = [0u8; 256];
            if let Ok(k) = late.read(&mut buf) {
                assert!(
                    !String::from_utf8_lossy(&buf[..k]).contains(" 200 "),
                    "a new connection was served after SIGTERM"
                );
            }
        }
    }

    // The in-flight download completes, byte for byte.
    let mut got = first[..n].to_vec();
    let (rest, closed) = c.read_until_close(Duration::from_secs(20));
    assert!(
        closed.is_some(),
        "download neither finished nor closed in 20 s"
    );
    got.extend_from_slice(&rest);
    let head_end = find(&got, b"\r\n\r\n").expect("head") + 4;
    let body = &got[head_end..];
    assert_eq!(body.len(), len, "download cut short by SIGTERM");
    assert!(body == &pattern(len, 6)[..], "download corrupted");

    let st = s
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit after the download");
    assert_eq!(
        st.code(),
        Some(0),
        "exit status {:?}; log:\n{}",
        st,
        s.stderr()
    );
}

#[test]
fn sigterm_with_only_idle_connections_exits_0_promptly() {
    let (_t, mut s) = big_site("term_idle", 1000, "keepalive_timeout = 60s");
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = s.connect();
        c.send(b"GET /static/small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(c.read_response().body, b"small");
        idle.push(c);
    }
    let start = Instant::now();
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(3))
        .expect("idle keep-alive connections held the server after SIGTERM");
    assert_eq!(st.code(), Some(0), "log:\n{}", s.stderr());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    for c in idle.iter_mut() {
        assert!(c.wait_closed(Duration::from_secs(1)).is_some());
    }
}

#[test]
fn sigint_stops_gracefully_with_exit_0() {
    let (_t, mut s) = big_site("int", 1000, "");
    assert_eq!(s.get("/static/small.txt").body, b"small");
    s.signal(libc::SIGINT);
    let st = s
        .wait_exit(Duration::from_secs(3))
        .expect("no exit after SIGINT");
    assert_eq!(st.code(), Some(0), "log:\n{}", s.stderr());
}

#[test]
fn shutdown_timeout_bounds_a_stalled_download() {
    let len = 32 * 1024 * 1024;
    let (_t, mut s) = big_site(
        "term_bound",
        len,
        "shutdown_timeout = 1s\nsend_timeout = 60s",
    );
    let mut c = s.connect();
    c.set_recv_buffer(4096);
    c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300)); // let it stall; never read
    let start = Instant::now();
    s.signal(libc::SIGTERM);
    let st = s
        .wait_exit(Duration::from_secs(5))
        .expect("a reader that never reads held the server past shutdown_timeout");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "did not wait for in-flight work: {:?}",
        took
    );
    assert!(
        took <= Duration::from_millis(3500),
        "shutdown_timeout = 1s took {:?}",
        took
    );
    assert_eq!(st.code(), Some(0), "log:\n{}", s.stderr());
    drop(c);
}

#[test]
fn sigusr1_is_survived_and_serving_continues() {
    let (_t, mut s) = big_site("usr1", 1000, "");
    for _ in 0..3 {
        s.signal(libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        s.is_running(),
        "SIGUSR1 killed the server: {:?}",
        s.try_wait()
    );
    assert_eq!(s.get("/static/small.txt").body, b"small");
}

#[test]
fn sigpipe_from_a_vanished_client_is_survived() {
    let len = 8 * 1024 * 1024;
    let (_t, mut s) = big_site("sigpipe", len, "");
    for _ in 0..3 {
        let mut c = s.connect();
        c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let mut buf = [0u8; 100];
        let _ = c.stream.read(&mut buf);
        drop(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.is_running(), "died (SIGPIPE?): {:?}", s.try_wait());
    assert_eq!(s.get("/static/small.txt").body, b"small");
}
