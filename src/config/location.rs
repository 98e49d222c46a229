//! `[server]` and `[location:PREFIX]`: virtual servers and what serves each prefix.
//!
//! Owns: reading server and location keys, choosing a location's one handler, and refusing
//! keys that do not apply to that handler. Must never: decide which server a location belongs
//! to or compare locations with each other — `build` does that.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::at;
use super::build::Keys;
use super::expand::Vars;
use super::limits::{LimitKeys, LIMIT_KEYS};
use super::realip::{RealIpKeys, REALIP_KEYS};
use super::syntax::{Entry, Section, Seen};
use super::values;
use super::{
    AccessRule, ConfigError, Handler, Limits, Location, RealIp, Server, StaticBase, StaticConf,
    UwsgiConf,
};

/// Keys of `[server]` that accumulate (besides the limit keys ([`LIMIT_KEYS`]) and the realip
/// keys ([`REALIP_KEYS`]), a server takes only `listen` and `server_name`).
const SERVER_REPEATABLE: &[&str] = &["listen", "server_name", "set_real_ip_from"];

/// Keys that choose a location's handler.
const HANDLER_KEYS: &[&str] = &["alias", "root", "uwsgi_pass", "stub_status", "health"];
/// Keys of any location, besides the limit keys ([`LIMIT_KEYS`]).
const COMMON_KEYS: &[&str] = &["internal", "allow", "deny"];
/// Keys of alias/root locations only.
const STATIC_KEYS: &[&str] = &[
    "index",
    "gzip_static",
    "expires",
    "disable_symlinks",
    "charset",
];
/// Keys of uwsgi_pass locations only.
const UWSGI_KEYS: &[&str] = &[
    "uwsgi_param",
    "uwsgi_connect_timeout",
    "uwsgi_read_timeout",
    "uwsgi_send_timeout",
    "uwsgi_script_name",
    "uwsgi_max_temp_file_size",
    "uwsgi_ignore_client_abort",
    "uwsgi_program",
];
/// Location keys that accumulate.
const LOCATION_REPEATABLE: &[&str] = &[
    "uwsgi_pass",
    "allow",
    "deny",
    "uwsgi_param",
    "set_real_ip_from",
];

/// Longest uwsgi variable name or value: the packet stores each length in 16 bits.
const UWSGI_VAR_MAX: usize = 65_535;

/// Builds a [`Server`] (without locations, limits and realip not yet inherited) from a
/// `[server]` section, and the inheritable keys it sets; `warnings` receives `(line, message)`
/// for values accepted but probably meant otherwise.
pub(crate) fn build_server(
    section: &Section,
    vars: &Vars<'_>,
    warnings: &mut Vec<(usize, String)>,
) -> Result<(Server, Keys), ConfigError> {
    let mut keys = ServerKeys::default();
    let mut limits = LimitKeys::default();
    let mut realip = RealIpKeys::default();
    let mut seen = Seen::default();
    for entry in &section.entries {
        seen.once(section, entry, SERVER_REPEATABLE)?;
        if LIMIT_KEYS.contains(&entry.key.as_str()) {
            let value = vars.expand(section, entry)?;
            if let Some(read) = limits.read(&entry.key, &value) {
                read.map_err(|why| section.invalid(entry, &value, &why))?;
            }
            continue;
        }
        if REALIP_KEYS.contains(&entry.key.as_str()) {
            read_realip(&mut realip, section, entry, vars, warnings)?;
            continue;
        }
        match entry.key.as_str() {
            "listen" => keys.read_listen(section, entry, &vars.expand(section, entry)?)?,
            "server_name" => {
                keys.read_server_name(section, entry, &vars.expand(section, entry)?)?
            }
            _ => return Err(section.unknown(entry)),
        }
    }
    Ok((keys.into_server(section.line), (limits, realip)))
}

/// What a `[server]` section's own keys (`listen`, `server_name`) have said so far.
#[derive(Default)]
struct ServerKeys {
    /// Each address with the line that gave it, in file order.
    listen: Vec<(SocketAddr, usize)>,
    proxy_protocol: Vec<SocketAddr>,
    /// Lowercased, without duplicates, in file order.
    server_name: Vec<String>,
}

impl ServerKeys {
    /// One `listen` line: an address not given before in this section.
    fn read_listen(
        &mut self,
        section: &Section,
        entry: &Entry,
        value: &str,
    ) -> Result<(), ConfigError> {
        let (addr, proxied) =
            listen_line(value).map_err(|why| section.invalid(entry, value, &why))?;
        if proxied {
            self.proxy_protocol.push(addr);
        }
        if let Some((_, first)) = self.listen.iter().find(|(a, _)| *a == addr) {
            return Err(at(
                entry.line,
                format!(
                    "listen {addr} given twice in [{}] (lines {first} and {})",
                    section.title, entry.line
                ),
            ));
        }
        self.listen.push((addr, entry.line));
        Ok(())
    }

    /// One `server_name` line: at least one valid name; names already given are skipped.
    fn read_server_name(
        &mut self,
        section: &Section,
        entry: &Entry,
        value: &str,
    ) -> Result<(), ConfigError> {
        let mut any = false;
        for name in value.split_whitespace() {
            any = true;
            if let Err(why) = valid_server_name(name) {
                return Err(section.invalid(entry, value, &why));
            }
            let name = name.to_ascii_lowercase();
            if !self.server_name.contains(&name) {
                self.server_name.push(name);
            }
        }
        if !any {
            return Err(section.invalid(entry, value, "expected host names separated by spaces"));
        }
        Ok(())
    }

