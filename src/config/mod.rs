//! Configuration: the one ini file (see CONFIG.md) turned into validated, typed structs.
//!
//! Owns the ini syntax (`syntax`), `%(name)s` expansion (`expand`), the value grammars
//! (`values`), the sections (`global`, `location`, `program`), the checks that span the file
//! (`build`) and the scaling of the sized pools to a descriptor limit (`descriptors`). Every other module reads a [`Config`]; none writes one after start.
//!
//! Must never: panic on any input, or report an error without the file and line it comes from.
//! It reads only the file it is given and the environment (through the caller's callback); the
//! one outside effect is resolving the host names the file names (`uwsgi_pass`, `syslog`,
//! `ready`), as nginx does when it reads its configuration.

mod build;
pub mod descriptors;
mod expand;
mod global;
mod limits;
mod location;
mod program;
mod realip;
mod syntax;
mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use values::{parse_bool, parse_duration, parse_size, resolve_host};

/// How the file's host names (`uwsgi_pass`, `syslog = udp:`, `ready = tcp:`) become addresses:
/// `(host, port)` → the address, or why not. [`resolve_host`] asks the system resolver.
pub type Resolve<'a> = &'a dyn Fn(&str, u16) -> Result<SocketAddr, String>;

/// The whole validated configuration, read once at start by `main` and shared read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The ini file, as given on the command line.
    pub file: PathBuf,
    /// `[uwgate]`, or its defaults when the section is absent.
    pub global: Global,
    /// `[server]` sections in file order; the first is the default server. A file without any
    /// `[server]` but with `[location:*]` sections gets one implicit server (`line` 0).
    pub servers: Vec<Server>,
    /// `[program:x]` sections in file order.
    pub programs: Vec<Program>,
    /// `FILE:LINE: message` lines for things accepted but ignored or suspicious; `main` logs
    /// them at warn level once logging is up.
    pub warnings: Vec<String>,
}

/// `[uwgate]`: process-wide settings. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Drop to this user after binding, when started as root.
    pub user: Option<String>,
    /// Drop to this group after binding, when started as root.
    pub group: Option<String>,
    /// Where to write our pid; absolute.
    pub pidfile: Option<PathBuf>,
    /// The binary `uwgate -s upgrade` executes in place; absolute. `None`: uwgate's own binary
    /// as it was installed when it started (`/proc/self/exe` resolved at start).
    pub upgrade_binary: Option<PathBuf>,
    /// Connection slots allocated at start; 1..=1_000_000, default 1024.
    pub worker_connections: usize,
    /// Largest request head; 1k..=1m, default 8k.
    pub client_header_buffer_size: usize,
    /// Size of each pool buffer; 4k..=16m, default 16k.
    pub buffer_size: usize,
    /// Buffers in the pool; 1..=worker_connections*2, default min(worker_connections, 256).
    pub buffer_pool: usize,
    /// Directory for spooled bodies; absolute, default /var/lib/uwgate/tmp.
    pub temp_path: PathBuf,
    /// Time allowed to receive a request head; default 60s.
    pub client_header_timeout: Duration,
    /// Slowest accepted request body upload, bytes per second; 0 = off, default 1k.
    pub client_body_min_rate: u64,
    /// The limit keys as `[uwgate]` sets them: what servers and locations inherit.
    pub limits: Limits,
    /// Bound on a graceful stop; default 10s.
    pub shutdown_timeout: Duration,
    /// `listen(2)` backlog; default 511.
    pub listen_backlog: i32,
    /// `Server: uwgate/VERSION` when on, `Server: uwgate` when off; default on.
    pub server_tokens: bool,
    /// Where log lines go; default `Unix("/dev/log")`.
    pub syslog: SyslogTarget,
    /// Syslog facility code (not shifted): daemon = 3 (default), local0 = 16, ...
    pub syslog_facility: u8,
    /// Syslog tag of the error log and of program output; default "uwgate".
    pub syslog_tag: String,
    /// Whether to log one access line per request; default true.
    pub access_log: bool,
    /// Syslog tag of access lines; default "uwgate-access".
    pub access_log_tag: String,
    /// Least severe level logged; nginx's names, default info.
    pub error_log_level: log::LevelFilter,
    /// Entries of the open-file cache (descriptors, metadata, small files' bytes, missing
    /// paths); 0 or `off` disables it; default 1000.
    pub open_file_cache: usize,
    /// How long a cached entry is trusted before one stat(2) revalidates it; default 1s.
    pub open_file_cache_valid: Duration,
    /// Most connections one client address may hold at once (more are closed at accept);
    /// 0 or `off` = no limit (the default; the appliance's ini sets one).
    pub limit_conn_per_ip: u32,
    /// `control_socket`: where `uwgate ctl` (and `curl --unix-socket`) reach the running
    /// uwgate; `None` (the default) serves no control socket.
    pub control_socket: Option<PathBuf>,
    /// `control_socket_group`: members of this group may use the control socket too (it is
    /// then created `0660` and owned by the group); root always may.
    pub control_socket_group: Option<String>,
    /// `control_socket_mode`: the socket file's mode; default `0600` (`0660` with a group).
    pub control_socket_mode: Option<u32>,
    /// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` as `[uwgate]` sets them: what
    /// servers and locations inherit.
    pub realip: RealIp,
    /// `proxy_protocol_timeout`: time allowed for the PROXY protocol header on a
    /// `listen … proxy_protocol` address; default 30s (nginx's stream module).
    pub proxy_protocol_timeout: Duration,
    /// `shutdown_delay`: on a graceful stop, keep serving this long with `health` locations
    /// answering 503 (so a balancer takes the box out first), then stop; default 0 (off).
    pub shutdown_delay: Duration,
}

