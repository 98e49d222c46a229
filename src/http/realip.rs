//! nginx's realip rules as pure functions: which client address a request carries when a
//! trusted peer names it in `X-Forwarded-For`, `X-Real-IP` or another field
//! (`ngx_http_get_forwarded_addr`, nginx 1.23 and later).
//!
//! Owns the walk over a header's address list and the parsing of one element (`1.2.3.4`,
//! `1.2.3.4:5678`, `[2001:db8::1]:5678`, `2001:db8::1`). Never: looks at a connection, a
//! config or a socket (the caller says whom it trusts), or allocates.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One element of a forwarded list as nginx's `ngx_parse_addr_port` reads it: an IPv4 address
/// with an optional `:port`, an IPv6 address in brackets with an optional `:port`, or a bare
/// IPv6 address. Without a port the port is 0 (REMOTE_PORT is then empty, as nginx sends it).
pub fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        let port = match after {
            "" => 0,
            _ => port(after.strip_prefix(':')?)?,
        };
        return Some(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let (host, port_text) = text.rsplit_once(':')?;
    let ip: std::net::Ipv4Addr = host.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port(port_text)?))
}

/// A port 1..=65535 in plain decimal digits.
fn port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&p| p > 0)
}

/// How one header value's walk ended (nginx's NGX_OK / NGX_DONE / NGX_DECLINED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// The whole list was consumed (or one step taken, not recursive): `addr` is the result.
    Complete,
    /// Stopped at an untrusted or unreadable element after taking at least one: `addr` is the
    /// result.
    Stopped,
    /// Nothing taken: the address stays.
    Declined,
}

/// Walks `value` from the right: while `addr` is trusted, the rightmost element not yet taken
/// becomes `addr` (one element only unless `recursive`).
fn walk(
    addr: &mut SocketAddr,
    mut value: &[u8],
    trusted: &dyn Fn(IpAddr) -> bool,
    recursive: bool,
) -> Walk {
    let mut found = false;
    let give_up = |found| if found { Walk::Stopped } else { Walk::Declined };
    loop {
        if !trusted(addr.ip()) {
            return give_up(found);
        }
        // 1. Drop separators at the end; 2. the element is what follows the last separator.
        let end = value
            .iter()
            .rposition(|&b| b != b' ' && b != b',')
            .map_or(0, |i| i + 1);
        let trimmed = value.get(..end).unwrap_or(&[]);
        let start = trimmed
            .iter()
            .rposition(|&b| b == b' ' || b == b',')
            .map_or(0, |i| i + 1);
        let Some(next) = trimmed.get(start..).and_then(parse_addr_port) else {
            return give_up(found);
        };
        *addr = next;
        found = true;
        // 3. What is left of the separator before the element.
        value = trimmed.get(..start.saturating_sub(1)).unwrap_or(&[]);
        if !recursive || start == 0 {
            return Walk::Complete;
        }
    }
}

