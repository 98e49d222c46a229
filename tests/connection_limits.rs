//! worker_connections: fixed slots. When every slot is taken, the oldest idle keep-alive
//! connection is closed to make room; when none is idle, new connections wait in the listen
//! backlog (not refused, not closed) and are served once a slot frees.
//! These tests take `worker_connections` to count client connections (listeners and the signal
//! fd have reserved tokens of their own, per DESIGN.md). RLIMIT_NOFILE is raised to fit; where
//! the hard limit is lower, the slots, buffers and cache are scaled down to it, with a warning.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn site(name: &str, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/a.txt", "AAAA");
    t.write("static/b.txt", "BBBB");
    let s = Server::start_in(&t, &static_ini(global_extra, ""));
    // Let the start-up probe connection's slot be released.
    std::thread::sleep(Duration::from_millis(200));
    (t, s)
}

const KEEP: &[u8] = b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
const CLOSE: &[u8] = b"GET /static/b.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn oldest_idle_keepalive_connection_is_closed_to_make_room() {
    let (_t, s) = site(
        "evict_oldest",
        "worker_connections = 2\nkeepalive_timeout = 60s",
    );
    let mut oldest = s.connect();
    oldest.send(KEEP);
    assert_eq!(oldest.read_response().body, b"AAAA");
    std::thread::sleep(Duration::from_millis(100));
    let mut newer = s.connect();
    newer.send(KEEP);
    assert_eq!(newer.read_response().body, b"AAAA");
    std::thread::sleep(Duration::from_millis(100));

    // Both slots are held by idle keep-alive connections; a third client must still be served.
    let start = Instant::now();
    let mut third = s.connect();
    // Connect first and send a moment later (as a browser's preconnect does): the server has
    // accepted the third connection by then, and must have closed exactly one idle connection.
    std::thread::sleep(Duration::from_millis(200));
    third.send(CLOSE);
    third.set_read_timeout(Duration::from_secs(3));
    let r = third
        .try_read_response(false)
        .expect("third client not served while two idle keep-alive connections held the slots");
    assert_eq!(r.body, b"BBBB");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    // The oldest idle one was the one closed, without a response.
    assert!(
        oldest.wait_closed(Duration::from_secs(2)).is_some(),
        "the oldest idle connection was not closed"
    );
    assert!(
        oldest.pending().is_empty(),
        "evicted connection got bytes: {:?}",
        oldest.pending()
    );
    // The newer one survived and still works.
    newer.send(KEEP);
    newer.set_read_timeout(Duration::from_secs(3));
    let r = newer
        .try_read_response(false)
        .expect("the newer idle connection was closed too: one accepted connection must evict exactly one idle connection");
    assert_eq!(r.body, b"AAAA");
}

#[test]
fn every_new_client_is_served_by_evicting_idle_ones() {
    let (_t, s) = site(
        "evict_many",
        "worker_connections = 2\nkeepalive_timeout = 60s",
    );
    let mut clients = Vec::new();
    let start = Instant::now();
    for i in 0..10 {
        let mut c = s.connect();
        c.send(KEEP);
        c.set_read_timeout(Duration::from_secs(3));
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("client #{} not served: {}", i, e));
        assert_eq!(r.body, b"AAAA");
        clients.push(c); // keep it open and idle
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    // The last one is still alive.
    let last = clients.last_mut().expect("clients");
    last.send(KEEP);
    assert_eq!(last.read_response().body, b"AAAA");
}

#[test]
fn new_connection_waits_in_backlog_when_no_slot_is_idle_then_is_served() {
    let (_t, s) = site(
        "backlog_wait",
        "worker_connections = 2\nclient_header_timeout = 30s\nkeepalive_timeout = 60s",
    );
    // Two connections mid-head: busy, not idle, so not evictable.
    let mut a = s.connect();
    a.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n");
    let mut b = s.connect();
    b.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n");
    std::thread::sleep(Duration::from_millis(200));

    // The kernel completes the handshake; the request sits in the backlog unanswered.
    let mut c = s.connect();
    c.send(CLOSE);
    assert!(
        c.is_silent_for(Duration::from_millis(1000)),
        "third connection was answered or closed while both slots were busy: {:?}",
        String::from_utf8_lossy(c.pending())
    );
    // The busy ones are untouched.
    assert!(a.is_silent_for(Duration::from_millis(50)));
    assert!(b.is_silent_for(Duration::from_millis(50)));

    // Finish A with Connection: close: its slot frees and C is served.
    a.send(b"Connection: close\r\n\r\n");
    assert_eq!(a.read_response().body, b"AAAA");
    let start = Instant::now();
    c.set_read_timeout(Duration::from_secs(3));
    let r = c
        .try_read_response(false)
        .expect("backlogged connection not served after a slot freed");
    assert_eq!(r.body, b"BBBB");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    // B completes normally too.
    b.send(b"Connection: close\r\n\r\n");
    assert_eq!(b.read_response().body, b"AAAA");
}