/// nginx's realip module (`set_real_ip_from`, `real_ip_header`, `real_ip_recursive`), as
/// `[uwgate]`, `[server]` and `[location:*]` each may set it; a section that lists no
/// `set_real_ip_from` inherits its parent's whole list, and the other two keys are inherited
/// one by one (nginx's merge). `Default`: nobody trusted, `X-Real-IP`, not recursive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RealIp {
    /// Peers whose `real_ip_header` is believed; empty = realip is off.
    pub from: Vec<Cidr>,
    /// Where the client address comes from.
    pub header: RealIpHeader,
    /// `real_ip_recursive`: skip trusted addresses from the right of the header's list.
    pub recursive: bool,
}

/// `real_ip_header`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default).
    #[default]
    XRealIp,
    /// `X-Forwarded-For`: every such field, the last one first.
    XForwardedFor,
    /// The PROXY protocol header of a `listen … proxy_protocol` address.
    ProxyProtocol,
    /// Any other field name (e.g. `CF-Connecting-IP`), as written.
    Field(String),
}

/// An address or network (`10.0.0.0/8`, `::1`); host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub net: IpAddr,
    /// Prefix length: up to 32 for IPv4, 128 for IPv6.
    pub bits: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let shift = 32u32.saturating_sub(u32::from(self.bits));
                let mask = u32::MAX.checked_shl(shift).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let shift = 128u32.saturating_sub(u32::from(self.bits));
                let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }
}

/// The limits nginx lets `http` (`[uwgate]`), `server` and `location` each set; a section's own
/// value wins over the one it inherits. Resolved when the file is read: [`Global`], every
/// [`Server`] and every [`Location`] carry their effective values, and the request path reads
/// them through [`Config::limits`]. `Default` gives nginx's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `client_max_body_size`: largest request body, checked once the request is routed; 0 =
    /// unlimited; default 1m.
    pub client_max_body_size: u64,
    /// `client_body_timeout`: time allowed between two reads of a request body; default 60s.
    pub client_body_timeout: Duration,
    /// `send_timeout`: time allowed between two writes to a client; default 60s.
    pub send_timeout: Duration,
    /// `keepalive_timeout`: idle keep-alive time after a response; 0 disables keep-alive;
    /// default 75s.
    pub keepalive_timeout: Duration,
    /// `keepalive_requests`: requests served on one connection; default 1000.
    pub keepalive_requests: u32,
    /// `max_ranges`: most byte ranges a static file serves (more → the whole file); 0 ignores
    /// `Range`; `None` (nginx's default) sets no limit of its own, uwgate serves at most 16.
    pub max_ranges: Option<u32>,
}

