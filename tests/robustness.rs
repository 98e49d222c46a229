//! No input may panic the process: thousands of mutated and random requests, against static,
//! status and (dead) uwsgi locations, and the server still answers a clean request after each
//! batch. Deterministic (a fixed-seed generator), bounded in count and time.

#[path = "common/mod.rs"]
mod common;

use common::{Server, TempTree};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,3-4\r\nIf-None-Match: \"a\"\r\n\r\n",
    b"POST /app/x?y=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"POST /app/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nabcd",
    b"GET /static/%2e%2e/%c0%ae/../a.txt?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /status?format=json HTTP/1.1\r\nHost: [::1]:80\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
    b"GET http://x:80/static/ HTTP/1.1\r\nHost: y\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
];

const ALPHABET: &[u8] = b" \r\n\t:;,=/%.-0123456789abcdefxHTP?#\"\\\x00\x7f\xff";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if at < v.len() => {
                v.remove(at);
            }
            1 => v.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            2 if at < v.len() => v[at] = ALPHABET[rng.below(ALPHABET.len())],
            _ => {
                let n = rng.below(8);
                let from = rng.below(v.len());
                let piece: Vec<u8> = v[from..(from + n).min(v.len())].to_vec();
                for (k, b) in piece.into_iter().enumerate() {
                    v.insert((at + k).min(v.len()), b);
                }
            }
        }
    }
    v
}

fn fire(port: u16, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(400);
    while Instant::now() < deadline {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn assert_serves(server: &mut Server, after: &str) {
    assert!(
        server.is_running(),
        "uwgate died after {after}:\n{}",
        server.stderr()
    );
    let r = server.get("/static/a.txt");
    assert_eq!(r.status, 200, "after {after}");
    assert_eq!(r.body, b"hello");
}

#[test]
fn mutated_and_random_requests_never_kill_the_server() {
    let t = TempTree::new("robustness");
    t.write("static/a.txt", "hello");
    let dead_upstream = common::free_port();
    let ini = format!(
        "[uwgate]\nsyslog = stderr\naccess_log = off\ntemp_path = {{DIR}}\nclient_header_timeout = 2s\nclient_body_timeout = 1s\n\
         [server]\nlisten = 127.0.0.1:{{PORT}}\n\
         [location:/static/]\nalias = {{DIR}}/static/\n\
         [location:/status]\nstub_status = on\n\
         [location:/app/]\nuwsgi_pass = 127.0.0.1:{dead_upstream}\nuwsgi_connect_timeout = 1s\n"
    );
    let mut server = Server::start_in(&t, &ini);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    for batch in 0..8 {
        for _ in 0..500 {
            let bytes = if rng.below(5) == 0 {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = SEEDS[rng.below(SEEDS.len())];
                mutate(&mut rng, seed)
            };
            fire(server.port, &bytes);
        }
        assert_serves(&mut server, &format!("batch {batch}"));
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
}