    /// The server these keys describe ([`default_listen`] when no `listen` was given), with
    /// no locations yet and the default limits and realip.
    fn into_server(self, line: usize) -> Server {
        let listen = if self.listen.is_empty() {
            vec![default_listen()]
        } else {
            self.listen.into_iter().map(|(addr, _)| addr).collect()
        };
        Server {
            line,
            listen,
            proxy_protocol: self.proxy_protocol,
            server_name: self.server_name,
            locations: Vec::new(),
            limits: Limits::default(),
            realip: RealIp::default(),
        }
    }
}

/// `listen`: an address, then optionally `proxy_protocol` (nginx's listen parameter);
/// `(address, proxy_protocol given)`.
fn listen_line(value: &str) -> Result<(SocketAddr, bool), String> {
    let mut words = value.split_whitespace();
    let addr = values::listen(words.next().unwrap_or(""))?;
    let mut proxied = false;
    for word in words {
        if word != "proxy_protocol" || proxied {
            return Err(format!(
                "unexpected '{word}' after the address: the one listen parameter uwgate takes is proxy_protocol"
            ));
        }
        proxied = true;
    }
    Ok((addr, proxied))
}

/// Reads one realip key of `section` into `keys`, with its warning.
fn read_realip(
    keys: &mut RealIpKeys,
    section: &Section,
    entry: &Entry,
    vars: &Vars<'_>,
    warnings: &mut Vec<(usize, String)>,
) -> Result<(), ConfigError> {
    let value = vars.expand(section, entry)?;
    if let Some(read) = keys.read(&entry.key, &value) {
        let warning = read.map_err(|why| section.invalid(entry, &value, &why))?;
        if let Some(warning) = warning {
            warnings.push((entry.line, format!("{warning} in [{}]", section.title)));
        }
    }
    Ok(())
}

/// One `server_name`: a host name, `*.example.com`, `.example.com` or `www.example.*` (nginx's
/// wildcards: a `*` only as a whole first or last label). Regular expressions are refused.
fn valid_server_name(name: &str) -> Result<(), String> {
    if name.starts_with('~') {
        return Err(
            "regular expressions (~) in server_name are not supported: list the names, or use *.example.com, .example.com or www.example.*"
                .to_string(),
        );
    }
    let stars = name.matches('*').count();
    let wildcard_ok = match stars {
        0 => name != ".",
        1 => (name.starts_with("*.") && name.len() > 2) || (name.ends_with(".*") && name.len() > 2),
        _ => false,
    };
    if !wildcard_ok || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(
            "expected host names separated by spaces; a '*' only as a whole first or last label, like *.example.com, .example.com or www.example.*"
                .to_string(),
        );
    }
    Ok(())
}

/// `listen` when none is given: port 80 on every IPv4 address.
pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 80))
}

/// The handler-choosing keys seen in a location, with their lines.
#[derive(Default)]
struct Handlers {
    alias: Option<(String, usize)>,
    root: Option<(String, usize)>,
    /// Line of the first uwsgi_pass.
    pass: Option<usize>,
    /// Line of `stub_status = on`.
    stub: Option<usize>,
    /// Line of `health = on`.
    health: Option<usize>,
}

/// Builds a [`Location`] (limits and realip not yet inherited) from a `[location:PREFIX]`
/// section, and the inheritable keys it sets; `warnings` receives `(line, message)` for things
/// accepted but probably wrong.
pub(crate) fn build_location(
    section: &Section,
    prefix: &str,
    vars: &Vars<'_>,
    warnings: &mut Vec<(usize, String)>,
) -> Result<(Location, Keys), ConfigError> {
    let mut keys = LocationKeys::new();
    let mut seen = Seen::default();
    for entry in &section.entries {
        keys.read(section, entry, vars, &mut seen, warnings)?;
    }
    let chosen = choose_handler(section, &keys.handlers)?;
    refuse_other_handlers_keys(section, chosen, keys.first_static, keys.first_uwsgi)?;
    Ok(keys.into_location(section, prefix, chosen, warnings))
}

/// What a location's keys have said so far, before its one handler is chosen.
struct LocationKeys<'s> {
    handlers: Handlers,
    limits: LimitKeys,
    realip: RealIpKeys,
    internal: bool,
    /// allow/deny rules in file order.
    access: Vec<AccessRule>,
    /// The static settings (base chosen at the end) and the uwsgi settings (with every
    /// uwsgi_pass); only the chosen handler's are kept.
    files: StaticConf,
    uwsgi: UwsgiConf,
    /// The first static-only and uwsgi-only keys, to refuse them on the other handlers.
    first_static: Option<&'s Entry>,
    first_uwsgi: Option<&'s Entry>,
}

impl<'s> LocationKeys<'s> {
    fn new() -> Self {
        LocationKeys {
            handlers: Handlers::default(),
            limits: LimitKeys::default(),
            realip: RealIpKeys::default(),
            internal: false,
            access: Vec::new(),
            files: StaticConf::new(StaticBase::Root(PathBuf::from("/"))),
            uwsgi: UwsgiConf::new(Vec::new()),
            first_static: None,
            first_uwsgi: None,
        }
    }

