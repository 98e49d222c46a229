//! The seed's shape end to end, through the real binary: uwgate supervises pyuwsgi running the
//! Django test app (the `[program:django]` section an integrator pastes from supervisord.conf)
//! and forwards `[location:/]` to it; after the uWSGI master is SIGKILLed, uwgate respawns it
//! at once and serves Django again — from the new master's workers — within a second.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::{Duration, Instant};
use uwsgi_support::Json;
use watchdog_support::*;

/// Which worker answered `/pid` through uwgate: `(worker pid, its parent)`, on a 200.
fn answering_worker(port: u16) -> Option<(i32, i32)> {
    match try_get(port, "/pid", Duration::from_secs(2)) {
        Some((200, body)) => {
            let pid = Json::parse(&String::from_utf8_lossy(&body))
                .get("pid")
                .u64() as i32;
            Some((pid, stat(pid).map_or(0, |p| p.ppid)))
        }
        _ => None,
    }
}

#[test]
fn supervised_uwsgi_serves_django_again_within_a_second_after_its_master_is_killed() {
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
    let gate = Gate::start("wd_django", &sections, |t| {
        uwsgi_support::fresh_db(t.path());
    });
    let port = gate.server.port;
    let master = gate.expect_spawns("django", 1, Duration::from_secs(3))[0] as i32;

    // Django through uwgate.
    let mut last = None;
    let up = common::wait_until(uwsgi_support::UWSGI_START_TIMEOUT, || {
        last = try_get(port, "/", Duration::from_secs(5)).map(|r| r.0);
        last == Some(200)
    });
    assert!(
        up,
        "GET / never 200 (last {:?}); log:\n{}",
        last,
        gate.log()
    );
    let (worker, parent) = answering_worker(port).expect("GET /pid");
    assert_eq!(parent, master, "worker {} is not the master's", worker);
    // RUNNING (up over startsecs = 1 s), so the crash is restarted at once.
    gate.expect_log(
        "success: django entered RUNNING state",
        Duration::from_secs(5),
    );

    kill(master, libc::SIGKILL);
    let killed = Instant::now();
    let mut first_200 = None;
    let mut served_by_new = None;
    let mut old_group_gone = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if old_group_gone.is_none() && group_members(master).is_empty() {
            old_group_gone = Some(killed.elapsed());
        }
        if let Some((_, parent)) = answering_worker(port) {
            first_200.get_or_insert(killed.elapsed());
            // An orphaned worker of the old master may still answer a last request (its parent
            // is then uwgate, the subreaper): only the respawned master's workers count.
            let respawned = spawned_pids(&gate.log(), "django")
                .last()
                .map(|&p| p as i32)
                .filter(|&p| p != master);
            if respawned.is_some() && Some(parent) == respawned {
                served_by_new = Some((killed.elapsed(), parent));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = gate.log();
    println!(
        "uWSGI master SIGKILLed: first 200 after {:?}, first 200 from the new master after {:?}; \
         old workers all gone after {:?}",
        first_200,
        served_by_new.map(|s| s.0),
        old_group_gone
    );
    let Some((took, new_master)) = served_by_new else {
        panic!(
            "no 200 from a new uWSGI within 10 s of the kill (first 200: {:?}); log:\n{}",
            first_200, log
        );
    };
    assert_eq!(
        new_master as u32,
        gate.last_pid("django"),
        "the answering worker's parent is not the respawned master; log:\n{}",
        log
    );
    assert!(
        !lines_with(&log, "exited: django (terminated by SIGKILL; not expected)").is_empty(),
        "log:\n{}",
        log
    );
    assert!(
        took < Duration::from_secs(1),
        "Django served again {:?} after the master was killed (want < 1 s); log:\n{}",
        took,
        log
    );
    // The old master's workers do not linger (they leave when their master goes).
    let gone = common::wait_until(Duration::from_secs(5), || group_members(master).is_empty());
    assert!(
        gone,
        "old uWSGI workers linger: {:?}",
        group_members(master)
    );
    gate.assert_no_zombies();
    let log = gate.finish();
    assert!(
        !lines_with(&log, "stopped: django").is_empty(),
        "log:\n{}",
        log
    );
}
