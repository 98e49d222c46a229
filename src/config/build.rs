//! Sections → [`super::Config`]: which server a location belongs to, and the checks that span the
//! file.
//!
//! Owns: the order rules (a location belongs to the `[server]` above it; locations before any
//! `[server]` make the implicit default server, allowed only in a file with no `[server]`),
//! duplicate `[uwgate]`/`[program:x]` sections and location prefixes, server_name conflicts,
//! and sorting warnings into file order. Must never: read keys itself — the section builders
//! in `global`, `location` and `program` do.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::expand::Vars;
use super::global::build_global;
use super::limits::LimitKeys;
use super::location::{build_location, build_server, default_listen};
use super::program::{build_program, check_programs, BuiltProgram};
use super::realip::RealIpKeys;
use super::syntax::{Section, SectionKind};
use super::{at, ConfigError, Global, Limits, Program, RealIp, Server};

/// A validated file, before its warnings get the file name.
pub(crate) struct Built {
    pub global: Global,
    pub servers: Vec<Server>,
    pub programs: Vec<Program>,
    /// `(line, message)`, in line order.
    pub warnings: Vec<(usize, String)>,
}

/// What one `[server]` or `[location:*]` sets of the keys it may inherit: the limit keys and
/// the realip keys.
pub(crate) type Keys = (LimitKeys, RealIpKeys);

/// Builds and cross-checks every section.
pub(crate) fn build(sections: &[Section], vars: &Vars<'_>) -> Result<Built, ConfigError> {
    let mut builder = Builder::default();
    for section in sections {
        match &section.kind {
            SectionKind::Global => builder.add_global(section, vars)?,
            SectionKind::Server => builder.add_server(section, vars)?,
            SectionKind::Location(prefix) => builder.add_location(section, prefix, vars)?,
            SectionKind::Program(name) => builder.add_program(section, name, vars)?,
        }
    }
    builder.finish()
}

/// The sections built so far, in file order, with what the file-wide checks need.
#[derive(Default)]
struct Builder<'s> {
    /// `[uwgate]` with its header line.
    global: Option<(Global, usize)>,
    servers: Vec<Server>,
    /// The default server of locations that come before any `[server]`.
    implicit: Option<Server>,
    /// The limit keys each server, and each of its locations, sets (parallel to `servers`, the
    /// implicit server last): resolved once `[uwgate]` is known, wherever it is in the file.
    server_limits: Vec<(Keys, Vec<Keys>)>,
    implicit_limits: Vec<Keys>,
    programs: Vec<BuiltProgram>,
    /// Header line of each program, by name.
    program_lines: HashMap<&'s str, usize>,
    /// Header line of each location prefix in the current server.
    prefix_lines: HashMap<&'s str, usize>,
    warnings: Vec<(usize, String)>,
    /// `uwsgi_program` values with their line and section, checked once every program is known.
    program_refs: Vec<(String, usize, &'s str)>,
}

impl<'s> Builder<'s> {
    /// `[uwgate]`, at most once.
    fn add_global(&mut self, section: &Section, vars: &Vars<'_>) -> Result<(), ConfigError> {
        if let Some((_, first)) = &self.global {
            return Err(at(
                section.line,
                format!("[uwgate] given twice (lines {first} and {})", section.line),
            ));
        }
        self.global = Some((
            build_global(section, vars, &mut self.warnings)?,
            section.line,
        ));
        Ok(())
    }

    /// A `[server]`, refused after locations that had no server above them.
    fn add_server(&mut self, section: &Section, vars: &Vars<'_>) -> Result<(), ConfigError> {
        if let Some(location) = self.implicit.as_ref().and_then(|s| s.locations.first()) {
            return Err(at(
                location.line,
                format!(
                    "[location:{}] comes before the first [server] (line {}): a location belongs to the [server] above it, and only a file without any [server] gets an implicit default server",
                    location.prefix, section.line
                ),
            ));
        }
        let (server, keys) = build_server(section, vars, &mut self.warnings)?;
        self.servers.push(server);
        self.server_limits.push((keys, Vec::new()));
        self.prefix_lines.clear();
        Ok(())
    }

