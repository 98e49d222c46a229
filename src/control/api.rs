//! The control socket's endpoints, as pure functions: a request's method and target become a
//! [`Verb`] and its parameters; namespecs (`django`, `web:*`, `web:web_01`, `all`) are split
//! as supervisorctl splits them; signal names become numbers.
//!
//! Owns the wire vocabulary (documented in the README's "Day-to-day operation"). Never touches
//! a socket or the watchdog.
//!
//! | method | target | does |
//! | --- | --- | --- |
//! | GET | `/status` | every process: name, group, state, pid, uptime… and uwgate's pid, version |
//! | GET | `/version` | uwgate's version, this image's identity, the last in-place upgrade |
//! | POST | `/start?name=N…`, `/stop?…`, `/restart?…` | as supervisorctl, waiting for the outcome |
//! | POST | `/signal?sig=HUP&name=N…` | a signal to each process |
//! | POST | `/reload-program?name=N…` | each program's `reloadsignal` |
//! | GET | `/tail?name=N[&stream=stderr][&bytes=B or &lines=L][&follow=1]` | recent output |
//! | POST | `/reread`, `/update[?name=G…]` | the program diff, as supervisorctl |
//! | POST | `/reload`, `/shutdown` | uwgate's own configuration (SIGHUP), graceful stop |
//! | POST | `/upgrade` | in-place upgrade (SIGUSR2): started, or refused with why |

use crate::http::request::Method;
use crate::http::Status;

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Status,
    Version,
    Start,
    Stop,
    Restart,
    Signal,
    ReloadProgram,
    Tail,
    Reread,
    Update,
    Reload,
    Shutdown,
    Upgrade,
}

impl Verb {
    /// The word used in results and logs (`start`, `reload-program`).
    pub fn word(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::Version => "version",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Signal => "signal",
            Verb::ReloadProgram => "reload-program",
            Verb::Tail => "tail",
            Verb::Reread => "reread",
            Verb::Update => "update",
            Verb::Reload => "reload",
            Verb::Shutdown => "shutdown",
            Verb::Upgrade => "upgrade",
        }
    }
}

/// The verb of `method path`, or the status and message to answer.
pub fn route(method: Method, path: &[u8]) -> Result<Verb, (Status, &'static str)> {
    let path = path
        .strip_suffix(b"/")
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let (verb, reads) = match path {
        b"/status" => (Verb::Status, true),
        b"/version" => (Verb::Version, true),
        b"/tail" => (Verb::Tail, true),
        b"/start" => (Verb::Start, false),
        b"/stop" => (Verb::Stop, false),
        b"/restart" => (Verb::Restart, false),
        b"/signal" => (Verb::Signal, false),
        b"/reload-program" => (Verb::ReloadProgram, false),
        b"/reread" => (Verb::Reread, false),
        b"/update" => (Verb::Update, false),
        b"/reload" => (Verb::Reload, false),
        b"/shutdown" => (Verb::Shutdown, false),
        b"/upgrade" => (Verb::Upgrade, false),
        _ => {
            return Err((
                Status::NotFound,
                "no such endpoint (see the README's Day-to-day operation)",
            ))
        }
    };
    match (reads, method) {
        (true, Method::Get | Method::Head) | (false, Method::Post) => Ok(verb),
        (true, _) => Err((Status::MethodNotAllowed, "use GET")),
        (false, _) => Err((Status::MethodNotAllowed, "use POST")),
    }
}

/// The `key=value` pairs of a query string, in order (no percent-decoding: names, signals and
/// numbers need none).
pub fn params(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(eq) => (
                p.get(..eq).unwrap_or_default(),
                p.get(eq + 1..).unwrap_or_default(),
            ),
            None => (p, &[][..]),
        })
}

/// The first value of `key`.
pub fn param<'q>(query: &'q [u8], key: &[u8]) -> Option<&'q [u8]> {
    params(query).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Every value of `name`, in order.
pub fn names(query: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    params(query).filter(|(k, _)| *k == b"name").map(|(_, v)| v)
}

/// A number parameter (`bytes`, `lines`).
pub fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// What a namespec names (supervisor's `split_namespec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec<'a> {
    /// `all`: every process.
    All,
    /// `group:*` or `group:`: the processes of a program.
    Group(&'a [u8]),
    /// `group:name`, or `name` (= `name:name`).
    Process { group: &'a [u8], name: &'a [u8] },
}

