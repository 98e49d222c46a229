//! More than one appliance: HAProxy (Debian's package) in front of two uwgate boxes on
//! loopback, each supervising its own uWSGI + Django, configured by `docs/haproxy/haproxy.cfg`
//! itself (its addresses rewritten to loopback). Under load through HAProxy it shows:
//!
//! 1. Django sees the real client address and port (the PROXY protocol v2 header HAProxy
//!    sends, believed because HAProxy is in `set_real_ip_from`);
//! 2. when Django stops on box B and cannot come back, B's health location says 503 and
//!    HAProxy takes B out within its check interval, while requests keep succeeding (the
//!    failed ones are counted, with why);
//! 3. B comes back (a new uwgate, Django up again): HAProxy puts it back in;
//! 4. B's uwgate stops gracefully (SIGTERM, `shutdown_delay`): 503 at once, HAProxy drains
//!    it before its listeners close, requests keep succeeding;
//! 5. the X-Forwarded-For variant of the recipe gives Django the same address.
//!
//! Needs `haproxy` on PATH: `make scale-test` installs Debian's package when it is missing and
//! runs this file (it is `#[ignore]`d in plain `make test`). Everything listens on 127.0.0.1;
//! every wait is bounded; every process is stopped by its pid. The measured numbers are
//! printed at the end (`make scale-test` keeps them in `out/scale-test.log`).

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uwsgi_support::Json;
use watchdog_support::{kill, mark_programs, marked_processes, unique_mark};

/// Where the test clients connect from: not HAProxy's address, so REMOTE_ADDR proves it.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// Request threads of the load.
const LOAD_THREADS: usize = 4;
/// The recipe's check timing: a 503 takes a box out within inter + fastinter.
const INTER: Duration = Duration::from_millis(1000);
const FASTINTER: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------------
// An appliance: uwgate supervising uWSGI + Django
// ---------------------------------------------------------------------------------------------

/// One uwgate box. Its `{PORT}` (the XFF listener) is what the harness waits for.
struct Appliance {
    name: &'static str,
    tree: TempTree,
    gate: Option<Server>,
    /// The `proxy_protocol` listener HAProxy's PROXY variant connects to.
    pp_port: u16,
    /// The plain listener of the X-Forwarded-For variant.
    xff_port: u16,
    uwsgi_port: u16,
    mark: String,
}

/// The appliance's ini: the recipe's keys, with uWSGI on `uwsgi_port`. `{DIR}`/`{PORT}` are the
/// harness's.
fn appliance_ini(name: &str, pp_port: u16, uwsgi_port: u16) -> String {
    let uwsgi = uwsgi_support::venv().join("bin").join("uwsgi");
    let django = uwsgi_support::django_dir();
    let site = |listen: String, header: &str| {
        format!(
            "[server]\nlisten = {listen}\nreal_ip_header = {header}\n\
             [location:/uwgate_health]\nhealth = on\n\
             [location:/]\nuwsgi_pass = 127.0.0.1:{uwsgi_port}\n\n"
        )
    };
    format!(
        "[uwgate]\nsyslog = stderr\ntemp_path = {{DIR}}/tmp\naccess_log = off\n\
         set_real_ip_from = 127.0.0.1\nshutdown_delay = 3s\n\n{}{}\
         [program:django]\n\
         command = /bin/sh -c \"test -e {{DIR}}/broken && exit 1; exec {uwsgi} --socket 127.0.0.1:{uwsgi_port} \
         --module djangoblog.wsgi:application --chdir {django} --master --processes 2 --need-app \
         --die-on-term\"\n\
         environment = DJANGO_SETTINGS_MODULE=\"djangoblog.settings\",UWGATE_TEST_DB=\"{{DIR}}/db.sqlite3\",\
         UWGATE_TEST_INSTANCE=\"{name}\",PYTHONDONTWRITEBYTECODE=\"1\"\n\
         ready = tcp:127.0.0.1:{uwsgi_port}\nrequired_for_health = true\n\
         stopsignal = INT\nstopasgroup = true\nstartretries = 2\n",
        site(format!("127.0.0.1:{pp_port} proxy_protocol"), "proxy_protocol"),
        site("127.0.0.1:{PORT}".to_string(), "X-Forwarded-For"),
        uwsgi = uwsgi.display(),
        django = django.display(),
    )
}