/// Where log lines go (`syslog = ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A local syslog socket: `unix:/dev/log` or `/dev/log`.
    Unix(PathBuf),
    /// A remote or local syslog over UDP: `udp:127.0.0.1:514` (port defaults to 514).
    Udp(SocketAddr),
    /// Plain lines on standard error: `stderr` (for foreground runs and containers).
    Stderr,
}

/// `[server]`: a virtual server and its locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Line of the `[server]` header; 0 for the implicit default server.
    pub line: usize,
    /// Addresses to listen on; default `[0.0.0.0:80]`. No address twice.
    pub listen: Vec<SocketAddr>,
    /// Those of `listen` given with `proxy_protocol`: every connection must begin with a PROXY
    /// protocol header (v1 or v2). The flag belongs to the address, whichever server sets it.
    pub proxy_protocol: Vec<SocketAddr>,
    /// Host names, lowercased, no duplicates; empty matches nothing by name. Besides exact
    /// names: `*.example.com` (any subdomain), `.example.com` (example.com and any subdomain)
    /// and `www.example.*` (any last labels), as nginx.
    pub server_name: Vec<String>,
    /// `[location:*]` sections in file order; prefixes are unique within the server.
    pub locations: Vec<Location>,
    /// Effective limits: the server's own keys over `[uwgate]`'s.
    pub limits: Limits,
    /// Effective realip settings: the server's own keys over `[uwgate]`'s.
    pub realip: RealIp,
}

/// `[location:PREFIX]`: what serves the URIs under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Line of the `[location:*]` header.
    pub line: usize,
    /// The prefix, starting with '/', exactly as written.
    pub prefix: String,
    /// The one handler: alias/root, uwsgi_pass or stub_status.
    pub handler: Handler,
    /// `internal = on`: not reachable from client requests (nginx's `internal`).
    pub internal: bool,
    /// `allow`/`deny` rules in file order; the first match decides, no match allows.
    pub access: Vec<AccessRule>,
    /// Effective limits: the location's own keys over its server's.
    pub limits: Limits,
    /// Effective realip settings: the location's own keys over its server's.
    pub realip: RealIp,
}

/// The handler of a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// `alias` or `root`: files from disk.
    Static(StaticConf),
    /// `uwsgi_pass`: forwarded to uWSGI.
    Uwsgi(UwsgiConf),
    /// `stub_status = on`: nginx's stub_status text.
    StubStatus,
    /// `health = on`: 200 while every `required_for_health` program is RUNNING and uwgate is
    /// not draining, else 503 — the page a balancer's health check reads.
    Health,
}

/// A static-file location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConf {
    /// `alias` or `root`.
    pub base: StaticBase,
    /// `index`: file names tried for a directory URI; default `["index.html"]`.
    pub index: Vec<String>,
    /// `gzip_static`: serve `FILE.gz` to clients that accept gzip; default off.
    pub gzip_static: bool,
    /// `expires`: Expires / Cache-Control max-age; default off.
    pub expires: Expires,
    /// `disable_symlinks`: refuse to follow symbolic links; default off.
    pub disable_symlinks: bool,
    /// `charset = utf-8|off`: add `; charset=utf-8` to text types; default on.
    pub charset: bool,
}

impl StaticConf {
    /// A static location over `base` with every other key at its default.
    pub fn new(base: StaticBase) -> StaticConf {
        StaticConf {
            base,
            index: vec!["index.html".to_string()],
            gzip_static: false,
            expires: Expires::Off,
            disable_symlinks: false,
            charset: true,
        }
    }
}