    /// Reads one entry: refuses unknown and repeated keys, then hands the expanded value to
    /// the reader of its key group.
    fn read(
        &mut self,
        section: &Section,
        entry: &'s Entry,
        vars: &Vars<'_>,
        seen: &mut Seen<'s>,
        warnings: &mut Vec<(usize, String)>,
    ) -> Result<(), ConfigError> {
        let key = entry.key.as_str();
        let is_static = STATIC_KEYS.contains(&key);
        let is_uwsgi = UWSGI_KEYS.contains(&key);
        if !(is_static
            || is_uwsgi
            || HANDLER_KEYS.contains(&key)
            || COMMON_KEYS.contains(&key)
            || LIMIT_KEYS.contains(&key)
            || REALIP_KEYS.contains(&key))
        {
            return Err(section.unknown(entry));
        }
        seen.once(section, entry, LOCATION_REPEATABLE)?;
        if REALIP_KEYS.contains(&key) {
            return read_realip(&mut self.realip, section, entry, vars, warnings);
        }
        if is_static && self.first_static.is_none() {
            self.first_static = Some(entry);
        }
        if is_uwsgi && self.first_uwsgi.is_none() {
            self.first_uwsgi = Some(entry);
        }
        let value = vars.expand(section, entry)?;
        let read = if let Some(read) = self.limits.read(key, &value) {
            Some(read)
        } else if is_static {
            read_static_key(&mut self.files, key, &value)
        } else if is_uwsgi {
            read_uwsgi_key(&mut self.uwsgi, section, entry, &value, warnings)
        } else {
            self.read_handler_or_common_key(section, entry, &value, vars, warnings)
        };
        match read {
            Some(read) => read.map_err(|why| section.invalid(entry, &value, &why)),
            None => Err(section.unknown(entry)),
        }
    }

    /// The handler keys (alias, root, uwsgi_pass, stub_status, health) and the keys of any
    /// location (internal, allow, deny); `None` for any other key.
    fn read_handler_or_common_key(
        &mut self,
        section: &Section,
        entry: &Entry,
        value: &str,
        vars: &Vars<'_>,
        warnings: &mut Vec<(usize, String)>,
    ) -> Option<Result<(), String>> {
        let key = entry.key.as_str();
        let line = entry.line;
        let handlers = &mut self.handlers;
        Some(match key {
            "alias" => values::absolute_path(value)
                .map(|_| handlers.alias = Some((value.to_string(), line))),
            "root" => values::absolute_path(value)
                .map(|_| handlers.root = Some((value.to_string(), line))),
            "uwsgi_pass" => values::upstream(value, vars.resolve).map(|upstream| {
                self.uwsgi.upstreams.push(upstream);
                handlers.pass.get_or_insert(line);
            }),
            "stub_status" => values::boolean(value).map(|on| {
                if on {
                    handlers.stub = Some(line);
                }
            }),
            "health" => values::boolean(value).map(|on| {
                if on {
                    handlers.health = Some(line);
                }
            }),
            "internal" => values::boolean(value).map(|on| self.internal = on),
            "allow" | "deny" => values::access(value, key == "allow").map(|(rule, warning)| {
                if let Some(warning) = warning {
                    warnings.push((line, format!("{warning} in [{}]", section.title)));
                }
                self.access.push(rule);
            }),
            _ => return None,
        })
    }

    /// The location these keys describe, with the `chosen` handler's settings; `warnings`
    /// receives an alias that lacks the prefix's trailing '/'.
    fn into_location(
        self,
        section: &Section,
        prefix: &str,
        chosen: Chosen,
        warnings: &mut Vec<(usize, String)>,
    ) -> (Location, Keys) {
        let handler = match chosen {
            Chosen::Alias | Chosen::Root => {
                let mut files = self.files;
                files.base = static_base(section, prefix, self.handlers, warnings);
                Handler::Static(files)
            }
            Chosen::Uwsgi => Handler::Uwsgi(self.uwsgi),
            Chosen::Stub => Handler::StubStatus,
            Chosen::Health => Handler::Health,
        };
        let location = Location {
            line: section.line,
            prefix: prefix.to_string(),
            handler,
            internal: self.internal,
            access: self.access,
            limits: Limits::default(),
            realip: RealIp::default(),
        };
        (location, (self.limits, self.realip))
    }
}

/// A static-only key (index, gzip_static, expires, disable_symlinks, charset) into `files`;
/// `None` for any other key.
fn read_static_key(files: &mut StaticConf, key: &str, value: &str) -> Option<Result<(), String>> {
    Some(match key {
        "index" => index_names(value).map(|v| files.index = v),
        "gzip_static" => values::boolean(value).map(|v| files.gzip_static = v),
        "expires" => values::expires(value).map(|v| files.expires = v),
        "disable_symlinks" => values::boolean(value).map(|v| files.disable_symlinks = v),
        "charset" => values::charset(value).map(|v| files.charset = v),
        _ => return None,
    })
}