/// The client address a trusted `peer` forwards: `values` are the header's fields in the order
/// they came (for `X-Forwarded-For` all of them, else the first), walked last to first as nginx
/// does. `None` when nothing is taken (the peer is not trusted, the header is absent or its last
/// element is unreadable); the address stays the peer's.
pub fn forwarded_addr(
    peer: SocketAddr,
    values: &[&[u8]],
    trusted: &dyn Fn(IpAddr) -> bool,
    recursive: bool,
) -> Option<SocketAddr> {
    let mut addr = peer;
    let mut outcome = Walk::Declined;
    let mut found = false;
    for value in values.iter().rev() {
        outcome = walk(&mut addr, value, trusted, recursive);
        if !recursive {
            break;
        }
        if outcome == Walk::Declined && found {
            outcome = Walk::Stopped;
            break;
        }
        if outcome != Walk::Complete {
            break;
        }
        found = true;
    }
    (outcome != Walk::Declined).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Trusts 10.0.0.0/8 and ::1.
    fn lan(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
        }
    }

    fn fwd(peer: &str, values: &[&str], recursive: bool) -> Option<SocketAddr> {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        forwarded_addr(sa(peer), &values, &lan, recursive)
    }

    #[test]
    fn elements_parse_like_nginx_addr_port() {
        assert_eq!(parse_addr_port(b"1.2.3.4"), Some(sa("1.2.3.4:0")));
        assert_eq!(parse_addr_port(b"1.2.3.4:5678"), Some(sa("1.2.3.4:5678")));
        assert_eq!(parse_addr_port(b"2001:db8::1"), Some(sa("[2001:db8::1]:0")));
        assert_eq!(
            parse_addr_port(b"[2001:db8::1]"),
            Some(sa("[2001:db8::1]:0"))
        );
        assert_eq!(
            parse_addr_port(b"[2001:db8::1]:443"),
            Some(sa("[2001:db8::1]:443"))
        );
        for bad in [
            &b""[..],
            b"unknown",
            b"1.2.3",
            b"1.2.3.4:",
            b"1.2.3.4:0",
            b"1.2.3.4:65536",
            b"1.2.3.4:+80",
            b"[1.2.3.4]",
            b"[::1",
            b"[::1]80",
            b"::1:80:",
            b"\xff",
            b"_gazonk",
        ] {
            assert_eq!(
                parse_addr_port(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_untrusted_peer_changes_nothing() {
        assert_eq!(fwd("192.0.2.1:1000", &["203.0.113.9"], false), None);
        assert_eq!(fwd("192.0.2.1:1000", &["203.0.113.9"], true), None);
    }

    #[test]
    fn a_trusted_peer_gives_the_last_element() {
        assert_eq!(
            fwd("10.0.0.2:1000", &["203.0.113.9, 10.0.0.7"], false),
            Some(sa("10.0.0.7:0"))
        );
        assert_eq!(
            fwd("10.0.0.2:1000", &["198.51.100.1,203.0.113.9"], false),
            Some(sa("203.0.113.9:0"))
        );
        assert_eq!(
            fwd("10.0.0.2:1000", &["203.0.113.9:4711"], false),
            Some(sa("203.0.113.9:4711"))
        );
    }

    #[test]
    fn recursive_skips_trusted_elements_from_the_right() {
        assert_eq!(
            fwd(
                "10.0.0.2:1",
                &["198.51.100.1, 203.0.113.9, 10.0.0.7, 10.0.0.8"],
                true
            ),
            Some(sa("203.0.113.9:0"))
        );
        // Every element trusted: the leftmost one.
        assert_eq!(
            fwd("10.0.0.2:1", &["10.1.1.1, 10.0.0.7"], true),
            Some(sa("10.1.1.1:0"))
        );
    }

    #[test]
    fn trailing_separators_and_spaces_are_skipped() {
        assert_eq!(
            fwd("10.0.0.2:1", &["203.0.113.9 ,  "], false),
            Some(sa("203.0.113.9:0"))
        );
        assert_eq!(
            fwd("10.0.0.2:1", &["198.51.100.1 10.0.0.9"], true),
            Some(sa("198.51.100.1:0"))
        );
    }

    #[test]
    fn an_unreadable_last_element_declines_and_an_unreadable_inner_one_stops() {
        assert_eq!(fwd("10.0.0.2:1", &["203.0.113.9, junk"], false), None);
        assert_eq!(fwd("10.0.0.2:1", &["203.0.113.9, junk"], true), None);
        assert_eq!(
            fwd("10.0.0.2:1", &["junk, 10.0.0.9"], true),
            Some(sa("10.0.0.9:0"))
        );
        assert_eq!(fwd("10.0.0.2:1", &[""], false), None);
        assert_eq!(fwd("10.0.0.2:1", &[", ,"], true), None);
    }

    #[test]
    fn several_fields_are_one_list_walked_from_the_last() {
        // Not recursive: the last field's last element.
        assert_eq!(
            fwd("10.0.0.2:1", &["198.51.100.1", "203.0.113.9"], false),
            Some(sa("203.0.113.9:0"))
        );
        // Recursive: on through earlier fields while trusted.
        assert_eq!(
            fwd("10.0.0.2:1", &["198.51.100.1, 10.5.5.5", "10.0.0.7"], true),
            Some(sa("198.51.100.1:0"))
        );
        // An untrusted element in a later field ends it there.
        assert_eq!(
            fwd(
                "10.0.0.2:1",
                &["198.51.100.1", "203.0.113.9, 10.0.0.7"],
                true
            ),
            Some(sa("203.0.113.9:0"))
        );
        // An earlier field that yields nothing keeps what the later ones gave.
        assert_eq!(
            fwd("10.0.0.2:1", &["junk", "10.0.0.7"], true),
            Some(sa("10.0.0.7:0"))
        );
        assert_eq!(fwd("10.0.0.2:1", &[], true), None);
    }

    #[test]
    fn ipv6_peers_and_elements() {
        assert_eq!(
            fwd("[::1]:1", &["2001:db8::5"], false),
            Some(sa("[2001:db8::5]:0"))
        );
        assert_eq!(
            fwd("[::1]:1", &["[2001:db8::5]:80, ::1"], true),
            Some(sa("[2001:db8::5]:80"))
        );
    }
}
