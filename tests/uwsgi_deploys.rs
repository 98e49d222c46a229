//! Deploys no user notices, with the real pyuwsgi + Django behind uwgate: under a wrk-style load
//! (keep-alive clients in a bounded loop), 10 `uwgate ctl reload-program django` (uWSGI's
//! graceful SIGHUP reload: same master, new workers) and 3 `uwgate ctl restart django` (a new
//! master) fail no request — requests for the `uwsgi_program` location wait while the program
//! restarts instead of getting 502. Requests sent while the program is still STARTING wait too;
//! a program that never becomes ready gives 504 after `uwsgi_connect_timeout`, with the count
//! visible in the JSON status page; one stopped on purpose gives 502 at once. uWSGI's stderr
//! goes out at the priority `stderr_syslog_priority` says.

#[path = "common/mod.rs"]
mod common;
#[path = "control_support/mod.rs"]
mod control_support;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use control_support::*;
use std::time::{Duration, Instant};
use watchdog_support::{try_get, Gate};

/// The location and program, as the appliance's ini has them (plus `binary-path`, which
/// pyuwsgi in a virtualenv needs to re-exec itself on a graceful reload).
fn django_sections(upstream: u16) -> String {
    let venv = uwsgi_support::venv();
    format!(
        "[location:/]\nuwsgi_pass = 127.0.0.1:{upstream}\nuwsgi_program = django\n\n\
         [location:/uwgate_status]\nstub_status = on\n\n\
         [program:django]\n\
         command = {uwsgi} --socket 127.0.0.1:{upstream} --module djangoblog.wsgi:application \
         --chdir {django} --master --processes 2 --die-on-term --need-app --disable-logging \
         --binary-path {python}\n\
         environment = DJANGO_SETTINGS_MODULE=\"djangoblog.settings\",\
         UWGATE_TEST_DB=\"{{DIR}}/db.sqlite3\",PYTHONDONTWRITEBYTECODE=\"1\"\n\
         stopsignal = INT\nstopasgroup = true\nready = tcp:127.0.0.1:{upstream}\n\
         stderr_syslog_priority = info\n",
        uwsgi = venv.join("bin").join("uwsgi").display(),
        python = venv.join("bin").join("python3").display(),
        django = uwsgi_support::django_dir().display(),
    )
}

fn start_django(name: &str) -> Gate {
    let upstream = common::free_port();
    Gate::start_with_global(name, CONTROL_GLOBAL, &django_sections(upstream), |t| {
        uwsgi_support::fresh_db(t.path());
    })
}

fn wait_django(gate: &Gate) {
    let port = gate.server.port;
    let up = common::wait_until(uwsgi_support::UWSGI_START_TIMEOUT, || {
        try_get(port, "/pid", Duration::from_secs(5)).is_some_and(|r| r.0 == 200)
    });
    assert!(up, "Django never answered; log:\n{}", gate.log());
}

