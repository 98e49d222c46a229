//! The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`, versions 1 and 2) that a
//! balancer sends before the HTTP request on a `listen … proxy_protocol` address, naming the
//! client's address and port.
//!
//! Owns the parse of that header from the bytes read so far: complete (its length, and the
//! addresses when it names some), not yet complete, or refused (not a PROXY header at all, a
//! malformed one, or one longer than the caller can hold). Pure: no socket, no allocation, no
//! panic on any input; a refusal is decided as early as the bytes allow, so a client that
//! sends `GET /` to such an address is refused at once rather than at its timeout.
//!
//! Never: decides whom to believe (that is realip's `set_real_ip_from`), or reads past the
//! header (what follows is the HTTP request).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature: the first 12 bytes of a binary header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included.
pub const V1_MAX: usize = 107;
/// The fixed part of a version 2 header (signature, version/command, family, length).
const V2_FIXED: usize = 16;
/// What a version 1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its length: the HTTP request starts this many bytes into the input.
    pub len: usize,
    /// 1 or 2.
    pub version: u8,
    /// `(source, destination)` of the proxied connection; `None` when the header names none
    /// (v1 `UNKNOWN`, v2 `LOCAL` — a balancer's own health check — or an unspecified or
    /// AF_UNIX family), in which case the connection's own addresses stand.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// What the bytes read so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A valid beginning; more bytes are needed.
    Partial,
    Complete(Header),
}

/// Why a connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The input does not begin like a PROXY header (an HTTP request sent straight to a
    /// `proxy_protocol` address, say).
    NotProxy,
    /// It began like one, then broke the format; the text says where.
    Malformed(&'static str),
    /// A version 2 header longer than the caller can hold.
    TooLong,
}

impl Refusal {
    /// Words for a log line.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotProxy => "no PROXY protocol header",
            Refusal::Malformed(why) => why,
            Refusal::TooLong => "a PROXY protocol v2 header longer than the input buffer",
        }
    }
}

/// Parses the header at the start of `input`; `max_len` is the most the caller can hold (a
/// longer v2 header is refused as soon as its length field is read).
pub fn parse(input: &[u8], max_len: usize) -> Result<Parsed, Refusal> {
    let v2_seen = input.len().min(V2_SIGNATURE.len());
    if input.get(..v2_seen) == V2_SIGNATURE.get(..v2_seen) {
        if input.len() < V2_SIGNATURE.len() {
            return Ok(Parsed::Partial);
        }
        return parse_v2(input, max_len);
    }
    let v1_seen = input.len().min(V1_PREFIX.len());
    if input.get(..v1_seen) == V1_PREFIX.get(..v1_seen) {
        if input.len() < V1_PREFIX.len() {
            return Ok(Parsed::Partial);
        }
        return parse_v1(input, max_len);
    }
    Err(Refusal::NotProxy)
}

// ---- version 1: "PROXY TCP4 192.0.2.1 192.0.2.11 56324 80\r\n" ------------------------------

fn parse_v1(input: &[u8], max_len: usize) -> Result<Parsed, Refusal> {
    let limit = V1_MAX.min(max_len);
    let too_long = if limit < V1_MAX {
        Refusal::TooLong
    } else {
        Refusal::Malformed("no CRLF in the first 107 bytes of a PROXY v1 line")
    };
    let window = input.get(..input.len().min(limit)).unwrap_or(input);
    // 1. The line ends at the first CR, which must be followed by LF; a lone LF is refused.
    let lf = window.iter().position(|&b| b == b'\n');
    let cr = window.iter().position(|&b| b == b'\r');
    if lf.is_some_and(|lf| cr.is_none_or(|cr| lf < cr)) {
        return Err(Refusal::Malformed(
            "a PROXY v1 line ending in LF without CR",
        ));
    }
    let Some(cr) = cr else {
        return if input.len() >= limit {
            Err(too_long)
        } else {
            Ok(Parsed::Partial)
        };
    };
    let len = cr + 2;
    match input.get(cr + 1) {
        _ if len > limit => return Err(too_long),
        None => return Ok(Parsed::Partial),
        Some(b'\n') => {}
        Some(_) => {
            return Err(Refusal::Malformed(
                "a PROXY v1 line ending in CR without LF",
            ))
        }
    }
    let line = window.get(..cr).unwrap_or(&[]);
    // 2. The fields, single spaces between them.
    let rest = line.get(V1_PREFIX.len()..).unwrap_or(&[]);
    let addresses = v1_fields(rest)?;
    Ok(Parsed::Complete(Header {
        len,
        version: 1,
        addresses,
    }))
}

