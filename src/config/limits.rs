//! The limit keys `[uwgate]`, `[server]` and `[location:*]` share — nginx's directives that may
//! sit in `http`, `server` and `location` — and their inheritance `[uwgate]` → `[server]` →
//! `[location]`.
//!
//! Owns: reading those keys (`client_max_body_size`, `client_body_timeout`, `send_timeout`,
//! `keepalive_timeout`, `keepalive_requests`, `max_ranges`) into what a section sets, and
//! resolving a section's [`Limits`] from the ones it inherits. Must never: look at other keys or
//! decide which server a location belongs to (`build` does, then calls [`LimitKeys::apply`]).

use std::time::{Duration, Instant};

use super::values;
use super::Limits;

/// The limit keys; none repeats.
pub(crate) const LIMIT_KEYS: &[&str] = &[
    "client_max_body_size",
    "client_body_timeout",
    "send_timeout",
    "keepalive_timeout",
    "keepalive_requests",
    "max_ranges",
];

/// Largest `max_ranges` (nginx's NGX_MAX_INT32_VALUE).
const MAX_RANGES_VALUE: u64 = i32::MAX as u64;

/// What one section sets of the limit keys; `None` inherits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitKeys {
    client_max_body_size: Option<u64>,
    client_body_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    keepalive_requests: Option<u32>,
    max_ranges: Option<u32>,
}

impl LimitKeys {
    /// Reads `key = value` when `key` is a limit key: `None` for any other key, else the
    /// outcome (`Err` says what was expected, for `Section::invalid`).
    pub(crate) fn read(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let outcome = match key {
            "client_max_body_size" => {
                values::size(value).map(|n| self.client_max_body_size = Some(n))
            }
            "client_body_timeout" => {
                values::duration(value, false).map(|d| self.client_body_timeout = Some(d))
            }
            "send_timeout" => values::duration(value, false).map(|d| self.send_timeout = Some(d)),
            "keepalive_timeout" => {
                values::duration(value, true).map(|d| self.keepalive_timeout = Some(d))
            }
            "keepalive_requests" => values::number_in(value, 0, u64::from(u32::MAX))
                .map(|n| self.keepalive_requests = Some(u32::try_from(n).unwrap_or(u32::MAX))),
            "max_ranges" => values::number_in(value, 0, MAX_RANGES_VALUE)
                .map(|n| self.max_ranges = Some(u32::try_from(n).unwrap_or(u32::MAX))),
            _ => return None,
        };
        Some(outcome)
    }

    /// The limits of a section that sets these keys and inherits the rest from `inherited`.
    pub(crate) fn apply(&self, inherited: Limits) -> Limits {
        Limits {
            client_max_body_size: self
                .client_max_body_size
                .unwrap_or(inherited.client_max_body_size),
            client_body_timeout: self
                .client_body_timeout
                .unwrap_or(inherited.client_body_timeout),
            send_timeout: self.send_timeout.unwrap_or(inherited.send_timeout),
            keepalive_timeout: self
                .keepalive_timeout
                .unwrap_or(inherited.keepalive_timeout),
            keepalive_requests: self
                .keepalive_requests
                .unwrap_or(inherited.keepalive_requests),
            max_ranges: self.max_ranges.or(inherited.max_ranges),
        }
    }
}

impl Default for Limits {
    /// nginx's defaults (`max_ranges`: no limit of its own).
    fn default() -> Limits {
        Limits {
            client_max_body_size: 1 << 20,
            client_body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
            max_ranges: None,
        }
    }
}

impl Limits {
    /// Whether the connection may serve another request after the `requests`-th (counting this
    /// one): keep-alive is on (`keepalive_timeout` above 0) and `keepalive_requests` is not
    /// reached. Called once a request is routed.
    pub fn keeps_alive(&self, requests: u32) -> bool {
        !self.keepalive_timeout.is_zero() && requests < self.keepalive_requests
    }

    /// Whether a body of `len` bytes exceeds `client_max_body_size` (413); 0 is no limit.
    pub fn body_too_large(&self, len: u64) -> bool {
        self.client_max_body_size > 0 && len > self.client_max_body_size
    }