/// A uwsgi-only key (besides uwsgi_pass) into `uwsgi`; `warnings` receives a uwsgi_param
/// value that looks like an nginx variable. `None` for any other key.
fn read_uwsgi_key(
    uwsgi: &mut UwsgiConf,
    section: &Section,
    entry: &Entry,
    value: &str,
    warnings: &mut Vec<(usize, String)>,
) -> Option<Result<(), String>> {
    let timeout = || values::duration(value, false);
    Some(match entry.key.as_str() {
        "uwsgi_param" => uwsgi_param(value).map(|(name, param)| {
            if param.starts_with('$') {
                warnings.push((
                    entry.line,
                    format!(
                        "uwsgi_param {name} is sent as the literal text '{param}' in [{}]: uwgate does not expand nginx variables",
                        section.title
                    ),
                ));
            }
            uwsgi.params.push((name, param));
        }),
        "uwsgi_connect_timeout" => timeout().map(|v| uwsgi.connect_timeout = v),
        "uwsgi_read_timeout" => timeout().map(|v| uwsgi.read_timeout = v),
        "uwsgi_send_timeout" => timeout().map(|v| uwsgi.send_timeout = v),
        "uwsgi_script_name" => script_name(value).map(|v| uwsgi.script_name = Some(v)),
        "uwsgi_max_temp_file_size" => values::size(value).map(|v| uwsgi.max_temp_file_size = v),
        "uwsgi_ignore_client_abort" => {
            values::boolean(value).map(|v| uwsgi.ignore_client_abort = v)
        }
        "uwsgi_program" => {
            if super::syntax::is_program_name(value) {
                uwsgi.program = Some(value.to_string());
                Ok(())
            } else {
                Err("expected the name of a [program:x] section".to_string())
            }
        }
        _ => return None,
    })
}

/// Refuses the first static-only or uwsgi-only key of a location whose handler is another.
fn refuse_other_handlers_keys(
    section: &Section,
    chosen: Chosen,
    first_static: Option<&Entry>,
    first_uwsgi: Option<&Entry>,
) -> Result<(), ConfigError> {
    let refused = match chosen {
        Chosen::Alias | Chosen::Root => first_uwsgi.map(|e| (e, "uwsgi_pass")),
        Chosen::Uwsgi => first_static.map(|e| (e, "alias/root")),
        Chosen::Stub | Chosen::Health => first_static.or(first_uwsgi).map(|e| {
            let owner = if STATIC_KEYS.contains(&e.key.as_str()) {
                "alias/root"
            } else {
                "uwsgi_pass"
            };
            (e, owner)
        }),
    };
    match refused {
        Some((entry, owner)) => Err(at(
            entry.line,
            format!(
                "'{}' applies only to {owner} locations, and [{}] uses {}",
                entry.key,
                section.title,
                chosen.key()
            ),
        )),
        None => Ok(()),
    }
}

/// Where a static location's files are: its alias (warning when it lacks the trailing '/' of
/// a prefix that has one), else its root.
fn static_base(
    section: &Section,
    prefix: &str,
    handlers: Handlers,
    warnings: &mut Vec<(usize, String)>,
) -> StaticBase {
    match (handlers.alias, handlers.root) {
        (Some((path, line)), _) => {
            if prefix.ends_with('/') && !path.ends_with('/') {
                warnings.push((
                    line,
                    format!(
                        "alias '{path}' lacks the trailing '/' of prefix '{prefix}' in [{}]: {prefix}x maps to {path}x",
                        section.title
                    ),
                ));
            }
            StaticBase::Alias(PathBuf::from(path))
        }
        (None, Some((path, _))) => StaticBase::Root(PathBuf::from(path)),
        (None, None) => StaticBase::Root(PathBuf::from("/")),
    }
}

/// Which handler key a location uses.
#[derive(Clone, Copy)]
enum Chosen {
    Alias,
    Root,
    Uwsgi,
    Stub,
    Health,
}

impl Chosen {
    fn key(self) -> &'static str {
        match self {
            Chosen::Alias => "alias",
            Chosen::Root => "root",
            Chosen::Uwsgi => "uwsgi_pass",
            Chosen::Stub => "stub_status",
            Chosen::Health => "health",
        }
    }
}

/// Exactly one of alias, root, uwsgi_pass, `stub_status = on`.
fn choose_handler(section: &Section, handlers: &Handlers) -> Result<Chosen, ConfigError> {
    if let (Some((_, alias)), Some((_, root))) = (&handlers.alias, &handlers.root) {
        return Err(at(
            (*alias).max(*root),
            format!(
                "'alias' (line {alias}) and 'root' (line {root}) cannot both be set in [{}]",
                section.title
            ),
        ));
    }
    let mut given: Vec<(usize, Chosen)> = [
        handlers
            .alias
            .as_ref()
            .map(|(_, line)| (*line, Chosen::Alias)),
        handlers
            .root
            .as_ref()
            .map(|(_, line)| (*line, Chosen::Root)),
        handlers.pass.map(|line| (line, Chosen::Uwsgi)),
        handlers.stub.map(|line| (line, Chosen::Stub)),
        handlers.health.map(|line| (line, Chosen::Health)),
    ]
    .into_iter()
    .flatten()
    .collect();
    crate::sort::sort_by_key(&mut given, |(line, _)| *line);
    match given.as_slice() {
        [] => Err(at(
            section.line,
            format!(
                "[{}] needs one of alias, root, uwsgi_pass, stub_status = on or health = on",
                section.title
            ),
        )),
        [(_, chosen)] => Ok(*chosen),
        [(first_line, first), (second_line, second), ..] => Err(at(
            *second_line,
            format!(
                "'{}' conflicts with '{}' (line {first_line}) in [{}]: a location has exactly one of alias, root, uwsgi_pass, stub_status = on or health = on",
                second.key(),
                first.key(),
                section.title
            ),
        )),
    }
}

