//! In-place upgrade (issue 14), through the real binary with a real uWSGI + Django under it:
//! uwgate runs from a copy of the binary under test in its tree (as `/usr/sbin/uwgate` on a box);
//! the "new version" is the `upgrade-test` build (`make upgrade-test-bin`; it reports
//! `VERSION+upgrade-test`), installed over that copy the way a package does (a new file renamed
//! over the old), then `uwgate -s upgrade`.
//!
//! Facts checked: under continuous keep-alive and new-connection load on a static file and a
//! Django view, no connection is refused and no request fails (an idle keep-alive connection
//! that the drain closes before any byte of an answer is retried, as HTTP lets a client; those
//! are counted apart); uwgate's pid, uWSGI's master pid and its start time stay; the new
//! version answers. A new binary that fails its `-t` (a value only it rejects), that is not
//! executable, not an executable format, or cannot take over, is refused with a clear line,
//! and the old one keeps serving. A new image that exits before it serves is rolled back: the
//! old version serves again, children untouched. The upgrade waits for a reload when the
//! programs changed in the file.

#[path = "common/mod.rs"]
mod common;
#[path = "upgrade_support/mod.rs"]
mod upgrade_support;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::io;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, TempTree};
use upgrade_support::{next_binary, next_version};
use uwsgi_support::Json;
use watchdog_support::*;

/// The appliance's configuration: a pidfile (for `-s`), `/static/`, the status page, Django
/// on `/` from a supervised uWSGI on `upstream`, and `global_extra` in `[uwgate]`.
fn appliance_ini(upstream: u16, global_extra: &str) -> String {
    let venv = uwsgi_support::venv();
    common::ini(
        &format!("pidfile = {{DIR}}/uwgate.pid\nshutdown_timeout = 10s\n{global_extra}"),
        &format!(
            "[location:/static/]\nalias = {{DIR}}/static/\n\n\
             [location:/uwgate_status]\nstub_status = on\n\n\
             [location:/]\nuwsgi_pass = 127.0.0.1:{upstream}\n\n\
             [program:django]\n\
             command = {uwsgi} --socket 127.0.0.1:{upstream} --module djangoblog.wsgi --chdir {django} \
             --master --processes 2 --die-on-term --need-app\n\
             environment = DJANGO_SETTINGS_MODULE=\"djangoblog.settings\",\
             UWGATE_TEST_DB=\"{{DIR}}/db.sqlite3\",PYTHONDONTWRITEBYTECODE=\"1\"\n\
             stopsignal = INT\nstopasgroup = true\nstartsecs = 1\n",
            uwsgi = venv.join("bin").join("uwsgi").display(),
            django = uwsgi_support::django_dir().display(),
        ),
    )
}

/// A running appliance: uwgate from `{DIR}/sbin/uwgate` (a copy of the binary under test),
/// Django answering through it.
struct Appliance {
    gate: Gate,
    installed: PathBuf,
    ini_template: String,
}

impl Appliance {
    fn start(name: &str, global_extra: &str) -> Appliance {
        let upstream = common::free_port();
        let ini_template = appliance_ini(upstream, global_extra);
        let mut installed = PathBuf::new();
        let gate = Gate::start_with(name, &ini_template, |t| {
            uwsgi_support::fresh_db(t.path());
            installed = t.mkdir("sbin").join("uwgate");
            std::fs::copy(common::uwgate_bin(), &installed).expect("copy the binary");
            Some(installed.clone())
        });
        let port = gate.server.port;
        let mut last = None;
        let up = common::wait_until(uwsgi_support::UWSGI_START_TIMEOUT, || {
            last = try_get(port, "/pid", Duration::from_secs(5)).map(|r| r.0);
            last == Some(200)
        });
        assert!(
            up,
            "Django never answered (last {last:?}); log:\n{}",
            gate.log()
        );
        gate.expect_log(
            "success: django entered RUNNING state",
            Duration::from_secs(10),
        );
        Appliance {
            gate,
            installed,
            ini_template,
        }
    }

    fn port(&self) -> u16 {
        self.gate.server.port
    }