impl Appliance {
    fn new(name: &'static str) -> Appliance {
        let tree = TempTree::new(&format!("scale_{name}"));
        uwsgi_support::fresh_db(tree.path());
        Appliance {
            name,
            tree,
            gate: None,
            pp_port: free_port(),
            xff_port: 0,
            uwsgi_port: free_port(),
            mark: unique_mark(name),
        }
    }

    /// Starts (or restarts) its uwgate; Django comes up in the background.
    fn start(&mut self) {
        let ini = mark_programs(
            &appliance_ini(self.name, self.pp_port, self.uwsgi_port),
            &self.mark,
        );
        let gate = Server::start_in(&self.tree, &ini);
        self.xff_port = gate.port;
        self.gate = Some(gate);
    }

    fn gate(&self) -> &Server {
        self.gate.as_ref().expect("the appliance runs")
    }

    /// The health page, asked directly (with a PROXY-less plain request on the XFF listener).
    fn health(&self) -> Option<u16> {
        watchdog_support::try_get(self.xff_port, "/uwgate_health", Duration::from_secs(2))
            .map(|(s, _)| s)
    }

    fn wait_healthy(&self) {
        let ok = wait_until(uwsgi_support::UWSGI_START_TIMEOUT, || {
            self.health() == Some(200)
        });
        assert!(
            ok,
            "box {} never healthy; log:\n{}",
            self.name,
            self.gate().stderr()
        );
    }