/// The uWSGI master's pid, from `ctl status`.
fn master(gate: &Gate) -> u32 {
    let r = ctl(&gate.server.ini, &["status", "django"]);
    let (state, desc) = status_of(&r.out, "django").expect("django's status line");
    assert_eq!(state, "RUNNING", "{r:?}");
    pid_in(&desc).expect("pid in the description")
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn ten_reload_programs_under_load_fail_no_request_and_keep_the_master() {
    let gate = start_django("deploy_reload");
    wait_django(&gate);
    let first_master = master(&gate);
    let load = Load::start(gate.server.port, "/pid", 8);
    assert!(common::wait_until(Duration::from_secs(10), || load.ok() > 50));
    const RELOADED: &str = "gracefully (RE)spawned uWSGI master process";
    for i in 0..10 {
        let before = load.ok();
        let r = ctl(&gate.server.ini, &["reload-program", "django"]);
        assert_eq!((r.code, r.lines()), (0, vec!["django: reloading"]), "{r:?}");
        // The reload is done once the re-exec'd master spawned its workers and they answer.
        let done = common::wait_until(Duration::from_secs(60), || {
            count(&gate.log(), RELOADED) > i && load.ok() > before + 20
        });
        assert!(
            done,
            "reload {} did not complete; log:\n{}",
            i + 1,
            gate.log()
        );
    }
    let tally = load.finish();
    assert_eq!(
        tally.failed, 0,
        "failed requests across 10 reload-program: {tally:?}"
    );
    assert!(tally.ok > 200, "{tally:?}");
    assert_eq!(
        master(&gate),
        first_master,
        "a graceful reload keeps the master"
    );
    let log = gate.log();
    assert_eq!(
        count(&log, "exited: django"),
        0,
        "no exit, no restart:\n{log}"
    );
    eprintln!(
        "10 reload-program under load: {} requests, 0 failed",
        tally.ok
    );
    gate.finish();
}

#[test]
fn three_restarts_under_load_fail_no_request() {
    let gate = start_django("deploy_restart");
    wait_django(&gate);
    let load = Load::start(gate.server.port, "/pid", 8);
    assert!(common::wait_until(Duration::from_secs(10), || load.ok() > 50));
    let mut masters = vec![master(&gate)];
    for i in 0..3 {
        let before = load.ok();
        let r = ctl(&gate.server.ini, &["restart", "django"]);
        assert_eq!(
            (r.code, r.lines()),
            (0, vec!["django: stopped", "django: started"]),
            "restart {}: {r:?}",
            i + 1
        );
        masters.push(master(&gate));
        let served = common::wait_until(Duration::from_secs(60), || load.ok() > before + 50);
        assert!(
            served,
            "no answers after restart {}; log:\n{}",
            i + 1,
            gate.log()
        );
    }
    let tally = load.finish();
    assert_eq!(
        tally.failed, 0,
        "failed requests across 3 restarts: {tally:?}"
    );
    masters.dedup();
    assert_eq!(
        masters.len(),
        4,
        "each restart ran a new master: {masters:?}"
    );
    eprintln!("3 restarts under load: {} requests, 0 failed", tally.ok);
    gate.finish();
}

#[test]
fn requests_sent_while_django_starts_wait_for_it_and_its_stderr_is_info() {
    // The load begins as soon as uwgate listens: Django is still STARTING.
    let gate = start_django("deploy_starting");
    let load = Load::start(gate.server.port, "/pid", 4);
    let served = common::wait_until(uwsgi_support::UWSGI_START_TIMEOUT, || load.ok() > 40);
    let tally = load.finish();
    assert!(served, "{tally:?}; log:\n{}", gate.log());
    assert_eq!(tally.failed, 0, "no 502 while it started: {tally:?}");
    let log = gate.log();
    assert!(
        log.contains("[info] django["),
        "uWSGI's stderr at info:\n{log}"
    );
    assert!(
        !log.contains("[error] django["),
        "nothing of uWSGI's at err:\n{log}"
    );
    gate.finish();
}

#[test]
fn a_program_that_never_gets_ready_gives_504_and_one_stopped_gives_502_at_once() {
    // A program that runs but never listens on its socket: STARTING until ready_timeout.
    let upstream = common::free_port();
    let sections = format!(
        "[location:/]\nuwsgi_pass = 127.0.0.1:{upstream}\nuwsgi_program = app\nuwsgi_connect_timeout = 2s\n\n\
         [location:/uwgate_status]\nstub_status = on\n\n\
         [program:app]\ncommand = /bin/sleep 600\nready = tcp:127.0.0.1:{upstream}\nready_timeout = 5m\n"
    );
    let gate = Gate::start_with_global("deploy_never_ready", CONTROL_GLOBAL, &sections, |_| {});
    let port = gate.server.port;
    gate.expect_spawns("app", 1, Duration::from_secs(5));
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        (try_get(port, "/x", Duration::from_secs(10)), t.elapsed())
    });
    let counted = common::wait_until(Duration::from_secs(2), || {
        try_get(port, "/uwgate_status?format=json", Duration::from_secs(2))
            .is_some_and(|(_, b)| String::from_utf8_lossy(&b).contains("\"awaiting_program\":1"))
    });
    let (answer, took) = waiter.join().unwrap();
    assert!(counted, "the waiting request shows in the status page");
    assert_eq!(
        answer.map(|a| a.0),
        Some(504),
        "after uwsgi_connect_timeout"
    );
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    gate.expect_log(
        "program app not ready within uwsgi_connect_timeout (2 s)",
        Duration::from_secs(2),
    );
    let page = try_get(port, "/uwgate_status?format=json", Duration::from_secs(2)).unwrap();
    assert!(String::from_utf8_lossy(&page.1).contains("\"awaiting_program\":0"));

    let r = ctl(&gate.server.ini, &["stop", "app"]);
    assert_eq!(r.lines(), vec!["app: stopped"]);
    let t = Instant::now();
    let answer = try_get(port, "/x", Duration::from_secs(10));
    assert_eq!(
        answer.map(|a| a.0),
        Some(502),
        "stopped on purpose: no wait"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    gate.finish();
}
