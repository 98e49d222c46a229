//! `[uwgate]`: the global section.
//!
//! Owns: reading each global key into [`Global`], with its default and allowed range, and the
//! one check between two global keys (`buffer_pool` against `worker_connections`). Must never:
//! look at other sections — file-wide checks live in `build`.

use super::expand::Vars;
use super::limits::{LimitKeys, LIMIT_KEYS};
use super::realip::{RealIpKeys, REALIP_KEYS, REALIP_REPEATABLE};
use super::syntax::{Entry, Section, Seen};
use super::values;
use super::{ConfigError, Global};

/// Every key `[uwgate]` takes besides the limit keys ([`LIMIT_KEYS`]); none repeats.
const KEYS: &[&str] = &[
    "user",
    "group",
    "pidfile",
    "worker_connections",
    "client_header_buffer_size",
    "buffer_size",
    "buffer_pool",
    "temp_path",
    "client_header_timeout",
    "client_body_min_rate",
    "shutdown_timeout",
    "listen_backlog",
    "server_tokens",
    "syslog",
    "syslog_facility",
    "syslog_tag",
    "access_log",
    "access_log_tag",
    "error_log_level",
    "open_file_cache",
    "open_file_cache_valid",
    "limit_conn_per_ip",
    "proxy_protocol_timeout",
    "shutdown_delay",
    "upgrade_binary",
    "control_socket",
    "control_socket_group",
    "control_socket_mode",
];

/// Largest `worker_connections`.
const MAX_CONNECTIONS: u64 = 1_000_000;

/// Builds [`Global`] from the `[uwgate]` section; `warnings` receives `(line, message)` for
/// values accepted but probably meant otherwise.
pub(crate) fn build_global(
    section: &Section,
    vars: &Vars<'_>,
    warnings: &mut Vec<(usize, String)>,
) -> Result<Global, ConfigError> {
    let mut global = Global::default();
    let mut seen = Seen::default();
    // buffer_pool is checked once worker_connections is known, wherever it is in the section.
    let mut pool: Option<(u64, &Entry, String)> = None;
    let mut limits = LimitKeys::default();
    let mut realip = RealIpKeys::default();
    for entry in &section.entries {
        let key = entry.key.as_str();
        if !KEYS.contains(&key) && !LIMIT_KEYS.contains(&key) && !REALIP_KEYS.contains(&key) {
            return Err(section.unknown(entry));
        }
        seen.once(section, entry, &[REALIP_REPEATABLE])?;
        let value = vars.expand(section, entry)?;
        let bad = |why: String| section.invalid(entry, &value, &why);
        if let Some(read) = limits.read(key, &value) {
            read.map_err(bad)?;
            continue;
        }
        if let Some(read) = realip.read(key, &value) {
            if let Some(warning) = read.map_err(bad)? {
                warnings.push((entry.line, format!("{warning} in [{}]", section.title)));
            }
            continue;
        }
        if key == "buffer_pool" {
            let n = values::number_in(&value, 1, MAX_CONNECTIONS * 2).map_err(bad)?;
            pool = Some((n, entry, value.clone()));
            continue;
        }
        let read = read_process_key(&mut global, key, &value)
            .or_else(|| read_capacity_key(&mut global, key, &value))
            .or_else(|| read_timing_key(&mut global, key, &value))
            .or_else(|| read_logging_key(&mut global, key, &value, vars));
        match read {
            Some(read) => read.map_err(bad)?,
            None => return Err(section.unknown(entry)),
        }
    }
    global.limits = limits.apply(global.limits);
    global.realip = realip.apply(&global.realip);
    global.buffer_pool = buffer_pool(section, &global, pool)?;
    Ok(global)
}

