//! `uwgate ctl upgrade` — the control socket (issue 13) driving the in-place upgrade (issue 14)
//! — through the real binary: uwgate runs from a copy in its tree, the "next version" is the
//! `upgrade-test` build installed over it, and `ctl upgrade` is what the operator types.
//!
//! Facts checked: `ctl upgrade` waits for the outcome and reports the new version (exit 0) with
//! uWSGI + Django kept; the control socket crosses the exec — the same file (inode), answering
//! throughout (no connection to it is refused or finds it missing while the upgrade runs), so
//! a `ctl status` right after works; an upgrade refused at once (programs changed in the file)
//! or by the new binary's `-t` prints `uwgate: ERROR (upgrade refused: …)` and exits 1; a new
//! image that exits before it serves is rolled back, and `ctl upgrade` says so and exits 1,
//! the socket still the same.

#[path = "common/mod.rs"]
mod common;
#[path = "control_support/mod.rs"]
mod control_support;
#[path = "upgrade_support/mod.rs"]
mod upgrade_support;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use control_support::{ctl, pid_in, status_of};
use upgrade_support::{install, next_binary, next_version};
use watchdog_support::{lines_with, mark_programs, try_get, Gate};

/// `[uwgate]` lines every box here has: a pidfile, a short drain bound, the control socket.
const GLOBAL: &str =
    "pidfile = {DIR}/uwgate.pid\nshutdown_timeout = 5s\ncontrol_socket = {DIR}/ctl.sock\n";

/// A program that only sleeps (quick to start; adoption is the same for any child).
const SLEEPER: &str = "[program:sleeper]\ncommand = /bin/sleep 600\nstartsecs = 0\n";

/// Django behind uWSGI on `upstream`, supervised, on `/`.
fn django(upstream: u16) -> String {
    format!(
        "[location:/]\nuwsgi_pass = 127.0.0.1:{upstream}\n\n\
         [program:django]\n\
         command = {uwsgi} --socket 127.0.0.1:{upstream} --module djangoblog.wsgi --chdir {dir} \
         --master --processes 2 --die-on-term --need-app\n\
         environment = DJANGO_SETTINGS_MODULE=\"djangoblog.settings\",\
         UWGATE_TEST_DB=\"{{DIR}}/db.sqlite3\",PYTHONDONTWRITEBYTECODE=\"1\"\n\
         stopsignal = INT\nstopasgroup = true\nstartsecs = 1\n",
        uwsgi = uwsgi_support::venv().join("bin").join("uwsgi").display(),
        dir = uwsgi_support::django_dir().display(),
    )
}

/// The whole ini: `GLOBAL` and `global_extra`, `/static/`, then `sections`.
fn ini(global_extra: &str, sections: &str) -> String {
    common::ini(
        &format!("{GLOBAL}{global_extra}"),
        &format!("[location:/static/]\nalias = {{DIR}}/static/\n\n{sections}"),
    )
}

/// A running uwgate from `{DIR}/sbin/uwgate` (a copy of the binary under test).
struct Appliance {
    gate: Gate,
    installed: PathBuf,
}

impl Appliance {
    fn start(name: &str, ini: &str) -> Appliance {
        let mut installed = PathBuf::new();
        let gate = Gate::start_with(name, ini, |t| {
            uwsgi_support::fresh_db(t.path());
            installed = t.mkdir("sbin").join("uwgate");
            std::fs::copy(common::uwgate_bin(), &installed).expect("copy the binary");
            Some(installed.clone())
        });
        Appliance { gate, installed }
    }

    fn ini(&self) -> &Path {
        &self.gate.server.ini
    }

    fn socket(&self) -> PathBuf {
        self.gate.tree.join("ctl.sock")
    }

    /// The socket file's inode: the same file, or one made again.
    fn socket_inode(&self) -> u64 {
        std::fs::metadata(self.socket())
            .expect("the control socket file")
            .ino()
    }

    fn ctl(&self, args: &[&str]) -> control_support::Ctl {
        ctl(self.ini(), args)
    }

    /// `ctl status NAME`: (exit code, state, pid when running).
    fn status(&self, name: &str) -> (i32, String, Option<u32>) {
        let r = self.ctl(&["status", name]);
        let (state, desc) = status_of(&r.out, name).unwrap_or_default();
        (r.code, state, pid_in(&desc))
    }

    fn version(&self) -> String {
        let r = self.ctl(&["version"]);
        assert_eq!(r.code, 0, "{r:?}");
        r.out.trim().to_string()
    }

    /// Rewrites the ini from `template` (programs marked as at the start).
    fn rewrite(&self, template: &str) {
        self.gate
            .server
            .rewrite_ini(&mark_programs(template, &self.gate.mark));
    }
}

/// Connections to the control socket made in a loop while an upgrade runs: every one must be
/// taken (the socket never refuses or goes missing); what each answer was is kept.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Probed>,
}

#[derive(Debug, Default)]
struct Probed {
    refused: Vec<String>,
    /// `GET /version` answered 200: the versions seen, in order, without repeats.
    versions: Vec<String>,
    answered: u64,
    /// Answered 503 (a session the exec closed) or not at all (a look cut short).
    busy: u64,
}

