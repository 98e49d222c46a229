//! Restarts of RUNNING programs through the real binary: one killed with SIGKILL is respawned
//! at once and the new process serves; with autorestart = unexpected, an exit code listed in
//! `exitcodes` is final and any other is restarted.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::{Duration, Instant};
use watchdog_support::*;

#[test]
fn running_program_killed_with_sigkill_is_respawned_at_once_and_the_new_pid_serves() {
    let port = common::free_port();
    let gate = Gate::start(
        "wd_sigkill",
        &format!(
            "[program:web]\ncommand = {{PY}} {{DIR}}/pid_server.py {port}\n\
             ready = tcp:127.0.0.1:{port}\n",
            port = port
        ),
        |t| {
            t.write("pid_server.py", PID_SERVER_PY);
        },
    );
    let first = gate.expect_spawns("web", 1, Duration::from_secs(3))[0];
    let spawned_at = Instant::now();
    gate.expect_log(
        "success: web entered RUNNING state",
        Duration::from_secs(10),
    );
    let body = try_get(port, "/", Duration::from_secs(2)).map(|(_, b)| b);
    assert_eq!(
        body.as_deref(),
        Some(first.to_string().as_bytes()),
        "the first process does not serve; log:\n{}",
        gate.log()
    );
    // Past the one-spawn-a-second throttle, a crash of a RUNNING program is restarted at once.
    if let Some(left) = Duration::from_millis(1200).checked_sub(spawned_at.elapsed()) {
        std::thread::sleep(left);
    }

    kill(first as i32, libc::SIGKILL);
    let killed_at = Instant::now();
    gate.expect_spawns("web", 2, Duration::from_secs(3));
    let respawn = killed_at.elapsed();
    let second = gate.last_pid("web");
    let log = gate.log();
    assert_ne!(second, first, "log:\n{}", log);
    assert!(
        respawn < Duration::from_millis(500),
        "respawn {:?} after SIGKILL (RUNNING, spawned over 1 s ago: no throttle applies); log:\n{}",
        respawn,
        log
    );
    assert!(
        !lines_with(&log, "exited: web (terminated by SIGKILL; not expected)").is_empty(),
        "log:\n{}",
        log
    );
    // The new process serves on the same port (it had to wait for the old socket to go).
    let mut answer = None;
    let served = common::wait_until(Duration::from_secs(5), || {
        answer = try_get(port, "/", Duration::from_millis(500));
        answer
            .as_ref()
            .is_some_and(|(s, b)| *s == 200 && *b == second.to_string().into_bytes())
    });
    assert!(
        served,
        "new pid {} does not serve (last answer {:?}); log:\n{}",
        second,
        answer.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
        gate.log()
    );
    assert!(
        !alive(first as i32),
        "the killed pid {} is still there",
        first
    );
    assert!(
        stat(first as i32).is_none(),
        "the killed pid {} was not reaped: {:?}",
        first,
        stat(first as i32)
    );
    gate.expect_log("success: web entered RUNNING state", Duration::from_secs(1));
    gate.finish();
}

/// A program that stays up 1.5 s (RUNNING after startsecs = 1), then exits with `code`.
fn exits_after_running(name: &str, code: i32) -> String {
    format!(
        "[program:{name}]\ncommand = /bin/sh -c \"sleep 1.5 && exit {code}\"\n\
         startsecs = 1\nautorestart = unexpected\nexitcodes = 0,2\n"
    )
}

#[test]
fn exit_code_listed_in_exitcodes_is_not_restarted_with_autorestart_unexpected() {
    let gate = Gate::start("wd_expected", &exits_after_running("done", 2), |_| {});
    gate.expect_log(
        "success: done entered RUNNING state, process has stayed up for > than 1 seconds (startsecs)",
        Duration::from_secs(5),
    );
    gate.expect_log(
        "exited: done (exit status 2; expected)",
        Duration::from_secs(5),
    );
    // Well past the 1 s throttle: a restart would have happened by now.
    std::thread::sleep(Duration::from_millis(1500));
    let log = gate.log();
    assert_eq!(
        spawned_pids(&log, "done").len(),
        1,
        "an expected exit was restarted; log:\n{}",
        log
    );
    assert!(
        lines_with(&log, "gave up: done").is_empty(),
        "log:\n{}",
        log
    );
    gate.finish();
}

#[test]
fn exit_code_not_in_exitcodes_is_restarted_with_autorestart_unexpected() {
    let gate = Gate::start("wd_unexpected", &exits_after_running("oops", 3), |_| {});
    gate.expect_log(
        "success: oops entered RUNNING state",
        Duration::from_secs(5),
    );
    let mut tail = gate.tail_from_start();
    let mut seen = Vec::new();
    let exited = tail.wait_for(
        "exited: oops (exit status 3; not expected)",
        Duration::from_secs(5),
        Duration::from_millis(5),
        &mut seen,
    );
    let Some((exited_at, _)) = exited else {
        panic!("no unexpected exit; log:\n{}", gate.log());
    };
    let respawned = tail.wait_for(
        "spawned: 'oops' with pid",
        Duration::from_secs(3),
        Duration::from_millis(5),
        &mut seen,
    );
    let log = gate.log();
    let Some((respawned_at, _)) = respawned else {
        panic!("an unexpected exit was not restarted; log:\n{}", log);
    };
    // Up 1.5 s, so no throttle: at once.
    assert!(
        respawned_at.duration_since(exited_at) < Duration::from_millis(500),
        "restart came {:?} after the exit; log:\n{}",
        respawned_at.duration_since(exited_at),
        log
    );
    let pids = spawned_pids(&log, "oops");
    assert_eq!(pids.len(), 2, "log:\n{}", log);
    assert_ne!(pids[0], pids[1]);
    gate.finish();
}
