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
                crate::sort::sort_by_key(&mut idx, |&i| {
                    std::cmp::Reverse(s.locations.get(i).map_or(0, |l| l.prefix.len()))
                });
                idx
            })
            .collect();
        Router { order }
    }

    /// The server answering on `local` for `host` (port and a trailing dot stripped,
    /// case-insensitive), in nginx's order among the servers listening there: an exact
    /// server_name, else the longest leading wildcard (`*.example.com`, `.example.com`), else
    /// the longest trailing wildcard (`www.example.*`), else the first of them (the default).
    /// Among equals, the first server in the file wins.
    pub fn server(&self, cfg: &Config, local: SocketAddr, host: Option<&[u8]>) -> Option<usize> {
        let mut default = None;
        // (rank, length of the matched name, server): exact 3, leading 2, trailing 1.
        let mut best: Option<(u8, usize, usize)> = None;
        let host = host
            .map(crate::http::request::host_name)
            .map(|h| h.strip_suffix(b".").unwrap_or(h));
        for (i, s) in cfg.servers.iter().enumerate() {
            if !listens_on(s, local) {
                continue;
            }
            default.get_or_insert(i);
            let Some(h) = host else {
                continue;
            };
            for name in &s.server_name {
                if let Some(rank) = name_match_rank(name.as_bytes(), h) {
                    let better = best.is_none_or(|(r, len, _)| (rank, name.len()) > (r, len));
                    if better {
                        best = Some((rank, name.len(), i));
                    }
                }
            }
        }
        best.map(|(_, _, i)| i)
            .or(default)
            .or(if cfg.servers.is_empty() {
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
            let Some(loc) = server.locations.get(li) else {
                continue;
            };
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

/// How well server_name `name` matches `host` (nginx's precedence): `Some(3)` exact,
/// `Some(2)` a leading wildcard (`*.example.com`: a subdomain; `.example.com`: the domain or a
/// subdomain), `Some(1)` a trailing wildcard (`www.example.*`), `None` no match.
fn name_match_rank(name: &[u8], host: &[u8]) -> Option<u8> {
    let ends_with = |suffix: &[u8]| {
        host.len() > suffix.len()
            && host
                .get(host.len() - suffix.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
    };
    if let Some(suffix) = name.strip_prefix(b"*") {
        // "*.example.com": at least one label before ".example.com".
        return ends_with(suffix).then_some(2);
    }
    if let Some(domain) = name.strip_prefix(b".") {
        return (domain.eq_ignore_ascii_case(host) || ends_with(name)).then_some(2);
    }
    if let Some(prefix) = name.strip_suffix(b"*") {
        // "www.example.*": at least one label after "www.example.".
        let starts = host.len() > prefix.len()
            && host
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
        return starts.then_some(1);
    }
    name.eq_ignore_ascii_case(host).then_some(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_stripped_from_host() {
        assert_eq!(
            crate::http::request::host_name(b"django.blog:8080"),
            b"django.blog"
        );
        assert_eq!(crate::http::request::host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(crate::http::request::host_name(b"plain"), b"plain");
    }

    #[test]
    fn wildcard_names_match_subdomains_only() {
        assert_eq!(
            name_match_rank(b"*.example.com", b"www.Example.com"),
            Some(2)
        );
        assert_eq!(
            name_match_rank(b"*.example.com", b"a.b.example.com"),
            Some(2)
        );
        assert_eq!(name_match_rank(b"*.example.com", b"example.com"), None);
        assert_eq!(name_match_rank(b"*.example.com", b".example.com"), None);
        assert_eq!(name_match_rank(b"*.example.com", b"badexample.com"), None);
        assert_eq!(name_match_rank(b"django.blog", b"DJANGO.BLOG"), Some(3));
        assert_eq!(name_match_rank(b"django.blog", b"www.django.blog"), None);
    }

    #[test]
    fn dot_names_match_the_domain_and_its_subdomains() {
        assert_eq!(name_match_rank(b".example.com", b"example.com"), Some(2));
        assert_eq!(name_match_rank(b".example.com", b"EXAMPLE.com"), Some(2));
        assert_eq!(
            name_match_rank(b".example.com", b"www.example.com"),
            Some(2)
        );
        assert_eq!(name_match_rank(b".example.com", b"badexample.com"), None);
        assert_eq!(name_match_rank(b".example.com", b"example.org"), None);
    }

    #[test]
    fn trailing_wildcards_match_any_last_labels() {
        assert_eq!(
            name_match_rank(b"www.example.*", b"www.example.org"),
            Some(1)
        );
        assert_eq!(
            name_match_rank(b"www.example.*", b"www.example.co.uk"),
            Some(1)
        );
        assert_eq!(name_match_rank(b"www.example.*", b"www.example."), None);
        assert_eq!(name_match_rank(b"www.example.*", b"www.examples.org"), None);
    }

    fn config(text: &str) -> Config {
        crate::config::parse(text, std::path::Path::new("/etc/uwgate.ini"), &|_| None).unwrap()
    }

    #[test]
    fn exact_beats_leading_beats_trailing_wildcards_whatever_the_order() {
        let cfg = config(
            "[server]\nlisten = 127.0.0.1:80\nserver_name = default.test\n\
             [server]\nlisten = 127.0.0.1:80\nserver_name = www.example.*\n\
             [server]\nlisten = 127.0.0.1:80\nserver_name = .example.com\n\
             [server]\nlisten = 127.0.0.1:80\nserver_name = *.www.example.com\n\
             [server]\nlisten = 127.0.0.1:80\nserver_name = www.example.com\n",
        );
        let router = Router::new(&cfg);
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let pick = |host: &[u8]| router.server(&cfg, local, Some(host));
        assert_eq!(pick(b"www.example.com"), Some(4));
        assert_eq!(pick(b"www.example.com."), Some(4));
        assert_eq!(pick(b"WWW.example.com:80"), Some(4));
        assert_eq!(pick(b"a.www.example.com"), Some(3));
        assert_eq!(pick(b"example.com"), Some(2));
        assert_eq!(pick(b"mail.example.com"), Some(2));
        assert_eq!(pick(b"www.example.org"), Some(1));
        assert_eq!(pick(b"other.test"), Some(0));
        assert_eq!(router.server(&cfg, local, None), Some(0));
    }
}
