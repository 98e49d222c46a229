//! The realip keys `[uwgate]`, `[server]` and `[location:*]` share — nginx's
//! `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` — and their inheritance
//! `[uwgate]` → `[server]` → `[location]`.
//!
//! Owns: reading those keys into what one section sets, and resolving a section's [`RealIp`]
//! from the one it inherits, as nginx's merge does (a section without `set_real_ip_from`
//! inherits the whole list; the other two keys one by one). Must never: decide which address a
//! request gets — `server::realip` does, with `http::realip`'s pure rules.

use super::values;
use super::{Cidr, RealIp, RealIpHeader};
use std::net::IpAddr;

/// The realip keys; `set_real_ip_from` repeats.
pub(crate) const REALIP_KEYS: &[&str] =
    &["set_real_ip_from", "real_ip_header", "real_ip_recursive"];

/// The realip key that accumulates.
pub(crate) const REALIP_REPEATABLE: &str = "set_real_ip_from";

/// What one section sets of the realip keys; `None` (or an empty list) inherits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RealIpKeys {
    from: Vec<Cidr>,
    header: Option<RealIpHeader>,
    recursive: Option<bool>,
}

impl RealIpKeys {
    /// Reads `key = value` when `key` is a realip key: `None` for any other key, else the
    /// outcome — `Ok(Some(warning))` for a value accepted but probably meant otherwise, `Err`
    /// saying what was expected (for `Section::invalid`).
    pub(crate) fn read(
        &mut self,
        key: &str,
        value: &str,
    ) -> Option<Result<Option<String>, String>> {
        let outcome = match key {
            "set_real_ip_from" => real_ip_from(value).map(|(cidr, warning)| {
                if !self.from.contains(&cidr) {
                    self.from.push(cidr);
                }
                warning
            }),
            "real_ip_header" => real_ip_header(value).map(|h| {
                self.header = Some(h);
                None
            }),
            "real_ip_recursive" => values::boolean(value).map(|b| {
                self.recursive = Some(b);
                None
            }),
            _ => return None,
        };
        Some(outcome)
    }

    /// The settings of a section that sets these keys and inherits the rest from `inherited`.
    pub(crate) fn apply(&self, inherited: &RealIp) -> RealIp {
        RealIp {
            from: if self.from.is_empty() {
                inherited.from.clone()
            } else {
                self.from.clone()
            },
            header: self
                .header
                .clone()
                .unwrap_or_else(|| inherited.header.clone()),
            recursive: self.recursive.unwrap_or(inherited.recursive),
        }
    }
}

/// `set_real_ip_from`: an address or a network (`all` and `unix:` are refused: uwgate listens
/// on TCP only, and trusting everyone is written `0.0.0.0/0` and `::/0`).
fn real_ip_from(value: &str) -> Result<(Cidr, Option<String>), String> {
    let expected = || {
        "expected an address or a network, like 10.0.0.2, 10.0.0.0/8, ::1 or fd00::/8".to_string()
    };
    if value == "all" || value.starts_with("unix:") {
        return Err(expected());
    }
    let (rule, warning) = values::access(value, true).map_err(|_| expected())?;
    let (net, bits) = rule.net.ok_or_else(expected)?;
    // An IPv4-mapped IPv6 network is the IPv4 network it maps (peers are compared as IPv4).
    let (net, bits) = match net {
        IpAddr::V6(v6) if bits >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), bits - 96),
            None => (net, bits),
        },
        _ => (net, bits),
    };
    Ok((Cidr { net, bits }, warning))
}

