//! `uwgate ctl [-c FILE] [-s SOCKET] VERB [ARGS…]`: supervisorctl's verbs, output lines and
//! exit codes, over the control socket (plus `reload-program`, and `reload` meaning uwgate's
//! own configuration, as `nginx -s reload`, and `upgrade`, as `uwgate -s upgrade` but waiting
//! for the outcome as supervisorctl's `restart` does).
//!
//! Owns the command line of `ctl`, the HTTP exchange with the socket, and the wording of every
//! line it prints (supervisorctl 4.x's: `status` columns, `NAME: ERROR (…)`, LSB exit codes —
//! 3 and 4 for `status`, 7 for a program that is not running, 1 for other errors). An ordinary
//! blocking program: it allocates, and it never runs inside the loop.

use super::json::{self, Value};
use super::upgrade_wait::{self, Probe, Wait};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// LSB exit codes as supervisorctl uses them.
const GENERIC: i32 = 1;
const INVALID_ARGS: i32 = 2;
const STATUS_NOT_RUNNING: i32 = 3;
const STATUS_UNKNOWN: i32 = 4;
const INSUFFICIENT_PRIVILEGES: i32 = 4;
const NOT_RUNNING: i32 = 7;

/// How long a command may wait for its answer (start, stop, restart, update wait for their
/// outcome; the server gives up after 600 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(660);

/// `upgrade`: how often `/version` is asked while the upgrade goes on, and how long one look
/// may take (the loop is busy for a moment in the exec; a new image that does not answer
/// within this is looked at again).
const UPGRADE_POLL: Duration = Duration::from_millis(100);
const UPGRADE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the command goes and what it says.
pub struct Options {
    /// `-c FILE`: the ini whose `control_socket` to use.
    pub config: PathBuf,
    /// `-s SOCKET`: the socket itself (wins over `-c`).
    pub socket: Option<PathBuf>,
    /// The verb and its arguments.
    pub args: Vec<String>,
}

/// What an exchange with the socket gave.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// The client's state: the socket, the output, and the exit status (the last error sets it,
/// as in supervisorctl).
struct Ctl<'o> {
    socket: PathBuf,
    /// The file's `control_socket` when `-s` named another: where an upgrade may move it.
    file_socket: Option<PathBuf>,
    out: &'o mut dyn Write,
    exit: i32,
}

/// Runs one `uwgate ctl` command; returns the exit status.
pub fn run(opts: &Options) -> i32 {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    let socket = match socket_path(opts) {
        Ok(p) => p,
        Err(msg) => {
            let _ = writeln!(lock, "{msg}");
            return INVALID_ARGS;
        }
    };
    let file_socket = opts
        .socket
        .as_ref()
        .and_then(|_| file_socket(&opts.config).ok())
        .filter(|p| *p != socket);
    let mut ctl = Ctl {
        socket,
        file_socket,
        out: &mut lock,
        exit: 0,
    };
    let Some((verb, rest)) = opts.args.split_first() else {
        ctl.usage();
        return INVALID_ARGS;
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    ctl.command(verb, &rest);
    let _ = ctl.out.flush();
    ctl.exit
}

/// `-s`, else the `control_socket` of the ini — read leniently when the file does not parse
/// (so `reread` and `reload` can report the error the running uwgate finds in it).
fn socket_path(opts: &Options) -> Result<PathBuf, String> {
    match &opts.socket {
        Some(s) => Ok(s.clone()),
        None => file_socket(&opts.config),
    }
}

/// The `control_socket` of the ini `config`.
fn file_socket(config: &std::path::Path) -> Result<PathBuf, String> {
    let found = match crate::config::load(config) {
        Ok(cfg) => cfg.global.control_socket,
        Err(e) => {
            let text = std::fs::read_to_string(config).map_err(|_| format!("Error: {e}"))?;
            Some(control_socket_line(&text).ok_or_else(|| format!("Error: {e}"))?)
        }
    };
    found.ok_or_else(|| {
        format!(
            "Error: {} has no control_socket: set [uwgate] control_socket = /run/uwgate.sock (and restart uwgate), or give -s SOCKET",
            config.display()
        )
    })
}

/// The `control_socket = PATH` of a file's `[uwgate]` section, found line by line.
fn control_socket_line(text: &str) -> Option<PathBuf> {
    let mut in_global = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_global = line == "[uwgate]";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if in_global && key.trim() == "control_socket" {
            let value = value.split(" ;").next().unwrap_or("").trim();
            return value.starts_with('/').then(|| PathBuf::from(value));
        }
    }
    None
}