    /// Replaces the installed binary with `new` as a package does: a new file, renamed over.
    fn install(&self, new: &Path) {
        upgrade_support::install(&self.installed, new);
    }

    /// `uwgate -c INI -s upgrade` (sent by the binary under test: the installed file may be
    /// a broken one, and the new version rejects some of these files on purpose).
    fn signal_upgrade(&self) {
        let out = Command::new(common::uwgate_bin())
            .arg("-c")
            .arg(&self.gate.server.ini)
            .args(["-s", "upgrade"])
            .output()
            .expect("run uwgate -s upgrade");
        assert!(
            out.status.success(),
            "uwgate -s upgrade: {}; {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Rewrites the ini (`global_extra` in `[uwgate]`, the rest as started) and reloads.
    fn reload_with(&self, global_extra: &str, upstream_sections: &str) {
        let text =
            self.ini_template
                .replacen("[uwgate]\n", &format!("[uwgate]\n{global_extra}\n"), 1)
                + upstream_sections;
        self.gate
            .server
            .rewrite_ini(&mark_programs(&text, &self.gate.mark));
        let before = lines_with(&self.gate.log(), "configuration reloaded").len();
        self.gate.server.signal(libc::SIGHUP);
        let ok = common::wait_until(Duration::from_secs(5), || {
            lines_with(&self.gate.log(), "configuration reloaded").len() > before
        });
        assert!(ok, "no reload; log:\n{}", self.gate.log());
    }

    /// The status page's JSON.
    fn status(&self) -> Json {
        let (code, body) = try_get(
            self.port(),
            "/uwgate_status?format=json",
            Duration::from_secs(5),
        )
        .expect("GET /uwgate_status?format=json");
        assert_eq!(code, 200);
        Json::parse(&String::from_utf8_lossy(&body))
    }

    fn version(&self) -> String {
        self.status().get("version").str().to_string()
    }

    /// uWSGI's master: (pid, start time in clock ticks after boot, from /proc/PID/stat).
    fn uwsgi_master(&self) -> (u32, u64) {
        let pid = self.gate.last_pid("django");
        (pid, start_time(pid).expect("uWSGI master's /proc/PID/stat"))
    }

    /// Waits for the `n`th log line with `needle` (from 1); returns it.
    fn expect_nth_log(&self, needle: &str, n: usize, timeout: Duration) -> String {
        let ok = common::wait_until(timeout, || lines_with(&self.gate.log(), needle).len() >= n);
        let log = self.gate.log();
        assert!(
            ok,
            "no {needle:?} (#{n}) in the log within {timeout:?}; log:\n{log}"
        );
        lines_with(&log, needle)
            .get(n - 1)
            .map(|l| l.to_string())
            .unwrap_or_default()
    }

    /// Still the old version, serving static and Django, uWSGI untouched, uwgate the same pid.
    fn assert_serving_unchanged(&self, master: (u32, u64), pid: i32) {
        assert_eq!(
            self.version(),
            common::version(),
            "log:\n{}",
            self.gate.log()
        );
        let (code, body) = try_get(self.port(), "/static/ok.txt", Duration::from_secs(5)).unwrap();
        assert_eq!((code, body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(
            try_get(self.port(), "/pid", Duration::from_secs(5)).map(|r| r.0),
            Some(200)
        );
        assert_eq!(
            self.uwsgi_master(),
            master,
            "uWSGI restarted; log:\n{}",
            self.gate.log()
        );
        assert_eq!(self.gate.pid(), pid);
        let django = self.status();
        let programs = django.get("programs");
        let Json::Arr(list) = programs else {
            panic!("no programs in the status page");
        };
        let p = list.first().expect("django in the status page");
        assert_eq!(p.get("state").str(), "RUNNING");
        assert_eq!(p.get("pid").u64(), u64::from(master.0));
        assert_eq!(p.get("restarts").u64(), 0);
    }
}

/// Field 22 of /proc/PID/stat: the start time, which a restart would change.
fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// What one load thread saw.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    refused: u64,
    failures: Vec<String>,
    /// Idle keep-alive connections closed under a request that had got no byte of an answer.
    retried: u64,
    /// Longest time from connect to a whole answer on a new connection.
    longest_new: Duration,
    saw_next: bool,
}

/// Keep-alive and new-connection clients on `/static/ok.txt` and Django's `/pid`, until `stop`.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
}

impl Load {
    fn start(port: u16, keep_alive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..keep_alive + fresh {
            let stop = Arc::clone(&stop);
            let reuse = i < keep_alive;
            threads.push(std::thread::spawn(move || {
                client_loop(port, reuse, i, &stop)
            }));
        }
        Load { stop, threads }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Tally {
            saw_next: true,
            ..Tally::default()
        };
        for t in self.threads {
            let t = t.join().expect("load thread");
            all.requests += t.requests;
            all.refused += t.refused;
            all.retried += t.retried;
            all.failures.extend(t.failures);
            all.longest_new = all.longest_new.max(t.longest_new);
            all.saw_next &= t.saw_next;
        }
        all
    }
}

fn request_bytes(path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{connection}\r\n").into_bytes()
}

fn connect(port: u16, t: &mut Tally) -> Option<Client> {
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => Some(Client::from_stream(s)),
        Err(e) => {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                t.refused += 1;
            } else {
                t.failures.push(format!("connect: {e}"));
            }
            None
        }
    }
}

