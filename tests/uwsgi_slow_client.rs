//! The reason nginx sits in front of uWSGI: uwgate drains the response from the worker as fast
//! as it comes (buffer, then spool file), so a slow client never holds a uWSGI worker, and a
//! client that goes away does not make the worker's write fail.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use common::Client;
use std::io::Read;
use std::time::{Duration, Instant};
use uwsgi_support::{gate_ini, logs, Uwsgi, UwsgiOpts};

const SIZE: usize = 3_000_000;

fn one_worker() -> Uwsgi {
    Uwsgi::start(UwsgiOpts {
        processes: 1,
        ..UwsgiOpts::default()
    })
}

#[test]
fn a_slow_reader_does_not_hold_the_only_worker() {
    let up = one_worker();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], ""));
    let port = gate.port;

    // Client A asks for 3 MB and reads 1 KB a second through a small receive buffer.
    let reader = std::thread::spawn(move || {
        let mut a = Client::connect(port);
        a.set_recv_buffer(4096);
        a.send(
            format!(
                "GET /stream?size={} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
                SIZE, port
            )
            .as_bytes(),
        );
        let mut got = 0usize;
        let mut buf = [0u8; 1024];
        for _ in 0..8 {
            match a.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => panic!("slow reader: {}", e),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        (a, got)
    });

    std::thread::sleep(Duration::from_millis(1500));
    // Client B is served promptly by the same (only) worker.
    let t = Instant::now();
    let r = uwsgi_support::get(port, "/pid");
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}{}", r.head_raw, logs(&gate, &up));
    assert!(
        took < Duration::from_secs(3),
        "B waited {:?}: the slow reader holds the worker{}",
        took,
        logs(&gate, &up)
    );
    // The worker finished writing all 3 MB while A has read a few KB.
    assert!(
        up.wait_log_contains(&format!("generated {} bytes", SIZE), Duration::from_secs(5)),
        "uWSGI has not finished the stream:{}",
        logs(&gate, &up)
    );
    let (a, got) = reader.join().expect("reader thread");
    assert!(got > 0 && got < SIZE, "the slow reader read {} bytes", got);
    drop(a);
    // Spooled data lives in unlinked files: nothing is left under temp_path.
    let tmp = gate.dir.join("tmp");
    assert!(
        common::wait_until(Duration::from_secs(3), || {
            std::fs::read_dir(&tmp)
                .map(|d| d.count() == 0)
                .unwrap_or(true)
        }),
        "files left in {}",
        tmp.display()
    );
}

#[test]
fn a_slow_reader_still_gets_every_byte() {
    let up = one_worker();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], ""));
    // (No shrunken receive buffer here: through a 4 KB window even a plain blocking writer
    // needs over a minute for 3 MB on loopback.)
    let mut c = Client::connect(gate.port);
    c.send(
        format!(
            "GET /stream?size={}&seed=8 HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            SIZE, gate.port
        )
        .as_bytes(),
    );
    // Stall for 2 s first, so the stream has to be held by uwgate, then read it all.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        up.wait_log_contains(&format!("generated {} bytes", SIZE), Duration::from_secs(5)),
        "uWSGI has not finished the stream:{}",
        logs(&gate, &up)
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    uwsgi_support::assert_pattern(&r.body, SIZE, 8);
}

#[test]
fn a_client_that_goes_away_does_not_fail_the_worker_s_write() {
    let up = one_worker();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], ""));
    {
        let mut c = Client::connect(gate.port);
        c.send(
            format!(
                "GET /stream?size={}&chunk=65536&delay=0.02 HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
                SIZE, gate.port
            )
            .as_bytes(),
        );
        let mut buf = [0u8; 1024];
        let _ = c.stream.read(&mut buf);
        // Gone, with most of the stream still to come.
    }
    assert!(
        up.wait_log_contains(
            &format!("generated {} bytes", SIZE),
            Duration::from_secs(10)
        ),
        "uWSGI did not finish the stream:{}",
        logs(&gate, &up)
    );
    let log = up.log();
    for bad in ["Broken pipe", "write error", "Connection reset"] {
        assert!(
            !log.contains(bad),
            "uWSGI saw '{}':{}",
            bad,
            logs(&gate, &up)
        );
    }
    // And the worker is free for the next client.
    let r = uwsgi_support::get(gate.port, "/pid");
    assert_eq!(r.status, 200);
}

/// 64 MiB: more than the kernel's socket buffers between uWSGI and uwgate can hold, so only a
/// spool file can free the worker.
const HUGE: usize = 64 << 20;

#[test]
fn a_slow_reader_of_a_64mb_stream_does_not_hold_the_worker_either() {
    let up = one_worker();
    let gate = common::Server::start(&gate_ini("", &[up.pass()], ""));
    let mut a = Client::connect(gate.port);
    a.set_recv_buffer(4096);
    a.send(
        format!(
            "GET /stream?size={} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            HUGE, gate.port
        )
        .as_bytes(),
    );
    let mut buf = [0u8; 1024];
    let _ = a.stream.read(&mut buf);
    assert!(
        up.wait_log_contains(
            &format!("generated {} bytes", HUGE),
            Duration::from_secs(20)
        ),
        "uWSGI could not finish a 64 MiB stream for a slow reader:{}",
        logs(&gate, &up)
    );
    let r = uwsgi_support::get(gate.port, "/pid");
    assert_eq!(r.status, 200);
}

#[test]
fn the_spool_is_bounded_by_uwsgi_max_temp_file_size() {
    let up = one_worker();
    let gate = common::Server::start(&gate_ini(
        "",
        &[up.pass()],
        "uwsgi_max_temp_file_size = 1m\n",
    ));
    let mut a = Client::connect(gate.port);
    a.send(
        format!(
            "GET /stream?size={}&seed=12 HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            HUGE, gate.port
        )
        .as_bytes(),
    );
    // With at most 1 MiB spooled, uwgate stops reading and the worker waits for the client.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !up.log().contains(&format!("generated {} bytes", HUGE)),
        "64 MiB left uWSGI although the spool is bounded to 1 MiB:{}",
        logs(&gate, &up)
    );
    // Reading at full speed gets every byte, in order.
    a.set_read_timeout(Duration::from_secs(30));
    let r = a.read_response();
    assert_eq!(r.status, 200, "{}", r.head_raw);
    uwsgi_support::assert_pattern(&r.body, HUGE, 12);
}
