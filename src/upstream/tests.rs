//! Lifecycle tests of the proxy core against a real unix-socket peer played by the test:
//! body, connect, send, head, body framing, surplus, truncation, retries. No HTTP client side
//! is involved: that is the server's.

use super::*;
use crate::config;
use crate::http::response_body::BodyFramer;
use crate::http::response_head::{parse, ResponseHead};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// A uwsgi location with one peer per socket path given (a missing path refuses connects).
struct Rig {
    dir: PathBuf,
    groups: Groups,
    poll: mio::Poll,
    pool: BufferPool,
    temp: std::ffi::CString,
}

impl Rig {
    fn new(name: &str, peers: &[&str]) -> Rig {
        let dir = std::env::temp_dir().join(format!("uwgate-up-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let passes: String = peers
            .iter()
            .map(|p| format!("uwsgi_pass = unix:{}/{p}\n", dir.display()))
            .collect();
        let text = format!("[server]\nlisten = 127.0.0.1:8080\n[location:/]\n{passes}");
        let cfg = config::parse(&text, &dir.join("uwgate.ini"), &|_| None).unwrap();
        Rig {
            groups: Groups::new(&cfg),
            poll: mio::Poll::new().unwrap(),
            pool: BufferPool::new(2, 16 << 10),
            temp: std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap(),
            dir,
        }
    }

    fn listen(&self, name: &str) -> UnixListener {
        UnixListener::bind(self.dir.join(name)).unwrap()
    }

    fn env(&mut self) -> UpEnv<'_> {
        UpEnv {
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: mio::Token(7),
            now: Instant::now(),
            client: "127.0.0.1:50000".parse().unwrap(),
            slot: 0,
        }
    }

    /// A proxy whose request (`request`) is encoded and whose body (`body`) is complete.
    fn proxy(&mut self, request: &[u8], body: &[u8], replayable: bool) -> Proxy {
        let mut p = Proxy::new(0, replayable);
        p.body_complete(body.len() as u64);
        let ub = p.take_buffer(&mut self.pool).unwrap();
        self.pool.get_mut(ub)[..request.len()].copy_from_slice(request);
        p.request_encoded(request.len());
        p
    }

    fn send(&mut self, p: &mut Proxy, body: &[u8]) -> Sent {
        let ub = p.buffer().unwrap();
        let ubuf = self.pool.get_mut(ub).to_vec();
        p.send(&ubuf, body).unwrap()
    }

    fn head(&mut self, p: &mut Proxy) -> Option<ResponseHead> {
        p.on_event(true, false);
        let mut env = UpEnv {
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: mio::Token(7),
            now: Instant::now(),
            client: "127.0.0.1:50000".parse().unwrap(),
            slot: 0,
        };
        match p.read_head(&mut self.pool, &mut env, parse) {
            HeadRead::Head(h) => Some(h),
            _ => None,
        }
    }

    /// The head is accepted: the body starts, framed as the head says.
    fn start_body(&mut self, p: &mut Proxy, h: &ResponseHead) -> bool {
        let env = UpEnv {
            groups: &mut self.groups,
            registry: self.poll.registry(),
            token: mio::Token(7),
            now: Instant::now(),
            client: "127.0.0.1:50000".parse().unwrap(),
            slot: 0,
        };
        let framer = BodyFramer::for_head(h);
        p.start_body(&mut self.pool, h.head_len as usize, framer, false, &env)
    }

    /// Everything the core holds for the client now, consumed.
    fn drain(&mut self, p: &mut Proxy) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let ub = p.buffer().unwrap();
            let ubuf = self.pool.get_mut(ub).to_vec();
            let n = match p.data(&ubuf) {
                Data::None => return out,
                Data::Buffered(b) => {
                    out.extend_from_slice(b);
                    b.len()
                }
                Data::Spooled { file, offset, len } => {
                    let mut chunk = vec![0u8; len as usize];
                    std::os::unix::fs::FileExt::read_exact_at(file, &mut chunk, offset).unwrap();
                    out.extend_from_slice(&chunk);
                    chunk.len()
                }
            };
            p.consume(n);
        }
    }

    fn pull_all(&mut self, p: &mut Proxy) {
        for _ in 0..100 {
            if p.finished_reading() {
                return;
            }
            p.on_event(true, false);
            let temp = self.temp.clone();
            let env = UpEnv {
                groups: &mut self.groups,
                registry: self.poll.registry(),
                token: mio::Token(7),
                now: Instant::now(),
                client: "127.0.0.1:50000".parse().unwrap(),
                slot: 0,
            };
            p.pull(&mut self.pool, &temp, 1 << 30, &env).unwrap();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn accept(l: &UnixListener) -> UnixStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s
}

#[test]
fn the_request_and_its_body_reach_the_peer_and_the_answer_comes_back_framed() {
    let mut rig = Rig::new("basic", &["up.sock"]);
    let l = rig.listen("up.sock");
    let mut p = rig.proxy(b"PACKET", b"body", true);
    p.connect_next(&mut rig.env()).unwrap();
    let mut peer = accept(&l);
    assert_eq!(rig.send(&mut p, b"body"), Sent::Done);
    assert_eq!(p.stage(), Stage::Head);
    let mut got = [0u8; 10];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"PACKETbody");

    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
        .unwrap();
    let h = rig.head(&mut p).unwrap();
    assert_eq!(h.status, 200);
    assert!(rig.start_body(&mut p, &h));
    peer.write_all(b"lo").unwrap();
    rig.pull_all(&mut p);
    assert!(p.finished_reading() && !p.truncated());
    assert_eq!(rig.drain(&mut p), b"hello");
    p.release(&mut rig.pool, rig.poll.registry());
    assert_eq!(rig.pool.available(), 2);
}