    /// "Django stops and cannot come back": a flag makes every restart fail at once, then the
    /// uWSGI master's process group is killed. The watchdog's restarts fail: BACKOFF, FATAL.
    fn break_django(&self) {
        self.tree.write("broken", "");
        let pid = watchdog_support::spawned_pids(&self.gate().stderr(), "django")
            .last()
            .copied()
            .expect("django was spawned");
        // SAFETY: kill(2) on the process group uwgate made for the program it spawned
        // (stopasgroup: the program leads its own group), named in uwgate's log.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }

    fn repair_django(&self) {
        let _ = fs::remove_file(self.tree.join("broken"));
    }

    /// SIGTERM to uwgate; the exit is awaited by [`Appliance::wait_stopped`].
    fn begin_stop(&self) {
        self.gate().signal(libc::SIGTERM);
    }

    fn wait_stopped(&mut self) -> String {
        let mut gate = self.gate.take().expect("running");
        let status = gate.wait_exit(Duration::from_secs(20));
        let log = gate.stderr();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "box {}:\n{log}",
            self.name
        );
        log
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        drop(self.gate.take());
        for p in marked_processes(&self.mark) {
            kill(p.pid, libc::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    ProxyProtocol,
    ForwardedFor,
}

/// `docs/haproxy/haproxy.cfg` for loopback: the frontend on `front`, the appliances as its
/// servers (each with the recipe's server options), a stats socket in `dir`, no chroot, user
/// or daemon, and for the X-Forwarded-For variant exactly the change its comment describes.
fn render_recipe(variant: Variant, dir: &Path, front: u16, boxes: &[(&str, u16)]) -> String {
    let recipe_path = uwsgi_support::repo_root().join("docs/haproxy/haproxy.cfg");
    let recipe = fs::read_to_string(&recipe_path).expect("docs/haproxy/haproxy.cfg");
    let mut out = String::new();
    let (mut binds, mut servers, mut defaults, mut forwardfor) = (0, 0, 0, 0);
    for line in recipe.lines() {
        let t = line.trim_start();
        let word = t.split_whitespace().next().unwrap_or("");
        match word {
            "chroot" | "user" | "group" | "daemon" => continue,
            "log" if t.starts_with("log /dev/log") => continue,
            "stats" if t.starts_with("stats socket") => {
                out.push_str(&format!(
                    "    stats socket {}/haproxy.sock mode 600 level admin\n",
                    dir.display()
                ));
                continue;
            }
            "bind" => {
                binds += 1;
                out.push_str(&format!("    bind 127.0.0.1:{front}\n"));
                continue;
            }
            "server" => {
                servers += 1;
                if servers == 1 {
                    let options: Vec<&str> = t.split_whitespace().skip(3).collect();
                    for (name, port) in boxes {
                        out.push_str(&format!(
                            "    server {name} 127.0.0.1:{port} {}\n",
                            options.join(" ")
                        ));
                    }
                }
                continue;
            }
            "default-server" => {
                defaults += 1;
                if variant == Variant::ForwardedFor {
                    out.push_str(&line.replace(" send-proxy-v2", ""));
                    out.push('\n');
                    continue;
                }
            }
            "#option" if t == "#option forwardfor" => {
                forwardfor += 1;
                if variant == Variant::ForwardedFor {
                    out.push_str("    option forwardfor\n");
                    continue;
                }
            }
            _ => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(
        (binds, defaults, forwardfor),
        (1, 1, 1),
        "the recipe's shape changed: one bind, one default-server, one '#option forwardfor'"
    );
    assert!(servers > 0, "the recipe lists no server");
    out
}

/// A running `haproxy -db`, stopped by its pid on drop.
struct HaProxy {
    child: Option<Child>,
    sock: PathBuf,
    log: PathBuf,
    front: u16,
}

impl HaProxy {
    fn start(variant: Variant, dir: &TempTree, boxes: &[(&str, u16)]) -> HaProxy {
        let front = free_port();
        let cfg = dir.write(
            &format!("haproxy-{variant:?}.cfg"),
            render_recipe(variant, dir.path(), front, boxes),
        );
        let log = dir.join(&format!("haproxy-{variant:?}.log"));
        let out = fs::File::create(&log).expect("haproxy log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("haproxy on PATH: make scale-test installs Debian's package");
        let hp = HaProxy {
            child: Some(child),
            sock: dir.join("haproxy.sock"),
            log,
            front,
        };
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
        });
        assert!(up, "haproxy does not listen; its log:\n{}", hp.log());
        hp
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A server's status (UP, DOWN, UP 1/2, ...).
    fn status(&self, server: &str) -> Option<String> {
        self.stat(server, "status")
    }

    /// A server's counter from `show stat` (0 when unreadable).
    fn counter(&self, server: &str, column: &str) -> u64 {
        self.stat(server, column)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Column `column` of `show stat` (through the stats socket) for `server` of the backend.
    fn stat(&self, server: &str, column: &str) -> Option<String> {
        let mut s = UnixStream::connect(&self.sock).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"show stat\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, st) = (col("pxname")?, col("svname")?, col(column)?);
        lines.find_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.get(px) == Some(&"appliances") && f.get(sv) == Some(&server))
                .then(|| f.get(st).map(|s| s.to_string()))
                .flatten()
        })
    }

    fn wait_status(&self, server: &str, want: &str, timeout: Duration) -> Option<Instant> {
        wait_until(timeout, || self.status(server).as_deref() == Some(want)).then(Instant::now)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(c.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            kill(c.id() as i32, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests through HAProxy
// ---------------------------------------------------------------------------------------------

/// One request of the load: when it was sent, and which box answered or why it failed.
#[derive(Clone, Debug)]
struct Outcome {
    sent: Instant,
    result: Result<String, String>,
}

/// `GET path` through HAProxy from [`CLIENT`] on a fresh connection; status and body.
fn fetch(front: u16, path: &str, extra: &str) -> Result<(u16, String, u16), String> {
    let stream = std::panic::catch_unwind(|| connect_from(front, CLIENT, |_| {}))
        .map_err(|_| "connect failed".to_string())?;
    let source_port = stream.local_addr().map_err(|e| e.to_string())?.port();
    let mut c = Client::from_stream(stream);
    c.try_send(
        format!("GET {path} HTTP/1.1\r\nHost: appliance\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let r = c.try_read_response(false).map_err(|e| e.to_string())?;
    Ok((r.status, r.text(), source_port))
}

/// Load: [`LOAD_THREADS`] clients asking `/pid` in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(front: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..LOAD_THREADS)
            .map(|_| {
                let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let result = match fetch(front, "/pid", "") {
                            Ok((200, body, _)) => {
                                Ok(Json::parse(&body).get("instance").str().to_string())
                            }
                            Ok((status, body, _)) => Err(format!("{status}: {}", body.trim())),
                            Err(e) => Err(e),
                        };
                        let outcome = Outcome { sent, result };
                        outcomes.lock().expect("outcomes").push(outcome);
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            threads,
        }
    }

    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let v = self.outcomes.lock().expect("outcomes").clone();
        v
    }
}

/// Outcomes of requests sent in `[from, to)`: (served by each box, failures with why).
fn tally(outcomes: &[Outcome], from: Instant, to: Instant) -> (usize, usize, Vec<String>) {
    let (mut a, mut b, mut failed) = (0, 0, Vec::new());
    for o in outcomes.iter().filter(|o| o.sent >= from && o.sent < to) {
        match &o.result {
            Ok(box_name) if box_name == "a" => a += 1,
            Ok(_) => b += 1,
            Err(why) => failed.push(why.clone()),
        }
    }
    (a, b, failed)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The measurements, printed as they are made (so a failed assertion still shows them).
#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    fn push(&mut self, line: String) {
        eprintln!("scale-out: {line}");
        self.0.push(line);
    }
}

/// REMOTE_ADDR and REMOTE_PORT Django saw for a request through HAProxy, and the client's
/// own source port.
fn addresses_through(front: u16, extra: &str) -> (String, String, u16) {
    let (status, body, port) = fetch(front, "/environ", extra).expect("a request through HAProxy");
    assert_eq!(status, 200, "{body}");
    let env = Json::parse(&body);
    let env = env.get("environ");
    (
        env.get("REMOTE_ADDR").str().to_string(),
        env.get("REMOTE_PORT").str().to_string(),
        port,
    )
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs haproxy: run by `make scale-test`"]
fn haproxy_in_front_of_two_appliances_keeps_serving_while_one_fails_and_drains() {
    let dir = TempTree::new("scale_haproxy");
    let mut a = Appliance::new("a");
    let mut b = Appliance::new("b");
    a.start();
    b.start();
    a.wait_healthy();
    b.wait_healthy();
    let mut report = Report::default();

    // 1. The PROXY protocol variant: Django sees the client's address and port.
    let pp = HaProxy::start(
        Variant::ProxyProtocol,
        &dir,
        &[("boxa", a.pp_port), ("boxb", b.pp_port)],
    );
    for server in ["boxa", "boxb"] {
        let up = pp.wait_status(server, "UP", Duration::from_secs(10));
        assert!(up.is_some(), "{server} never UP; haproxy:\n{}", pp.log());
    }
    for _ in 0..4 {
        let (addr, port, client_port) = addresses_through(pp.front, "");
        assert_eq!(
            addr,
            CLIENT.to_string(),
            "REMOTE_ADDR through the PROXY header"
        );
        assert_eq!(port, client_port.to_string(), "REMOTE_PORT too");
    }
    report.push(format!(
        "PROXY protocol v2: Django saw REMOTE_ADDR {CLIENT} and the client's own port (HAProxy connects from 127.0.0.1)"
    ));

    // 2. Django on box B stops and cannot come back, under load.
    let load = Load::start(pp.front);
    std::thread::sleep(Duration::from_secs(2));
    let broke = Instant::now();
    b.break_django();
    let mut sick_at = None;
    let sick = wait_until(Duration::from_secs(10), || {
        if b.health() == Some(503) {
            sick_at = Some(Instant::now());
        }
        sick_at.is_some()
    });
    assert!(
        sick,
        "box b's health never said 503:\n{}",
        b.gate().stderr()
    );
    let sick_at = sick_at.unwrap_or(broke);
    let down_at = pp.wait_status("boxb", "DOWN", Duration::from_secs(10));
    let Some(down_at) = down_at else {
        panic!("HAProxy never took boxb out; haproxy:\n{}", pp.log());
    };
    std::thread::sleep(Duration::from_secs(2));
    let outcomes = load.finish();
    let end = Instant::now();
    let start = outcomes.first().map_or(broke, |o| o.sent);
    let (before_a, before_b, before_failed) = tally(&outcomes, start, broke);
    let (mid_a, mid_b, mid_failed) = tally(&outcomes, broke, down_at);
    let (after_a, after_b, after_failed) = tally(&outcomes, down_at, end);
    let redispatched = pp.counter("boxb", "wredis");
    let out_after = down_at.saturating_duration_since(sick_at);
    report.push(format!(
        "Django killed on box b: its health said 503 after {} ms; HAProxy had boxb DOWN {} ms \
         after that ({} ms after the kill; bound inter + fastinter = {} ms)",
        ms(sick_at - broke),
        ms(out_after),
        ms(down_at - broke),
        ms(INTER + FASTINTER)
    ));
    report.push(format!(
        "requests: before the kill a={before_a} b={before_b} failed={}; kill→DOWN a={mid_a} b={mid_b} failed={}; \
         after DOWN a={after_a} b={after_b} failed={}",
        before_failed.len(),
        mid_failed.len(),
        after_failed.len()
    ));
    report.push(format!(
        "HAProxy re-sent {redispatched} request(s) that met box b while its Django was down \
         (uwgate answered 502; retry-on 502 + option redispatch) to box a: none reached a client"
    ));
    let failed: Vec<&String> = before_failed
        .iter()
        .chain(&mid_failed)
        .chain(&after_failed)
        .collect();
    assert!(
        before_a > 0 && before_b > 0,
        "both boxes served before the kill"
    );
    assert!(
        out_after <= INTER + FASTINTER + Duration::from_millis(750),
        "taken out {} ms after the first 503 (inter {} ms + fastinter {} ms + check time)",
        ms(out_after),
        ms(INTER),
        ms(FASTINTER)
    );
    assert_eq!(after_b, 0, "no request reached box b once DOWN");
    assert!(after_a > 0);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\nhaproxy:\n{}",
        failed.len(),
        outcomes.len(),
        pp.log()
    );

    // 3. Box B comes back: a new uwgate, Django repaired; HAProxy puts it back in.
    b.begin_stop();
    b.wait_stopped();
    b.repair_django();
    b.start();
    b.wait_healthy();
    let healthy_at = Instant::now();
    let back = pp.wait_status("boxb", "UP", Duration::from_secs(10));
    let Some(back) = back else {
        panic!("boxb never back UP; haproxy:\n{}", pp.log());
    };
    report.push(format!(
        "box b restarted and repaired: HAProxy had it UP {} ms after its health said 200 (rise 2)",
        ms(back.saturating_duration_since(healthy_at))
    ));

    // 4. Box B's uwgate stops gracefully under load: 503 at once, drained before it closes.
    let load = Load::start(pp.front);
    std::thread::sleep(Duration::from_secs(2));
    let stop_at = Instant::now();
    b.begin_stop();
    let drained = pp.wait_status("boxb", "DOWN", Duration::from_secs(10));
    let Some(drained) = drained else {
        panic!("HAProxy never drained boxb; haproxy:\n{}", pp.log());
    };
    let log_b = b.wait_stopped();
    let exited = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    let (a_n, b_n, failed) = tally(&outcomes, stop_at, Instant::now());
    let (_, b_late, _) = tally(&outcomes, drained, Instant::now());
    report.push(format!(
        "box b's uwgate stopped (SIGTERM, shutdown_delay = 3s): HAProxy had it DOWN {} ms after the \
         signal, uwgate exited {} ms after it; requests meanwhile a={a_n} b={b_n} failed={}",
        ms(drained - stop_at),
        ms(exited - stop_at),
        failed.len()
    ));
    assert!(log_b.contains("draining for 3s"), "{log_b}");
    assert!(
        !log_b.contains("refused on a proxy_protocol address"),
        "HAProxy's requests and checks all carried a valid PROXY header:\n{log_b}"
    );
    assert!(
        drained < stop_at + Duration::from_secs(3),
        "drained before the listeners closed"
    );
    assert_eq!(b_late, 0, "no request reached box b once DOWN");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the graceful stop: {failed:?}\nhaproxy:\n{}",
        failed.len(),
        outcomes.len(),
        pp.log()
    );
    drop(pp);

    // 5. The X-Forwarded-For variant (box a alone): the same address, and a client's own
    //    X-Forwarded-For cannot pose as someone else (HAProxy appends the real one last).
    let xff = HaProxy::start(Variant::ForwardedFor, &dir, &[("boxa", a.xff_port)]);
    let up = xff.wait_status("boxa", "UP", Duration::from_secs(10));
    assert!(up.is_some(), "boxa never UP (XFF); haproxy:\n{}", xff.log());
    let (addr, _, _) = addresses_through(xff.front, "");
    assert_eq!(
        addr,
        CLIENT.to_string(),
        "REMOTE_ADDR through X-Forwarded-For"
    );
    let (addr, _, _) = addresses_through(xff.front, "X-Forwarded-For: 6.6.6.6\r\n");
    assert_eq!(
        addr,
        CLIENT.to_string(),
        "a forged X-Forwarded-For is not believed"
    );
    report.push(format!(
        "X-Forwarded-For variant: Django saw REMOTE_ADDR {CLIENT}, also when the client sent its own X-Forwarded-For"
    ));
    drop(xff);
    a.begin_stop();
    a.wait_stopped();

    eprintln!("\nscale-out measurements:");
    for line in &report.0 {
        eprintln!("  {line}");
    }
}
