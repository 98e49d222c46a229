//! Failed starts and crash loops through the real binary: a program that exits before
//! startsecs goes STARTING → BACKOFF → … → FATAL with retries after 1 s, 2 s, 3 s; a crash loop
//! with startsecs = 0 and autorestart = true is throttled to one spawn a second.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::Duration;
use watchdog_support::*;

/// `stamp.sh FILE CODE`: appends the wall-clock time of its start to FILE, exits with CODE.
/// The program's own clock times each spawn to the millisecond (uwgate's stderr timestamps have
/// whole seconds only, and a log poll would add its own lag).
const STAMP_SH: &str = "date +%s.%N >> \"$1\"\nexit \"$2\"\n";

/// The start times `stamp.sh` recorded, in seconds.
fn stamps(tree: &common::TempTree) -> Vec<f64> {
    std::fs::read_to_string(tree.join("starts"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn gaps(times: &[f64]) -> Vec<f64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn program_exiting_at_once_is_retried_after_1_2_3_seconds_then_goes_fatal() {
    let gate = Gate::start(
        "wd_backoff",
        "[program:quitter]\ncommand = /bin/sh {DIR}/stamp.sh {DIR}/starts 1\n\
         startsecs = 1\nstartretries = 3\n",
        |t| {
            t.write("stamp.sh", STAMP_SH);
        },
    );
    // 1 + 2 + 3 s of backoff, plus slack.
    gate.expect_log(
        "gave up: quitter entered FATAL state, too many start retries too quickly",
        Duration::from_secs(10),
    );
    // Nothing more after FATAL: no fifth spawn.
    std::thread::sleep(Duration::from_millis(1500));
    let log = gate.log();
    let pids = spawned_pids(&log, "quitter");
    assert_eq!(
        pids.len(),
        4,
        "startretries = 3 means the first start and 3 retries; log:\n{}",
        log
    );
    let times = stamps(&gate.tree);
    assert_eq!(
        times.len(),
        4,
        "starts recorded: {:?}; log:\n{}",
        times,
        log
    );
    let g = gaps(&times);
    println!("backoff gaps between spawns: {:?} s", g);
    for (i, (got, want)) in g.iter().zip([1.0, 2.0, 3.0]).enumerate() {
        assert!(
            *got >= want - 0.05 && *got <= want + 0.5,
            "retry #{} came {:.3} s after the previous start, expected {} s (all gaps {:?}); log:\n{}",
            i + 1,
            got,
            want,
            g,
            log
        );
    }
    // The stderr timestamps (whole seconds) of the spawned lines agree: 1, 2, 3 s apart ± 1 s.
    let secs: Vec<i64> = lines_with(&log, "spawned: 'quitter'")
        .iter()
        .map(|l| stderr_secs(l))
        .collect();
    for (w, want) in secs.windows(2).zip([1, 2, 3]) {
        let d = w[1] - w[0];
        assert!(
            (want - 1..=want + 1).contains(&d),
            "spawned lines stamped {:?}; log:\n{}",
            secs,
            log
        );
    }
    assert_eq!(
        lines_with(&log, "exited: quitter (exit status 1; not expected)").len(),
        4,
        "each failed start is logged in supervisor's words; log:\n{}",
        log
    );
    assert!(
        lines_with(&log, "success: quitter").is_empty(),
        "it never stayed up startsecs, so it was never RUNNING; log:\n{}",
        log
    );
    let last_exit = log
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains("exited: quitter"))
        .expect("exit line");
    let gave_up = line_index(&log, "gave up: quitter").expect("gave up line");
    assert!(
        last_exit < gave_up,
        "FATAL follows the last exit; log:\n{}",
        log
    );
    gate.finish();
}

/// Seconds of the day of a stderr line `YYYY/MM/DD hh:mm:ss [level] …`.
fn stderr_secs(line: &str) -> i64 {
    let time = line.split_whitespace().nth(1).unwrap_or("");
    time.split(':')
        .map(|f| f.parse::<i64>().unwrap_or(0))
        .fold(0, |acc, f| acc * 60 + f)
}

#[test]
fn crash_loop_with_startsecs_zero_is_spawned_at_most_once_a_second() {
    let gate = Gate::start(
        "wd_crashloop",
        "[program:crasher]\ncommand = /bin/sh {DIR}/stamp.sh {DIR}/starts 3\n\
         startsecs = 0\nautorestart = true\n",
        |t| {
            t.write("stamp.sh", STAMP_SH);
        },
    );
    // Watch ~4 s of the loop, counted from its first start.
    assert!(
        common::wait_until(Duration::from_secs(3), || !stamps(&gate.tree).is_empty()),
        "never started; log:\n{}",
        gate.log()
    );
    let first = stamps(&gate.tree)[0];
    std::thread::sleep(Duration::from_millis(4300));
    let log = gate.log();
    let times: Vec<f64> = stamps(&gate.tree)
        .into_iter()
        .filter(|t| *t <= first + 4.2)
        .collect();
    let g = gaps(&times);
    println!(
        "crash loop: {} starts in 4.2 s, gaps {:?} s",
        times.len(),
        g
    );
    // t = 0, 1, 2, 3, 4: five at most; a loop that did not throttle would spawn hundreds.
    assert!(
        times.len() <= 5,
        "{} starts in 4.2 s (gaps {:?}); log:\n{}",
        times.len(),
        g,
        log
    );
    // It keeps restarting (startsecs = 0: RUNNING at once, so never FATAL).
    assert!(
        times.len() >= 4,
        "only {} starts in 4.2 s (gaps {:?}); log:\n{}",
        times.len(),
        g,
        log
    );
    for got in &g {
        assert!(
            *got >= 0.95,
            "two starts {:.3} s apart (gaps {:?}); log:\n{}",
            got,
            g,
            log
        );
    }
    assert!(
        lines_with(&log, "gave up: crasher").is_empty(),
        "a program RUNNING at once never goes FATAL; log:\n{}",
        log
    );
    assert!(
        lines_with(&log, "exited: crasher (exit status 3; not expected)").len() >= 3,
        "log:\n{}",
        log
    );
    assert!(
        !lines_with(&log, "crasher: respawn delayed").is_empty(),
        "the throttle says why the restart waits; log:\n{}",
        log
    );
    gate.finish();
}