/// Who uwgate runs as and where its files are: user, group, pidfile, upgrade_binary,
/// temp_path, control_socket, control_socket_group, control_socket_mode. `None` for any other
/// key.
fn read_process_key(global: &mut Global, key: &str, value: &str) -> Option<Result<(), String>> {
    Some(match key {
        "user" => values::account(value).map(|v| global.user = Some(v)),
        "group" => values::account(value).map(|v| global.group = Some(v)),
        "pidfile" => values::absolute_path(value).map(|v| global.pidfile = Some(v)),
        "upgrade_binary" => values::absolute_path(value).map(|v| global.upgrade_binary = Some(v)),
        "temp_path" => values::absolute_path(value).map(|v| global.temp_path = v),
        "control_socket" => {
            if values::boolean(value) == Ok(false) {
                global.control_socket = None;
                Ok(())
            } else {
                values::control_socket(value).map(|v| global.control_socket = Some(v))
            }
        }
        "control_socket_group" => {
            values::account(value).map(|v| global.control_socket_group = Some(v))
        }
        "control_socket_mode" => {
            values::socket_mode(value).map(|v| global.control_socket_mode = Some(v))
        }
        _ => return None,
    })
}

/// How much uwgate holds: worker_connections, client_header_buffer_size, buffer_size,
/// listen_backlog, open_file_cache, limit_conn_per_ip (the last two: `off` is 0). `None` for
/// any other key.
fn read_capacity_key(global: &mut Global, key: &str, value: &str) -> Option<Result<(), String>> {
    let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let off_or = |max: u64| {
        if values::boolean(value) == Ok(false) {
            Ok(0)
        } else {
            values::number_in(value, 0, max)
        }
    };
    Some(match key {
        "worker_connections" => values::number_in(value, 1, MAX_CONNECTIONS)
            .map(|n| global.worker_connections = usize_of(n)),
        "client_header_buffer_size" => values::size_in(value, 1 << 10, 1 << 20)
            .map(|n| global.client_header_buffer_size = usize_of(n)),
        "buffer_size" => {
            values::size_in(value, 4 << 10, 16 << 20).map(|n| global.buffer_size = usize_of(n))
        }
        "listen_backlog" => values::number_in(value, 1, 65_535)
            .map(|n| global.listen_backlog = i32::try_from(n).unwrap_or(i32::MAX)),
        "open_file_cache" => off_or(1 << 20).map(|n| global.open_file_cache = usize_of(n)),
        "limit_conn_per_ip" => off_or(MAX_CONNECTIONS)
            .map(|n| global.limit_conn_per_ip = u32::try_from(n).unwrap_or(u32::MAX)),
        _ => return None,
    })
}

/// Timeouts and rates: client_header_timeout, client_body_min_rate, shutdown_timeout,
/// open_file_cache_valid, proxy_protocol_timeout, shutdown_delay. `None` for any other key.
fn read_timing_key(global: &mut Global, key: &str, value: &str) -> Option<Result<(), String>> {
    let duration = |allow_zero| values::duration(value, allow_zero);
    Some(match key {
        "client_header_timeout" => duration(false).map(|v| global.client_header_timeout = v),
        "client_body_min_rate" => values::size(value).map(|v| global.client_body_min_rate = v),
        "shutdown_timeout" => duration(true).map(|v| global.shutdown_timeout = v),
        "open_file_cache_valid" => duration(true).map(|v| global.open_file_cache_valid = v),
        "proxy_protocol_timeout" => duration(false).map(|v| global.proxy_protocol_timeout = v),
        "shutdown_delay" => duration(true).map(|v| global.shutdown_delay = v),
        _ => return None,
    })
}

/// What uwgate logs and says about itself: syslog, syslog_facility, syslog_tag, access_log,
/// access_log_tag, error_log_level, server_tokens. `None` for any other key.
fn read_logging_key(
    global: &mut Global,
    key: &str,
    value: &str,
    vars: &Vars<'_>,
) -> Option<Result<(), String>> {
    Some(match key {
        "syslog" => values::syslog_target(value, vars.resolve).map(|v| global.syslog = v),
        "syslog_facility" => values::facility(value).map(|v| global.syslog_facility = v),
        "syslog_tag" => values::tag(value).map(|v| global.syslog_tag = v),
        "access_log" => values::boolean(value).map(|v| global.access_log = v),
        "access_log_tag" => values::tag(value).map(|v| global.access_log_tag = v),
        "error_log_level" => values::level(value).map(|v| global.error_log_level = v),
        "server_tokens" => values::boolean(value).map(|v| global.server_tokens = v),
        _ => return None,
    })
}

