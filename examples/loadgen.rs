//! `make bench`'s discarding client: keep-alive GETs on N connections, one thread, one
//! epoll loop, and response bodies thrown away in the kernel (`recv(MSG_TRUNC)` on TCP copies
//! nothing), so the client costs little per byte and the server becomes what is measured.
//! wrk copies every body byte into its buffer; with 100 KiB bodies on a 2-core machine that
//! copy, not the server, bounds the rate, and both servers then meet the same ceiling.
//!
//! Usage: `loadgen HOST:PORT PATH CONNECTIONS SECONDS`. Prints one line:
//! `requests N seconds S bytes B errors E` (bytes counts bodies). Bounded in time; any
//! non-200 status, short body or closed connection counts as an error and that connection
//! is not reopened.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

enum Phase {
    Send(usize),
    Head,
    Body(u64),
}

struct Conn {
    sock: TcpStream,
    phase: Phase,
    head: [u8; 8192],
    len: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: loadgen HOST:PORT PATH CONNECTIONS SECONDS");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("HOST:PORT");
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", args[2], addr.ip());
    let n: usize = args[3].parse().expect("CONNECTIONS");
    let secs: f64 = args[4].parse().expect("SECONDS");
    match run(addr, request.as_bytes(), n, Duration::from_secs_f64(secs)) {
        Ok((requests, took, bytes, errors)) => println!(
            "requests {requests} seconds {:.3} bytes {bytes} errors {errors}",
            took.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

fn run(
    addr: SocketAddr,
    req: &[u8],
    n: usize,
    dur: Duration,
) -> io::Result<(u64, Duration, u64, u64)> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let std = std::net::TcpStream::connect(addr)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(std);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Some(Conn {
            sock,
            phase: Phase::Send(0),
            head: [0; 8192],
            len: 0,
        }));
    }
    let (mut requests, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let end = start + dur;
    // Every connection starts by sending.
    let mut ready: Vec<usize> = (0..n).collect();
    while Instant::now() < end && conns.iter().any(Option::is_some) {
        for i in ready.drain(..) {
            let Some(c) = conns[i].as_mut() else { continue };
            match step(c, req, &mut requests, &mut bytes) {
                Ok(()) => {}
                Err(_) => {
                    errors += 1;
                    conns[i] = None;
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        ready.extend(events.iter().map(|e| e.token().0));
    }
    Ok((requests, start.elapsed(), bytes, errors))
}

/// Advances one connection until it would block.
fn step(c: &mut Conn, req: &[u8], requests: &mut u64, bytes: &mut u64) -> io::Result<()> {
    loop {
        match c.phase {
            Phase::Send(sent) => match c.sock.write(&req[sent..]) {
                Ok(k) if sent + k == req.len() => {
                    c.phase = Phase::Head;
                    c.len = 0;
                }
                Ok(k) => c.phase = Phase::Send(sent + k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            },
            Phase::Head => {
                let k = match c.sock.read(&mut c.head[c.len..]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                };
                c.len += k;
                let Some(end) = c.head[..c.len].windows(4).position(|w| w == b"\r\n\r\n") else {
                    if c.len == c.head.len() {
                        return Err(io::Error::other("head too long"));
                    }
                    continue;
                };
                let head = &c.head[..end];
                if !head.starts_with(b"HTTP/1.1 200 ") {
                    return Err(io::Error::other("not 200"));
                }
                let cl =
                    content_length(head).ok_or_else(|| io::Error::other("no Content-Length"))?;
                let have = (c.len - end - 4) as u64;
                if have > cl {
                    return Err(io::Error::other("more than one response"));
                }
                *bytes += have;
                c.phase = Phase::Body(cl - have);
            }
            Phase::Body(0) => {
                *requests += 1;
                c.phase = Phase::Send(0);
            }
            Phase::Body(left) => {
                let want = left.min(1 << 30) as usize;
                // SAFETY: MSG_TRUNC on a TCP socket discards up to `want` bytes without
                // writing through the (null) buffer pointer.
                let r = unsafe {
                    libc::recv(
                        c.sock.as_raw_fd(),
                        std::ptr::null_mut(),
                        want,
                        libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        return Ok(());
                    }
                    return Err(e);
                }
                if r == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *bytes += r as u64;
                c.phase = Phase::Body(left - r as u64);
            }
        }
    }
}

fn content_length(head: &[u8]) -> Option<u64> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok()
    })
}