/// Where a static location's files are. The path is stored exactly as written (after
/// `%(..)` expansion) and is absolute; for `Alias` a trailing slash is significant, as in nginx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticBase {
    /// `alias`: the location prefix is replaced by this path.
    Alias(PathBuf),
    /// `root`: the whole URI path is appended to this path.
    Root(PathBuf),
}

/// `expires`, as nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// No Expires or Cache-Control header.
    Off,
    /// `Expires: Thu, 01 Jan 1970 00:00:01 GMT`, `Cache-Control: no-cache`.
    Epoch,
    /// `Expires: Thu, 31 Dec 2037 23:55:55 GMT`, `Cache-Control: max-age=315360000`.
    Max,
    /// Now plus this many seconds; negative gives `Cache-Control: no-cache`.
    Seconds(i64),
}

/// A uwsgi_pass location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UwsgiConf {
    /// `uwsgi_pass` lines in file order; more than one is round robin.
    pub upstreams: Vec<Upstream>,
    /// `uwsgi_param NAME VALUE` in file order; added after (so overriding) the built-in set.
    pub params: Vec<(String, String)>,
    /// `uwsgi_connect_timeout`; default 60s.
    pub connect_timeout: Duration,
    /// `uwsgi_read_timeout`: between two reads from uWSGI; default 60s.
    pub read_timeout: Duration,
    /// `uwsgi_send_timeout`: between two writes to uWSGI; default 60s.
    pub send_timeout: Duration,
    /// `uwsgi_script_name`: SCRIPT_NAME sent, and stripped from PATH_INFO; starts with '/',
    /// never ends with '/'.
    pub script_name: Option<String>,
    /// `uwsgi_max_temp_file_size`: largest response spooled to `temp_path`; default 1g.
    pub max_temp_file_size: u64,
    /// `uwsgi_ignore_client_abort`: let uWSGI finish when the client goes; default on.
    pub ignore_client_abort: bool,
    /// `uwsgi_program`: the `[program:x]` behind this location; while it is starting, backing
    /// off or being restarted, requests wait for it (up to `uwsgi_connect_timeout`).
    pub program: Option<String>,
}

impl UwsgiConf {
    /// A uwsgi location over `upstreams` with every other key at its default.
    pub fn new(upstreams: Vec<Upstream>) -> UwsgiConf {
        UwsgiConf {
            upstreams,
            params: Vec::new(),
            connect_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            script_name: None,
            max_temp_file_size: 1 << 30,
            ignore_client_abort: true,
            program: None,
        }
    }
}

/// One `uwsgi_pass` server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Where uWSGI listens.
    pub addr: UpstreamAddr,
    /// Failures within `fail_timeout` that mark it failed; 0 = never; default 1.
    pub max_fails: u32,
    /// Failure window, and how long a failed server is skipped; default 10s.
    pub fail_timeout: Duration,
}

impl Upstream {
    /// An upstream at `addr` with nginx's default max_fails and fail_timeout.
    pub fn new(addr: UpstreamAddr) -> Upstream {
        Upstream {
            addr,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
        }
    }
}

/// A uWSGI socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// `127.0.0.1:8000`, or a host name resolved when the file is read.
    Tcp(SocketAddr),
    /// `unix:/run/x.sock`: absolute, at most 107 bytes.
    Unix(PathBuf),
}

/// One `allow` or `deny` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRule {
    /// `allow` (true) or `deny` (false).
    pub allow: bool,
    /// Network and prefix length, host bits cleared; `None` = `all`.
    pub net: Option<(IpAddr, u8)>,
}