    /// A `[location:PREFIX]`, into the server above it (or the implicit one); its prefix is
    /// refused when that server has it already.
    fn add_location(
        &mut self,
        section: &'s Section,
        prefix: &'s str,
        vars: &Vars<'_>,
    ) -> Result<(), ConfigError> {
        let (location, keys) = build_location(section, prefix, vars, &mut self.warnings)?;
        if let Some(named) = uwsgi_program_of(&location) {
            let line = section
                .entries
                .iter()
                .find(|e| e.key == "uwsgi_program")
                .map_or(section.line, |e| e.line);
            self.program_refs
                .push((named.to_string(), line, section.title.as_str()));
        }
        if let Some(first) = self.prefix_lines.insert(prefix, section.line) {
            return Err(at(
                section.line,
                format!(
                    "duplicate location prefix '{prefix}' in one server (lines {first} and {})",
                    section.line
                ),
            ));
        }
        let (server, location_limits) = self.current_server();
        location_limits.push(keys);
        server.locations.push(location);
        Ok(())
    }

    /// The server a location belongs to — the last `[server]`, else the implicit default
    /// server (made on first use) — with its locations' limit keys.
    fn current_server(&mut self) -> (&mut Server, &mut Vec<Keys>) {
        match (self.servers.last_mut(), self.server_limits.last_mut()) {
            (Some(server), Some((_, locations))) => (server, locations),
            _ => (
                self.implicit.get_or_insert_with(|| Server {
                    line: 0,
                    listen: vec![default_listen()],
                    server_name: Vec::new(),
                    locations: Vec::new(),
                    limits: Limits::default(),
                    proxy_protocol: Vec::new(),
                    realip: RealIp::default(),
                }),
                &mut self.implicit_limits,
            ),
        }
    }

    /// A `[program:NAME]`, each name at most once.
    fn add_program(
        &mut self,
        section: &Section,
        name: &'s str,
        vars: &Vars<'_>,
    ) -> Result<(), ConfigError> {
        if let Some(first) = self.program_lines.insert(name, section.line) {
            return Err(at(
                section.line,
                format!(
                    "[program:{name}] given twice (lines {first} and {})",
                    section.line
                ),
            ));
        }
        self.programs
            .push(build_program(section, name, vars, &mut self.warnings)?);
        Ok(())
    }

    /// The checks that need the whole file, then the built config with its warnings in line
    /// order.
    fn finish(mut self) -> Result<Built, ConfigError> {
        // Only reachable when no [server] came after the locations (checked above), so
        // `servers` is empty here.
        if let Some(server) = self.implicit {
            self.servers.push(server);
            self.server_limits
                .push((Keys::default(), self.implicit_limits));
        }
        let global = self.global.map(|(g, _)| g).unwrap_or_default();
        inherit_limits(&global, &mut self.servers, &self.server_limits);
        check_programs(&self.programs)?;
        for (named, line, title) in &self.program_refs {
            if !self.programs.iter().any(|b| b.program.name == *named) {
                return Err(at(
                    *line,
                    format!("uwsgi_program names unknown program '{named}' in [{title}]"),
                ));
            }
        }
        warn_server_name_conflicts(&self.servers, &mut self.warnings);
        crate::sort::sort_by_key(&mut self.warnings, |(line, _)| *line);
        Ok(Built {
            global,
            servers: self.servers,
            programs: self.programs.into_iter().map(|b| b.program).collect(),
            warnings: self.warnings,
        })
    }
}

/// The `uwsgi_program` of a uwsgi location.
fn uwsgi_program_of(location: &super::Location) -> Option<&str> {
    match &location.handler {
        super::Handler::Uwsgi(u) => u.program.as_deref(),
        _ => None,
    }
}

