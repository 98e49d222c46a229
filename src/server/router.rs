//! Picks the server for a request (listening address, then Host) and the location inside it
//! (longest prefix, as nginx's prefix locations). Built once per config; lookups allocate nothing.

use crate::config::{Config, Location, Server};
use std::net::SocketAddr;

/// Routing tables derived from a config, with locations pre-sorted longest prefix first.
pub struct Router {
    /// Per server: location indices sorted by descending prefix length.
    order: Vec<Vec<usize>>,
}

impl Router {
    pub fn new(cfg: &Config) -> Router {
        let order = cfg
            .servers
            .iter()
            .map(|s| {
                let mut idx: Vec<usize> = (0..s.locations.len()).collect();
                idx.sort_by_key(|&i| std::cmp::Reverse(s.locations[i].prefix.len()));
                idx
            })
            .collect();
        Router { order }
    }

    /// The server answering on `local` for `host` (port stripped, case-insensitive): an exact
    /// or `*.suffix` server_name match among the servers listening there, else the first of them.
    pub fn server(&self, cfg: &Config, local: SocketAddr, host: Option<&[u8]>) -> Option<usize> {
        let mut default = None;
        let host = host.map(strip_port);
        for (i, s) in cfg.servers.iter().enumerate() {
            if !listens_on(s, local) {
                continue;
            }
            default.get_or_insert(i);
            if let Some(h) = host {
                if s.server_name.iter().any(|n| name_matches(n.as_bytes(), h)) {
                    return Some(i);
                }
            }
        }
        default.or(if cfg.servers.is_empty() {
            None
        } else {
            Some(0)
        })
    }

    /// The longest-prefix location of server `si` for the canonical `path`. `internal`
    /// locations match only internal redirects (X-Accel-Redirect).
    pub fn location<'c>(
        &self,
        cfg: &'c Config,
        si: usize,
        path: &[u8],
        internal: bool,
    ) -> Option<(usize, &'c Location)> {
        let server: &Server = cfg.servers.get(si)?;
        for &li in self.order.get(si)? {
            let loc = &server.locations[li];
            if path.starts_with(loc.prefix.as_bytes()) {
                if loc.internal && !internal {
                    // nginx: an internal location is invisible to clients (404).
                    return None;
                }
                return Some((li, loc));
            }
        }
        None
    }
}

fn listens_on(s: &Server, local: SocketAddr) -> bool {
    s.listen.iter().any(|l| {
        l.port() == local.port()
            && (l.ip() == local.ip() || (l.ip().is_unspecified() && l.is_ipv4() == local.is_ipv4()))
    })
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(p) => &host[..p],
        None => host,
    }
}

fn name_matches(name: &[u8], host: &[u8]) -> bool {
    if let Some(suffix) = name.strip_prefix(b"*") {
        return host.len() > suffix.len()
            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    }
    name.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_stripped_from_host() {
        assert_eq!(strip_port(b"django.blog:8080"), b"django.blog");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"plain"), b"plain");
    }

    #[test]
    fn wildcard_names_match_subdomains_only() {
        assert!(name_matches(b"*.example.com", b"www.Example.com"));
        assert!(!name_matches(b"*.example.com", b".example.com"));
        assert!(name_matches(b"django.blog", b"DJANGO.BLOG"));
    }
}
