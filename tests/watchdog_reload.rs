//! SIGHUP diffs programs like `supervisorctl update`, through the real binary: added programs
//! start, removed ones stop, changed ones restart with the new settings, untouched ones keep
//! running with the same pid (wherever their section moved); a bad file changes nothing.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::Duration;
use watchdog_support::*;

const BEFORE: &str = "[program:keep]\ncommand = /bin/sleep 1000\n\n\
    [program:change]\ncommand = /bin/sleep 1000\nenvironment = MODE=\"a\"\n\n\
    [program:remove]\ncommand = /bin/sleep 1000\n";

// keep moved to the end (same settings), change's environment changed, remove gone, add new.
const AFTER: &str = "[program:change]\ncommand = /bin/sleep 1000\nenvironment = MODE=\"b\"\n\n\
    [program:add]\ncommand = /bin/sleep 1000\n\n\
    [program:keep]\ncommand = /bin/sleep 1000\n";

fn environ_has(pid: u32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{}/environ", pid))
        .map(|e| e.split(|&b| b == 0).any(|v| v == entry.as_bytes()))
        .unwrap_or(false)
}

#[test]
fn sighup_adds_removes_and_restarts_changed_programs_and_keeps_untouched_pids() {
    let gate = Gate::start("wd_reload", BEFORE, |_| {});
    for name in ["keep", "change", "remove"] {
        gate.expect_log(
            &format!("success: {} entered RUNNING state", name),
            Duration::from_secs(5),
        );
    }
    let keep = gate.last_pid("keep");
    let change_old = gate.last_pid("change");
    let remove = gate.last_pid("remove");
    assert!(environ_has(change_old, "MODE=a"));

    gate.reload(AFTER);
    gate.expect_log("remove: removed process group", Duration::from_secs(3));
    gate.expect_log("change: changed", Duration::from_secs(3));
    gate.expect_log("add: added process group", Duration::from_secs(3));
    gate.expect_log(
        "stopped: remove (terminated by SIGTERM)",
        Duration::from_secs(3),
    );
    gate.expect_log(
        "stopped: change (terminated by SIGTERM)",
        Duration::from_secs(3),
    );
    let change_new = gate.expect_spawns("change", 2, Duration::from_secs(3))[1];
    gate.expect_spawns("add", 1, Duration::from_secs(3));
    gate.expect_log("success: add entered RUNNING state", Duration::from_secs(5));
    gate.expect_log(
        "success: change entered RUNNING state",
        Duration::from_secs(5),
    );
    let log = gate.log();

    assert_ne!(change_new, change_old, "log:\n{}", log);
    assert!(
        environ_has(change_new, "MODE=b"),
        "the restarted program has the new environment"
    );
    assert!(!alive(change_old as i32), "old 'change' still runs");
    assert!(!alive(remove as i32), "removed program still runs");
    // The old 'change' is down before the new one starts.
    let stopped = line_index(&log, "stopped: change").expect("stopped line");
    let respawned = log
        .lines()
        .position(|l| l.contains(&format!("spawned: 'change' with pid {}", change_new)))
        .expect("respawn line");
    assert!(stopped < respawned, "log:\n{}", log);

    // Untouched: same pid, never stopped, still uwgate's child.
    assert_eq!(spawned_pids(&log, "keep"), vec![keep], "log:\n{}", log);
    assert!(
        lines_with(&log, "stopped: keep").is_empty(),
        "log:\n{}",
        log
    );
    assert!(
        lines_with(&log, "keep: changed").is_empty(),
        "log:\n{}",
        log
    );
    assert_eq!(stat(keep as i32).map(|p| p.ppid), Some(gate.pid()));
    assert!(alive(keep as i32));
    gate.assert_no_zombies();
    gate.finish();
}

#[test]
fn sighup_with_a_bad_program_section_keeps_every_program_running() {
    let gate = Gate::start("wd_reload_bad", BEFORE, |_| {});
    gate.expect_log(
        "success: remove entered RUNNING state",
        Duration::from_secs(5),
    );
    let pids: Vec<u32> = ["keep", "change", "remove"]
        .iter()
        .map(|n| gate.last_pid(n))
        .collect();
    gate.reload(&format!(
        "{}\n[program:typo]\ncommand = /bin/sleep 1000\nautostrat = true\n",
        AFTER
    ));
    gate.expect_log("unknown key 'autostrat'", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    let log = gate.log();
    for (name, pid) in ["keep", "change", "remove"].iter().zip(&pids) {
        assert_eq!(spawned_pids(&log, name), vec![*pid], "log:\n{}", log);
        assert!(alive(*pid as i32), "{} stopped", name);
    }
    assert!(spawned_pids(&log, "add").is_empty(), "log:\n{}", log);
    assert!(lines_with(&log, "stopped:").is_empty(), "log:\n{}", log);
    gate.finish();
}