/// `TCP4 SRC DST SPORT DPORT`, `TCP6 …`, or `UNKNOWN` followed by anything.
fn v1_fields(rest: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, Refusal> {
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(None);
    }
    let bad =
        Refusal::Malformed("a PROXY v1 line that is not TCP4/TCP6/UNKNOWN SRC DST SPORT DPORT");
    let mut words = rest.split(|&b| b == b' ');
    let family = words.next().ok_or(bad)?;
    let v6 = match family {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(bad),
    };
    let src = words.next().and_then(|w| v1_ip(w, v6)).ok_or(bad)?;
    let dst = words.next().and_then(|w| v1_ip(w, v6)).ok_or(bad)?;
    let sport = words.next().and_then(v1_port).ok_or(bad)?;
    let dport = words.next().and_then(v1_port).ok_or(bad)?;
    if words.next().is_some() {
        return Err(bad);
    }
    Ok(Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
    )))
}

/// An address of the family the line announced.
fn v1_ip(word: &[u8], v6: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(word).ok()?;
    if v6 {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        // Rust refuses leading zeros in IPv4 octets, as the spec does.
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A port 0..=65535 in decimal, without leading zeros.
fn v1_port(word: &[u8]) -> Option<u16> {
    let digits_only = !word.is_empty() && word.len() <= 5 && word.iter().all(u8::is_ascii_digit);
    if !digits_only || (word.len() > 1 && word.first() == Some(&b'0')) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse::<u16>().ok()
}

// ---- version 2: the binary header -------------------------------------------------------------

fn parse_v2(input: &[u8], max_len: usize) -> Result<Parsed, Refusal> {
    let (Some(&ver_cmd), Some(&family)) = (input.get(12), input.get(13)) else {
        return partial_v2(input);
    };
    if ver_cmd >> 4 != 2 {
        return Err(Refusal::Malformed(
            "a PROXY v2 header with a version other than 2",
        ));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => {
            return Err(Refusal::Malformed(
                "a PROXY v2 header with an unknown command",
            ))
        }
    };
    if !matches!(family, 0x00 | 0x11 | 0x12 | 0x21 | 0x22 | 0x31 | 0x32) {
        return Err(Refusal::Malformed(
            "a PROXY v2 header with an unknown address family",
        ));
    }
    let (Some(&hi), Some(&lo)) = (input.get(14), input.get(15)) else {
        return partial_v2(input);
    };
    let len = V2_FIXED + usize::from(u16::from_be_bytes([hi, lo]));
    if len > max_len {
        return Err(Refusal::TooLong);
    }
    let Some(block) = input.get(V2_FIXED..len) else {
        return Ok(Parsed::Partial);
    };
    let addresses = if local {
        // LOCAL: the balancer's own connection (a health check); the block is ignored.
        None
    } else {
        v2_addresses(family, block)?
    };
    Ok(Parsed::Complete(Header {
        len,
        version: 2,
        addresses,
    }))
}

/// Bytes 13 to 16 still missing: partial, as long as what is there is valid so far.
fn partial_v2(input: &[u8]) -> Result<Parsed, Refusal> {
    if let Some(&ver_cmd) = input.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(Refusal::Malformed(
                "a PROXY v2 header with a version other than 2",
            ));
        }
        if ver_cmd & 0x0f > 1 {
            return Err(Refusal::Malformed(
                "a PROXY v2 header with an unknown command",
            ));
        }
    }
    Ok(Parsed::Partial)
}