/// Splits a namespec as supervisorctl does.
pub fn spec(namespec: &[u8]) -> Spec<'_> {
    if namespec == b"all" {
        return Spec::All;
    }
    match namespec.iter().position(|&b| b == b':') {
        Some(colon) => {
            let group = namespec.get(..colon).unwrap_or_default();
            let name = namespec.get(colon + 1..).unwrap_or_default();
            if name.is_empty() || name == b"*" {
                Spec::Group(group)
            } else {
                Spec::Process { group, name }
            }
        }
        None => Spec::Process {
            group: namespec,
            name: namespec,
        },
    }
}

/// A signal by name (`HUP`, `SIGHUP`, any case) or number, as supervisorctl's `signal` takes.
pub fn signal_number(v: &[u8]) -> Option<i32> {
    if let Some(n) = number(v) {
        return i32::try_from(n).ok().filter(|n| (1..=64).contains(n));
    }
    let mut upper = [0u8; 16];
    let len = v.len().min(upper.len());
    for (dst, src) in upper.iter_mut().zip(v.iter()) {
        *dst = src.to_ascii_uppercase();
    }
    let name = upper.get(..len).unwrap_or_default();
    let name = name.strip_prefix(b"SIG").unwrap_or(name);
    if v.len() > 16 {
        return None;
    }
    SIGNALS
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .map(|(_, s)| *s)
}

const SIGNALS: [(&str, i32); 27] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_get_and_changes_are_post() {
        assert_eq!(route(Method::Get, b"/status"), Ok(Verb::Status));
        assert_eq!(route(Method::Get, b"/status/"), Ok(Verb::Status));
        assert_eq!(route(Method::Post, b"/restart"), Ok(Verb::Restart));
        assert_eq!(
            route(Method::Post, b"/reload-program"),
            Ok(Verb::ReloadProgram)
        );
        assert_eq!(
            route(Method::Get, b"/stop").unwrap_err().0,
            Status::MethodNotAllowed
        );
        assert_eq!(
            route(Method::Post, b"/status").unwrap_err().0,
            Status::MethodNotAllowed
        );
        assert_eq!(
            route(Method::Get, b"/nope").unwrap_err().0,
            Status::NotFound
        );
        assert_eq!(route(Method::Get, b"/").unwrap_err().0, Status::NotFound);
        assert_eq!(route(Method::Post, b"/upgrade"), Ok(Verb::Upgrade));
        assert_eq!(
            route(Method::Get, b"/upgrade").unwrap_err().0,
            Status::MethodNotAllowed
        );
    }

    #[test]
    fn params_keep_their_order_and_repeat() {
        let q = b"name=a&sig=HUP&name=web:*&&flag";
        assert_eq!(names(q).collect::<Vec<_>>(), vec![&b"a"[..], b"web:*"]);
        assert_eq!(param(q, b"sig"), Some(&b"HUP"[..]));
        assert_eq!(param(q, b"flag"), Some(&b""[..]));
        assert_eq!(param(q, b"none"), None);
        assert_eq!(number(b"1600"), Some(1600));
        assert_eq!(number(b"-1"), None);
        assert_eq!(number(b""), None);
        assert_eq!(number(b"99999999999999999999"), None);
    }

    #[test]
    fn namespecs_split_as_supervisorctl() {
        assert_eq!(spec(b"all"), Spec::All);
        assert_eq!(spec(b"web:*"), Spec::Group(b"web"));
        assert_eq!(spec(b"web:"), Spec::Group(b"web"));
        assert_eq!(
            spec(b"web:web_01"),
            Spec::Process {
                group: b"web",
                name: b"web_01"
            }
        );
        assert_eq!(
            spec(b"django"),
            Spec::Process {
                group: b"django",
                name: b"django"
            }
        );
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(signal_number(b"HUP"), Some(libc::SIGHUP));
        assert_eq!(signal_number(b"sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number(b"9"), Some(9));
        assert_eq!(signal_number(b"0"), None);
        assert_eq!(signal_number(b"FOO"), None);
        assert_eq!(signal_number(b"SIGHUPHUPHUPHUPHUPHUP"), None);
    }
}
