//! Start order that waits for readiness, through the real binary: `depends_on` holds a program
//! back until what it depends on is RUNNING, and `ready = tcp:HOST:PORT` makes RUNNING mean
//! "accepts connections" — a dependency that takes 2 s to listen delays its dependent by 2 s.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::time::Duration;
use watchdog_support::*;

/// `late_listener.py PORT STAMP`: sleeps 2 s, listens on 127.0.0.1:PORT, then writes the time
/// it started listening to STAMP and accepts (and closes) connections forever.
const LATE_LISTENER_PY: &str = r#"import socket, sys, time
time.sleep(2)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
with open(sys.argv[2], "w") as f:
    f.write(repr(time.time()))
while True:
    c, _ = s.accept()
    c.close()
"#;

/// `dependent.py STAMP`: writes the time it started to STAMP, then sleeps.
const DEPENDENT_PY: &str = r#"import sys, time
with open(sys.argv[1], "w") as f:
    f.write(repr(time.time()))
time.sleep(1000)
"#;

fn read_stamp(tree: &common::TempTree, name: &str) -> Option<f64> {
    std::fs::read_to_string(tree.join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn dependent_starts_only_once_its_dependency_accepts_connections() {
    let db_port = common::free_port();
    let sections = format!(
        "[program:app]\ncommand = {{PY}} {{DIR}}/dependent.py {{DIR}}/app.stamp\n\
         depends_on = db\n\n\
         [program:db]\ncommand = {{PY}} {{DIR}}/late_listener.py {port} {{DIR}}/db.stamp\n\
         ready = tcp:127.0.0.1:{port}\nready_timeout = 20s\n",
        port = db_port
    );
    let gate = Gate::start("wd_ready", &sections, |t| {
        t.write("late_listener.py", LATE_LISTENER_PY);
        t.write("dependent.py", DEPENDENT_PY);
    });
    gate.expect_spawns("db", 1, Duration::from_secs(3));

    // While db sleeps before listening, app must not be spawned.
    let mut held_back_checks = 0;
    while read_stamp(&gate.tree, "db.stamp").is_none() {
        let log = gate.log();
        if spawned_pids(&log, "app").is_empty() {
            held_back_checks += 1;
        } else {
            // Spawned: it must be because db listens now (its stamp may lag by a few µs).
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                read_stamp(&gate.tree, "db.stamp").is_some(),
                "app was spawned while db was not listening yet; log:\n{}",
                log
            );
            break;
        }
        assert!(
            held_back_checks < 500,
            "db never listened; log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        held_back_checks > 10,
        "the 2 s before db listens were barely observed ({} checks); log:\n{}",
        held_back_checks,
        gate.log()
    );
    gate.expect_spawns("app", 1, Duration::from_secs(5));
    assert!(
        common::wait_until(Duration::from_secs(3), || read_stamp(
            &gate.tree,
            "app.stamp"
        )
        .is_some()),
        "app never ran; log:\n{}",
        gate.log()
    );
    let db_listened = read_stamp(&gate.tree, "db.stamp").expect("db stamp");
    let app_started = read_stamp(&gate.tree, "app.stamp").expect("app stamp");
    let log = gate.log();
    println!(
        "app started {:.0} ms after db began listening",
        (app_started - db_listened) * 1000.0
    );
    assert!(
        app_started >= db_listened,
        "app started {:.3} s before db listened; log:\n{}",
        db_listened - app_started,
        log
    );
    // The ready probe is retried inside the loop: the dependent follows promptly.
    assert!(
        app_started - db_listened < 2.0,
        "app started {:.3} s after db listened; log:\n{}",
        app_started - db_listened,
        log
    );
    let waiting = line_index(&log, "app: waiting for db to be RUNNING (depends_on = db;");
    let db_ready = line_index(
        &log,
        &format!(
            "success: db entered RUNNING state, tcp:127.0.0.1:{} accepts connections (ready)",
            db_port
        ),
    );
    let app_spawned = line_index(&log, "spawned: 'app' with pid");
    assert!(
        waiting.is_some() && db_ready.is_some() && app_spawned.is_some(),
        "log:\n{}",
        log
    );
    assert!(
        waiting < db_ready && db_ready < app_spawned,
        "expected: app waiting, db RUNNING (ready), then app spawned; log:\n{}",
        log
    );
    // db spawned once: the probe's refused connects are not failures of the program.
    assert_eq!(spawned_pids(&log, "db").len(), 1, "log:\n{}", log);
    gate.finish();
}