    /// Most ranges a static file serves: `max_ranges`, or `usize::MAX` without one (the range
    /// parser caps it at its own 16).
    pub fn max_ranges(&self) -> usize {
        self.max_ranges
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// When a request body read stalls: `client_body_timeout` after `now`, and, with a
    /// `client_body_min_rate` (`min_rate` bytes/s, 0 = off), no later than the time by which
    /// a body begun at `started` should have `received` bytes plus one `client_body_timeout`
    /// of grace — so a client trickling a byte per timeout is still cut off.
    pub fn body_deadline(
        &self,
        now: Instant,
        started: Instant,
        received: u64,
        min_rate: u64,
    ) -> Instant {
        let per_read = now + self.client_body_timeout;
        if min_rate == 0 {
            return per_read;
        }
        let earned = Duration::from_secs_f64(received as f64 / min_rate as f64);
        per_read.min(started + self.client_body_timeout + earned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> LimitKeys {
        let mut k = LimitKeys::default();
        for (key, value) in pairs {
            k.read(key, value).expect("a limit key").expect("valid");
        }
        k
    }

    #[test]
    fn defaults_are_nginx_defaults() {
        let l = Limits::default();
        assert_eq!(l.client_max_body_size, 1 << 20);
        assert_eq!(l.client_body_timeout, Duration::from_secs(60));
        assert_eq!(l.send_timeout, Duration::from_secs(60));
        assert_eq!(l.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(l.keepalive_requests, 1000);
        assert_eq!(l.max_ranges, None);
        assert_eq!(l.max_ranges(), usize::MAX);
    }

    #[test]
    fn every_limit_key_is_read() {
        let l = keys(&[
            ("client_max_body_size", "0"),
            ("client_body_timeout", "5s"),
            ("send_timeout", "2m"),
            ("keepalive_timeout", "0"),
            ("keepalive_requests", "7"),
            ("max_ranges", "0"),
        ])
        .apply(Limits::default());
        assert_eq!(
            l,
            Limits {
                client_max_body_size: 0,
                client_body_timeout: Duration::from_secs(5),
                send_timeout: Duration::from_secs(120),
                keepalive_timeout: Duration::ZERO,
                keepalive_requests: 7,
                max_ranges: Some(0),
            }
        );
    }

    #[test]
    fn other_keys_are_not_limit_keys() {
        let mut k = LimitKeys::default();
        assert!(k.read("root", "/x").is_none());
        assert!(k.read("client_header_timeout", "5s").is_none());
        assert_eq!(k, LimitKeys::default());
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let mut k = LimitKeys::default();
        for (key, value) in [
            ("client_max_body_size", "big"),
            ("client_body_timeout", "0"),
            ("send_timeout", "soon"),
            ("keepalive_timeout", "75s 60s"),
            ("keepalive_requests", "-1"),
            ("max_ranges", "2147483648"),
            ("max_ranges", "off"),
        ] {
            let why = k.read(key, value).expect("a limit key").unwrap_err();
            assert!(why.starts_with("expected"), "{key} = {value}: {why}");
        }
    }

    #[test]
    fn a_section_inherits_what_it_does_not_set() {
        let global = keys(&[("send_timeout", "10s"), ("max_ranges", "4")]).apply(Limits::default());
        let server = keys(&[("keepalive_requests", "3")]).apply(global);
        let location =
            keys(&[("send_timeout", "1s"), ("client_max_body_size", "5m")]).apply(server);
        assert_eq!(location.send_timeout, Duration::from_secs(1));
        assert_eq!(location.client_max_body_size, 5 << 20);
        assert_eq!(location.keepalive_requests, 3);
        assert_eq!(location.max_ranges, Some(4));
        assert_eq!(location.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(LimitKeys::default().apply(location), location);
    }

    #[test]
    fn keep_alive_needs_a_timeout_and_requests_left() {
        let l = Limits::default();
        assert!(l.keeps_alive(1));
        assert!(l.keeps_alive(999));
        assert!(!l.keeps_alive(1000));
        let off = keys(&[("keepalive_timeout", "0")]).apply(l);
        assert!(!off.keeps_alive(1));
        let one = keys(&[("keepalive_requests", "1")]).apply(l);
        assert!(!one.keeps_alive(1));
    }

    #[test]
    fn zero_body_size_is_unlimited() {
        let l = Limits::default();
        assert!(!l.body_too_large(1 << 20));
        assert!(l.body_too_large((1 << 20) + 1));
        let unlimited = keys(&[("client_max_body_size", "0")]).apply(l);
        assert!(!unlimited.body_too_large(u64::MAX));
    }

    #[test]
    fn body_deadline_is_the_earlier_of_idle_and_rate() {
        let l = keys(&[("client_body_timeout", "10s")]).apply(Limits::default());
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(30);
        assert_eq!(
            l.body_deadline(now, t0, 0, 0),
            now + Duration::from_secs(10)
        );
        // 1 KiB/s: 1024 bytes earn one second after the 10 s grace.
        assert_eq!(
            l.body_deadline(now, t0, 1024, 1024),
            t0 + Duration::from_secs(11)
        );
        assert_eq!(
            l.body_deadline(t0, t0, 1 << 30, 1024),
            t0 + Duration::from_secs(10)
        );
    }
}
