//! The client address of one request (nginx's realip module): the peer's, unless the peer is
//! trusted (`set_real_ip_from`) and names another in `real_ip_header` — a header field, or the
//! PROXY protocol header its connection began with.
//!
//! As nginx does, the settings of the request's server apply first (nginx's post-read phase);
//! when they change nothing, those of the location it is routed to (the preaccess phase). The
//! address found is what `allow`/`deny`, the access log and uWSGI's REMOTE_ADDR see.
//!
//! Owns the choice of settings and the collection of the header's fields (a fixed array, no
//! allocation). The list rules are `http::realip`'s. Never: counts connections (the loop
//! does, at accept and after a PROXY header: see `trusted_anywhere`), or reads a socket.

use crate::config::{Cidr, Config, RealIp, RealIpHeader};
use crate::http::realip::forwarded_addr;
use crate::http::request::fields;
use std::net::{IpAddr, SocketAddr};

/// Most `X-Forwarded-For` fields walked in one request; beyond it the earliest are ignored
/// (the last ones, added by the proxies nearest to us, are the ones that count).
pub const MAX_FORWARDED_FIELDS: usize = 32;

/// What a request offers for realip: its head bytes, the peer, and the source address of the
/// PROXY protocol header its connection began with (when it had one naming an address).
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The request head (request line to the blank line), as `parse_head` accepted it.
    pub head: &'a [u8],
    pub peer: SocketAddr,
    pub proxied: Option<SocketAddr>,
}

/// The client address of a request routed to server `server` and, when one matched, location
/// `location` (indices into `cfg`).
pub fn client_addr(
    cfg: &Config,
    server: usize,
    location: Option<usize>,
    src: Sources<'_>,
) -> SocketAddr {
    let Some(s) = cfg.servers.get(server) else {
        return src.peer;
    };
    if let Some(addr) = apply(&s.realip, src) {
        return addr;
    }
    location
        .and_then(|l| s.locations.get(l))
        .and_then(|l| apply(&l.realip, src))
        .unwrap_or(src.peer)
}

/// The address `conf` gives, or `None` when it changes nothing.
fn apply(conf: &RealIp, src: Sources<'_>) -> Option<SocketAddr> {
    if conf.from.is_empty() {
        return None;
    }
    let trusted = |ip: IpAddr| conf.from.iter().any(|c| c.contains(ip));
    match &conf.header {
        RealIpHeader::ProxyProtocol => src.proxied.filter(|_| trusted(src.peer.ip())),
        RealIpHeader::XForwardedFor => {
            if !trusted(src.peer.ip()) {
                return None;
            }
            let values = all_fields(src.head, b"x-forwarded-for");
            forwarded_addr(src.peer, &values, &trusted, conf.recursive)
        }
        RealIpHeader::XRealIp => first_field(conf, src, b"x-real-ip", &trusted),
        RealIpHeader::Field(name) => first_field(conf, src, name.as_bytes(), &trusted),
    }
}

/// The first field called `name`, walked as nginx walks X-Real-IP.
fn first_field(
    conf: &RealIp,
    src: Sources<'_>,
    name: &[u8],
    trusted: &dyn Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    if !trusted(src.peer.ip()) {
        return None;
    }
    let value = fields(src.head)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?
        .1;
    forwarded_addr(src.peer, &[value], trusted, conf.recursive)
}

/// Every field called `name`, in order; the last [`MAX_FORWARDED_FIELDS`] of them.
fn all_fields<'a>(head: &'a [u8], name: &[u8]) -> heapless::Vec<&'a [u8], MAX_FORWARDED_FIELDS> {
    let mut out = heapless::Vec::new();
    for (_, value) in fields(head).filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        if out.is_full() {
            out.remove(0);
        }
        let _ = out.push(value);
    }
    out
}