#[test]
fn a_burst_larger_than_worker_connections_is_all_served() {
    let (_t, s) = site("burst", "worker_connections = 4");
    let port = s.port;
    let handles: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || {
                let r = get(port, "/static/a.txt");
                (r.status, r.body)
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (status, body) = h
            .join()
            .unwrap_or_else(|_| panic!("client thread #{} panicked", i));
        assert_eq!(status, 200, "client #{}", i);
        assert_eq!(body, b"AAAA");
    }
}

#[test]
fn idle_keepalive_connections_hold_no_buffers() {
    // 20 idle keep-alive connections against a pool of 2 buffers: if idle connections kept
    // their buffers, nothing else could be served.
    let (_t, s) = site(
        "idle_no_buffers",
        "worker_connections = 64\nbuffer_pool = 2\nkeepalive_timeout = 60s",
    );
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut c = s.connect();
        c.send(KEEP);
        c.set_read_timeout(Duration::from_secs(3));
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("client #{} not served with 2 buffers: {}", i, e));
        assert_eq!(r.body, b"AAAA");
        idle.push(c);
    }
    let r = s.get("/static/b.txt");
    assert_eq!(r.body, b"BBBB");
    for (i, c) in idle.iter_mut().enumerate() {
        c.send(KEEP);
        c.set_read_timeout(Duration::from_secs(3));
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("idle client #{} lost: {}", i, e));
        assert_eq!(r.body, b"AAAA");
    }
}

#[test]
fn empty_buffer_pool_is_back_pressure_not_failure() {
    let (_t, s) = site(
        "pool_backpressure",
        "worker_connections = 16\nbuffer_pool = 1\nclient_header_timeout = 30s",
    );
    // A holds the only buffer while its head is incomplete.
    let mut a = s.connect();
    a.send(b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let mut b = s.connect();
    b.send(CLOSE);
    // B may wait, but must not be refused or closed...
    let early = b.wait_closed(Duration::from_millis(500));
    let pending = String::from_utf8_lossy(b.pending()).into_owned();
    assert!(
        early.is_none() || pending.starts_with("HTTP/1.1 200"),
        "B was closed while waiting for a buffer: {:?}",
        pending
    );
    assert!(
        !pending.contains(" 503 "),
        "B got 503 instead of waiting: {:?}",
        pending
    );
    // ...and is served once A finishes.
    a.send(b"Connection: close\r\n\r\n");
    assert_eq!(a.read_response().body, b"AAAA");
    if pending.is_empty() {
        b.set_read_timeout(Duration::from_secs(3));
        let r = b
            .try_read_response(false)
            .expect("B not served after the buffer came back");
        assert_eq!(r.body, b"BBBB");
    }
}

#[test]
fn rlimit_nofile_is_raised_to_fit_worker_connections() {
    // The child starts with a soft limit of 256 descriptors; worker_connections = 1500 needs
    // more, so the server must raise it, or accept() fails with EMFILE long before 600.
    let t = TempTree::new("rlimit_raise");
    t.write("static/a.txt", "AAAA");
    let s = Server::try_start_in_nofile(
        &t,
        &static_ini("worker_connections = 1500\nkeepalive_timeout = 60s", ""),
        256,
        8192,
    )
    .unwrap_or_else(|e| panic!("did not start: {}", e));
    let mut open = Vec::new();
    for i in 0..600 {
        let mut c = s.connect();
        c.send(KEEP);
        c.set_read_timeout(Duration::from_secs(3));
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("connection #{} not served (EMFILE?): {}", i, e));
        assert_eq!(r.body, b"AAAA");
        open.push(c);
    }
    // None of them was evicted: all slots are real.
    let first = open.first_mut().expect("first");
    first.send(KEEP);
    assert_eq!(first.read_response().body, b"AAAA");
}

/// What the defaults (1024 slots, 256 buffers, 1000 cache entries: 2600 descriptors) become
/// under a hard RLIMIT_NOFILE of 256: everything scaled by (256 - 64) / (2600 - 64).
const SCALED_TO_256: &str = "worker_connections = 1024, buffer_pool = 256 and open_file_cache = \
     1000 need 2600 descriptors, more than the open file resource limit (RLIMIT_NOFILE) of 256: \
     running with worker_connections = 77, buffer_pool = 19, open_file_cache = 75";