/// `[program:NAME]`: one supervised program, with supervisor's keys and defaults.
///
/// `command` and `process_name` keep `%(process_num)d` (with its width) and `%%` as written;
/// `%(here)s`, `%(ENV_X)s`, `%(program_name)s` and `%(group_name)s` are already expanded, with
/// any `%` they brought in doubled. [`Program::processes`] expands the rest per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Line of the `[program:NAME]` header.
    pub line: usize,
    /// NAME: letters, digits, '_', '.', '-'.
    pub name: String,
    /// The command line, split like a POSIX shell by [`Program::processes`].
    pub command: String,
    /// Name of each process; default `%(program_name)s`.
    pub process_name: String,
    /// Number of processes; 1..=1024, default 1.
    pub numprocs: u32,
    /// First `%(process_num)d`; default 0.
    pub numprocs_start: u32,
    /// Working directory of the processes; absolute.
    pub directory: Option<PathBuf>,
    /// umask of the processes (`022`).
    pub umask: Option<u32>,
    /// Start order, lower first (stop order is the reverse); default 999.
    pub priority: i32,
    /// Start with uwgate; default true.
    pub autostart: bool,
    /// Time a process must stay up to count as started; default 1s.
    pub startsecs: Duration,
    /// Failed starts before FATAL; default 3.
    pub startretries: u32,
    /// When to restart an exited process; default unexpected.
    pub autorestart: AutoRestart,
    /// Expected exit codes; default `[0]`.
    pub exitcodes: Vec<i32>,
    /// Signal that asks a process to stop; default SIGTERM.
    pub stopsignal: i32,
    /// Time between stopsignal and SIGKILL; default 10s.
    pub stopwaitsecs: Duration,
    /// Send stopsignal to the whole process group; default false.
    pub stopasgroup: bool,
    /// Send SIGKILL to the whole process group; default false, forced true by stopasgroup.
    pub killasgroup: bool,
    /// Run the processes as this user (when uwgate runs as root).
    pub user: Option<String>,
    /// Extra environment variables, in file order, names unique.
    pub environment: Vec<(String, String)>,
    /// Send stderr where stdout goes (tagged as stdout); default false.
    pub redirect_stderr: bool,
    /// Programs that must be RUNNING (and ready) before this one starts; they exist, no cycles.
    pub depends_on: Vec<String>,
    /// How to tell the program is ready for dependents, beyond startsecs.
    pub ready: Option<ReadyCheck>,
    /// Longest wait for `ready`; default 60s.
    pub ready_timeout: Duration,
    /// `required_for_health`: `health` locations answer 503 unless every process of this
    /// program is RUNNING; default false.
    pub required_for_health: bool,
    /// `output_buffer_size`: bytes of recent stdout (and as many of stderr) kept in memory
    /// per process for `uwgate ctl tail`; 0 keeps none; default 64k.
    pub output_buffer_size: usize,
    /// `reloadsignal`: the signal `uwgate ctl reload-program` sends; default HUP.
    pub reloadsignal: i32,
    /// `stdout_syslog_priority`: syslog severity code of stdout lines; default info (6).
    pub stdout_syslog_priority: u8,
    /// `stderr_syslog_priority`: syslog severity code of stderr lines; default err (3).
    pub stderr_syslog_priority: u8,
}

/// `autorestart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoRestart {
    /// `true`: restart whatever the exit code.
    Always,
    /// `false`: never restart.
    Never,
    /// `unexpected`: restart when the exit code is not in `exitcodes`.
    Unexpected,
}

/// `ready`: a socket that accepts connections once the program is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    /// `tcp:127.0.0.1:3306`
    Tcp(SocketAddr),
    /// `unix:/run/mysqld/mysqld.sock`
    Unix(PathBuf),
}

/// One process of a program, with everything expanded; made by [`Program::processes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The expanded process_name; unique across the file.
    pub name: String,
    /// The split command line; never empty.
    pub argv: Vec<String>,
    /// This process's `%(process_num)d`.
    pub process_num: u32,
}

/// A configuration error: `FILE:LINE: message`, or `FILE: message` when `line` is 0 (I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The ini file, as given.
    pub file: String,
    /// 1-based line, 0 when the error is not about one line.
    pub line: usize,
    /// What is wrong, naming the key and section.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A connection's route before (or without) a server or location: [`Config::limits`] then falls
/// back to the server's, or `[uwgate]`'s, limits.
pub const NO_ROUTE: u16 = u16::MAX;

