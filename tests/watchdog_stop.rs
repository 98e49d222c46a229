//! Stopping programs through the real binary: stopasgroup signals a shell's whole process group
//! (its background children die with it); stopwaitsecs escalates to SIGKILL for a process that
//! ignores its stopsignal, on reload and on uwgate's own SIGTERM; SIGTERM stops programs in
//! reverse priority order, sweeps orphaned descendants, leaves nothing behind and exits 0.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::{Duration, Instant};
use watchdog_support::*;

#[test]
fn stopasgroup_kills_the_shells_background_children_too() {
    // A fractional sleep length unique to this test is the argv marker of the grandchildren.
    let secs = format!("1000.{}", unique_digits());
    let gate = Gate::start(
        "wd_stopasgroup",
        &format!(
            "[program:group]\ncommand = /bin/sh -c \"sleep {secs} & sleep {secs} & wait\"\n\
             stopasgroup = true\n"
        ),
        |_| {},
    );
    let sh = gate.expect_spawns("group", 1, Duration::from_secs(3))[0] as i32;
    gate.expect_log(
        "success: group entered RUNNING state",
        Duration::from_secs(5),
    );
    let sleeps: Vec<Proc> = with_argv(&secs)
        .into_iter()
        .filter(|p| p.comm == "sleep")
        .collect();
    assert_eq!(sleeps.len(), 2, "the two background sleeps: {:?}", sleeps);
    for s in &sleeps {
        assert_eq!(s.ppid, sh, "{:?} is not the shell's child", s);
        assert_eq!(
            s.pgrp, sh,
            "{:?} is not in the shell's own process group (setsid)",
            s
        );
    }
    assert_eq!(
        stat(sh).map(|p| p.pgrp),
        Some(sh),
        "the program leads its group"
    );

    // Removing the program stops it without the shutdown's orphan sweep: only the group
    // signal can reach the sleeps.
    gate.reload("");
    gate.expect_log("group: removed process group", Duration::from_secs(3));
    gate.expect_log(
        "stopped: group (terminated by SIGTERM)",
        Duration::from_secs(3),
    );
    let gone = common::wait_until(Duration::from_secs(1), || with_argv(&secs).is_empty());
    assert!(
        gone,
        "background children survive their program's stop: {:?}; log:\n{}",
        with_argv(&secs),
        gate.log()
    );
    gate.assert_no_zombies();
    gate.finish();
}

/// `stubborn.sh`: ignores SIGTERM (so do its sleeps: an ignored signal stays ignored across
/// exec), says so, and loops.
const STUBBORN_SH: &str = "trap '' TERM\necho armed\nwhile true; do sleep 1; done\n";

fn stubborn(name: &str) -> String {
    format!(
        "[program:{name}]\ncommand = /bin/sh {{DIR}}/stubborn.sh\nstopwaitsecs = 1\n\
         killasgroup = true\n"
    )
}

#[test]
fn stopwaitsecs_escalates_to_sigkill_when_a_removed_program_ignores_sigterm() {
    let gate = Gate::start("wd_stopwait", &stubborn("stubborn"), |t| {
        t.write("stubborn.sh", STUBBORN_SH);
    });
    let pid = gate.expect_spawns("stubborn", 1, Duration::from_secs(3))[0];
    gate.expect_log(&format!("stubborn[{}]: armed", pid), Duration::from_secs(3));
    gate.expect_log(
        "success: stubborn entered RUNNING state",
        Duration::from_secs(3),
    );

    let mut tail = gate.tail();
    let mut seen = Vec::new();
    gate.reload("");
    let hup = Instant::now();
    let waiting = tail.wait_for(
        "waiting for stubborn to stop",
        Duration::from_secs(3),
        Duration::from_millis(5),
        &mut seen,
    );
    assert!(waiting.is_some(), "log:\n{}", gate.log());
    assert!(alive(pid as i32), "died of SIGTERM though it ignores it");
    let killing = tail.wait_for(
        &format!("killing 'stubborn' ({}) with SIGKILL", pid),
        Duration::from_secs(4),
        Duration::from_millis(5),
        &mut seen,
    );
    let Some((killing_at, _)) = killing else {
        panic!("no SIGKILL after stopwaitsecs; log:\n{}", gate.log());
    };
    let waited = killing_at.duration_since(hup);
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(1800),
        "SIGKILL {:?} after the stop began, stopwaitsecs = 1; log:\n{}",
        waited,
        gate.log()
    );
    gate.expect_log(
        "stopped: stubborn (terminated by SIGKILL)",
        Duration::from_secs(2),
    );
    assert!(!alive(pid as i32), "pid {} survives SIGKILL", pid);
    // killasgroup: its sleep (which ignores SIGTERM as well) went with it.
    let group = common::wait_until(Duration::from_secs(1), || {
        group_members(pid as i32).is_empty()
    });
    assert!(group, "left in the group: {:?}", group_members(pid as i32));
    gate.finish();
}