/// `group:name`, or `name` when they are the same (supervisor's `make_namespec`).
fn namespec(p: &Value) -> String {
    let (group, name) = (p.get("group").str(), p.get("name").str());
    if group == name {
        name.to_string()
    } else {
        format!("{group}:{name}")
    }
}

/// Python's `str(timedelta(seconds=s))`: `0:00:17`, `1 day, 2:03:04`, `3 days, 0:00:01`.
pub fn uptime(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// `strftime('%b %d %I:%M %p')` of a local time: `Dec 04 07:03 PM`.
pub fn stop_time(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let Some((_, month, day, hour, minute, _)) = crate::sys::peer::local_time(unix) else {
        return String::new();
    };
    let name = MONTHS
        .get(usize::try_from(month).unwrap_or(1).saturating_sub(1))
        .unwrap_or(&"Jan");
    let h12 = match hour % 12 {
        0 => 12,
        h => h,
    };
    let ampm = if hour < 12 { "AM" } else { "PM" };
    format!("{name} {day:02} {h12:02}:{minute:02} {ampm}")
}

/// The description column of `status` (supervisor's `_interpretProcessInfo`).
pub fn description(p: &Value) -> String {
    match p.get("state").str() {
        "RUNNING" => format!(
            "pid {}, uptime {}",
            p.get("pid").as_u64().unwrap_or(0),
            uptime(p.get("uptime").as_u64().unwrap_or(0))
        ),
        "BACKOFF" | "FATAL" => match p.get("spawnerr").as_str() {
            Some(e) if !e.is_empty() => e.to_string(),
            _ => format!("unknown error (try \"tail {}\")", p.get("name").str()),
        },
        "STOPPED" | "EXITED" => match p.get("stop_time").as_u64() {
            Some(t) if p.get("started").as_bool() == Some(true) => {
                stop_time(i64::try_from(t).unwrap_or(0))
            }
            _ => "Not started".to_string(),
        },
        _ => String::new(),
    }
}

/// supervisorctl's status lines: `NAME` padded to the longest name + 3 (at least 33), the
/// state to 10, then the description.
pub fn status_lines(processes: &[&Value]) -> Vec<String> {
    let names: Vec<String> = processes.iter().map(|p| namespec(p)).collect();
    let width = names.iter().map(String::len).max().unwrap_or(0).max(30) + 3;
    processes
        .iter()
        .zip(&names)
        .map(|(p, name)| {
            format!(
                "{name:<width$}{:<10}{}",
                p.get("state").str(),
                description(p)
            )
        })
        .collect()
}

/// Whether `p` is what `spec` names, split as supervisor's `split_namespec`.
fn matches_spec(p: &Value, spec: &str) -> bool {
    let (group, name) = match spec.split_once(':') {
        Some((g, n)) if n.is_empty() || n == "*" => (g, None),
        Some((g, n)) => (g, Some(n)),
        None => (spec, Some(spec)),
    };
    p.get("group").str() == group && name.is_none_or(|n| p.get("name").str() == n)
}

impl Ctl<'_> {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    fn usage(&mut self) {
        for l in [
            "usage: uwgate ctl [-c FILE] [-s SOCKET] VERB [ARGS...]",
            "",
            "  status [NAME...]                 process status (exit 3: one is not running, 4: unknown name)",
            "  start|stop|restart NAME...|all   as supervisorctl (group:* names a program's processes)",
            "  signal SIG NAME...|all           send a signal (HUP, USR1, 9...)",
            "  reload-program NAME...|all       send the program's reloadsignal (a graceful app reload)",
            "  pid [NAME...|all]                uwgate's pid, or the processes'",
            "  tail [-f] [-BYTES|-n LINES] NAME [stdout|stderr]",
            "  reread | update [NAME...]        compare with / apply the ini's [program:x] sections",
            "  reload                           reload uwgate's configuration (as SIGHUP, nginx -s reload)",
            "  shutdown                         stop uwgate and its programs",
            "  upgrade                          replace uwgate's binary in place (as -s upgrade) and wait for the outcome",
            "  version",
        ] {
            self.line(l);
        }
    }

    /// Dispatches one verb.
    fn command(&mut self, verb: &str, args: &[&str]) {
        match verb {
            "status" => self.status(args),
            "start" | "stop" | "restart" | "reload-program" => self.process_verb(verb, args),
            "signal" => self.signal(args),
            "pid" => self.pid(args),
            "tail" => self.tail(args),
            "reread" => self.reread(args),
            "update" => self.update(args),
            "reload" => self.simple(args, "reload", "POST", "/reload"),
            "shutdown" => self.simple(args, "shutdown", "POST", "/shutdown"),
            "upgrade" => self.upgrade(args),
            "version" => self.simple(args, "version", "GET", "/version"),
            "help" => self.usage(),
            other => {
                self.line(&format!(
                    "*** Unknown syntax: {}",
                    [other]
                        .iter()
                        .chain(args)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                self.exit = GENERIC;
            }
        }
    }

    /// One HTTP exchange; connection problems are printed as supervisorctl's `upcheck` does
    /// (`unix:///run/uwgate.sock no such file`: 7, `refused connection`: 4).
    fn exchange(&mut self, method: &str, target: &str) -> Option<Answer> {
        let mut sock = match self.connect() {
            Ok(s) => s,
            Err(code) => {
                self.exit = code;
                return None;
            }
        };
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: uwgate\r\nUser-Agent: uwgate-ctl\r\nConnection: close\r\n\r\n"
        );
        let _ = sock.set_read_timeout(Some(ANSWER_TIMEOUT));
        let mut raw = Vec::new();
        if sock.write_all(request.as_bytes()).is_err() || sock.read_to_end(&mut raw).is_err() {
            self.line(&format!("unix://{} did not answer", self.socket.display()));
            self.exit = GENERIC;
            return None;
        }
        let Some(answer) = split_answer(&raw) else {
            self.line(&format!(
                "unix://{} sent a malformed answer",
                self.socket.display()
            ));
            self.exit = GENERIC;
            return None;
        };
        if answer.status == 403 {
            let v = json::parse(&String::from_utf8_lossy(&answer.body)).unwrap_or(Value::Null);
            self.line(&format!("ERROR: {}", v.get("error").str()));
            self.exit = INSUFFICIENT_PRIVILEGES;
            return None;
        }
        Some(answer)
    }

    fn connect(&mut self) -> Result<UnixStream, i32> {
        let url = format!("unix://{}", self.socket.display());
        match UnixStream::connect(&self.socket) {
            Ok(s) => Ok(s),
            Err(e) => {
                let (text, code) = match e.raw_os_error() {
                    Some(libc::ENOENT) => (format!("{url} no such file"), NOT_RUNNING),
                    Some(libc::ECONNREFUSED) => {
                        (format!("{url} refused connection"), INSUFFICIENT_PRIVILEGES)
                    }
                    Some(libc::EACCES) => (
                        format!(
                            "{url}: permission denied (root, or a member of control_socket_group)"
                        ),
                        INSUFFICIENT_PRIVILEGES,
                    ),
                    _ => (format!("{url}: {e}"), GENERIC),
                };
                self.line(&text);
                Err(code)
            }
        }
    }

    /// A JSON answer, or `None` (printed `ERROR: …`, exit 1).
    fn json(&mut self, method: &str, target: &str) -> Option<Value> {
        let answer = self.exchange(method, target)?;
        let v = json::parse(&String::from_utf8_lossy(&answer.body)).unwrap_or(Value::Null);
        if answer.status != 200 {
            let msg = v.get("error").str();
            self.line(&format!(
                "ERROR: {}",
                if msg.is_empty() {
                    "unexpected answer"
                } else {
                    msg
                }
            ));
            self.exit = GENERIC;
            return None;
        }
        Some(v)
    }

    fn status(&mut self, names: &[&str]) {
        let Some(v) = self.json("GET", "/status") else {
            if self.exit != 0 {
                self.exit = STATUS_UNKNOWN;
            }
            return;
        };
        let all: Vec<&Value> = v.get("processes").items().iter().collect();
        let mut matched: Vec<&Value> = Vec::new();
        if names.is_empty() || names.contains(&"all") {
            matched = all.clone();
        } else {
            for spec in names {
                let hits: Vec<&Value> = all
                    .iter()
                    .copied()
                    .filter(|p| matches_spec(p, spec))
                    .collect();
                if hits.is_empty() {
                    let group_form = spec.ends_with(":*") || spec.ends_with(':');
                    let what = if group_form {
                        spec.trim_end_matches(['*', ':'])
                    } else {
                        spec
                    };
                    let why = if group_form {
                        "no such group"
                    } else {
                        "no such process"
                    };
                    self.line(&format!("{what}: ERROR ({why})"));
                    self.exit = STATUS_UNKNOWN;
                }
                matched.extend(hits);
            }
        }
        for l in status_lines(&matched) {
            self.line(&l);
        }
        if matched
            .iter()
            .any(|p| matches!(p.get("state").str(), "STOPPED" | "EXITED" | "FATAL"))
        {
            self.exit = STATUS_NOT_RUNNING;
        }
    }

    /// start, stop, restart, reload-program: `NAME: started|stopped|…` or `NAME: ERROR (…)`.
    fn process_verb(&mut self, verb: &str, names: &[&str]) {
        if names.is_empty() {
            self.line(&format!("Error: {verb} requires a process name"));
            self.exit = if verb == "start" {
                INVALID_ARGS
            } else {
                GENERIC
            };
            for l in help(verb) {
                self.line(l);
            }
            return;
        }
        let query: Vec<String> = names.iter().map(|n| format!("name={n}")).collect();
        let Some(v) = self.json("POST", &format!("/{verb}?{}", query.join("&"))) else {
            return;
        };
        self.results(&v);
    }

    fn signal(&mut self, args: &[&str]) {
        let Some((sig, names)) = args.split_first().filter(|(_, n)| !n.is_empty()) else {
            self.line("Error: signal requires a signal name and a process name");
            for l in help("signal") {
                self.line(l);
            }
            self.exit = GENERIC;
            return;
        };
        let query: Vec<String> = names.iter().map(|n| format!("name={n}")).collect();
        let Some(answer) = self.exchange("POST", &format!("/signal?sig={sig}&{}", query.join("&")))
        else {
            return;
        };
        let v = json::parse(&String::from_utf8_lossy(&answer.body)).unwrap_or(Value::Null);
        if answer.status != 200 {
            // A signal name the socket does not know: every name gets supervisorctl's line.
            for n in names {
                self.line(&format!("{n}: ERROR ({})", v.get("error").str()));
            }
            self.exit = GENERIC;
            return;
        }
        self.results(&v);
    }

    /// Prints `results` and sets the exit status by supervisorctl's rules.
    fn results(&mut self, v: &Value) {
        for r in v.get("results").items() {
            let (name, action, result) = (
                r.get("name").str(),
                r.get("action").str(),
                r.get("result").str(),
            );
            if r.get("ok").as_bool() == Some(true) {
                self.line(&format!("{name}: {result}"));
                continue;
            }
            self.line(&format!("{name}: ERROR ({result})"));
            self.exit = match (action, result) {
                ("start", "already started") | ("stop", "not running") => self.exit,
                ("start", "no such group") => INVALID_ARGS,
                (_, "spawn error" | "abnormal termination") => NOT_RUNNING,
                ("signal" | "reload-program", "not running") => NOT_RUNNING,
                _ => GENERIC,
            };
        }
    }

    fn pid(&mut self, names: &[&str]) {
        let Some(v) = self.json("GET", "/status") else {
            return;
        };
        if names.is_empty() {
            self.line(&v.get("pid").as_u64().unwrap_or(0).to_string());
            return;
        }
        let all = v.get("processes").items();
        if names.contains(&"all") {
            for p in all {
                self.line(&p.get("pid").as_u64().unwrap_or(0).to_string());
            }
            return;
        }
        for spec in names {
            match all
                .iter()
                .find(|p| matches_spec(p, spec) && !spec.ends_with('*'))
            {
                Some(p) => self.line(&p.get("pid").as_u64().unwrap_or(0).to_string()),
                None => {
                    self.line(&format!("No such process {spec}"));
                    self.exit = GENERIC;
                }
            }
        }
    }

    fn simple(&mut self, args: &[&str], verb: &str, method: &str, target: &str) {
        if !args.is_empty() {
            self.line(&format!("Error: {verb} accepts no arguments"));
            for l in help(verb) {
                self.line(l);
            }
            self.exit = GENERIC;
            return;
        }
        if verb == "shutdown" {
            if let Err(code) = UnixStream::connect(&self.socket)
                .map(drop)
                .map_err(|e| e.raw_os_error())
            {
                let url = format!("unix://{}", self.socket.display());
                let what = if code == Some(libc::ENOENT) {
                    "no such file"
                } else {
                    "refused connection"
                };
                self.line(&format!("ERROR: {url} {what} (already shut down?)"));
                self.exit = GENERIC;
                return;
            }
        }
        let Some(v) = self.json(method, target) else {
            return;
        };
        match verb {
            "version" => self.line(v.get("version").str()),
            "shutdown" => self.line("Shut down"),
            _ => self.line("Reloaded uwgate"),
        }
    }

    /// `upgrade`: asks for it; a refusal prints why (exit 1); once it began, looks at
    /// `/version` until the image that answers is no longer upgrading (bounded), and prints
    /// what happened: exit 0 for the new version serving, 1 for a rollback or a failed check,
    /// 7 when uwgate went away.
    fn upgrade(&mut self, args: &[&str]) {
        if !args.is_empty() {
            self.line("Error: upgrade accepts no arguments");
            for l in help("upgrade") {
                self.line(l);
            }
            self.exit = GENERIC;
            return;
        }
        let Some(answer) = self.exchange("POST", "/upgrade") else {
            return;
        };
        let v = json::parse(&String::from_utf8_lossy(&answer.body)).unwrap_or(Value::Null);
        if answer.status != 200 || v.get("result").str() != "started" {
            let why = v.get("error").str();
            let why = if why.is_empty() {
                "unexpected answer"
            } else {
                why
            };
            self.line(&upgrade_wait::refused(why));
            self.exit = GENERIC;
            return;
        }
        self.line(&upgrade_wait::began(&v));
        let _ = self.out.flush();
        let mut wait = Wait::new(&v, Instant::now());
        let verdict = loop {
            std::thread::sleep(UPGRADE_POLL);
            let probe = self.probe_version();
            if let Some(verdict) = wait.observe(&probe, Instant::now()) {
                break verdict;
            }
        };
        self.line(&verdict.line);
        self.exit = match (verdict.ok, verdict.gone) {
            (true, _) => 0,
            (false, true) => NOT_RUNNING,
            (false, false) => GENERIC,
        };
    }

    /// One quiet `GET /version` for `upgrade`'s wait. When the socket is unreachable and the
    /// file names another (`-s` gave the running one and the file moves it: the new image binds
    /// that), that one is tried too.
    fn probe_version(&self) -> Probe {
        match (probe_version_at(&self.socket), &self.file_socket) {
            (Probe::Unreachable(why), Some(moved)) => match probe_version_at(moved) {
                Probe::Unreachable(_) => Probe::Unreachable(why),
                found => found,
            },
            (probe, _) => probe,
        }
    }

    fn tail(&mut self, args: &[&str]) {
        let Some(t) = self.tail_args(args) else {
            return;
        };
        let mut target = format!("/tail?name={}&stream={}", t.name, t.stream);
        match t.amount {
            TailAmount::Bytes(b) => target.push_str(&format!("&bytes={b}")),
            TailAmount::Lines(l) => target.push_str(&format!("&lines={l}")),
        }
        if t.follow {
            target.push_str("&follow=1");
            self.line("==> Press Ctrl-C to exit <==");
            let _ = self.out.flush();
            return self.follow(&target, t.name);
        }
        let Some(answer) = self.exchange("GET", &target) else {
            return;
        };
        if answer.status != 200 {
            self.line(&format!("{}: ERROR (no such process name)", t.name));
            self.exit = GENERIC;
            return;
        }
        let _ = self.out.write_all(&answer.body);
        self.line("");
    }

    /// supervisorctl's `tail` arguments, plus `-n LINES`.
    fn tail_args<'a>(&mut self, args: &[&'a str]) -> Option<TailArgs<'a>> {
        let mut rest: Vec<&str> = args.to_vec();
        let mut amount = TailAmount::Bytes(1600);
        let mut follow = false;
        while let Some(first) = rest.first().copied().filter(|a| a.starts_with('-')) {
            rest.remove(0);
            match first {
                "-f" => follow = true,
                "-n" => match rest.first().and_then(|n| n.parse::<u64>().ok()) {
                    Some(n) => {
                        amount = TailAmount::Lines(n);
                        rest.remove(0);
                    }
                    None => return self.tail_error("Error: bad argument -n"),
                },
                bytes => match bytes.get(1..).and_then(|n| n.parse::<u64>().ok()) {
                    Some(n) => amount = TailAmount::Bytes(n),
                    None => return self.tail_error(&format!("Error: bad argument {bytes}")),
                },
            }
        }
        let (name, stream) = match rest.as_slice() {
            [] => return self.tail_error("Error: too few arguments"),
            [name] => (*name, "stdout"),
            [name, channel] => (*name, *channel),
            _ => return self.tail_error("Error: too many arguments"),
        };
        let stream = match stream.to_ascii_lowercase().as_str() {
            "stdout" => "stdout",
            "stderr" => "stderr",
            other => return self.tail_error(&format!("Error: bad channel '{other}'")),
        };
        let name = args.iter().copied().find(|a| *a == name).unwrap_or(name);
        Some(TailArgs {
            name,
            stream,
            amount,
            follow,
        })
    }

    fn tail_error<T>(&mut self, msg: &str) -> Option<T> {
        self.line(msg);
        if msg.contains("arguments") {
            for l in help("tail") {
                self.line(l);
            }
        }
        self.exit = GENERIC;
        None
    }

    /// `tail -f`: copies the stream to stdout until the socket closes (or Ctrl-C).
    fn follow(&mut self, target: &str, name: &str) {
        let mut sock = match self.connect() {
            Ok(s) => s,
            Err(code) => {
                self.exit = code;
                return;
            }
        };
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: uwgate\r\nUser-Agent: uwgate-ctl\r\n\r\n");
        if sock.write_all(request.as_bytes()).is_err() {
            self.exit = GENERIC;
            return;
        }
        let mut head = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            let n = match sock.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            if head.is_empty() || find(&head, b"\r\n\r\n").is_none() {
                head.extend_from_slice(chunk);
                let Some(end) = find(&head, b"\r\n\r\n") else {
                    continue;
                };
                if !head.starts_with(b"HTTP/1.1 200") {
                    self.line(&format!("{name}: ERROR (no such process name)"));
                    self.exit = GENERIC;
                    return;
                }
                let _ = self.out.write_all(head.get(end + 4..).unwrap_or_default());
            } else {
                let _ = self.out.write_all(chunk);
            }
            let _ = self.out.flush();
        }
    }

    fn reread(&mut self, args: &[&str]) {
        if !args.is_empty() {
            self.line("Error: reread accepts no arguments");
            for l in help("reread") {
                self.line(l);
            }
            self.exit = GENERIC;
            return;
        }
        let Some(v) = self.json("POST", "/reread") else {
            return;
        };
        let mut changes: Vec<(String, &str)> = Vec::new();
        for (key, word) in [
            ("added", "available"),
            ("changed", "changed"),
            ("removed", "disappeared"),
        ] {
            for n in v.get(key).items() {
                changes.push((n.str().to_string(), word));
            }
        }
        crate::sort::sort(&mut changes);
        if changes.is_empty() {
            self.line("No config updates to processes");
        }
        for (name, word) in changes {
            self.line(&format!("{name}: {word}"));
        }
    }

    fn update(&mut self, names: &[&str]) {
        let query: Vec<String> = names.iter().map(|n| format!("name={n}")).collect();
        let target = if query.is_empty() {
            "/update".to_string()
        } else {
            format!("/update?{}", query.join("&"))
        };
        let Some(v) = self.json("POST", &target) else {
            return;
        };
        for n in v.get("unknown").items() {
            self.line(&format!("ERROR: no such group: {}", n.str()));
            self.exit = GENERIC;
        }
        for n in v.get("removed").items() {
            self.line(&format!("{}: stopped", n.str()));
            self.line(&format!("{}: removed process group", n.str()));
        }
        for n in v.get("changed").items() {
            self.line(&format!("{}: stopped", n.str()));
            self.line(&format!("{}: updated process group", n.str()));
        }
        for n in v.get("added").items() {
            self.line(&format!("{}: added process group", n.str()));
        }
    }
}