impl Config {
    /// The limits that apply to a request routed to location `location` of server `server`
    /// (indices as the connection records them): the location's, else the server's when the
    /// location is unknown ([`NO_ROUTE`], or gone after a reload), else `[uwgate]`'s. Read by
    /// the request path wherever a limit applies, so every limit comes from one place.
    pub fn limits(&self, server: u16, location: u16) -> &Limits {
        match self.servers.get(usize::from(server)) {
            Some(s) => s
                .locations
                .get(usize::from(location))
                .map_or(&s.limits, |l| &l.limits),
            None => &self.global.limits,
        }
    }
}

/// An error at `line`, before the file name is known (`parse` fills it in).
pub(crate) fn at(line: usize, message: String) -> ConfigError {
    ConfigError {
        file: String::new(),
        line,
        message,
    }
}

/// Reads and validates the ini file at `path`, with `%(ENV_X)s` from the process environment.
/// Called by `main` at start; any error is printed as is and uwgate exits non-zero.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_bytes(
        &bytes,
        path,
        &|name| std::env::var(name).ok(),
        &resolve_host,
    )
}

/// Validates the raw bytes of an ini file as if read from `file` (used for `%(here)s` and in
/// messages, never opened): invalid UTF-8 is an error on its line, then as [`parse`]. Host names
/// go through `resolve`, so with a resolver that answers from memory this reads nothing outside
/// `bytes` and `env`. [`load`] uses it; so do the fuzz harness and its corpus test.
pub fn parse_bytes(
    bytes: &[u8],
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    resolve: Resolve<'_>,
) -> Result<Config, ConfigError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let before = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = before
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                .saturating_add(1);
            return Err(ConfigError {
                file: file.display().to_string(),
                line,
                message: "not valid UTF-8".to_string(),
            });
        }
    };
    parse_with(text, file, env, resolve)
}

/// Validates ini `text` read from `file` (used for `%(here)s` and in messages), taking
/// `%(ENV_X)s` from `env`. Pure apart from resolving host names; tests call it directly.
pub fn parse(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_with(text, file, env, &resolve_host)
}

fn parse_with(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    resolve: Resolve<'_>,
) -> Result<Config, ConfigError> {
    let file_name = file.display().to_string();
    let with_file = |mut e: ConfigError| {
        e.file.clone_from(&file_name);
        e
    };
    let sections = syntax::split(text).map_err(with_file)?;
    let vars = expand::Vars {
        here: expand::here_dir(file),
        env,
        resolve,
    };
    let built = build::build(&sections, &vars).map_err(with_file)?;
    Ok(Config {
        file: file.to_path_buf(),
        global: built.global,
        servers: built.servers,
        programs: built.programs,
        warnings: built
            .warnings
            .iter()
            .map(|(line, message)| format!("{file_name}:{line}: {message}"))
            .collect(),
    })
}