/// Counts an answer, and a failure when it is not a 200 with the expected body.
fn check(path: &str, r: &common::Response, t: &mut Tally) {
    t.requests += 1;
    if r.header("server")
        .is_some_and(|s| s.ends_with("+upgrade-test"))
    {
        t.saw_next = true;
    }
    if r.status != 200 || (path == "/static/ok.txt" && r.body != b"ok\n") {
        t.failures
            .push(format!("{path}: {} {:?}", r.status, r.text()));
    }
}

fn client_loop(port: u16, reuse: bool, n: usize, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<(Client, u32)> = None;
    let mut k = n;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let path = if k.is_multiple_of(2) {
            "/static/ok.txt"
        } else {
            "/pid"
        };
        if !reuse {
            let began = Instant::now();
            let Some(mut c) = connect(port, &mut t) else {
                continue;
            };
            let res = c
                .try_send(&request_bytes(path, true))
                .and_then(|()| c.try_read_response(false));
            match res {
                Ok(r) => check(path, &r, &mut t),
                Err(e) => t.failures.push(format!("{path} on a new connection: {e}")),
            }
            t.longest_new = t.longest_new.max(began.elapsed());
            continue;
        }
        if conn.is_none() {
            conn = connect(port, &mut t).map(|c| (c, 0));
        }
        let Some((c, used)) = conn.as_mut() else {
            continue;
        };
        let res = c
            .try_send(&request_bytes(path, false))
            .and_then(|()| c.try_read_response(false));
        match res {
            Ok(r) => {
                check(path, &r, &mut t);
                *used += 1;
                if r.connection_has("close") {
                    conn = None;
                }
            }
            // The server closed an idle keep-alive connection under the request: nothing of an
            // answer came, so the request is sent again on a new connection (RFC 9112 9.3.1).
            Err(_) if *used > 0 && c.pending().is_empty() => {
                t.retried += 1;
                k -= 1;
                conn = None;
            }
            Err(e) => {
                t.failures
                    .push(format!("{path} on a keep-alive connection: {e}"));
                conn = None;
            }
        }
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn an_upgrade_under_load_refuses_no_connection_fails_no_request_and_keeps_uwsgi() {
    let next = next_binary();
    let app = Appliance::start("upgrade_load", "");
    let pid = app.gate.pid();
    let master = app.uwsgi_master();
    let fds_before = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    assert_eq!(app.version(), common::version());

    let load = Load::start(app.port(), 3, 3);
    std::thread::sleep(Duration::from_millis(800));
    app.install(&next);
    let asked = Instant::now();
    app.signal_upgrade();
    let mut first_answer = None;
    let done = common::wait_until(Duration::from_secs(30), || {
        if app.version() == next_version() {
            first_answer.get_or_insert(asked.elapsed());
            return true;
        }
        false
    });
    assert!(
        done,
        "the new version never answered; log:\n{}",
        app.gate.log()
    );
    // Every client has been answered by the new version for a while.
    std::thread::sleep(Duration::from_millis(1000));
    let tally = load.finish();
    let log = app.gate.log();
    println!(
        "upgrade under load: new version answering {:?} after -s upgrade; {} requests, \
         {} refused, {} failed, {} idle keep-alive retried; longest new-connection answer {:?}",
        first_answer.unwrap_or_default(),
        tally.requests,
        tally.refused,
        tally.failures.len(),
        tally.retried,
        tally.longest_new
    );
    assert_eq!(tally.refused, 0, "refused connections; log:\n{log}");
    assert!(
        tally.failures.is_empty(),
        "{} failed requests, first: {:?}; log:\n{log}",
        tally.failures.len(),
        tally.failures.first()
    );
    assert!(
        tally.saw_next,
        "a client never got an answer from the new version"
    );
    assert!(
        tally.requests > 100,
        "too little load: {} requests",
        tally.requests
    );

    // The same process and the same uWSGI, adopted, not restarted.
    assert_eq!(app.gate.pid(), pid);
    assert_eq!(
        app.uwsgi_master(),
        master,
        "uWSGI was restarted; log:\n{log}"
    );
    assert_eq!(spawned_pids(&log, "django").len(), 1, "log:\n{log}");
    let line = app.expect_nth_log("upgraded in place from", 1, Duration::from_secs(1));
    assert!(
        line.contains(&format!("from {} to {}", common::version(), next_version())),
        "{line}"
    );
    let status = app.status();
    let Json::Arr(programs) = status.get("programs") else {
        panic!("no programs");
    };
    let django = programs.first().expect("django");
    assert_eq!(django.get("state").str(), "RUNNING");
    assert_eq!(django.get("pid").u64(), u64::from(master.0));
    assert_eq!(django.get("restarts").u64(), 0);
    assert!(django.get("uptime").u64() >= 1, "uptime restarted at 0");
    // What crossed the exec is all that is open afterwards (no descriptor leaked).
    let fds_after = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    assert!(
        fds_after <= fds_before + 2,
        "{fds_before} descriptors before, {fds_after} after"
    );
    app.gate.finish();
}

#[test]
fn a_binary_that_fails_its_check_is_refused_and_the_old_one_keeps_serving() {
    let next = next_binary();
    let app = Appliance::start("upgrade_refused", "");
    let pid = app.gate.pid();
    let master = app.uwsgi_master();
    let tree = TempTree::new("upgrade_refused_bins");

    // 1. The new version rejects a value the running one accepts: its -t fails.
    app.reload_with("syslog_tag = upgrade-test-reject", "");
    app.install(&next);
    app.signal_upgrade();
    let line = app.expect_nth_log("upgrade refused", 1, Duration::from_secs(15));
    assert!(
        line.contains("-t failed (exit status 1)")
            && line.contains("syslog_tag = upgrade-test-reject: refused by this build"),
        "{line}"
    );
    app.assert_serving_unchanged(master, pid);

    // 2. Not executable (mode 0644).
    std::fs::set_permissions(&app.installed, std::fs::Permissions::from_mode(0o644)).unwrap();
    app.signal_upgrade();
    let line = app.expect_nth_log("upgrade refused", 2, Duration::from_secs(15));
    assert!(line.contains("not executable"), "{line}");
    app.assert_serving_unchanged(master, pid);

    // 3. Executable, but not a program the kernel can run.
    let junk = tree.write("junk", "not an ELF file\n");
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o755)).unwrap();
    app.install(&junk);
    app.signal_upgrade();
    let line = app.expect_nth_log("upgrade refused", 3, Duration::from_secs(15));
    assert!(
        line.contains("cannot execute") && line.contains("Exec format error"),
        "{line}"
    );

    // 4. A program that passes "-t" but cannot take over a running uwgate.
    app.install(Path::new("/bin/true"));
    app.signal_upgrade();
    let line = app.expect_nth_log("upgrade refused", 4, Duration::from_secs(15));
    assert!(line.contains("cannot take over a running uwgate"), "{line}");
    app.assert_serving_unchanged(master, pid);
    assert_eq!(spawned_pids(&app.gate.log(), "django").len(), 1);
    app.gate.finish();
}