/// Every `set_real_ip_from` network of the file, whatever its section: peers the loop does not
/// count against `limit_conn_per_ip` at accept (a balancer holds many connections), and whose
/// PROXY protocol source address it counts instead. Made at start and on reload.
pub fn trusted_anywhere(cfg: &Config) -> Vec<Cidr> {
    let mut all: Vec<Cidr> = Vec::new();
    let sections = std::iter::once(&cfg.global.realip).chain(
        cfg.servers
            .iter()
            .flat_map(|s| std::iter::once(&s.realip).chain(s.locations.iter().map(|l| &l.realip))),
    );
    for conf in sections {
        for c in &conf.from {
            if !all.contains(c) {
                all.push(*c);
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        crate::config::parse(text, Path::new("/t/uwgate.ini"), &|_| None).unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn client(c: &Config, location: Option<usize>, head: &str, peer: &str) -> SocketAddr {
        let src = Sources {
            head: head.as_bytes(),
            peer: sa(peer),
            proxied: Some(sa("198.51.100.77:5555")),
        };
        client_addr(c, 0, location, src)
    }

    const XFF_HEAD: &str =
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.7\r\nX-Real-IP: 192.0.2.44\r\n\r\n";

    #[test]
    fn without_set_real_ip_from_the_peer_is_the_client() {
        let c = cfg("[server]\nreal_ip_header = X-Forwarded-For\n[location:/]\nroot = /x\n");
        assert_eq!(
            client(&c, Some(0), XFF_HEAD, "10.0.0.2:1"),
            sa("10.0.0.2:1")
        );
    }

    #[test]
    fn x_real_ip_is_the_default_header() {
        let c = cfg("[server]\nset_real_ip_from = 10.0.0.0/8\n[location:/]\nroot = /x\n");
        assert_eq!(
            client(&c, Some(0), XFF_HEAD, "10.0.0.2:1"),
            sa("192.0.2.44:0")
        );
        assert_eq!(
            client(&c, Some(0), XFF_HEAD, "192.0.2.1:1"),
            sa("192.0.2.1:1")
        );
    }

    #[test]
    fn x_forwarded_for_from_a_trusted_peer_and_recursive() {
        let c = cfg(
            "[uwgate]\nset_real_ip_from = 10.0.0.0/8\nreal_ip_header = X-Forwarded-For\n\
             [server]\n[location:/a/]\nroot = /x\n[location:/b/]\nroot = /x\nreal_ip_recursive = on\n",
        );
        // Server settings apply first: not recursive, the last element.
        assert_eq!(
            client(&c, Some(1), XFF_HEAD, "10.0.0.2:1"),
            sa("10.0.0.7:0")
        );
        assert_eq!(client(&c, None, XFF_HEAD, "10.0.0.2:1"), sa("10.0.0.7:0"));
    }

    #[test]
    fn the_location_applies_when_the_server_changes_nothing() {
        let c = cfg("[server]\n[location:/a/]\nroot = /x\n\
             [location:/b/]\nroot = /x\nset_real_ip_from = 10.0.0.0/8\n\
             real_ip_header = X-Forwarded-For\nreal_ip_recursive = on\n");
        assert_eq!(
            client(&c, Some(0), XFF_HEAD, "10.0.0.2:1"),
            sa("10.0.0.2:1")
        );
        assert_eq!(
            client(&c, Some(1), XFF_HEAD, "10.0.0.2:1"),
            sa("203.0.113.9:0")
        );
        assert_eq!(client(&c, None, XFF_HEAD, "10.0.0.2:1"), sa("10.0.0.2:1"));
    }

    #[test]
    fn proxy_protocol_address_only_from_a_trusted_peer() {
        let c = cfg(
            "[server]\nset_real_ip_from = 127.0.0.1\nreal_ip_header = proxy_protocol\n\
             [location:/]\nroot = /x\n",
        );
        assert_eq!(
            client(&c, Some(0), XFF_HEAD, "127.0.0.1:9"),
            sa("198.51.100.77:5555")
        );
        assert_eq!(
            client(&c, Some(0), XFF_HEAD, "127.0.0.2:9"),
            sa("127.0.0.2:9")
        );
        let src = Sources {
            head: XFF_HEAD.as_bytes(),
            peer: sa("127.0.0.1:9"),
            proxied: None,
        };
        assert_eq!(client_addr(&c, 0, Some(0), src), sa("127.0.0.1:9"));
    }

    #[test]
    fn a_custom_field_is_read_like_x_real_ip() {
        let c = cfg(
            "[server]\nset_real_ip_from = 10.0.0.0/8\nreal_ip_header = CF-Connecting-IP\n\
             [location:/]\nroot = /x\n",
        );
        let head = "GET / HTTP/1.1\r\nHost: a\r\ncf-connecting-ip: 2001:db8::9\r\ncf-connecting-ip: 192.0.2.1\r\n\r\n";
        assert_eq!(
            client(&c, Some(0), head, "10.9.9.9:1"),
            sa("[2001:db8::9]:0")
        );
    }

    #[test]
    fn only_the_last_forwarded_fields_are_walked() {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        head.push_str("X-Forwarded-For: 192.0.2.1\r\n");
        for _ in 0..MAX_FORWARDED_FIELDS {
            head.push_str("X-Forwarded-For: 10.0.0.5\r\n");
        }
        head.push_str("\r\n");
        let c = cfg(
            "[server]\nset_real_ip_from = 10.0.0.0/8\nreal_ip_header = X-Forwarded-For\n\
             real_ip_recursive = on\n[location:/]\nroot = /x\n",
        );
        assert_eq!(client(&c, Some(0), &head, "10.0.0.2:1"), sa("10.0.0.5:0"));
    }

    #[test]
    fn trusted_anywhere_collects_every_section_once() {
        let c = cfg(
            "[uwgate]\nset_real_ip_from = 10.0.0.0/8\n[server]\nset_real_ip_from = 10.0.0.0/8\n\
             [location:/]\nroot = /x\nset_real_ip_from = ::1\n",
        );
        let all = trusted_anywhere(&c);
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|n| n.contains("10.1.2.3".parse().unwrap())));
        assert!(all.iter().any(|n| n.contains("::1".parse().unwrap())));
    }
}
