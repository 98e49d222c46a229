//! Crash-to-respawn latency through the real binary: 20 SIGKILLs of RUNNING processes, each
//! timed from the kill to the new child appearing under uwgate in /proc (fork time), checked
//! against the `spawned:` line. Prints the median (`--nocapture`); asserts only a loose bound.
//!
//! Five processes (numprocs = 5) are killed in turn, four rounds: each process is killed only
//! once it has been up over a second, so the one-spawn-a-second throttle never applies and
//! every kill measures the "restart at once" path, in about 5 s instead of 20.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::{Duration, Instant};
use watchdog_support::*;

const PROCS: usize = 5;
const ROUNDS: usize = 4;

#[test]
fn crash_to_respawn_latency_median_of_20_sigkills_is_printed_and_under_500_ms() {
    let gate = Gate::start(
        "wd_latency",
        &format!(
            "[program:victim]\ncommand = /bin/sleep 1000\nprocess_name = victim_%(process_num)02d\n\
             numprocs = {PROCS}\nstartsecs = 1\n"
        ),
        |_| {},
    );
    let names: Vec<String> = (0..PROCS).map(|i| format!("victim_{:02}", i)).collect();
    let mut current: Vec<u32> = names
        .iter()
        .map(|n| gate.expect_spawns(n, 1, Duration::from_secs(3))[0])
        .collect();
    let uwgate = gate.pid();
    let mut latencies_ms = Vec::new();

    for round in 0..ROUNDS {
        for (i, name) in names.iter().enumerate() {
            // RUNNING again (stayed up startsecs = 1 s since its last spawn): no throttle.
            let want = format!("success: {} entered RUNNING state", name);
            assert!(
                common::wait_until(Duration::from_secs(5), || {
                    lines_with(&gate.log(), &want).len() > round
                }),
                "{} not RUNNING again in round {}; log:\n{}",
                name,
                round,
                gate.log()
            );
            let before = child_pids(uwgate);
            let old = current[i];
            assert!(before.contains(&(old as i32)), "{} not a child", old);
            kill(old as i32, libc::SIGKILL);
            let t0 = Instant::now();
            let new = loop {
                let now = child_pids(uwgate);
                if let Some(&p) = now.iter().find(|p| !before.contains(p)) {
                    break p;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "no respawn of {} within 5 s; log:\n{}",
                    name,
                    gate.log()
                );
                std::thread::sleep(Duration::from_micros(200));
            };
            let latency = t0.elapsed();
            latencies_ms.push(latency.as_secs_f64() * 1000.0);
            let pids = gate.expect_spawns(name, round + 2, Duration::from_secs(3));
            assert_eq!(
                pids.last().copied(),
                Some(new as u32),
                "the new child is not the one logged as {}'s spawn",
                name
            );
            current[i] = new as u32;
        }
    }
    let log = gate.log();
    assert_eq!(
        lines_with(&log, "(terminated by SIGKILL; not expected)").len(),
        PROCS * ROUNDS,
        "log:\n{}",
        log
    );
    assert!(
        lines_with(&log, "respawn delayed").is_empty(),
        "a kill hit the throttle, so the measure is off; log:\n{}",
        log
    );
    let med = median(&latencies_ms);
    let max = latencies_ms.iter().cloned().fold(0.0, f64::max);
    let min = latencies_ms.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "crash-to-respawn latency over {} SIGKILLs: median {:.2} ms (min {:.2}, max {:.2}); all: {:.2?}",
        latencies_ms.len(),
        med,
        min,
        max,
        latencies_ms
    );
    assert!(med < 500.0, "median crash-to-respawn latency {:.1} ms", med);
    gate.finish();
}