/// The addresses of a PROXY command's block; TLVs after them are skipped.
fn v2_addresses(family: u8, block: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, Refusal> {
    let short = Refusal::Malformed("a PROXY v2 header too short for its address family");
    let port = |at: usize| -> Result<u16, Refusal> {
        match (block.get(at), block.get(at + 1)) {
            (Some(&h), Some(&l)) => Ok(u16::from_be_bytes([h, l])),
            _ => Err(short),
        }
    };
    match family {
        // TCP or UDP over IPv4: 4 + 4 + 2 + 2 bytes.
        0x11 | 0x12 => {
            let ip = |at: usize| -> Result<IpAddr, Refusal> {
                let b: [u8; 4] = block
                    .get(at..at + 4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(short)?;
                Ok(IpAddr::V4(Ipv4Addr::from(b)))
            };
            Ok(Some((
                SocketAddr::new(ip(0)?, port(8)?),
                SocketAddr::new(ip(4)?, port(10)?),
            )))
        }
        // TCP or UDP over IPv6: 16 + 16 + 2 + 2 bytes.
        0x21 | 0x22 => {
            let ip = |at: usize| -> Result<IpAddr, Refusal> {
                let b: [u8; 16] = block
                    .get(at..at + 16)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(short)?;
                Ok(IpAddr::V6(Ipv6Addr::from(b)))
            };
            Ok(Some((
                SocketAddr::new(ip(0)?, port(32)?),
                SocketAddr::new(ip(16)?, port(34)?),
            )))
        }
        // UNSPEC and AF_UNIX: accepted, the connection's own addresses stand.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// What any input must satisfy — the fuzz harness for this parser (copy it into the fuzz
    /// crate's harness as target `proxy_protocol`): no panic; a complete header lies
    /// within the input and the limit, ends its v1 line with CRLF or starts with the v2
    /// signature; every shorter prefix of it is `Partial`; and bytes after it change nothing.
    /// Panics when one does not hold.
    fn check_invariants(input: &[u8], max_len: usize) {
        let Ok(Parsed::Complete(h)) = parse(input, max_len) else {
            // A refusal or a partial header: a longer input parses too (no panic either way).
            let _ = parse(input, usize::MAX);
            return;
        };
        assert!(
            h.len <= input.len() && h.len <= max_len,
            "{h:?} beyond the input"
        );
        let head = input.get(..h.len).unwrap_or(&[]);
        match h.version {
            1 => assert!(head.ends_with(b"\r\n") && h.len <= V1_MAX, "{h:?}"),
            _ => assert!(
                head.starts_with(&V2_SIGNATURE) && h.len >= V2_FIXED,
                "{h:?}"
            ),
        }
        assert_eq!(
            parse(head, max_len),
            Ok(Parsed::Complete(h)),
            "the header alone"
        );
        for cut in 0..h.len {
            assert_eq!(
                parse(input.get(..cut).unwrap_or(&[]), max_len),
                Ok(Parsed::Partial),
                "a {cut}-byte prefix of {h:?}"
            );
        }
    }

    fn complete(input: &[u8]) -> Header {
        match parse(input, 2048) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn malformed(input: &[u8]) -> &'static str {
        match parse(input, 2048) {
            Err(Refusal::Malformed(why)) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    /// A v2 header for `family` with `block` after the fixed part.
    fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&src);
        block.extend_from_slice(&dst);
        block.extend_from_slice(&sport.to_be_bytes());
        block.extend_from_slice(&dport.to_be_bytes());
        v2(0x21, 0x11, &block)
    }

    #[test]
    fn v1_tcp4_gives_both_addresses_and_its_length() {
        let input = b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 80\r\nGET / HTTP/1.1\r\n\r\n";
        let h = complete(input);
        assert_eq!(h.len, 42);
        assert_eq!(h.version, 1);
        assert_eq!(
            h.addresses,
            Some((sa("192.0.2.1:56324"), sa("192.0.2.11:80")))
        );
        assert_eq!(&input[h.len..h.len + 3], b"GET");
    }

    #[test]
    fn v1_tcp6_and_the_longest_line() {
        let h = complete(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
        assert_eq!(
            h.addresses,
            Some((sa("[2001:db8::1]:65535"), sa("[::1]:0")))
        );
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX);
        let h = complete(line.as_bytes());
        assert_eq!((h.len, h.addresses), (V1_MAX, None));
    }

    #[test]
    fn v1_unknown_keeps_the_connection_addresses() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").addresses, None);
        assert_eq!(
            complete(b"PROXY UNKNOWN anything at all\r\n").addresses,
            None
        );
    }

    #[test]
    fn partial_headers_wait_for_more() {
        for input in [
            &b""[..],
            b"P",
            b"PROXY",
            b"PROXY TCP4 192.0.2.1",
            b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 80\r",
            b"\r\n\r\n",
            &V2_SIGNATURE[..],
            &v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)[..27],
        ] {
            assert_eq!(
                parse(input, 2048),
                Ok(Parsed::Partial),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn an_http_request_is_not_a_proxy_header() {
        for input in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"G",
            b"proxy TCP4",
            b"PROXYTCP4",
            b"\r\n\r\nx",
        ] {
            assert_eq!(parse(input, 2048), Err(Refusal::NotProxy));
        }
    }

    #[test]
    fn malformed_v1_lines_are_refused() {
        for input in [
            &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
            b"PROXY \r\n",
        ] {
            assert!(
                malformed(input).contains("not TCP4/TCP6/UNKNOWN"),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").contains("LF without CR"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n").contains("LF without CR"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX").contains("CR without LF"));
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 120]].concat();
        assert!(malformed(&long).contains("first 107 bytes"));
        let cr_at_end = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 92], b"\r"].concat();
        assert_eq!(cr_at_end.len(), V1_MAX);
        assert!(malformed(&cr_at_end).contains("first 107 bytes"));
    }

    #[test]
    fn v2_tcp4_and_tcp6_give_addresses_and_skip_tlvs() {
        let mut h4 = v2_tcp4([203, 0, 113, 9], [10, 0, 0, 1], 40000, 443);
        h4.extend_from_slice(b"GET");
        let h = complete(&h4);
        assert_eq!((h.len, h.version), (28, 2));
        assert_eq!(
            h.addresses,
            Some((sa("203.0.113.9:40000"), sa("10.0.0.1:443")))
        );
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&1234u16.to_be_bytes());
        block.extend_from_slice(&80u16.to_be_bytes());
        block.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']); // a UNIQUE_ID TLV
        let h = complete(&v2(0x21, 0x21, &block));
        assert_eq!(h.len, 16 + 36 + 6);
        assert_eq!(
            h.addresses,
            Some((sa("[2001:db8::9]:1234"), sa("[::1]:80")))
        );
    }

    #[test]
    fn v2_local_unspec_and_unix_keep_the_connection_addresses() {
        assert_eq!(complete(&v2(0x20, 0x00, &[])).addresses, None);
        // LOCAL with an address block: ignored.
        let local = v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        let mut local = local.clone();
        local[12] = 0x20;
        assert_eq!(complete(&local).addresses, None);
        assert_eq!(complete(&v2(0x21, 0x00, &[])).addresses, None);
        assert_eq!(complete(&v2(0x21, 0x31, &[0; 216])).addresses, None);
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        let mut bad_version = v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        bad_version[12] = 0x11;
        assert!(malformed(&bad_version).contains("version other than 2"));
        assert!(malformed(&bad_version[..13]).contains("version other than 2"));
        let mut bad_command = bad_version.clone();
        bad_command[12] = 0x22;
        assert!(malformed(&bad_command).contains("unknown command"));
        assert!(malformed(&v2(0x21, 0x13, &[0; 12])).contains("unknown address family"));
        assert!(malformed(&v2(0x21, 0x41, &[0; 12])).contains("unknown address family"));
        assert!(malformed(&v2(0x21, 0x11, &[0; 11])).contains("too short"));
        assert!(malformed(&v2(0x21, 0x21, &[0; 35])).contains("too short"));
    }

    #[test]
    fn a_v2_header_longer_than_the_buffer_is_refused_from_its_length_field() {
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
        assert_eq!(parse(&big, 2048), Err(Refusal::TooLong));
        let fits = v2(0x21, 0x11, &[0; 100]);
        assert_eq!(parse(&fits, 116).map(|_| ()), Ok(()));
        assert_eq!(parse(&fits, 115), Err(Refusal::TooLong));
    }

    #[test]
    fn invariants_hold_on_the_examples() {
        let mut all: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 80\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
            v2(0x20, 0x00, &[]),
        ];
        all.push([all[2].clone(), b"GET / HTTP/1.1\r\n".to_vec()].concat());
        for input in &all {
            check_invariants(input, 2048);
        }
    }

    /// A small deterministic fuzzer until `fuzz/` runs the harness: mutations of the examples
    /// (flipped, dropped, inserted and truncated bytes) must keep every invariant.
    #[test]
    fn mutated_headers_keep_the_invariants() {
        let seeds: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 80\r\nGET / HTTP/1.1\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n".to_vec(),
            v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
            v2(0x21, 0x21, &[7; 42]),
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = seeds[(next() % seeds.len() as u64) as usize].clone();
            for _ in 0..(next() % 4) + 1 {
                let at = (next() % (input.len() as u64 + 1)) as usize;
                match next() % 4 {
                    0 if at < input.len() => input[at] ^= 1 << (next() % 8),
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    2 => input.insert(at, next() as u8),
                    _ => input.truncate(at),
                }
            }
            check_invariants(&input, 64 + (next() % 64) as usize);
        }
    }
}