/// `index`: file names separated by spaces, none containing '/'.
fn index_names(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = value.split_whitespace().map(str::to_string).collect();
    if names.is_empty()
        || names
            .iter()
            .any(|n| n.contains('/') || n == "." || n == "..")
    {
        return Err(
            "expected file names separated by spaces, like index.html index.htm".to_string(),
        );
    }
    Ok(names)
}

/// `uwsgi_param NAME VALUE`; the value may be empty, and one pair of surrounding quotes is
/// removed (`""` is empty, as in nginx).
fn uwsgi_param(value: &str) -> Result<(String, String), String> {
    let expected = || "expected NAME VALUE, like UWSGI_SCHEME https".to_string();
    let (name, rest) = match value.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (value, ""),
    };
    if name.is_empty() || name.len() > UWSGI_VAR_MAX || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(expected());
    }
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| rest.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
        .unwrap_or(rest);
    if unquoted.len() > UWSGI_VAR_MAX {
        return Err(format!("expected a value of at most {UWSGI_VAR_MAX} bytes"));
    }
    Ok((name.to_string(), unquoted.to_string()))
}

/// `uwsgi_script_name`: starts with '/', does not end with '/'.
fn script_name(value: &str) -> Result<String, String> {
    if value.starts_with('/') && !value.ends_with('/') && !value.chars().any(char::is_whitespace) {
        Ok(value.to_string())
    } else {
        Err(
            "expected a path that starts with '/' and does not end with '/', like /blog"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::{parse, AccessRule, Config, Expires, Upstream, UpstreamAddr};
    use super::*;

    fn config(text: &str) -> Config {
        parse(text, Path::new("/srv/app/uwgate.ini"), &|_| None).unwrap()
    }

    fn location(body: &str) -> Location {
        let text = format!("[server]\n[location:/static/]\n{body}");
        config(&text).servers[0].locations[0].clone()
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("uwgate.ini"), &|_| None)
            .unwrap_err()
            .to_string()
    }

    /// An error for a location body placed at line 3 (after `[server]` and the header).
    fn location_error(body: &str) -> String {
        error(&format!("[server]\n[location:/static/]\n{body}"))
    }

    fn static_conf(location: &Location) -> &StaticConf {
        match &location.handler {
            Handler::Static(s) => s,
            other => panic!("not static: {other:?}"),
        }
    }

    fn uwsgi_conf(location: &Location) -> &UwsgiConf {
        match &location.handler {
            Handler::Uwsgi(u) => u,
            other => panic!("not uwsgi: {other:?}"),
        }
    }

    #[test]
    fn every_listed_key_is_read() {
        for key in [HANDLER_KEYS, COMMON_KEYS, STATIC_KEYS, UWSGI_KEYS].concat() {
            if let Err(e) = parse(
                &format!("[location:/]\n{key} = ???\n"),
                Path::new("uwgate.ini"),
                &|_| None,
            ) {
                assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn server_defaults_to_port_80_and_no_names() {
        let c = config("[server]\n");
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.servers[0].line, 1);
        assert_eq!(c.servers[0].listen, vec!["0.0.0.0:80".parse().unwrap()]);
        assert!(c.servers[0].server_name.is_empty());
        assert!(c.servers[0].locations.is_empty());
    }

    #[test]
    fn listen_accumulates_in_order() {
        let c = config("[server]\nlisten = 80\nlisten = [::]:80\nlisten = 127.0.0.1:8080\n");
        let want: Vec<SocketAddr> = ["0.0.0.0:80", "[::]:80", "127.0.0.1:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(c.servers[0].listen, want);
    }

    #[test]
    fn same_listen_twice_in_one_server_is_an_error() {
        assert_eq!(
            error("[server]\nlisten = 80\nlisten = 0.0.0.0:80\n"),
            "uwgate.ini:3: listen 0.0.0.0:80 given twice in [server] (lines 2 and 3)"
        );
    }

    #[test]
    fn bad_listen_names_key_and_form() {
        assert_eq!(
            error("[server]\nlisten = localhost:80\n"),
            "uwgate.ini:2: invalid value 'localhost:80' for 'listen' in [server]: expected a port or address:port, like 80, 127.0.0.1:8080 or [::]:80"
        );
    }

    #[test]
    fn server_name_is_lowercased_split_and_accumulated() {
        let c = config("[server]\nserver_name = Django.Blog www.django.blog\nserver_name = API.example DJANGO.blog\n");
        assert_eq!(
            c.servers[0].server_name,
            vec!["django.blog", "www.django.blog", "api.example"]
        );
    }

    #[test]
    fn server_name_takes_nginx_wildcards() {
        let c = config("[server]\nserver_name = *.Example.com .example.org www.example.* a b\n");
        assert_eq!(
            c.servers[0].server_name,
            vec!["*.example.com", ".example.org", "www.example.*", "a", "b"]
        );
    }

    #[test]
    fn misplaced_wildcards_and_regexes_are_errors() {
        for name in [
            "w*.example.com",
            "*example.com",
            "www.*.com",
            "*.a.*",
            "*",
            "*.",
            ".",
            "a/b",
        ] {
            let e = error(&format!("[server]\nserver_name = {name}\n"));
            assert!(
                e.starts_with(&format!(
                    "uwgate.ini:2: invalid value '{name}' for 'server_name' in [server]: expected host names"
                )),
                "{name}: {e}"
            );
        }
        assert!(
            error("[server]\nserver_name = ~^www\\d+\\.example\\.com$\n")
                .contains("regular expressions (~) in server_name are not supported")
        );
    }

    #[test]
    fn empty_server_name_is_an_error() {
        assert_eq!(
            error("[server]\nserver_name =\n"),
            "uwgate.ini:2: invalid value '' for 'server_name' in [server]: expected host names separated by spaces"
        );
    }

    #[test]
    fn unknown_server_key_is_an_error() {
        assert_eq!(
            error("[server]\nroot = /x\n"),
            "uwgate.ini:2: unknown key 'root' in [server]"
        );
    }

    #[test]
    fn static_location_defaults() {
        let l = location("alias = /srv/static/\n");
        assert_eq!(l.line, 2);
        assert_eq!(l.prefix, "/static/");
        assert!(!l.internal);
        assert!(l.access.is_empty());
        let s = static_conf(&l);
        assert_eq!(s.base, StaticBase::Alias("/srv/static/".into()));
        assert_eq!(s.index, vec!["index.html"]);
        assert!(!s.gzip_static);
        assert_eq!(s.expires, Expires::Off);
        assert!(!s.disable_symlinks);
        assert!(s.charset);
        assert_eq!(
            *s,
            StaticConf::new(StaticBase::Alias("/srv/static/".into()))
        );
    }

    #[test]
    fn static_keys_are_read() {
        let l = location("root = %(here)s/www\nindex = index.html index.htm\ngzip_static = on\nexpires = 30d\ndisable_symlinks = on\ncharset = off\ninternal = yes\n");
        assert!(l.internal);
        let s = static_conf(&l);
        assert_eq!(s.base, StaticBase::Root("/srv/app/www".into()));
        assert_eq!(s.index, vec!["index.html", "index.htm"]);
        assert!(s.gzip_static);
        assert_eq!(s.expires, Expires::Seconds(30 * 86400));
        assert!(s.disable_symlinks);
        assert!(!s.charset);
        assert_eq!(
            static_conf(&location("root = /x\nexpires = -1h\n")).expires,
            Expires::Seconds(-3600)
        );
        assert!(static_conf(&location("root = /x\ncharset = utf-8\n")).charset);
    }

    #[test]
    fn alias_keeps_the_path_exactly_as_written() {
        let s = location("alias = /srv//static/\n");
        let StaticBase::Alias(path) = &static_conf(&s).base else {
            panic!()
        };
        assert_eq!(path.as_os_str(), "/srv//static/");
    }

    #[test]
    fn alias_without_trailing_slash_under_a_slash_prefix_warns() {
        let c = config("[server]\n[location:/static/]\nalias = /srv/static\n");
        assert_eq!(
            c.warnings,
            vec!["/srv/app/uwgate.ini:3: alias '/srv/static' lacks the trailing '/' of prefix '/static/' in [location:/static/]: /static/x maps to /srv/staticx"]
        );
    }

    #[test]
    fn uwsgi_location_defaults() {
        let l = location("uwsgi_pass = 127.0.0.1:8000\n");
        let u = uwsgi_conf(&l);
        assert_eq!(
            u.upstreams,
            vec![Upstream::new(UpstreamAddr::Tcp(
                "127.0.0.1:8000".parse().unwrap()
            ))]
        );
        assert!(u.params.is_empty());
        assert_eq!(u.connect_timeout, Duration::from_secs(60));
        assert_eq!(u.read_timeout, Duration::from_secs(60));
        assert_eq!(u.send_timeout, Duration::from_secs(60));
        assert_eq!(u.script_name, None);
        assert_eq!(u.max_temp_file_size, 1 << 30);
        assert!(u.ignore_client_abort);
    }

    #[test]
    fn uwsgi_keys_are_read_and_pass_and_param_accumulate() {
        let l = location(
            "uwsgi_pass = 127.0.0.1:8000\nuwsgi_pass = unix:/run/app.sock max_fails=0 fail_timeout=5s\n\
             uwsgi_param = UWSGI_SCHEME https\nuwsgi_param = HTTPS\nuwsgi_param = SCRIPT_NAME \"\"\n\
             uwsgi_param = X_NOTE 'two  words'\nuwsgi_connect_timeout = 5s\nuwsgi_read_timeout = 5m\n\
             uwsgi_send_timeout = 10s\nuwsgi_script_name = /blog\nuwsgi_max_temp_file_size = 0\n\
             uwsgi_ignore_client_abort = off\n",
        );
        let u = uwsgi_conf(&l);
        assert_eq!(u.upstreams.len(), 2);
        assert_eq!(
            u.upstreams[1].addr,
            UpstreamAddr::Unix("/run/app.sock".into())
        );
        assert_eq!(u.upstreams[1].max_fails, 0);
        assert_eq!(u.upstreams[1].fail_timeout, Duration::from_secs(5));
        assert_eq!(
            u.params,
            vec![
                ("UWSGI_SCHEME".to_string(), "https".to_string()),
                ("HTTPS".to_string(), String::new()),
                ("SCRIPT_NAME".to_string(), String::new()),
                ("X_NOTE".to_string(), "two  words".to_string()),
            ]
        );
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert_eq!(u.read_timeout, Duration::from_secs(300));
        assert_eq!(u.send_timeout, Duration::from_secs(10));
        assert_eq!(u.script_name.as_deref(), Some("/blog"));
        assert_eq!(u.max_temp_file_size, 0);
        assert!(!u.ignore_client_abort);
    }

    #[test]
    fn uwsgi_program_names_a_program_section() {
        let c = config(
            "[server]\n[location:/]\nuwsgi_pass = 127.0.0.1:8000\nuwsgi_program = django\n\
             [program:django]\ncommand = /bin/uwsgi\n",
        );
        let Handler::Uwsgi(u) = &c.servers[0].locations[0].handler else {
            panic!("not uwsgi")
        };
        assert_eq!(u.program.as_deref(), Some("django"));
        assert_eq!(
            error("[server]\n[location:/]\nuwsgi_pass = 127.0.0.1:8000\nuwsgi_program = djnago\n"),
            "uwgate.ini:4: uwsgi_program names unknown program 'djnago' in [location:/]"
        );
        assert!(
            error("[server]\n[location:/]\nalias = /srv/\nuwsgi_program = x\n")
                .contains("'uwsgi_program' applies only to uwsgi_pass locations")
        );
        assert!(error(
            "[server]\n[location:/]\nuwsgi_pass = 127.0.0.1:8000\nuwsgi_program = a b\n"
        )
        .contains("expected the name of a [program:x] section"));
    }

    #[test]
    fn uwsgi_param_with_an_nginx_variable_warns() {
        let c = config(
            "[location:/]\nuwsgi_pass = 127.0.0.1:8000\nuwsgi_param = UWSGI_SCHEME $scheme\n",
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("/srv/app/uwgate.ini:3: uwsgi_param UWSGI_SCHEME is sent as the literal text '$scheme'"), "{:?}", c.warnings);
    }

    #[test]
    fn bad_uwsgi_values_are_errors() {
        assert_eq!(
            location_error("uwsgi_pass = 127.0.0.1:8000\nuwsgi_param =\n"),
            "uwgate.ini:4: invalid value '' for 'uwsgi_param' in [location:/static/]: expected NAME VALUE, like UWSGI_SCHEME https"
        );
        assert_eq!(
            location_error("uwsgi_pass = 127.0.0.1:8000\nuwsgi_script_name = /blog/\n"),
            "uwgate.ini:4: invalid value '/blog/' for 'uwsgi_script_name' in [location:/static/]: expected a path that starts with '/' and does not end with '/', like /blog"
        );
        assert!(
            location_error("uwsgi_pass = 127.0.0.1:8000\nuwsgi_script_name = /\n")
                .contains("'uwsgi_script_name'")
        );
        assert!(
            location_error("uwsgi_pass = 127.0.0.1:8000\nuwsgi_script_name = blog\n")
                .contains("'uwsgi_script_name'")
        );
        assert!(location_error("uwsgi_pass = 127.0.0.1\n")
            .starts_with("uwgate.ini:3: invalid value '127.0.0.1' for 'uwsgi_pass'"));
        assert!(
            location_error("uwsgi_pass = 1.2.3.4:80\nuwsgi_read_timeout = 0\n").contains("above 0")
        );
    }

    #[test]
    fn listen_takes_proxy_protocol_after_the_address() {
        let c = config(
            "[server]\nlisten = 127.0.0.1:8080\nlisten = 0.0.0.0:81 proxy_protocol\nlisten = [::]:82  proxy_protocol\n",
        );
        let s = &c.servers[0];
        let all: Vec<SocketAddr> = ["127.0.0.1:8080", "0.0.0.0:81", "[::]:82"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s.listen, all);
        assert_eq!(s.proxy_protocol, all[1..].to_vec());
        assert_eq!(
            error("[server]\nlisten = 80 ssl\n"),
            "uwgate.ini:2: invalid value '80 ssl' for 'listen' in [server]: unexpected 'ssl' after the address: the one listen parameter uwgate takes is proxy_protocol"
        );
        assert!(
            error("[server]\nlisten = 80 proxy_protocol proxy_protocol\n")
                .contains("unexpected 'proxy_protocol'")
        );
    }

    #[test]
    fn health_location_takes_access_rules_and_no_handler_keys() {
        let l = location("health = on\nallow = 10.0.0.0/8\ndeny = all\n");
        assert_eq!(l.handler, Handler::Health);
        assert_eq!(l.access.len(), 2);
        assert_eq!(
            location_error("health = on\nroot = /x\n"),
            "uwgate.ini:4: 'root' conflicts with 'health' (line 3) in [location:/static/]: a location has exactly one of alias, root, uwsgi_pass, stub_status = on or health = on"
        );
        assert!(location_error("health = on\nexpires = 1d\n").contains(
            "'expires' applies only to alias/root locations, and [location:/static/] uses health"
        ));
        assert!(location_error("health = off\n").contains("needs one of"));
    }

    #[test]
    fn stub_status_location() {
        let l = location("stub_status = on\nallow = 127.0.0.1\ndeny = all\n");
        assert_eq!(l.handler, Handler::StubStatus);
        assert_eq!(
            l.access,
            vec![
                AccessRule {
                    allow: true,
                    net: Some(("127.0.0.1".parse().unwrap(), 32))
                },
                AccessRule {
                    allow: false,
                    net: None
                },
            ]
        );
    }

    #[test]
    fn allow_and_deny_keep_file_order_interleaved() {
        let l =
            location("root = /x\ndeny = 10.0.0.1\nallow = 10.0.0.0/8\ndeny = ::1\nallow = all\n");
        let order: Vec<bool> = l.access.iter().map(|r| r.allow).collect();
        assert_eq!(order, vec![false, true, false, true]);
        assert_eq!(l.access[2].net, Some(("::1".parse().unwrap(), 128)));
        assert_eq!(l.access[3].net, None);
    }

    #[test]
    fn masked_access_rule_warns_with_its_line() {
        let c = config("[location:/]\nroot = /x\nallow = 10.1.2.3/8\n");
        assert_eq!(
            c.warnings,
            vec!["/srv/app/uwgate.ini:3: low address bits of 10.1.2.3/8 are meaningless, using 10.0.0.0/8 in [location:/]"]
        );
    }

    #[test]
    fn location_without_handler_is_an_error_at_its_header() {
        assert_eq!(
            location_error("index = a.html\n"),
            "uwgate.ini:2: [location:/static/] needs one of alias, root, uwsgi_pass, stub_status = on or health = on"
        );
        assert_eq!(
            location_error("stub_status = off\n"),
            "uwgate.ini:2: [location:/static/] needs one of alias, root, uwsgi_pass, stub_status = on or health = on"
        );
    }

    #[test]
    fn alias_with_root_is_an_error() {
        assert_eq!(
            location_error("alias = /a/\nroot = /b\n"),
            "uwgate.ini:4: 'alias' (line 3) and 'root' (line 4) cannot both be set in [location:/static/]"
        );
    }

    #[test]
    fn two_handlers_is_an_error_at_the_second() {
        assert_eq!(
            location_error("uwsgi_pass = 127.0.0.1:8000\n; x\nalias = /a/\n"),
            "uwgate.ini:5: 'alias' conflicts with 'uwsgi_pass' (line 3) in [location:/static/]: a location has exactly one of alias, root, uwsgi_pass, stub_status = on or health = on"
        );
        assert!(location_error("stub_status = on\nroot = /x\n")
            .starts_with("uwgate.ini:4: 'root' conflicts with 'stub_status' (line 3)"));
    }

    #[test]
    fn static_keys_on_a_uwsgi_location_are_errors() {
        assert_eq!(
            location_error("uwsgi_pass = 127.0.0.1:8000\nexpires = 1d\n"),
            "uwgate.ini:4: 'expires' applies only to alias/root locations, and [location:/static/] uses uwsgi_pass"
        );
    }

    #[test]
    fn uwsgi_keys_on_a_static_location_are_errors() {
        assert_eq!(
            location_error("uwsgi_read_timeout = 5s\nroot = /x\n"),
            "uwgate.ini:3: 'uwsgi_read_timeout' applies only to uwsgi_pass locations, and [location:/static/] uses root"
        );
        assert!(location_error("alias = /x/\nuwsgi_param = A b\n")
            .contains("and [location:/static/] uses alias"));
    }

    #[test]
    fn handler_keys_on_stub_status_are_errors() {
        assert_eq!(
            location_error("stub_status = on\ngzip_static = on\n"),
            "uwgate.ini:4: 'gzip_static' applies only to alias/root locations, and [location:/static/] uses stub_status"
        );
        assert_eq!(
            location_error("stub_status = on\nuwsgi_param = A b\n"),
            "uwgate.ini:4: 'uwsgi_param' applies only to uwsgi_pass locations, and [location:/static/] uses stub_status"
        );
    }

    #[test]
    fn unknown_location_key_is_the_documented_message() {
        assert_eq!(
            error("[server]\n\n\n\n\n\n\n\n\n\n\n\n[location:/static/]\nalais = /x/\n"),
            "uwgate.ini:14: unknown key 'alais' in [location:/static/]"
        );
    }

    #[test]
    fn duplicate_location_key_is_an_error() {
        assert_eq!(
            location_error("root = /a\nroot = /b\n"),
            "uwgate.ini:4: 'root' given twice in [location:/static/] (lines 3 and 4)"
        );
        assert!(location_error("root = /a\nindex = a\nindex = b\n").contains("'index' given twice"));
    }

    #[test]
    fn bad_static_values_are_errors() {
        assert_eq!(
            location_error("alias = static/\n"),
            "uwgate.ini:3: invalid value 'static/' for 'alias' in [location:/static/]: expected an absolute path, like /srv/www or %(here)s/www"
        );
        assert!(location_error("root = ~/www\n").contains("'root'"));
        assert!(location_error("root = /x\nindex = ../secret\n").contains("'index'"));
        assert!(location_error("root = /x\nindex =\n").contains("'index'"));
        assert!(location_error("root = /x\nexpires = tomorrow\n").contains("'expires'"));
        assert!(location_error("root = /x\ncharset = latin1\n").contains("expected utf-8 or off"));
        assert!(location_error("root = /x\nallow = everyone\n").contains("'allow'"));
        assert!(location_error("stub_status = maybe\n").contains("'stub_status'"));
    }
}