#[test]
fn a_new_image_that_exits_before_serving_is_rolled_back_with_its_children_untouched() {
    let next = next_binary();
    let app = Appliance::start("upgrade_rollback", "syslog_tag = upgrade-test-exit\n");
    let pid = app.gate.pid();
    let master = app.uwsgi_master();
    let mark = Instant::now();
    app.install(&next);
    app.signal_upgrade();
    let line = app.expect_nth_log("rolled back", 1, Duration::from_secs(20));
    println!("rollback after {:?}: {line}", mark.elapsed());
    assert!(
        line.contains(&format!("upgrade to {} failed", next_version()))
            && line.contains("exited before it served")
            && line.contains(&format!("{} serves again", common::version())),
        "{line}"
    );
    let log = app.gate.log();
    assert!(
        !lines_with(&log, "upgrade-test: exiting before serving").is_empty(),
        "{log}"
    );
    // Exec'd back through /proc/self/fd/N, it is named after its binary again (ps, pidof).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "uwgate");
    app.assert_serving_unchanged(master, pid);
    assert_eq!(spawned_pids(&log, "django").len(), 1, "log:\n{log}");
    // The rolled-back image serves and upgrades again: to itself (its copy is installed
    // back), which takes over cleanly.
    app.install(&common::uwgate_bin());
    app.signal_upgrade();
    app.expect_nth_log("upgraded in place from", 1, Duration::from_secs(20));
    app.assert_serving_unchanged(master, pid);
    app.gate.finish();
}