#[test]
fn low_descriptor_limit_starts_with_fewer_slots_warns_once_and_keeps_serving() {
    let t = TempTree::new("rlimit_low");
    t.write("static/a.txt", "AAAA");
    t.write("static/b.txt", "BBBB");
    let s = Server::try_start_in_nofile(&t, &static_ini("keepalive_timeout = 60s", ""), 256, 256)
        .unwrap_or_else(|e| panic!("a low descriptor limit must not stop the start: {}", e));
    assert!(
        s.wait_stderr_contains(SCALED_TO_256, Duration::from_secs(3)),
        "no warning with the numbers:\n{}",
        s.stderr()
    );
    assert_eq!(
        s.stderr().matches("open file resource limit").count(),
        1,
        "warned more than once:\n{}",
        s.stderr()
    );
    assert!(
        s.stderr().contains("77 connection slots, 19 buffers"),
        "{}",
        s.stderr()
    );
    // More keep-alive clients than the 77 slots, one after another: each is served (the
    // oldest idle one is closed to make room), none meets EMFILE.
    let mut open = Vec::new();
    for i in 0..120 {
        let mut c = s.connect();
        c.send(KEEP);
        c.set_read_timeout(Duration::from_secs(3));
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("connection #{} not served: {}", i, e));
        assert_eq!(r.body, b"AAAA");
        open.push(c);
    }
    assert_eq!(s.get("/static/b.txt").body, b"BBBB");
    assert!(
        !s.stderr().contains("Too many open files"),
        "{}",
        s.stderr()
    );

    // -t under the same limit says the same, and the file is still fine.
    let ini = s.ini.to_string_lossy().into_owned();
    let (status, _, err) = run_cli_nofile(&["-t", "-c", &ini], 256, 256);
    assert!(status.success(), "{}", err);
    assert!(
        err.contains(&format!("uwgate: [warn] {}", SCALED_TO_256)),
        "-t does not warn the same:\n{}",
        err
    );
    assert!(err.contains("test is successful"), "{}", err);
}

#[test]
fn descriptor_limit_below_one_slot_is_a_clear_start_error() {
    let t = TempTree::new("rlimit_fail");
    t.write("static/a.txt", "AAAA");
    let res = Server::try_start_in_nofile(&t, &static_ini("", ""), 40, 40);
    match res {
        Ok(_) => panic!("started with RLIMIT_NOFILE 40"),
        Err(e) => {
            assert!(e.contains("exited early"), "{}", e);
            assert!(
                e.contains("exit status: 1"),
                "start-up error must exit 1: {}",
                e
            );
            assert!(
                e.contains("RLIMIT_NOFILE) is 40: uwgate needs at least 67 descriptors"),
                "error does not say what is wrong: {}",
                e
            );
        }
    }
}

#[test]
fn limit_conn_per_ip_closes_an_address_s_connections_past_the_limit() {
    let (_t, s) = site(
        "limit_conn_per_ip",
        "worker_connections = 64\nlimit_conn_per_ip = 4\nclient_header_timeout = 30s",
    );
    let from = |ip: [u8; 4]| {
        let c = Client::from_stream(connect_from(s.port, std::net::Ipv4Addr::from(ip), |_| {}));
        c.set_read_timeout(Duration::from_secs(3));
        c
    };
    // Four connections from 127.0.0.1 in the middle of their heads hold four slots...
    let mut held: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = from([127, 0, 0, 1]);
            c.send(b"GET /static/a.txt HTTP/1.1\r\n");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a fifth from the same address is closed without an answer,
    let mut fifth = from([127, 0, 0, 1]);
    assert!(
        fifth.wait_closed(Duration::from_secs(2)).is_some(),
        "a fifth connection from 127.0.0.1 was not closed"
    );
    assert!(
        fifth.pending().is_empty(),
        "{:?}",
        String::from_utf8_lossy(fifth.pending())
    );
    // while another address is served at once.
    let mut other = from([127, 0, 0, 2]);
    other.send(CLOSE);
    assert_eq!(other.read_response().body, b"BBBB");
    // One of the four finishing makes room for the address again.
    let mut done = held.remove(0);
    done.send(b"Host: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(done.read_response().body, b"AAAA");
    drop(done);
    std::thread::sleep(Duration::from_millis(200));
    let mut again = from([127, 0, 0, 1]);
    again.send(CLOSE);
    assert_eq!(again.read_response().body, b"BBBB");
    let log = s.stderr();
    assert!(
        log.contains("limiting connections by address 127.0.0.1")
            && log.contains("limit_conn_per_ip = 4"),
        "{log}"
    );
}