impl Prober {
    fn start(socket: PathBuf) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Probed::default();
            while !flag.load(Ordering::SeqCst) {
                look(&socket, &mut seen);
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Prober { stop, thread }
    }

    fn finish(self) -> Probed {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("prober thread")
    }
}

fn look(socket: &Path, seen: &mut Probed) {
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            seen.refused.push(e.to_string());
            return;
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut raw = Vec::new();
    let sent = s.write_all(b"GET /version HTTP/1.1\r\nHost: uwgate\r\n\r\n");
    if sent.is_err() || s.read_to_end(&mut raw).is_err() {
        seen.busy += 1;
        return;
    }
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 200") {
        seen.busy += 1;
        return;
    }
    seen.answered += 1;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let version = body
        .split("\"version\":\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or("")
        .to_string();
    if seen.versions.last() != Some(&version) {
        seen.versions.push(version);
    }
}

#[test]
fn ctl_upgrade_waits_for_the_new_version_and_the_control_socket_stays_open_in_place() {
    let next = next_binary();
    let upstream = common::free_port();
    let b = Appliance::start("ctl_upgrade_ok", &ini("", &django(upstream)));
    let port = b.gate.server.port;
    let up = common::wait_until(uwsgi_support::UWSGI_START_TIMEOUT, || {
        try_get(port, "/pid", Duration::from_secs(5)).is_some_and(|r| r.0 == 200)
    });
    assert!(up, "Django never answered; log:\n{}", b.gate.log());
    b.gate.expect_log(
        "success: django entered RUNNING state",
        Duration::from_secs(10),
    );
    let (code, state, master) = b.status("django");
    assert_eq!((code, state.as_str()), (0, "RUNNING"));
    let inode = b.socket_inode();
    let pid = b.gate.pid();

    install(&b.installed, &next);
    let prober = Prober::start(b.socket());
    std::thread::sleep(Duration::from_millis(200));
    let r = b.ctl(&["upgrade"]);
    // Right after: the same socket answers, for the new version.
    let (code, state, after) = b.status("django");
    std::thread::sleep(Duration::from_millis(200));
    let probed = prober.finish();
    let log = b.gate.log();

    assert_eq!(r.code, 0, "{r:?}; log:\n{log}");
    let lines = r.lines();
    assert_eq!(
        lines.first().copied(),
        Some(format!("uwgate: upgrading from {}", common::version()).as_str()),
        "{r:?}"
    );
    let done = lines.get(1).copied().unwrap_or_default();
    assert!(
        done.starts_with(&format!(
            "uwgate: upgraded to {} from {} in ",
            next_version(),
            common::version()
        )) && done.ends_with(" ms, 1 process(es) kept"),
        "{r:?}"
    );
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!((code, state.as_str()), (0, "RUNNING"), "log:\n{log}");
    assert_eq!(after, master, "uWSGI was restarted; log:\n{log}");
    assert_eq!(b.version(), next_version());
    assert_eq!(b.socket_inode(), inode, "the control socket was made again");
    assert_eq!(b.gate.pid(), pid);
    assert!(
        probed.refused.is_empty(),
        "connections to the control socket failed during the upgrade: {probed:?}"
    );
    assert_eq!(
        probed.versions,
        vec![common::version().to_string(), next_version()],
        "{probed:?}"
    );
    println!(
        "ctl upgrade: {done:?}; control socket: {} answers, {} cut short by the exec, 0 refused",
        probed.answered, probed.busy
    );
    assert!(
        !lines_with(&log, "and the control socket").is_empty(),
        "the record does not name the control socket; log:\n{log}"
    );
    b.gate.finish();
}

#[test]
fn a_refused_upgrade_prints_why_and_exits_1() {
    let next = next_binary();
    let template = ini("", SLEEPER);
    let b = Appliance::start("ctl_upgrade_refused", &template);
    b.gate.expect_spawns("sleeper", 1, Duration::from_secs(5));
    let (_, _, sleeper) = b.status("sleeper");

    // 1. At once: the programs in the file differ from the running ones.
    b.rewrite(&template.replace("sleep 600", "sleep 601"));
    let r = b.ctl(&["upgrade"]);
    assert_eq!(r.code, 1, "{r:?}");
    let lines = r.lines();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(
        lines[0].starts_with("uwgate: ERROR (upgrade refused: [program:sleeper] changed in ")
            && lines[0].ends_with("reload first (uwgate -s reload))"),
        "{r:?}"
    );

    // 2. After the check: the new binary's -t rejects a value the running one accepts.
    b.rewrite(&ini("syslog_tag = upgrade-test-reject\n", SLEEPER));
    install(&b.installed, &next);
    let r = b.ctl(&["upgrade"]);
    assert_eq!(r.code, 1, "{r:?}; log:\n{}", b.gate.log());
    let lines = r.lines();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(
        lines[0],
        format!("uwgate: upgrading from {}", common::version())
    );
    assert!(
        lines[1].starts_with("uwgate: ERROR (upgrade refused: ")
            && lines[1].contains("-t failed (exit status 1)")
            && lines[1].contains("refused by this build (upgrade-test)"),
        "{r:?}"
    );

    // Nothing changed: same version, same sleeper, the socket answers.
    assert_eq!(b.version(), common::version());
    let (code, state, pid) = b.status("sleeper");
    assert_eq!((code, state.as_str(), pid), (0, "RUNNING", sleeper));
    // `ctl help` (argh's) and `ctl` alone (the client's usage) both list the verb.
    for args in [&["help"][..], &[]] {
        let help = b.ctl(args);
        assert!(
            help.out
                .lines()
                .any(|l| l.trim_start().starts_with("upgrade ")
                    && l.ends_with("(as -s upgrade) and wait for the outcome")),
            "{help:?}"
        );
    }
    let r = b.ctl(&["upgrade", "now"]);
    assert_eq!(r.code, 1);
    assert!(
        r.out.starts_with("Error: upgrade accepts no arguments"),
        "{r:?}"
    );
    b.gate.finish();
}