/// `buffer_pool` against `worker_connections` (at most twice it); without one, as many as
/// worker_connections, at most 256.
fn buffer_pool(
    section: &Section,
    global: &Global,
    pool: Option<(u64, &Entry, String)>,
) -> Result<usize, ConfigError> {
    let most = global.worker_connections.saturating_mul(2);
    match pool {
        None => Ok(global.worker_connections.min(256)),
        Some((n, entry, value)) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > most {
                return Err(section.invalid(
                    entry,
                    &value,
                    &format!("expected a number from 1 to {most} (twice worker_connections)"),
                ));
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::super::{parse, SyslogTarget};
    use super::*;

    fn global(body: &str) -> Global {
        let text = format!("[uwgate]\n{body}");
        parse(&text, Path::new("/etc/uwgate.ini"), &|_| None)
            .unwrap()
            .global
    }

    fn error(body: &str) -> String {
        let text = format!("[uwgate]\n{body}");
        parse(&text, Path::new("uwgate.ini"), &|_| None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_listed_key_is_read() {
        for key in KEYS {
            let text = format!("[uwgate]\n{key} = ???\n");
            if let Err(e) = parse(&text, Path::new("uwgate.ini"), &|_| None) {
                assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn empty_section_gives_every_default() {
        let g = global("");
        assert_eq!(g, Global::default());
        assert_eq!(g.user, None);
        assert_eq!(g.group, None);
        assert_eq!(g.pidfile, None);
        assert_eq!(g.worker_connections, 1024);
        assert_eq!(g.client_header_buffer_size, 8 << 10);
        assert_eq!(g.buffer_size, 16 << 10);
        assert_eq!(g.buffer_pool, 256);
        assert_eq!(g.limits.client_max_body_size, 1 << 20);
        assert_eq!(g.temp_path, PathBuf::from("/var/lib/uwgate/tmp"));
        assert_eq!(g.client_header_timeout, Duration::from_secs(60));
        assert_eq!(g.limits.client_body_timeout, Duration::from_secs(60));
        assert_eq!(g.client_body_min_rate, 1024);
        assert_eq!(g.limits.send_timeout, Duration::from_secs(60));
        assert_eq!(g.limits.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(g.limits.keepalive_requests, 1000);
        assert_eq!(g.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(g.listen_backlog, 511);
        assert!(g.server_tokens);
        assert_eq!(g.syslog, SyslogTarget::Unix(PathBuf::from("/dev/log")));
        assert_eq!(g.syslog_facility, 3);
        assert_eq!(g.syslog_tag, "uwgate");
        assert!(g.access_log);
        assert_eq!(g.access_log_tag, "uwgate-access");
        assert_eq!(g.error_log_level, log::LevelFilter::Info);
    }

    #[test]
    fn every_key_is_read() {
        let g = global(
            "user = nginx\ngroup = www\npidfile = /run/uwgate.pid\nworker_connections = 100\n\
             client_header_buffer_size = 4k\nbuffer_size = 64k\nbuffer_pool = 150\n\
             client_max_body_size = 0\ntemp_path = %(here)s/tmp\nclient_header_timeout = 5s\n\
             client_body_timeout = 1m\nclient_body_min_rate = 0\nsend_timeout = 500ms\n\
             keepalive_timeout = 0\nkeepalive_requests = 5\nshutdown_timeout = 30s\n\
             listen_backlog = 128\nserver_tokens = off\nsyslog = udp:127.0.0.1:5514\n\
             syslog_facility = local3\nsyslog_tag = web\naccess_log = no\n\
             access_log_tag = web-access\nerror_log_level = warn\n",
        );
        assert_eq!(g.user.as_deref(), Some("nginx"));
        assert_eq!(g.group.as_deref(), Some("www"));
        assert_eq!(g.pidfile, Some(PathBuf::from("/run/uwgate.pid")));
        assert_eq!(g.worker_connections, 100);
        assert_eq!(g.client_header_buffer_size, 4096);
        assert_eq!(g.buffer_size, 65536);
        assert_eq!(g.buffer_pool, 150);
        assert_eq!(g.limits.client_max_body_size, 0);
        assert_eq!(g.temp_path, PathBuf::from("/etc/tmp"));
        assert_eq!(g.client_header_timeout, Duration::from_secs(5));
        assert_eq!(g.limits.client_body_timeout, Duration::from_secs(60));
        assert_eq!(g.client_body_min_rate, 0);
        assert_eq!(g.limits.send_timeout, Duration::from_millis(500));
        assert_eq!(g.limits.keepalive_timeout, Duration::ZERO);
        assert_eq!(g.limits.keepalive_requests, 5);
        assert_eq!(g.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(g.listen_backlog, 128);
        assert!(!g.server_tokens);
        assert_eq!(
            g.syslog,
            SyslogTarget::Udp("127.0.0.1:5514".parse().unwrap())
        );
        assert_eq!(g.syslog_facility, 19);
        assert_eq!(g.syslog_tag, "web");
        assert!(!g.access_log);
        assert_eq!(g.access_log_tag, "web-access");
        assert_eq!(g.error_log_level, log::LevelFilter::Warn);
    }

    #[test]
    fn proxy_protocol_timeout_and_shutdown_delay_are_read() {
        let d = Global::default();
        assert_eq!(d.proxy_protocol_timeout, Duration::from_secs(30));
        assert_eq!(d.shutdown_delay, Duration::ZERO);
        let g = global(
            "proxy_protocol_timeout = 5s
shutdown_delay = 3s
",
        );
        assert_eq!(g.proxy_protocol_timeout, Duration::from_secs(5));
        assert_eq!(g.shutdown_delay, Duration::from_secs(3));
        assert_eq!(
            global(
                "shutdown_delay = 0
"
            )
            .shutdown_delay,
            Duration::ZERO
        );
        assert!(error(
            "proxy_protocol_timeout = 0
"
        )
        .contains("'proxy_protocol_timeout'"));
        assert!(error(
            "shutdown_delay = soon
"
        )
        .contains("'shutdown_delay'"));
    }

    #[test]
    fn control_socket_is_off_by_default_and_read_with_its_group_and_mode() {
        let g = global("");
        assert_eq!(g.control_socket, None);
        assert_eq!(g.control_socket_group, None);
        assert_eq!(g.control_socket_mode, None);
        let g = global(
            "control_socket = /run/uwgate.sock\ncontrol_socket_group = wheel\ncontrol_socket_mode = 0660\n",
        );
        assert_eq!(g.control_socket, Some(PathBuf::from("/run/uwgate.sock")));
        assert_eq!(g.control_socket_group.as_deref(), Some("wheel"));
        assert_eq!(g.control_socket_mode, Some(0o660));
        assert_eq!(global("control_socket = off\n").control_socket, None);
        assert!(
            error("control_socket = uwgate.sock\n").contains("expected an absolute socket path")
        );
        assert!(error("control_socket_mode = 0444\n").contains("the owner keeps rw"));
    }

    #[test]
    fn buffer_pool_defaults_to_worker_connections_up_to_256() {
        assert_eq!(global("worker_connections = 10\n").buffer_pool, 10);
        assert_eq!(global("worker_connections = 10000\n").buffer_pool, 256);
    }

    #[test]
    fn buffer_pool_may_reach_twice_worker_connections_wherever_it_is_written() {
        assert_eq!(
            global("buffer_pool = 20\nworker_connections = 10\n").buffer_pool,
            20
        );
        assert_eq!(
            error("buffer_pool = 21\nworker_connections = 10\n"),
            "uwgate.ini:2: invalid value '21' for 'buffer_pool' in [uwgate]: expected a number from 1 to 20 (twice worker_connections)"
        );
        assert_eq!(
            error("buffer_pool = 0\n"),
            "uwgate.ini:2: invalid value '0' for 'buffer_pool' in [uwgate]: expected a number from 1 to 2000000"
        );
    }

    #[test]
    fn ranges_are_enforced_with_the_expected_form() {
        assert_eq!(
            error("worker_connections = 0\n"),
            "uwgate.ini:2: invalid value '0' for 'worker_connections' in [uwgate]: expected a number from 1 to 1000000"
        );
        assert!(error("worker_connections = 1000001\n").contains("from 1 to 1000000"));
        assert_eq!(
            error("client_header_buffer_size = 512\n"),
            "uwgate.ini:2: invalid value '512' for 'client_header_buffer_size' in [uwgate]: expected a size from 1k to 1m (like 512, 8k, 16K, 10m, 1g)"
        );
        assert!(error("client_header_buffer_size = 2m\n").contains("from 1k to 1m"));
        assert!(error("buffer_size = 2k\n").contains("from 4k to 16m"));
        assert!(error("buffer_size = 17m\n").contains("from 4k to 16m"));
        assert!(error("listen_backlog = 0\n").contains("from 1 to 65535"));
        assert!(error("keepalive_requests = -1\n").contains("'keepalive_requests'"));
    }

    #[test]
    fn bad_values_name_key_and_expected_form() {
        assert_eq!(
            error("client_max_body_size = 1mb\n"),
            "uwgate.ini:2: invalid value '1mb' for 'client_max_body_size' in [uwgate]: expected a size like 512, 8k, 16K, 10m or 1g"
        );
        assert_eq!(
            error("send_timeout = soon\n"),
            "uwgate.ini:2: invalid value 'soon' for 'send_timeout' in [uwgate]: expected a duration like 500ms, 60s, 5m, 1h or 30d (a bare number is seconds)"
        );
        assert!(error("client_header_timeout = 0\n").contains("above 0"));
        assert!(error("server_tokens = maybe\n").contains("expected on or off"));
        assert!(error("syslog = dev/log\n").contains("'syslog'"));
        assert!(error("syslog_facility = local9\n").contains("local0..local7"));
        assert!(error("error_log_level = loud\n").contains("expected debug, info"));
        assert!(error("temp_path = tmp\n").contains("expected an absolute path"));
        assert!(error("pidfile = uwgate.pid\n").contains("expected an absolute path"));
        assert!(error("upgrade_binary = uwgate\n").contains("expected an absolute path"));
        assert_eq!(
            global("upgrade_binary = /opt/uwgate/bin/uwgate\n").upgrade_binary,
            Some(PathBuf::from("/opt/uwgate/bin/uwgate"))
        );
        assert!(error("syslog_tag = a b\n").contains("'syslog_tag'"));
        assert!(error("access_log_tag =\n").contains("'access_log_tag'"));
    }

    #[test]
    fn empty_user_or_group_is_an_error() {
        assert_eq!(
            error("user =\n"),
            "uwgate.ini:2: invalid value '' for 'user' in [uwgate]: expected a user or group name"
        );
        assert_eq!(
            error("user = nginx\ngroup = ; nobody\n"),
            "uwgate.ini:3: invalid value '' for 'group' in [uwgate]: expected a user or group name"
        );
    }

    #[test]
    fn unknown_and_duplicate_keys_are_errors() {
        assert_eq!(
            error("\nlisten = 80\n"),
            "uwgate.ini:3: unknown key 'listen' in [uwgate]"
        );
        assert_eq!(
            error("User = x\n"),
            "uwgate.ini:2: unknown key 'User' in [uwgate]"
        );
        assert_eq!(
            error("user = a\n; c\nuser = b\n"),
            "uwgate.ini:4: 'user' given twice in [uwgate] (lines 2 and 4)"
        );
    }

    #[test]
    fn env_values_expand_and_missing_ones_are_errors() {
        let text = "[uwgate]\nuser = %(ENV_APP_USER)s\n";
        let env = |name: &str| (name == "APP_USER").then(|| "django".to_string());
        let config = parse(text, Path::new("uwgate.ini"), &env).unwrap();
        assert_eq!(config.global.user.as_deref(), Some("django"));
        assert_eq!(
            parse(text, Path::new("uwgate.ini"), &|_| None).unwrap_err().to_string(),
            "uwgate.ini:2: cannot expand 'user' in [uwgate]: environment variable 'APP_USER' is not set"
        );
    }
}
