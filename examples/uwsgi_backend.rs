//! `uwsgi_backend [ADDR]`: a tiny uWSGI stand-in that speaks the binary uwsgi protocol on
//! `ADDR` (default `127.0.0.1:8000`) and answers every request with a small `text/plain` HTTP
//! response naming its own pid, the method, `PATH_INFO`, `QUERY_STRING` and the number of body
//! bytes it received — enough to tell, from outside, that a request was forwarded, what the
//! backend saw, and whether the process answering is a new one after a restart.
//!
//! It is the backend of the appliance boot test (`make image-test`, `tests/image/`): built
//! static for musl with the standard library only, it runs inside the QEMU guest as a
//! `[program:backend]` that uwgate supervises. It prints one line per request on stdout, which
//! uwgate forwards to syslog under the program's name.
//!
//! Owns: one listening socket, one connection at a time (uwgate opens one per request).
//! Never: panics on a malformed packet (it answers 400 or drops the connection), keeps a
//! connection that stalls past `IO_TIMEOUT`, or reads more vars than a uwsgi packet can carry.
//!
//! Build: `cargo build --release --target x86_64-unknown-linux-musl --example uwsgi_backend`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Bound on any single read or write; a stalled peer is dropped, never waited on forever.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the backend reports about one request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    query: String,
    protocol: String,
    content_length: u64,
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_string());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("uwsgi_backend: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "uwsgi_backend: listening on {addr} (pid {})",
        std::process::id()
    );
    let mut served: u64 = 0;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("uwsgi_backend: accept: {e}");
                continue;
            }
        };
        served = served.saturating_add(1);
        match serve(stream) {
            Ok(Some(req)) => println!(
                "uwsgi_backend: request {served}: {} {} ({} body bytes)",
                req.method, req.path, req.content_length
            ),
            // Closed before a byte: a readiness probe (`ready = tcp:...`), not a request.
            Ok(None) => served = served.saturating_sub(1),
            Err(e) => eprintln!("uwsgi_backend: request {served}: {e}"),
        }
    }
}

/// Reads one uwsgi packet (and its body) from `stream` and writes the HTTP response.
/// `Ok(None)`: the peer closed without sending anything.
fn serve(mut stream: TcpStream) -> io::Result<Option<Request>> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = [0u8; 4];
    if stream.read(&mut head[..1])? == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut head[1..])?;
    let [modifier1, size_lo, size_hi, _modifier2] = head;
    if modifier1 != 0 {
        respond(&mut stream, "HTTP/1.1", 400, "modifier1 must be 0\n")?;
        return Err(io::Error::other(format!("modifier1 {modifier1}")));
    }
    let mut vars = vec![0u8; usize::from(u16::from_le_bytes([size_lo, size_hi]))];
    stream.read_exact(&mut vars)?;
    let req = match parse_vars(&vars) {
        Some(r) => r,
        None => {
            respond(&mut stream, "HTTP/1.1", 400, "malformed uwsgi vars\n")?;
            return Err(io::Error::other("malformed uwsgi vars"));
        }
    };
    // Drain the body: uwgate sends exactly CONTENT_LENGTH bytes after the vars.
    let got = io::copy(&mut (&mut stream).take(req.content_length), &mut io::sink())?;
    if got != req.content_length {
        return Err(io::Error::other(format!(
            "body ended after {got} of {} bytes",
            req.content_length
        )));
    }
    let body = format!(
        "uwsgi_backend pid={} method={} path={} query={} body={}\n",
        std::process::id(),
        req.method,
        req.path,
        req.query,
        got
    );
    let protocol = if req.protocol.starts_with("HTTP/1.") {
        req.protocol.as_str()
    } else {
        "HTTP/1.1"
    };
    respond(&mut stream, protocol, 200, &body)?;
    Ok(Some(req))
}

/// Parses the uwsgi vars block: repeated `u16le key length, key, u16le value length, value`.
/// Returns `None` when a length runs past the block or a key or value is not UTF-8.
fn parse_vars(mut block: &[u8]) -> Option<Request> {
    let mut req = Request::default();
    while !block.is_empty() {
        let (key, rest) = take_string(block)?;
        let (value, rest) = take_string(rest)?;
        block = rest;
        match key {
            "REQUEST_METHOD" => req.method = value.to_string(),
            "PATH_INFO" => req.path = value.to_string(),
            "QUERY_STRING" => req.query = value.to_string(),
            "SERVER_PROTOCOL" => req.protocol = value.to_string(),
            "CONTENT_LENGTH" if !value.is_empty() => req.content_length = value.parse().ok()?,
            _ => {}
        }
    }
    Some(req)
}

/// Splits one length-prefixed string off the front of `buf`.
fn take_string(buf: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = buf.split_first_chunk::<2>()?;
    let (text, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
    Some((std::str::from_utf8(text).ok()?, rest))
}

/// Writes a complete `text/plain` response with a Content-Length and closes the exchange.
fn respond(stream: &mut TcpStream, protocol: &str, status: u16, body: &str) -> io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let head = format!(
        "{protocol} {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         X-Backend-Pid: {}\r\n\r\n",
        body.len(),
        std::process::id()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(out: &mut Vec<u8>, key: &str, value: &str) {
        for s in [key, value] {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }

    #[test]
    fn vars_block_yields_method_path_query_and_length() {
        let mut block = Vec::new();
        var(&mut block, "REQUEST_METHOD", "POST");
        var(&mut block, "PATH_INFO", "/app/x");
        var(&mut block, "QUERY_STRING", "a=1");
        var(&mut block, "CONTENT_LENGTH", "12");
        var(&mut block, "HTTP_HOST", "example");
        let req = parse_vars(&block).expect("valid block");
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/app/x");
        assert_eq!(req.query, "a=1");
        assert_eq!(req.content_length, 12);
    }

    #[test]
    fn length_running_past_the_block_is_rejected() {
        let mut block = Vec::new();
        var(&mut block, "PATH_INFO", "/x");
        block.extend_from_slice(&[9, 0, b'A']);
        assert_eq!(parse_vars(&block), None);
        assert_eq!(parse_vars(&[1]), None);
    }

    #[test]
    fn non_numeric_content_length_is_rejected() {
        let mut block = Vec::new();
        var(&mut block, "CONTENT_LENGTH", "12x");
        assert_eq!(parse_vars(&block), None);
    }
}