/// `real_ip_header`: `X-Real-IP`, `X-Forwarded-For`, `proxy_protocol` or another field name.
fn real_ip_header(value: &str) -> Result<RealIpHeader, String> {
    if value.eq_ignore_ascii_case("x-real-ip") {
        return Ok(RealIpHeader::XRealIp);
    }
    if value.eq_ignore_ascii_case("x-forwarded-for") {
        return Ok(RealIpHeader::XForwardedFor);
    }
    if value == "proxy_protocol" {
        return Ok(RealIpHeader::ProxyProtocol);
    }
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if value.is_empty() || !value.bytes().all(token) {
        return Err(
            "expected X-Real-IP, X-Forwarded-For, proxy_protocol or a header field name"
                .to_string(),
        );
    }
    Ok(RealIpHeader::Field(value.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{parse, Config};
    use super::*;

    fn config(text: &str) -> Config {
        parse(text, Path::new("/etc/uwgate.ini"), &|_| None).unwrap()
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("uwgate.ini"), &|_| None)
            .unwrap_err()
            .to_string()
    }

    fn cidr(net: &str, bits: u8) -> Cidr {
        Cidr {
            net: net.parse().unwrap(),
            bits,
        }
    }

    #[test]
    fn realip_is_off_by_default_with_nginx_defaults() {
        let c = config("[server]\n[location:/]\nroot = /x\n");
        let want = RealIp {
            from: Vec::new(),
            header: RealIpHeader::XRealIp,
            recursive: false,
        };
        assert_eq!(c.global.realip, want);
        assert_eq!(c.servers[0].realip, want);
        assert_eq!(c.servers[0].locations[0].realip, want);
    }

    #[test]
    fn set_real_ip_from_repeats_in_every_section() {
        let c = config(
            "[uwgate]\nset_real_ip_from = 10.0.0.0/8\nset_real_ip_from = ::1\n\
             [server]\nset_real_ip_from = 192.168.1.7\nset_real_ip_from = 192.168.2.0/24\n\
             [location:/]\nroot = /x\nset_real_ip_from = 127.0.0.1\nset_real_ip_from = 127.0.0.2\n",
        );
        assert_eq!(
            c.global.realip.from,
            vec![cidr("10.0.0.0", 8), cidr("::1", 128)]
        );
        assert_eq!(
            c.servers[0].realip.from,
            vec![cidr("192.168.1.7", 32), cidr("192.168.2.0", 24)]
        );
        assert_eq!(
            c.servers[0].locations[0].realip.from,
            vec![cidr("127.0.0.1", 32), cidr("127.0.0.2", 32)]
        );
    }

    #[test]
    fn a_section_without_its_own_list_inherits_the_whole_list_and_each_other_key() {
        let c = config(
            "[server]\nreal_ip_recursive = on\n\
             [location:/a/]\nroot = /x\nreal_ip_header = X-Forwarded-For\n\
             [location:/b/]\nroot = /x\nset_real_ip_from = 10.1.0.0/16\nreal_ip_recursive = off\n\
             [uwgate]\nset_real_ip_from = 10.0.0.0/8\nreal_ip_header = proxy_protocol\n",
        );
        let server = &c.servers[0];
        assert_eq!(server.realip.from, vec![cidr("10.0.0.0", 8)]);
        assert_eq!(server.realip.header, RealIpHeader::ProxyProtocol);
        assert!(server.realip.recursive);
        let a = &server.locations[0].realip;
        assert_eq!(a.from, vec![cidr("10.0.0.0", 8)]);
        assert_eq!(a.header, RealIpHeader::XForwardedFor);
        assert!(a.recursive);
        let b = &server.locations[1].realip;
        assert_eq!(b.from, vec![cidr("10.1.0.0", 16)]);
        assert_eq!(b.header, RealIpHeader::ProxyProtocol);
        assert!(!b.recursive);
    }

    #[test]
    fn real_ip_header_takes_the_nginx_names_and_any_field() {
        for (value, want) in [
            ("X-Real-IP", RealIpHeader::XRealIp),
            ("x-forwarded-for", RealIpHeader::XForwardedFor),
            ("proxy_protocol", RealIpHeader::ProxyProtocol),
            (
                "CF-Connecting-IP",
                RealIpHeader::Field("CF-Connecting-IP".to_string()),
            ),
        ] {
            let c = config(&format!("[uwgate]\nreal_ip_header = {value}\n"));
            assert_eq!(c.global.realip.header, want, "{value}");
        }
    }

    #[test]
    fn bad_realip_values_name_what_was_expected() {
        assert_eq!(
            error("[uwgate]\nset_real_ip_from = all\n"),
            "uwgate.ini:2: invalid value 'all' for 'set_real_ip_from' in [uwgate]: expected an address or a network, like 10.0.0.2, 10.0.0.0/8, ::1 or fd00::/8"
        );
        assert!(error("[server]\nset_real_ip_from = unix:\n").contains("'set_real_ip_from'"));
        assert!(error("[server]\nset_real_ip_from = lb.example\n").contains("expected an address"));
        assert!(error("[server]\nset_real_ip_from = 10.0.0.0/33\n").contains("expected an address"));
        assert_eq!(
            error("[server]\n[location:/]\nroot = /x\nreal_ip_header = X Real\n"),
            "uwgate.ini:4: invalid value 'X Real' for 'real_ip_header' in [location:/]: expected X-Real-IP, X-Forwarded-For, proxy_protocol or a header field name"
        );
        assert!(error("[uwgate]\nreal_ip_recursive = maybe\n").contains("'real_ip_recursive'"));
        assert!(error("[uwgate]\nreal_ip_header = a\nreal_ip_header = b\n").contains("given twice"));
    }

    #[test]
    fn an_ipv4_mapped_network_is_its_ipv4_network() {
        let c = config("[uwgate]\nset_real_ip_from = ::ffff:10.0.0.0/104\nset_real_ip_from = ::ffff:127.0.0.1\n");
        assert_eq!(
            c.global.realip.from,
            vec![cidr("10.0.0.0", 8), cidr("127.0.0.1", 32)]
        );
        assert!(c.global.realip.from[1].contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_masked_network_warns_with_its_line() {
        let c = config("[uwgate]\nset_real_ip_from = 10.1.2.3/8\n");
        assert_eq!(c.global.realip.from, vec![cidr("10.0.0.0", 8)]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("/etc/uwgate.ini:2: low address bits"));
    }

    #[test]
    fn cidr_contains_compares_network_bits_and_maps_ipv4_in_ipv6() {
        assert!(cidr("10.0.0.0", 8).contains("10.9.8.7".parse().unwrap()));
        assert!(!cidr("10.0.0.0", 8).contains("11.0.0.1".parse().unwrap()));
        assert!(cidr("127.0.0.1", 32).contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!cidr("127.0.0.1", 32).contains("127.0.0.2".parse().unwrap()));
        assert!(cidr("0.0.0.0", 0).contains("1.2.3.4".parse().unwrap()));
        assert!(!cidr("0.0.0.0", 0).contains("::1".parse().unwrap()));
        assert!(cidr("fd00::", 8).contains("fd12::1".parse().unwrap()));
        assert!(cidr("::", 0).contains("2001:db8::1".parse().unwrap()));
    }
}