#[test]
fn an_upgrade_waits_for_a_reload_when_the_programs_changed_in_the_file() {
    let tree_ini = common::ini(
        "pidfile = {DIR}/uwgate.pid\n",
        "[location:/static/]\nalias = {DIR}/static/\n\n[program:sleeper]\ncommand = sleep 600\nstartsecs = 0\n",
    );
    let mut installed = PathBuf::new();
    let gate = Gate::start_with("upgrade_programs", &tree_ini, |t| {
        installed = t.mkdir("sbin").join("uwgate");
        std::fs::copy(common::uwgate_bin(), &installed).expect("copy the binary");
        Some(installed.clone())
    });
    gate.expect_spawns("sleeper", 1, Duration::from_secs(5));
    let changed = tree_ini.replace("sleep 600", "sleep 601");
    gate.server
        .rewrite_ini(&mark_programs(&changed, &gate.mark));
    gate.server.signal(libc::SIGUSR2);
    gate.expect_log("upgrade refused, ", Duration::from_secs(5));
    let log = gate.log();
    let line = lines_with(&log, "upgrade refused").join("\n");
    assert!(
        line.contains("[program:sleeper] changed") && line.contains("reload first"),
        "{line}"
    );
    assert_eq!(spawned_pids(&log, "sleeper").len(), 1);
    gate.finish();
}

#[test]
fn signal_upgrade_is_a_valid_s_argument_and_a_bad_one_names_it() {
    let (status, _, err) = common::run_cli(&["-c", "/nonexistent/uwgate.ini", "-s", "upgrad"]);
    assert!(!status.success());
    // The configuration is read first (for the pidfile): the error is about it.
    assert!(err.contains("/nonexistent/uwgate.ini"), "{err}");
    let tree = TempTree::new("upgrade_cli");
    let ini = tree.write(
        "uwgate.ini",
        "[uwgate]\nsyslog = stderr\n\n[location:/]\nroot = /tmp\n",
    );
    let ini = ini.to_string_lossy().into_owned();
    let (status, _, err) = common::run_cli(&["-c", &ini, "-s", "upgrad"]);
    assert!(!status.success());
    assert!(
        err.contains("reload, stop, quit, reopen or upgrade"),
        "{err}"
    );
}