#[test]
fn sigterm_to_uwgate_escalates_to_sigkill_after_stopwaitsecs_and_exits_0() {
    let gate = Gate::start("wd_stopwait_exit", &stubborn("stubborn"), |t| {
        t.write("stubborn.sh", STUBBORN_SH);
    });
    let pid = gate.expect_spawns("stubborn", 1, Duration::from_secs(3))[0];
    gate.expect_log(&format!("stubborn[{}]: armed", pid), Duration::from_secs(3));
    let t0 = Instant::now();
    let log = gate.finish(); // SIGTERM, exit 0 within the bound, nothing left behind
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "uwgate exited {:?} after SIGTERM: it cannot have waited stopwaitsecs = 1; log:\n{}",
        took,
        log
    );
    let order: Vec<Option<usize>> = [
        "waiting for stubborn to stop",
        &format!("killing 'stubborn' ({}) with SIGKILL", pid),
        "stopped: stubborn (terminated by SIGKILL)",
        "exiting",
    ]
    .iter()
    .map(|n| line_index(&log, n))
    .collect();
    assert!(
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        "expected waiting → killing → stopped → exiting, got line indices {:?}; log:\n{}",
        order,
        log
    );
}

#[test]
fn sigterm_stops_programs_in_reverse_priority_order_and_sweeps_orphans() {
    let secs = format!("1000.{}", unique_digits());
    // `leaver` forks a background sleep and execs another: without stopasgroup, that sleep
    // outlives the program and is reparented to uwgate (a subreaper), which must sweep it.
    let sections = format!(
        "[program:first]\ncommand = /bin/sleep 1000\npriority = 10\n\n\
         [program:third]\ncommand = /bin/sleep 1000\npriority = 30\n\n\
         [program:second]\ncommand = /bin/sleep 1000\npriority = 20\n\n\
         [program:leaver]\ncommand = /bin/sh -c \"sleep {secs} & exec sleep 1001\"\npriority = 40\n"
    );
    let gate = Gate::start("wd_stop_order", &sections, |_| {});
    for name in ["first", "second", "third", "leaver"] {
        gate.expect_log(
            &format!("success: {} entered RUNNING state", name),
            Duration::from_secs(5),
        );
    }
    let log = gate.log();
    let starts: Vec<usize> = ["first", "second", "third", "leaver"]
        .iter()
        .map(|n| line_index(&log, &format!("spawned: '{}'", n)).expect("spawned"))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "start order is ascending priority; log:\n{}",
        log
    );
    let orphan: Vec<Proc> = with_argv(&secs)
        .into_iter()
        .filter(|p| p.comm == "sleep")
        .collect();
    assert_eq!(orphan.len(), 1, "{:?}", orphan);
    let leaver = gate.last_pid("leaver") as i32;
    assert_eq!(orphan[0].ppid, leaver);
    let everyone = gate.marked();
    assert_eq!(everyone.len(), 5, "{:?}", everyone);

    let log = gate.finish(); // exit 0, nothing marked left (the orphan included)
    let stops: Vec<Option<usize>> = ["leaver", "third", "second", "first"]
        .iter()
        .map(|n| line_index(&log, &format!("stopped: {} (terminated by SIGTERM)", n)))
        .collect();
    assert!(
        stops.iter().all(Option::is_some) && stops.windows(2).all(|w| w[0] < w[1]),
        "stop order must be descending priority (leaver, third, second, first); line indices \
         {:?}; log:\n{}",
        stops,
        log
    );
    let sweep = line_index(
        &log,
        &format!(
            "sending SIGTERM to orphaned descendant pid {}",
            orphan[0].pid
        ),
    );
    assert!(
        sweep.is_some_and(|s| s > stops[3].unwrap_or(usize::MAX)),
        "the orphan is swept once every program is down; log:\n{}",
        log
    );
    for p in everyone {
        assert!(
            stat(p.pid).is_none_or(|s| s.starttime != p.starttime),
            "{:?} survived uwgate",
            p
        );
    }
}