#[derive(Clone, Copy)]
enum TailAmount {
    Bytes(u64),
    Lines(u64),
}

struct TailArgs<'a> {
    name: &'a str,
    stream: &'static str,
    amount: TailAmount,
    follow: bool,
}

/// supervisorctl's help lines of a verb (printed after a usage error, as it does).
fn help(verb: &str) -> &'static [&'static str] {
    match verb {
        "start" => &[
            "start <name>\t\tStart a process",
            "start <gname>:*\t\tStart all processes in a group",
            "start <name> <name>\tStart multiple processes or groups",
            "start all\t\tStart all processes",
        ],
        "stop" => &[
            "stop <name>\t\tStop a process",
            "stop <gname>:*\t\tStop all processes in a group",
            "stop <name> <name>\tStop multiple processes or groups",
            "stop all\t\tStop all processes",
        ],
        "restart" => &[
            "restart <name>\t\tRestart a process",
            "restart <gname>:*\tRestart all processes in a group",
            "restart <name> <name>\tRestart multiple processes or groups",
            "restart all\t\tRestart all processes",
            "Note: restart does not reread config files. For that, see reread and update.",
        ],
        "reload-program" => &[
            "reload-program <name>\tSend a program its reloadsignal (HUP: a graceful reload)",
            "reload-program all\tSend every program its reloadsignal",
        ],
        "signal" => &[
            "signal <signal name> <name>\t\tSignal a process",
            "signal <signal name> <gname>:*\t\tSignal all processes in a group",
            "signal <signal name> <name> <name>\tSignal multiple processes or groups",
            "signal <signal name> all\t\tSignal all processes",
        ],
        "tail" => &[
            "tail [-f] <name> [stdout|stderr] (default stdout)",
            "Ex:",
            "tail -f <name>\t\tContinuous tail of named process stdout",
            "\t\t\tCtrl-C to exit.",
            "tail -100 <name>\tlast 100 *bytes* of process stdout",
            "tail -n 20 <name>\tlast 20 lines of process stdout",
            "tail <name> stderr\tlast 1600 *bytes* of process stderr",
        ],
        "reread" => &["reread \t\t\tReload the daemon's configuration files without add/remove"],
        "reload" => &["reload \t\tReload uwgate's configuration (as SIGHUP)."],
        "shutdown" => &["shutdown \tShut the remote uwgate down."],
        "upgrade" => &[
            "upgrade\t\t\tReplace uwgate's binary in place (same pid, no program restarted)",
            "\t\t\tand wait for the outcome: exit 0 upgraded, 1 refused or rolled back.",
        ],
        "version" => &["version\t\t\tShow the version of the remote uwgate process"],
        _ => &[],
    }
}

