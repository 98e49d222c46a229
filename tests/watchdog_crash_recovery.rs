//! uwgate's own crash does not leave the app unstartable: uwgate supervising the real uWSGI +
//! Django (stopasgroup on) is SIGKILLed under load; the uWSGI master dies with it
//! (PR_SET_PDEATHSIG) but its workers live on as orphans holding the uwsgi socket. A uwgate
//! started again at once on the same configuration finds them through the run-state file,
//! ends them, and Django answers from the new uWSGI within its normal start time, with no
//! process of the old tree left.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uwsgi_support::Json;
use watchdog_support::*;

/// The parent of the uWSGI worker that answered `/pid` on `port`, on a 200.
fn answering_master(port: u16) -> Option<i32> {
    match try_get(port, "/pid", Duration::from_secs(2)) {
        Some((200, body)) => {
            let pid = Json::parse(&String::from_utf8_lossy(&body))
                .get("pid")
                .u64() as i32;
            stat(pid).map(|p| p.ppid)
        }
        _ => None,
    }
}

/// Polls until a worker of the uWSGI master uwgate spawned last (per `log`) answers on `port`;
/// returns how long that took from `since`.
fn wait_new_master_answers(
    port: u16,
    log: &dyn Fn() -> String,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    while since.elapsed() < limit {
        let spawned = spawned_pids(&log(), "django").last().map(|&p| p as i32);
        if let (Some(master), Some(parent)) = (spawned, answering_master(port)) {
            if master == parent {
                return Some(since.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn sigkilled_uwgate_restarted_at_once_ends_the_old_workers_and_serves_django_again() {
    let venv = uwsgi_support::venv();
    let django = uwsgi_support::django_dir();
    let upstream = common::free_port();
    let sections = format!(
        "[location:/]\nuwsgi_pass = 127.0.0.1:{upstream}\n\n\
         [program:django]\n\
         command = {uwsgi} --socket 127.0.0.1:{upstream} --module djangoblog.wsgi --chdir {django} \
         --master --processes 2 --die-on-term --need-app\n\
         environment = DJANGO_SETTINGS_MODULE=\"djangoblog.settings\",\
         UWGATE_TEST_DB=\"{{DIR}}/db.sqlite3\",PYTHONDONTWRITEBYTECODE=\"1\"\n\
         stopsignal = INT\nstopasgroup = true\n",
        uwsgi = venv.join("bin").join("uwsgi").display(),
        django = django.display(),
    );
    let began = Instant::now();
    let gate = Gate::start("wd_crash", &sections, |t| {
        uwsgi_support::fresh_db(t.path());
    });
    let port = gate.server.port;
    let first_took = wait_new_master_answers(
        port,
        &|| gate.log(),
        began,
        uwsgi_support::UWSGI_START_TIMEOUT,
    )
    .unwrap_or_else(|| panic!("Django never answered; log:\n{}", gate.log()));
    let old_master = gate.last_pid("django") as i32;
    let old_tree: Vec<i32> = group_members(old_master).iter().map(|p| p.pid).collect();
    assert!(
        old_tree.len() >= 3,
        "master and two workers: {:?}; log:\n{}",
        old_tree,
        gate.log()
    );
    let state_file = gate.tree.join("tmp/uwgate.state");
    let state = std::fs::read_to_string(&state_file).expect("run state written");
    assert!(
        state.contains(&format!("group {old_master} ")),
        "run state does not record the master's group:\n{state}"
    );

    // Load: clients keep asking Django while uwgate is killed and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    if let Some((200, _)) = try_get(port, "/", Duration::from_secs(2)) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();
    let warm = common::wait_until(Duration::from_secs(10), || {
        answered.load(Ordering::Relaxed) >= 5
    });
    assert!(warm, "no load got through; log:\n{}", gate.log());

    let old_log = gate.log();
    gate.server.signal(libc::SIGKILL);
    let killed = Instant::now();
    // The master follows uwgate (PDEATHSIG); its workers are orphans now.
    let master_gone = common::wait_until(Duration::from_secs(5), || !alive(old_master));
    assert!(master_gone, "the uWSGI master outlived uwgate");
    let orphans: Vec<i32> = old_tree.iter().copied().filter(|&p| alive(p)).collect();
    println!("orphans after the kill: {orphans:?}");

    // At once, on the same configuration (same port, same temp_path and run state).
    let template = mark_programs(&gate_ini(&sections), &gate.mark);
    let mut again = common::Server::spawn(&gate.tree, &template, port)
        .unwrap_or_else(|e| panic!("uwgate did not start again: {e}\nold log:\n{old_log}"));
    let restart_took = wait_new_master_answers(
        port,
        &|| again.stderr(),
        killed,
        uwsgi_support::UWSGI_START_TIMEOUT,
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
    let log = again.stderr();
    println!(
        "Django first answered {first_took:?} after start; after SIGKILL of uwgate and a \
         restart, the new uWSGI answered after {restart_took:?}; {} requests answered under load",
        answered.load(Ordering::Relaxed)
    );
    for line in lines_with(&log, "left by uwgate")
        .into_iter()
        .chain(lines_with(&log, "leftover"))
    {
        println!("{line}");
    }
    let Some(restart_took) = restart_took else {
        panic!("Django never answered from a new uWSGI after the restart; log:\n{log}");
    };
    assert!(
        restart_took <= first_took * 2 + Duration::from_secs(3),
        "the restart took {restart_took:?}, a normal start {first_took:?}; log:\n{log}"
    );
    if !orphans.is_empty() {
        assert!(
            !lines_with(&log, &format!("left by uwgate pid {}", gate.pid())).is_empty(),
            "the clean-up is not logged; log:\n{log}"
        );
    }
    // Nothing of the old tree survives.
    let gone = common::wait_until(Duration::from_secs(3), || {
        old_tree.iter().all(|&p| !alive(p))
    });
    let left: Vec<i32> = old_tree.iter().copied().filter(|&p| alive(p)).collect();
    assert!(gone, "old processes survive: {left:?}; log:\n{log}");
    assert!(
        lines_with(&log, "spawnerr").is_empty() && lines_with(&log, "exited: django").is_empty(),
        "the new uWSGI must start once and stay up; log:\n{log}"
    );

    // The new uwgate stops cleanly and leaves nothing.
    again.signal(libc::SIGTERM);
    let status = again.wait_exit(STOP_TIMEOUT);
    let log = again.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    let left = gate.marked();
    assert!(left.is_empty(), "left behind: {left:?}; log:\n{log}");
    assert!(
        !gate.tree.join("tmp/uwgate.state").exists(),
        "a clean stop leaves no run state"
    );
}

/// Waits for `name`'s first spawn and for its group to hold `members` live processes;
/// returns the group's pids.
fn group_of(gate: &Gate, name: &str, members: usize) -> (i32, Vec<i32>) {
    let leader = gate.expect_spawns(name, 1, Duration::from_secs(5))[0] as i32;
    let ok = common::wait_until(Duration::from_secs(5), || {
        group_members(leader).len() >= members
    });
    assert!(
        ok,
        "group {leader}: {:?}; log:\n{}",
        group_members(leader),
        gate.log()
    );
    (
        leader,
        group_members(leader).iter().map(|p| p.pid).collect(),
    )
}

#[test]
fn leftovers_that_ignore_sigterm_are_sigkilled_after_two_seconds() {
    // The shell ignores SIGTERM and so do its children (an ignored disposition survives exec).
    let sections = "[program:stubborn]\n\
         command = /bin/sh -c 'trap \"\" TERM; sleep 1000 & sleep 1000 & wait'\n\
         startsecs = 0\nstopasgroup = true\nstopwaitsecs = 1\n";
    let gate = Gate::start("wd_stubborn", sections, |_| {});
    let (leader, tree) = group_of(&gate, "stubborn", 3);
    gate.server.signal(libc::SIGKILL);
    let gone = common::wait_until(Duration::from_secs(5), || !alive(leader));
    assert!(gone, "the leader outlived uwgate");

    let template = mark_programs(&gate_ini(sections), &gate.mark);
    let started = Instant::now();
    let mut again = common::Server::spawn(&gate.tree, &template, gate.server.port)
        .unwrap_or_else(|e| panic!("uwgate did not start again: {e}"));
    // It listens at once; the clean-up runs before the loop and its first spawn.
    let cleaned = again.wait_stderr_contains("leftover process(es) gone", Duration::from_secs(8));
    let took = started.elapsed();
    let log = again.stderr();
    assert!(cleaned, "log:\n{log}");
    let old = gate.pid();
    for needle in [
        format!("2 process(es) left by uwgate pid {old} (run state"),
        "2 leftover process(es) still alive 20".to_string(),
        "ms after SIGTERM; sending SIGKILL".to_string(),
        "all 2 leftover process(es) gone".to_string(),
    ] {
        assert!(
            !lines_with(&log, &needle).is_empty(),
            "{needle:?}; log:\n{log}"
        );
    }
    assert!(
        tree.iter().all(|&p| !alive(p)),
        "old processes survive: {:?}",
        tree.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    // Bounded: SIGTERM's 2 s, then SIGKILL's few ms.
    assert!(took < Duration::from_secs(4), "the clean-up took {took:?}");
    println!("clean-up of leftovers ignoring SIGTERM took {took:?}");
    let ok = again.wait_stderr_contains("spawned: 'stubborn'", Duration::from_secs(5));
    let log = again.stderr();
    assert!(ok, "log:\n{log}");
    let cleaned_at = line_index(&log, "leftover process(es) gone");
    assert!(
        cleaned_at.is_some() && cleaned_at < line_index(&log, "spawned: 'stubborn'"),
        "cleaned up before spawning; log:\n{log}"
    );

    again.signal(libc::SIGTERM);
    let status = again.wait_exit(STOP_TIMEOUT);
    let log = again.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    let left = gate.marked();
    assert!(left.is_empty(), "left behind: {left:?}; log:\n{log}");
    assert!(
        !gate.tree.join("tmp/uwgate.state").exists(),
        "a clean stop leaves no run state"
    );
}

#[test]
fn a_second_uwgate_leaves_the_programs_of_a_running_one_alone() {
    let sections = "[program:nap]\ncommand = sleep 1000\nstartsecs = 0\nstopasgroup = true\n";
    let gate = Gate::start("wd_two", sections, |_| {});
    let (nap, _) = group_of(&gate, "nap", 1);
    // Same configuration, same run-state file, another port: a mistake, not a crash.
    let template = mark_programs(&gate_ini(sections), &gate.mark);
    let mut second = common::Server::spawn(&gate.tree, &template, common::free_port())
        .unwrap_or_else(|e| panic!("second uwgate did not start: {e}"));
    let ok = second.wait_stderr_contains("spawned: 'nap'", Duration::from_secs(5));
    let log = second.stderr();
    assert!(ok, "log:\n{log}");
    assert!(
        !lines_with(
            &log,
            &format!(
                "written by uwgate pid {}, which is still running",
                gate.pid()
            )
        )
        .is_empty(),
        "log:\n{log}"
    );
    assert!(lines_with(&log, "left by uwgate").is_empty(), "log:\n{log}");
    assert!(alive(nap), "the running uwgate's program was killed");
    second.signal(libc::SIGTERM);
    assert_eq!(
        second.wait_exit(STOP_TIMEOUT).and_then(|s| s.code()),
        Some(0)
    );
    assert!(alive(nap), "the running uwgate's program was killed");
    // The first one's record is intact: it still names its program's group.
    let state = std::fs::read_to_string(gate.tree.join("tmp/uwgate.state")).unwrap_or_default();
    assert!(
        state.contains(&format!("group {nap} ")),
        "run state:\n{state}"
    );
    gate.finish();
}