#[test]
fn a_rolled_back_upgrade_is_reported_with_exit_1_and_the_socket_stays() {
    let next = next_binary();
    let b = Appliance::start(
        "ctl_upgrade_rollback",
        &ini("syslog_tag = upgrade-test-exit\n", SLEEPER),
    );
    b.gate.expect_spawns("sleeper", 1, Duration::from_secs(5));
    let (_, _, sleeper) = b.status("sleeper");
    let inode = b.socket_inode();

    install(&b.installed, &next);
    let r = b.ctl(&["upgrade"]);
    let log = b.gate.log();
    assert_eq!(r.code, 1, "{r:?}; log:\n{log}");
    let lines = r.lines();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(
        lines[1],
        format!(
            "uwgate: ERROR (upgrade to {} failed (exited before it served); rolled back to {})",
            next_version(),
            common::version()
        ),
        "log:\n{log}"
    );
    // The rolled-back image serves the same socket and the same sleeper.
    assert_eq!(b.socket_inode(), inode);
    let (code, state, pid) = b.status("sleeper");
    assert_eq!((code, state.as_str(), pid), (0, "RUNNING", sleeper));
    assert_eq!(b.version(), common::version());
    b.gate.finish();
}

#[test]
fn the_control_socket_crosses_an_upgrade_after_privileges_were_dropped() {
    // No program: uwgate drops to nobody, who may not make a file where the socket lives (the
    // tree is root's, 0755, as /run is): only the inherited listener can serve on.
    let next = next_binary();
    let b = Appliance::start("ctl_upgrade_nobody", &ini("user = nobody\n", ""));
    let status = std::fs::read_to_string(format!("/proc/{}/status", b.gate.pid())).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    assert_ne!(uid, "0", "uwgate did not drop its privileges: {status}");
    let inode = b.socket_inode();
    install(&b.installed, &next);
    let r = b.ctl(&["upgrade"]);
    assert_eq!(r.code, 0, "{r:?}; log:\n{}", b.gate.log());
    assert_eq!(b.socket_inode(), inode);
    assert_eq!(b.version(), next_version());

    // The file moves the socket where nobody cannot create it: the upgrade keeps the old one
    // rather than fail, and says so.
    b.rewrite(&ini("user = nobody\n", "").replace("{DIR}/ctl.sock", "{DIR}/moved.sock"));
    let old = b.socket();
    let r = ctl(b.ini(), &["-s", &old.to_string_lossy(), "upgrade"]);
    let log = b.gate.log();
    assert_eq!(r.code, 0, "{r:?}; log:\n{log}");
    assert_eq!(b.socket_inode(), inode);
    assert!(!b.gate.tree.join("moved.sock").exists());
    assert!(
        lines_with(&log, "keeping the control socket at").len() == 1,
        "log:\n{log}"
    );
    b.gate.finish();
}

#[test]
fn a_control_socket_moved_in_the_file_moves_at_the_upgrade() {
    let b = Appliance::start("ctl_upgrade_moved", &ini("", SLEEPER));
    b.gate.expect_spawns("sleeper", 1, Duration::from_secs(5));
    let old = b.socket();
    let moved = b.gate.tree.join("moved.sock");
    b.rewrite(&ini("", SLEEPER).replace("{DIR}/ctl.sock", "{DIR}/moved.sock"));
    // Upgraded to itself (a reinstall): `-s` names the running socket, `-c` the file's.
    let r = ctl(b.ini(), &["-s", &old.to_string_lossy(), "upgrade"]);
    let log = b.gate.log();
    assert_eq!(r.code, 0, "{r:?}; log:\n{log}");
    assert!(
        r.out.contains(&format!(
            "uwgate: upgraded to {} from {}",
            common::version(),
            common::version()
        )),
        "{r:?}"
    );
    assert!(moved.exists() && !old.exists(), "log:\n{log}");
    assert_eq!(b.status("sleeper").1, "RUNNING");
    b.gate.finish();
}