/// One quiet `GET /version` at `socket`: nothing printed, every failure a [`Probe`].
fn probe_version_at(socket: &std::path::Path) -> Probe {
    let url = format!("unix://{}", socket.display());
    let mut sock = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            let what = match e.raw_os_error() {
                Some(libc::ENOENT) => "no such file".to_string(),
                Some(libc::ECONNREFUSED) => "refused connection".to_string(),
                _ => e.to_string(),
            };
            return Probe::Unreachable(format!("{url} {what}"));
        }
    };
    let _ = sock.set_read_timeout(Some(UPGRADE_PROBE_TIMEOUT));
    let _ = sock.set_write_timeout(Some(UPGRADE_PROBE_TIMEOUT));
    let request = "GET /version HTTP/1.1\r\nHost: uwgate\r\nUser-Agent: uwgate-ctl\r\nConnection: close\r\n\r\n";
    let mut raw = Vec::new();
    if sock.write_all(request.as_bytes()).is_err() || sock.read_to_end(&mut raw).is_err() {
        return Probe::Busy;
    }
    match split_answer(&raw) {
        Some(a) if a.status == 200 => {
            json::parse(&String::from_utf8_lossy(&a.body)).map_or(Probe::Busy, Probe::Answer)
        }
        _ => Probe::Busy,
    }
}