/// Resolves every server's and location's limits and realip settings: `[uwgate]` →
/// `[server]` → `[location]`, each level's own keys winning (nginx's http/server/location
/// merge).
fn inherit_limits(global: &Global, servers: &mut [Server], keys: &[(Keys, Vec<Keys>)]) {
    for (server, ((limits, realip), location_keys)) in servers.iter_mut().zip(keys) {
        server.limits = limits.apply(global.limits);
        server.realip = realip.apply(&global.realip);
        for (location, (limits, realip)) in server.locations.iter_mut().zip(location_keys) {
            location.limits = limits.apply(server.limits);
            location.realip = realip.apply(&server.realip);
        }
    }
}

/// Warns when two servers share an address and a name: requests for that name always reach
/// the first, as in nginx ("conflicting server name").
fn warn_server_name_conflicts(servers: &[Server], warnings: &mut Vec<(usize, String)>) {
    let mut owners: HashMap<(SocketAddr, &str), usize> = HashMap::new();
    for server in servers {
        for addr in &server.listen {
            for name in &server.server_name {
                if let Some(first) = owners.get(&(*addr, name.as_str())) {
                    warnings.push((
                        server.line,
                        format!(
                            "conflicting server_name '{name}' on {addr}: the [server] at line {first} gets its requests"
                        ),
                    ));
                } else {
                    owners.insert((*addr, name.as_str()), server.line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::super::{
        parse, AccessRule, AutoRestart, Config, Expires, Handler, StaticBase, StaticConf, Upstream,
        UpstreamAddr, UwsgiConf,
    };
    use super::*;

    fn config(text: &str) -> Config {
        parse(text, Path::new("/etc/uwgate.ini"), &|_| None).unwrap()
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("uwgate.ini"), &|_| None)
            .unwrap_err()
            .to_string()
    }

    /// The example of CONFIG.md, verbatim.
    const CONFIG_MD_EXAMPLE: &str = r#"[uwgate]                          ; global, optional
user = nginx                      ; drop to this user/group after binding (when started as root)
group = nginx
pidfile = /run/uwgate.pid
worker_connections = 1024         ; fixed connection slots, preallocated at start
client_header_buffer_size = 8k    ; a request head larger than this: 431 (414 for the request line)
buffer_size = 16k                 ; per active connection I/O buffer, from a fixed pool
client_max_body_size = 1m         ; larger: 413
temp_path = /var/lib/uwgate/tmp   ; spool for request/response bodies larger than the buffers
client_header_timeout = 60s
client_body_timeout = 60s
send_timeout = 60s
keepalive_timeout = 75s
syslog = unix:/dev/log            ; or udp:127.0.0.1:514, or stderr
syslog_facility = daemon
syslog_tag = uwgate
access_log = on                   ; nginx "combined" format, sent to syslog
error_log_level = info

[server]                          ; a virtual server; the [location:*] sections below it belong to it
listen = 80                       ; repeatable: 80, 127.0.0.1:8080, [::]:80
server_name = django.blog         ; Host match; the first [server] is the default

[location:/static/]               ; longest prefix wins, as in nginx
alias = /django/DjangoBlog/collectedstatic/   ; or: root = /srv/www
index = index.html
gzip_static = on
expires = 30d

[location:/]
uwsgi_pass = 127.0.0.1:8000       ; or unix:/run/django.sock; repeat for round robin
uwsgi_param = UWSGI_SCHEME https  ; extra or overriding vars (the nginx uwsgi_params set is built in)
uwsgi_connect_timeout = 60s
uwsgi_read_timeout = 60s
uwsgi_send_timeout = 60s

[location:/uwgate_status]
stub_status = on                  ; nginx stub_status text format, so existing monitors parse it
allow = 127.0.0.1
deny = all

[program:django]                  ; supervisor's keys, meanings and defaults
command = /opt/venv/bin/uwsgi --ini %(here)s/uwgate.ini
directory = /django/DjangoBlog
user = nginx
autostart = true
startsecs = 10
startretries = 3
autorestart = true                ; true, false or unexpected
exitcodes = 0
stopsignal = QUIT
stopwaitsecs = 10
stopasgroup = true
killasgroup = true
priority = 999
numprocs = 1
environment = DJANGO_SETTINGS_MODULE="blog.settings",LANG="en_US.UTF-8"

[uwsgi]                           ; read by uWSGI itself, ignored by uwgate
socket = 127.0.0.1:8000
chdir = /django/DjangoBlog
module = djangoblog.wsgi
processes = 5
master = true
"#;

    #[test]
    fn config_md_example_parses_verbatim() {
        let c = config(CONFIG_MD_EXAMPLE);
        assert_eq!(c.file, PathBuf::from("/etc/uwgate.ini"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let g = &c.global;
        assert_eq!(g.user.as_deref(), Some("nginx"));
        assert_eq!(g.group.as_deref(), Some("nginx"));
        assert_eq!(g.pidfile, Some(PathBuf::from("/run/uwgate.pid")));
        assert_eq!(
            *g,
            Global {
                user: Some("nginx".into()),
                group: Some("nginx".into()),
                pidfile: Some("/run/uwgate.pid".into()),
                ..Global::default()
            }
        );

        assert_eq!(c.servers.len(), 1);
        let server = &c.servers[0];
        assert_eq!(server.line, 20);
        assert_eq!(server.listen, vec!["0.0.0.0:80".parse().unwrap()]);
        assert_eq!(server.server_name, vec!["django.blog"]);
        assert_eq!(server.locations.len(), 3);

        let statics = &server.locations[0];
        assert_eq!((statics.line, statics.prefix.as_str()), (24, "/static/"));
        assert_eq!(
            statics.handler,
            Handler::Static(StaticConf {
                gzip_static: true,
                expires: Expires::Seconds(30 * 86400),
                ..StaticConf::new(StaticBase::Alias(
                    "/django/DjangoBlog/collectedstatic/".into()
                ))
            })
        );

        let app = &server.locations[1];
        assert_eq!((app.line, app.prefix.as_str()), (30, "/"));
        assert_eq!(
            app.handler,
            Handler::Uwsgi(UwsgiConf {
                params: vec![("UWSGI_SCHEME".into(), "https".into())],
                ..UwsgiConf::new(vec![Upstream::new(UpstreamAddr::Tcp(
                    "127.0.0.1:8000".parse().unwrap()
                ))])
            })
        );

        let status = &server.locations[2];
        assert_eq!(status.prefix, "/uwgate_status");
        assert_eq!(status.handler, Handler::StubStatus);
        assert_eq!(
            status.access,
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

        assert_eq!(c.programs.len(), 1);
        let p = &c.programs[0];
        assert_eq!((p.line, p.name.as_str()), (42, "django"));
        assert_eq!(p.command, "/opt/venv/bin/uwsgi --ini /etc/uwgate.ini");
        assert_eq!(p.directory, Some(PathBuf::from("/django/DjangoBlog")));
        assert_eq!(p.user.as_deref(), Some("nginx"));
        assert!(p.autostart);
        assert_eq!(p.startsecs, Duration::from_secs(10));
        assert_eq!(p.startretries, 3);
        assert_eq!(p.autorestart, AutoRestart::Always);
        assert_eq!(p.exitcodes, vec![0]);
        assert_eq!(p.stopsignal, libc::SIGQUIT);
        assert_eq!(p.stopwaitsecs, Duration::from_secs(10));
        assert!(p.stopasgroup && p.killasgroup);
        assert_eq!(p.priority, 999);
        assert_eq!(p.numprocs, 1);
        assert_eq!(
            p.environment,
            vec![
                (
                    "DJANGO_SETTINGS_MODULE".to_string(),
                    "blog.settings".to_string()
                ),
                ("LANG".to_string(), "en_US.UTF-8".to_string()),
            ]
        );
        let specs = p.processes().unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "django");
        assert_eq!(specs[0].process_num, 0);
        assert_eq!(
            specs[0].argv,
            vec!["/opt/venv/bin/uwsgi", "--ini", "/etc/uwgate.ini"]
        );
    }

    #[test]
    fn limits_inherit_uwgate_then_server_then_location() {
        let c = config(
            "[server]\nlisten = 81\nkeepalive_timeout = 5s\nclient_max_body_size = 0\n\
             [location:/up/]\nroot = /srv\nclient_max_body_size = 10m\nsend_timeout = 2s\n\
             [location:/]\nroot = /srv\nmax_ranges = 1\n\
             [server]\nlisten = 82\n\
             [location:/]\nroot = /srv\nkeepalive_requests = 3\n\
             [uwgate]\nsend_timeout = 30s\nmax_ranges = 4\nkeepalive_requests = 100\n",
        );
        let g = c.global.limits;
        assert_eq!(g.send_timeout, Duration::from_secs(30));
        assert_eq!(g.max_ranges, Some(4));
        assert_eq!(g.keepalive_requests, 100);

        let s1 = &c.servers[0];
        assert_eq!(s1.limits.keepalive_timeout, Duration::from_secs(5));
        assert_eq!(s1.limits.client_max_body_size, 0);
        assert_eq!(s1.limits.send_timeout, Duration::from_secs(30));
        let up = s1.locations[0].limits;
        assert_eq!(up.client_max_body_size, 10 << 20);
        assert_eq!(up.send_timeout, Duration::from_secs(2));
        assert_eq!(up.keepalive_timeout, Duration::from_secs(5));
        assert_eq!(up.max_ranges, Some(4));
        let root = s1.locations[1].limits;
        assert_eq!(root.max_ranges, Some(1));
        assert_eq!(root.client_max_body_size, 0);

        let s2 = &c.servers[1];
        assert_eq!(s2.limits, g);
        assert_eq!(s2.locations[0].limits.keepalive_requests, 3);
        assert_eq!(s2.locations[0].limits.send_timeout, Duration::from_secs(30));

        assert_eq!(c.limits(0, 0), &up);
        assert_eq!(c.limits(0, super::super::NO_ROUTE), &s1.limits);
        assert_eq!(c.limits(0, 9), &s1.limits);
        assert_eq!(c.limits(super::super::NO_ROUTE, 0), &g);
    }

    #[test]
    fn implicit_server_locations_inherit_uwgate_limits() {
        let c = config("[location:/]\nroot = /srv\n[uwgate]\nclient_body_timeout = 7s\n");
        assert_eq!(
            c.servers[0].locations[0].limits.client_body_timeout,
            Duration::from_secs(7)
        );
        assert_eq!(c.servers[0].limits, c.global.limits);
    }

    #[test]
    fn limit_keys_are_checked_with_their_line_in_every_scope() {
        assert_eq!(
            error("[server]\nkeepalive_requests = many\n"),
            "uwgate.ini:2: invalid value 'many' for 'keepalive_requests' in [server]: expected a number from 0 to 4294967295"
        );
        assert_eq!(
            error("[server]\n[location:/]\nroot = /x\nmax_ranges = -1\n"),
            "uwgate.ini:4: invalid value '-1' for 'max_ranges' in [location:/]: expected a number from 0 to 2147483647"
        );
        assert!(error("[uwgate]\nmax_ranges = all\n")
            .starts_with("uwgate.ini:2: invalid value 'all' for 'max_ranges' in [uwgate]"));
        assert!(
            error("[location:/]\nuwsgi_pass = 127.0.0.1:1\nclient_body_timeout = 0\n").starts_with(
                "uwgate.ini:3: invalid value '0' for 'client_body_timeout' in [location:/]"
            )
        );
        assert_eq!(
            error("[server]\nsend_timeout = 1s\nsend_timeout = 2s\n"),
            "uwgate.ini:3: 'send_timeout' given twice in [server] (lines 2 and 3)"
        );
    }

    #[test]
    fn limit_keys_apply_to_every_kind_of_location() {
        let c = config(
            "[location:/a/]\nuwsgi_pass = 127.0.0.1:1\nclient_max_body_size = 5m\n\
             [location:/s]\nstub_status = on\nkeepalive_timeout = 0\n",
        );
        assert_eq!(
            c.servers[0].locations[0].limits.client_max_body_size,
            5 << 20
        );
        assert_eq!(
            c.servers[0].locations[1].limits.keepalive_timeout,
            Duration::ZERO
        );
    }

    #[test]
    fn file_without_sections_is_all_defaults() {
        for text in ["", "\n\n", "; just a comment\n# and another\n"] {
            let c = config(text);
            assert_eq!(c.global, Global::default());
            assert!(c.servers.is_empty());
            assert!(c.programs.is_empty());
            assert!(c.warnings.is_empty());
        }
    }

    #[test]
    fn only_uwsgi_sections_is_all_defaults() {
        let c = config("[uwsgi]\nsocket = :8000\n[uwsgi:dev]\npy-autoreload = 1\n");
        assert!(c.servers.is_empty() && c.programs.is_empty());
    }

    #[test]
    fn locations_without_server_get_the_implicit_default_server() {
        let c = config(
            "[location:/]\nroot = /srv/www\n[location:/api/]\nuwsgi_pass = unix:/run/api.sock\n",
        );
        assert_eq!(c.servers.len(), 1);
        let server = &c.servers[0];
        assert_eq!(server.line, 0);
        assert_eq!(server.listen, vec!["0.0.0.0:80".parse().unwrap()]);
        assert!(server.server_name.is_empty());
        let prefixes: Vec<&str> = server.locations.iter().map(|l| l.prefix.as_str()).collect();
        assert_eq!(prefixes, vec!["/", "/api/"]);
    }

    #[test]
    fn locations_around_other_sections_still_join_the_implicit_server() {
        let c = config("[location:/a/]\nroot = /x\n[uwgate]\n[program:p]\ncommand = x\n[location:/b/]\nroot = /y\n");
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.servers[0].locations.len(), 2);
    }

    #[test]
    fn location_before_the_first_server_is_an_error() {
        assert_eq!(
            error("[uwgate]\n[location:/]\nroot = /x\n[server]\nlisten = 80\n"),
            "uwgate.ini:2: [location:/] comes before the first [server] (line 4): a location belongs to the [server] above it, and only a file without any [server] gets an implicit default server"
        );
    }

    #[test]
    fn locations_belong_to_the_server_above_them() {
        let c = config(
            "[server]\nserver_name = a\n[location:/]\nroot = /a\n[server]\nserver_name = b\nlisten = 8080\n[location:/]\nroot = /b\n[location:/x/]\nroot = /bx\n",
        );
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[0].locations.len(), 1);
        assert_eq!(c.servers[1].locations.len(), 2);
        assert_eq!(c.servers[1].line, 5);
        assert_eq!(c.servers[1].locations[0].line, 8);
    }

    #[test]
    fn server_without_locations_is_fine() {
        let c = config("[server]\nlisten = 8080\n[server]\nlisten = 8081\n");
        assert_eq!(c.servers.len(), 2);
        assert!(c.servers.iter().all(|s| s.locations.is_empty()));
    }

    #[test]
    fn duplicate_prefix_in_one_server_is_an_error() {
        assert_eq!(
            error("[server]\n[location:/a/]\nroot = /x\n[location:/a/]\nroot = /y\n"),
            "uwgate.ini:4: duplicate location prefix '/a/' in one server (lines 2 and 4)"
        );
        assert!(error("[location:/]\nroot = /x\n[location:/]\nroot = /y\n")
            .starts_with("uwgate.ini:3: duplicate location prefix '/'"));
    }

    #[test]
    fn same_prefix_in_two_servers_is_fine() {
        let c = config(
            "[server]\n[location:/]\nroot = /x\n[server]\nlisten = 81\n[location:/]\nroot = /y\n",
        );
        assert_eq!(c.servers.len(), 2);
    }

    #[test]
    fn prefixes_that_differ_by_a_slash_are_different() {
        let c = config("[location:/a]\nroot = /x\n[location:/a/]\nroot = /y\n");
        assert_eq!(c.servers[0].locations.len(), 2);
    }

    #[test]
    fn second_uwgate_section_is_an_error() {
        assert_eq!(
            error("[uwgate]\nuser = a\n[uwgate]\ngroup = b\n"),
            "uwgate.ini:3: [uwgate] given twice (lines 1 and 3)"
        );
    }

    #[test]
    fn server_name_shared_on_one_address_warns() {
        let c = config(
            "[server]\nserver_name = a.example\n[server]\nserver_name = A.example b.example\n",
        );
        assert_eq!(
            c.warnings,
            vec!["/etc/uwgate.ini:3: conflicting server_name 'a.example' on 0.0.0.0:80: the [server] at line 1 gets its requests"]
        );
        let c = config("[server]\nserver_name = a\n[server]\nlisten = 81\nserver_name = a\n");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn warnings_come_in_line_order() {
        let c = config("[server]\nserver_name = a\n[location:/]\nroot = /x\nallow = 10.0.0.1/8\n[server]\nserver_name = a\n[program:p]\ncommand = x\nstdout_logfile = x\n");
        let lines: Vec<&str> = c
            .warnings
            .iter()
            .map(|w| w.split(':').nth(1).unwrap())
            .collect();
        assert_eq!(lines, vec!["5", "6", "10"]);
    }

    #[test]
    fn first_error_in_file_order_wins() {
        assert_eq!(
            error("[uwgate]\nworker_connections = x\n[server]\nlisten = y\n"),
            "uwgate.ini:2: invalid value 'x' for 'worker_connections' in [uwgate]: expected a number from 1 to 1000000"
        );
    }

    #[test]
    fn env_and_here_expand_in_server_and_location() {
        let env = |name: &str| match name {
            "PORT" => Some("8080".to_string()),
            "SOCK" => Some("/run/app.sock".to_string()),
            _ => None,
        };
        let c = parse(
            "[server]\nlisten = 127.0.0.1:%(ENV_PORT)s\n[location:/]\nuwsgi_pass = unix:%(ENV_SOCK)s\n[location:/s/]\nalias = %(here)s/static/\n[location:/pct/]\nroot = /srv/100%%\n",
            Path::new("/opt/site/conf/../uwgate.ini"),
            &env,
        )
        .unwrap();
        let server = &c.servers[0];
        assert_eq!(server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        let Handler::Uwsgi(u) = &server.locations[0].handler else {
            panic!()
        };
        assert_eq!(
            u.upstreams[0].addr,
            UpstreamAddr::Unix("/run/app.sock".into())
        );
        let Handler::Static(s) = &server.locations[1].handler else {
            panic!()
        };
        assert_eq!(s.base, StaticBase::Alias("/opt/site/static/".into()));
        let Handler::Static(s) = &server.locations[2].handler else {
            panic!()
        };
        assert_eq!(s.base, StaticBase::Root("/srv/100%".into()));
    }

    #[test]
    fn missing_env_is_an_error_naming_key_and_line() {
        assert_eq!(
            error("[server]\n[location:/]\nuwsgi_pass = unix:%(ENV_SOCK)s\n"),
            "uwgate.ini:3: cannot expand 'uwsgi_pass' in [location:/]: environment variable 'SOCK' is not set"
        );
    }

    #[test]
    fn errors_in_sections_are_reported_before_cross_checks() {
        assert_eq!(
            error("[program:a]\ncommand = x\ndepends_on = nope\n[program:b]\nbogus = 1\n"),
            "uwgate.ini:5: unknown key 'bogus' in [program:b]"
        );
    }
}