impl Default for Global {
    fn default() -> Global {
        Global {
            user: None,
            group: None,
            pidfile: None,
            upgrade_binary: None,
            worker_connections: 1024,
            client_header_buffer_size: 8 << 10,
            buffer_size: 16 << 10,
            buffer_pool: 256,
            temp_path: PathBuf::from("/var/lib/uwgate/tmp"),
            client_header_timeout: Duration::from_secs(60),
            client_body_min_rate: 1 << 10,
            limits: Limits::default(),
            shutdown_timeout: Duration::from_secs(10),
            open_file_cache: 1000,
            open_file_cache_valid: Duration::from_secs(1),
            limit_conn_per_ip: 0,
            realip: RealIp::default(),
            proxy_protocol_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            control_socket: None,
            control_socket_group: None,
            control_socket_mode: None,
            listen_backlog: 511,
            server_tokens: true,
            syslog: SyslogTarget::Unix(PathBuf::from("/dev/log")),
            syslog_facility: 3,
            syslog_tag: "uwgate".to_string(),
            access_log: true,
            access_log_tag: "uwgate-access".to_string(),
            error_log_level: log::LevelFilter::Info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("uwgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn error_display_is_file_colon_line_colon_message() {
        let e = ConfigError {
            file: "uwgate.ini".into(),
            line: 14,
            message: "unknown key 'alais' in [location:/static/]".into(),
        };
        assert_eq!(
            e.to_string(),
            "uwgate.ini:14: unknown key 'alais' in [location:/static/]"
        );
    }

    #[test]
    fn error_without_line_is_file_colon_message() {
        let e = ConfigError {
            file: "/etc/uwgate.ini".into(),
            line: 0,
            message: "cannot read: gone".into(),
        };
        assert_eq!(e.to_string(), "/etc/uwgate.ini: cannot read: gone");
    }

    #[test]
    fn load_of_a_missing_file_is_an_io_error_without_line() {
        let e = load(Path::new("/nonexistent/uwgate.ini")).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/uwgate.ini: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn load_reads_the_file_and_expands_here() {
        let path = temp_file("here.ini", b"[server]\n[location:/]\nroot = %(here)s/www\n");
        let config = load(&path).unwrap();
        let dir = path.parent().unwrap().to_str().unwrap();
        let Handler::Static(s) = &config.servers[0].locations[0].handler else {
            panic!("not static")
        };
        assert_eq!(
            s.base,
            StaticBase::Root(PathBuf::from(format!("{dir}/www")))
        );
        assert_eq!(config.file, path);
    }

    #[test]
    fn load_reports_the_line_of_invalid_utf8() {
        let path = temp_file("bad-utf8.ini", b"[uwgate]\nuser = a\xffb\n");
        let e = load(&path).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().ends_with(":2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn parse_bytes_resolves_host_names_through_the_callers_resolver() {
        let text = b"[uwgate]\nsyslog = udp:logs:1514\n[location:/]\nuwsgi_pass = app:8000\n\
[program:db]\ncommand = /bin/true\nready = tcp:db:3306\n";
        let asked = std::cell::RefCell::new(Vec::new());
        let resolve = |host: &str, port: u16| {
            asked.borrow_mut().push(format!("{host}:{port}"));
            Ok(SocketAddr::from(([10, 0, 0, 1], port)))
        };
        let config = parse_bytes(text, Path::new("/etc/uwgate.ini"), &|_| None, &resolve).unwrap();
        assert_eq!(*asked.borrow(), ["logs:1514", "app:8000", "db:3306"]);
        assert_eq!(
            config.global.syslog,
            SyslogTarget::Udp("10.0.0.1:1514".parse().unwrap())
        );
        let refuse = |host: &str, _: u16| Err(format!("no {host} here"));
        let e = parse_bytes(
            b"[location:/]\nuwsgi_pass = app:8000\n",
            Path::new("/x.ini"),
            &|_| None,
            &refuse,
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("no app here"), "{e}");
    }

    #[test]
    fn parse_bytes_reports_the_line_of_invalid_utf8_without_reading_the_file() {
        let e = parse_bytes(
            b"[uwgate]\n\nuser = a\xffb\n",
            Path::new("/nonexistent/uwgate.ini"),
            &|_| None,
            &resolve_host,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/uwgate.ini:3: not valid UTF-8");
    }

    #[test]
    fn load_takes_env_from_the_process_environment() {
        // PATH is set in every test environment.
        let path = temp_file(
            "env.ini",
            b"[program:x]\ncommand = /bin/true\nenvironment = P=\"%(ENV_PATH)s\"\n",
        );
        let config = load(&path).unwrap();
        assert_eq!(
            config.programs[0].environment,
            vec![("P".to_string(), std::env::var("PATH").unwrap())]
        );
    }

    #[test]
    fn defaults_of_global_are_the_documented_ones() {
        let g = Global::default();
        assert_eq!(g.worker_connections, 1024);
        assert_eq!(g.client_header_buffer_size, 8192);
        assert_eq!(g.buffer_size, 16384);
        assert_eq!(g.buffer_pool, 256);
        assert_eq!(g.limits.client_max_body_size, 1048576);
        assert_eq!(g.client_body_min_rate, 1024);
        assert_eq!(g.limits.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(g.syslog, SyslogTarget::Unix("/dev/log".into()));
    }
}