#[test]
fn bytes_past_the_framed_end_never_reach_the_client() {
    let mut rig = Rig::new("surplus", &["up.sock"]);
    let l = rig.listen("up.sock");
    let mut p = rig.proxy(b"P", b"", true);
    p.connect_next(&mut rig.env()).unwrap();
    let mut peer = accept(&l);
    rig.send(&mut p, b"");
    peer.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 299 Smuggled\r\n\r\n",
    )
    .unwrap();
    let h = rig.head(&mut p).unwrap();
    assert!(rig.start_body(&mut p, &h));
    assert!(p.finished_reading(), "the framed end came with the head");
    assert_eq!(rig.drain(&mut p), b"hello");
}

#[test]
fn a_peer_that_closes_before_the_framed_end_truncates_the_response() {
    let mut rig = Rig::new("short", &["up.sock"]);
    let l = rig.listen("up.sock");
    let mut p = rig.proxy(b"P", b"", true);
    p.connect_next(&mut rig.env()).unwrap();
    let mut peer = accept(&l);
    rig.send(&mut p, b"");
    peer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    let h = rig.head(&mut p).unwrap();
    assert!(rig.start_body(&mut p, &h));
    drop(peer);
    rig.pull_all(&mut p);
    assert!(p.truncated(), "5 of 10 bytes, then EOF");
    assert_eq!(rig.drain(&mut p), b"hello");
}

#[test]
fn a_chunked_answer_is_decoded_and_broken_framing_truncates_it() {
    let mut rig = Rig::new("chunked", &["up.sock"]);
    let l = rig.listen("up.sock");
    let mut p = rig.proxy(b"P", b"", true);
    p.connect_next(&mut rig.env()).unwrap();
    let mut peer = accept(&l);
    rig.send(&mut p, b"");
    peer.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
        .unwrap();
    let h = rig.head(&mut p).unwrap();
    assert!(
        !rig.start_body(&mut p, &h),
        "broken framing with the head: the caller answers 502"
    );
    assert!(p.truncated());
}

#[test]
fn a_refused_peer_passes_the_request_to_the_next_one() {
    let mut rig = Rig::new("retry", &["gone.sock", "up.sock"]);
    let l = rig.listen("up.sock");
    let mut p = rig.proxy(b"P", b"", false);
    // The first peer refuses at connect(2): marked, and the second is connected at once.
    p.connect_next(&mut rig.env()).unwrap();
    let _peer = accept(&l);
    assert_eq!(rig.send(&mut p, b""), Sent::Done);
}

#[test]
fn a_request_that_began_to_reach_a_peer_is_not_replayed_unless_idempotent() {
    let mut rig = Rig::new("replay", &["a.sock", "b.sock"]);
    let la = rig.listen("a.sock");
    let _lb = rig.listen("b.sock");
    let mut post = rig.proxy(b"P", b"", false);
    post.connect_next(&mut rig.env()).unwrap();
    let _a = accept(&la);
    rig.send(&mut post, b"");
    assert_eq!(
        post.next_peer(&mut rig.env(), true),
        Err(Status::BadGateway),
        "a POST that reached one peer gets a 502, not a second run"
    );
    post.release(&mut rig.pool, rig.poll.registry());

    // (a fresh group: the POST's failure marked peer a down for fail_timeout)
    let mut rig = Rig::new("replay-get", &["a.sock", "b.sock"]);
    let la = rig.listen("a.sock");
    let lb = rig.listen("b.sock");
    let mut get = rig.proxy(b"G", b"", true);
    get.connect_next(&mut rig.env()).unwrap();
    let _a = accept(&la);
    rig.send(&mut get, b"");
    assert_eq!(get.next_peer(&mut rig.env(), true), Ok(()));
    let _b = accept(&lb);
    assert_eq!(
        rig.send(&mut get, b""),
        Sent::Done,
        "the whole request again"
    );
}