/// The status code and body of an HTTP answer.
fn split_answer(raw: &[u8]) -> Option<Answer> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..end)?).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        body: raw.get(end + 4..)?.to_vec(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: &str) -> Value {
        json::parse(json).unwrap()
    }

    #[test]
    fn the_socket_is_found_in_a_file_that_does_not_parse() {
        let text =
            "[uwgate]\nsyslog = stderr\ncontrol_socket = /run/uwgate.sock ; here\n[program:bad\n";
        assert_eq!(
            control_socket_line(text),
            Some(PathBuf::from("/run/uwgate.sock"))
        );
        assert_eq!(control_socket_line("[server]\ncontrol_socket = /x\n"), None);
    }

    #[test]
    fn uptime_reads_like_a_python_timedelta() {
        assert_eq!(uptime(17), "0:00:17");
        assert_eq!(uptime(3 * 3600 + 61), "3:01:01");
        assert_eq!(uptime(86_400 + 5), "1 day, 0:00:05");
        assert_eq!(uptime(3 * 86_400 + 7200), "3 days, 2:00:00");
    }

    #[test]
    fn status_lines_are_supervisorctls() {
        let running = process(
            r#"{"name":"django","group":"django","state":"RUNNING","pid":19728,"uptime":17}"#,
        );
        let starting =
            process(r#"{"name":"worker_01","group":"worker","state":"STARTING","pid":3}"#);
        let never = process(
            r#"{"name":"mysql","group":"mysql","state":"STOPPED","pid":null,"started":false}"#,
        );
        let fatal = process(
            r#"{"name":"bad","group":"bad","state":"FATAL","spawnerr":"Exited too quickly (process log may have details)"}"#,
        );
        let lines = status_lines(&[&running, &starting, &never, &fatal]);
        assert_eq!(
            lines[0],
            format!("{:<33}{:<10}pid 19728, uptime 0:00:17", "django", "RUNNING")
        );
        assert_eq!(
            lines[0],
            "django                           RUNNING   pid 19728, uptime 0:00:17"
        );
        assert_eq!(lines[1], "worker:worker_01                 STARTING  ");
        assert_eq!(
            lines[2],
            "mysql                            STOPPED   Not started"
        );
        assert_eq!(lines[3], "bad                              FATAL     Exited too quickly (process log may have details)");
        let long = process(
            r#"{"name":"a_very_long_process_name_over_30","group":"g","state":"EXITED","started":true,"stop_time":0}"#,
        );
        let lines = status_lines(&[&long, &running]);
        assert!(
            lines[1].starts_with(&format!("{:<37}RUNNING", "django")),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn stop_times_read_like_supervisors() {
        let t = stop_time(1_700_000_000);
        assert_eq!(t.len(), "Nov 14 10:13 PM".len(), "{t}");
        assert!(t.ends_with("AM") || t.ends_with("PM"));
    }

    #[test]
    fn namespecs_match_as_split_namespec() {
        let p = process(r#"{"name":"web_01","group":"web"}"#);
        assert!(matches_spec(&p, "web:*"));
        assert!(matches_spec(&p, "web:web_01"));
        assert!(!matches_spec(&p, "web"));
        let d = process(r#"{"name":"django","group":"django"}"#);
        assert!(matches_spec(&d, "django"));
        assert!(matches_spec(&d, "django:*"));
    }
}
