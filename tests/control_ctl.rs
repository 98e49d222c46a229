//! `uwgate ctl` against a running uwgate through its control socket: supervisorctl's verbs,
//! its output lines and its exit codes; `tail` (with `-f`) from the in-memory output ring;
//! `reread`/`update`/`reload` following the file; refusal of a uid that is neither root nor in
//! `control_socket_group` (both layers: the socket file's mode, then SO_PEERCRED); the wire
//! format (HTTP/1.1 + JSON, so `curl --unix-socket` works); `shutdown`.

#[path = "common/mod.rs"]
mod common;
#[path = "control_support/mod.rs"]
mod control_support;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use control_support::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use watchdog_support::Gate;

/// A sleeper, a two-process group that does not autostart, and a program that exits at once.
const PROGRAMS: &str =
    "[program:sleeper]\ncommand = /bin/sleep 600\nstartsecs = 300ms\nstopsignal = TERM\n\n\
     [program:web]\ncommand = /bin/sleep 600\nprocess_name = web_%(process_num)02d\nnumprocs = 2\n\
     autostart = false\nstartsecs = 200ms\n\n\
     [program:once]\ncommand = /bin/true\nstartsecs = 0\nautorestart = false\n";

fn start(name: &str, sections: &str) -> Gate {
    let gate = Gate::start_with_global(name, CONTROL_GLOBAL, sections, |_| {});
    gate.expect_log(
        "success: sleeper entered RUNNING state",
        Duration::from_secs(10),
    );
    gate
}

fn socket(gate: &Gate) -> PathBuf {
    gate.tree.join("ctl.sock")
}

#[test]
fn status_prints_supervisorctl_lines_and_exits_3_when_one_is_down_and_4_for_an_unknown_name() {
    let gate = start("ctl_status", PROGRAMS);
    let ini = &gate.server.ini;
    gate.expect_log(
        "exited: once (exit status 0; expected)",
        Duration::from_secs(5),
    );
    let all = ctl(ini, &["status"]);
    assert_eq!(all.code, 3, "a process is not running: {all:?}");
    let lines = all.lines();
    assert_eq!(lines.len(), 4, "{all:?}");
    // Name padded to 33 columns, state to 10, then the description — byte for byte.
    let sleeper = lines
        .iter()
        .find(|l| l.starts_with("sleeper "))
        .expect("sleeper line");
    let pid = gate.last_pid("sleeper");
    assert!(
        sleeper.starts_with(&format!(
            "{:<33}{:<10}pid {pid}, uptime 0:00:0",
            "sleeper", "RUNNING"
        )),
        "{sleeper:?}"
    );
    assert!(
        lines.contains(&format!("{:<33}{:<10}Not started", "web:web_00", "STOPPED").as_str()),
        "{all:?}"
    );
    let once = lines
        .iter()
        .find(|l| l.starts_with("once "))
        .expect("once line");
    assert!(
        once.starts_with(&format!("{:<33}{:<10}", "once", "EXITED")),
        "{once:?}"
    );
    assert!(
        once.ends_with(" AM") || once.ends_with(" PM"),
        "stop time like 'Dec 04 07:03 AM': {once:?}"
    );

    let one = ctl(ini, &["status", "sleeper"]);
    assert_eq!((one.code, one.lines().len()), (0, 1), "{one:?}");
    let group = ctl(ini, &["status", "web:*"]);
    assert_eq!((group.code, group.lines().len()), (3, 2), "{group:?}");
    let unknown = ctl(ini, &["status", "nosuch"]);
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert_eq!(unknown.lines(), vec!["nosuch: ERROR (no such process)"]);
    let unknown_group = ctl(ini, &["status", "nosuch:*", "sleeper"]);
    assert_eq!(unknown_group.code, 4, "{unknown_group:?}");
    assert_eq!(unknown_group.lines()[0], "nosuch: ERROR (no such group)");
    gate.finish();
}

#[test]
fn start_stop_restart_answer_once_done_with_supervisorctls_lines_and_codes() {
    let gate = start(
        "ctl_start_stop",
        &format!("{PROGRAMS}\n[program:crasher]\ncommand = /bin/false\nautostart = false\nstartsecs = 1\nstartretries = 0\n"),
    );
    let ini = &gate.server.ini;
    let r = ctl(ini, &["start", "web:*"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["web:web_00: started", "web:web_01: started"]),
        "{r:?}"
    );
    let r = ctl(ini, &["status", "web:web_00"]);
    assert!(
        r.out.contains("RUNNING"),
        "start answered once RUNNING: {r:?}"
    );
    let r = ctl(ini, &["start", "sleeper"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["sleeper: ERROR (already started)"])
    );
    let r = ctl(ini, &["start", "nosuch"]);
    assert_eq!(
        (r.code, r.lines()),
        (1, vec!["nosuch: ERROR (no such process)"])
    );
    let r = ctl(ini, &["start"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.lines()[0], "Error: start requires a process name");

    let r = ctl(ini, &["stop", "web:web_00"]);
    assert_eq!((r.code, r.lines()), (0, vec!["web:web_00: stopped"]));
    assert!(
        ctl(ini, &["status", "web:web_00"]).out.contains("STOPPED"),
        "stop answered once stopped"
    );
    let r = ctl(ini, &["stop", "web:web_00"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["web:web_00: ERROR (not running)"])
    );

    let before = gate.last_pid("sleeper");
    let r = ctl(ini, &["restart", "sleeper"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["sleeper: stopped", "sleeper: started"]),
        "{r:?}"
    );
    assert_ne!(gate.last_pid("sleeper"), before, "a new child");
    let r = ctl(ini, &["restart", "web:web_00"]);
    assert_eq!(
        r.lines(),
        vec!["web:web_00: ERROR (not running)", "web:web_00: started"]
    );

    // A program that cannot stay up: supervisorctl's "spawn error", exit 7.
    let r = ctl(ini, &["start", "crasher"]);
    assert_eq!(
        (r.code, r.lines()),
        (7, vec!["crasher: ERROR (spawn error)"]),
        "{r:?}"
    );

    // `stop all` names only what runs (as supervisorctl's stopAllProcesses).
    let r = ctl(ini, &["stop", "all"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut got = r.lines();
    got.sort();
    assert_eq!(
        got,
        vec![
            "sleeper: stopped",
            "web:web_00: stopped",
            "web:web_01: stopped"
        ]
    );
    assert_eq!(ctl(ini, &["status"]).code, 3);
    let r = ctl(ini, &["start", "all"]);
    assert!(r.lines().contains(&"sleeper: started"), "{r:?}");
    gate.finish();
}

#[test]
fn signal_pid_version_and_reload_program() {
    let trap = "[program:trapper]\ncommand = /bin/sh -c 'trap \"echo got USR1\" USR1; trap \"echo got HUP\" HUP; while :; do sleep 0.05; done'\nstartsecs = 200ms\nreloadsignal = HUP\n";
    let gate = start("ctl_signal", &format!("{PROGRAMS}\n{trap}"));
    gate.expect_log(
        "success: trapper entered RUNNING state",
        Duration::from_secs(10),
    );
    let ini = &gate.server.ini;
    let r = ctl(ini, &["signal", "USR1", "trapper"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["trapper: signalled"]),
        "{r:?}"
    );
    gate.expect_log("trapper[", Duration::from_secs(5));
    let r = ctl(ini, &["reload-program", "trapper"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["trapper: reloading"]),
        "{r:?}"
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || ctl(ini, &["tail", "trapper"])
            .out
            .contains("got HUP")),
        "the reload signal reached it"
    );
    assert!(ctl(ini, &["tail", "trapper"]).out.contains("got USR1"));
    let r = ctl(ini, &["signal", "FOO", "trapper", "sleeper"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.lines(),
        vec![
            "trapper: ERROR (bad signal name)",
            "sleeper: ERROR (bad signal name)"
        ]
    );
    let r = ctl(ini, &["signal", "HUP", "web:web_00"]);
    assert_eq!(
        (r.code, r.lines()),
        (7, vec!["web:web_00: ERROR (not running)"])
    );
    let r = ctl(ini, &["signal", "HUP"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.lines()[0],
        "Error: signal requires a signal name and a process name"
    );

    assert_eq!(ctl(ini, &["pid"]).out.trim(), gate.pid().to_string());
    assert_eq!(
        ctl(ini, &["pid", "sleeper"]).out.trim(),
        gate.last_pid("sleeper").to_string()
    );
    assert_eq!(ctl(ini, &["pid", "web:web_00"]).out.trim(), "0");
    let r = ctl(ini, &["pid", "nosuch"]);
    assert_eq!((r.code, r.out.as_str()), (1, "No such process nosuch\n"));
    let r = ctl(ini, &["version"]);
    assert_eq!((r.code, r.out.trim()), (0, common::version()));
    let r = ctl(ini, &["frobnicate"]);
    assert_eq!(
        (r.code, r.out.trim()),
        (1, "*** Unknown syntax: frobnicate")
    );
    gate.finish();
}

#[test]
fn tail_reads_the_output_ring_and_tail_f_follows_new_lines() {
    let talker = "[program:talker]\ncommand = /bin/sh -c 'i=0; while :; do i=$((i+1)); echo line $i; echo err $i >&2; sleep 0.1; done'\nstartsecs = 200ms\noutput_buffer_size = 4k\n";
    let gate = start("ctl_tail", &format!("{PROGRAMS}\n{talker}"));
    let ini = &gate.server.ini;
    assert!(common::wait_until(Duration::from_secs(5), || ctl(
        ini,
        &["tail", "talker"]
    )
    .out
    .contains("line 5\n")));
    let r = ctl(ini, &["tail", "talker"]);
    assert_eq!(r.code, 0);
    assert!(
        r.out.ends_with("\n\n"),
        "the output, then supervisorctl's own newline: {:?}",
        r.out
    );
    assert!(
        r.out
            .lines()
            .all(|l| l.is_empty() || l.starts_with("line ")),
        "stdout only: {:?}",
        r.out
    );
    let r = ctl(ini, &["tail", "talker", "stderr"]);
    assert!(
        r.out.starts_with("err ") || r.out.contains("\nerr "),
        "{r:?}"
    );
    assert!(!r.out.contains("line "), "{r:?}");
    let r = ctl(ini, &["tail", "-n", "2", "talker"]);
    assert_eq!(r.out.lines().filter(|l| !l.is_empty()).count(), 2, "{r:?}");
    let r = ctl(ini, &["tail", "-8", "talker"]);
    assert_eq!(r.out.len(), 8 + 1, "the last 8 bytes: {r:?}");
    // The ring keeps the last 4k only, however much was written.
    let r = ctl(ini, &["tail", "-100000", "talker"]);
    assert!(r.out.len() <= 4096 + 1, "{}", r.out.len());
    let r = ctl(ini, &["tail", "nosuch"]);
    assert_eq!(
        (r.code, r.lines()),
        (1, vec!["nosuch: ERROR (no such process name)"])
    );
    let r = ctl(ini, &["tail", "talker", "stdin"]);
    assert_eq!((r.code, r.lines()), (1, vec!["Error: bad channel 'stdin'"]));
    let r = ctl(ini, &["tail"]);
    assert_eq!((r.code, r.lines()[0]), (1, "Error: too few arguments"));

    // -f: the head line, then new lines as they come, until the client goes (Ctrl-C).
    let mut follower = std::process::Command::new(common::uwgate_bin())
        .args(["ctl", "-c"])
        .arg(ini)
        .args(["tail", "-f", "talker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tail -f");
    let mut out = follower.stdout.take().expect("stdout");
    let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = collected.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let new_lines = |text: &str| text.lines().filter(|l| l.starts_with("line ")).count();
    let first = Instant::now();
    let mut seen = 0;
    while first.elapsed() < Duration::from_secs(10) {
        seen = new_lines(&String::from_utf8_lossy(&collected.lock().unwrap()));
        if seen >= 25 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: SIGINT to our own child, as a Ctrl-C.
    unsafe { libc::kill(follower.id() as i32, libc::SIGINT) };
    let _ = follower.wait();
    let _ = reader.join();
    let text = String::from_utf8_lossy(&collected.lock().unwrap()).into_owned();
    assert!(
        text.starts_with("==> Press Ctrl-C to exit <==\n"),
        "{text:?}"
    );
    assert!(
        seen >= 25,
        "tail -f followed only {seen} lines in 10 s: {text:?}"
    );
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost: {numbers:?}"
    );
    // The session ended with its client: every slot is free again.
    for _ in 0..10 {
        assert_eq!(ctl(ini, &["status", "talker"]).code, 0);
    }
    gate.finish();
}

#[test]
fn reread_update_and_reload_follow_the_file() {
    let gate = start("ctl_update", PROGRAMS);
    let ini = &gate.server.ini;
    let r = ctl(ini, &["reread"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["No config updates to processes"])
    );
    let before = gate.last_pid("sleeper");
    // sleeper changes, web goes, extra comes.
    let changed = "[program:sleeper]\ncommand = /bin/sleep 601\nstartsecs = 300ms\n\n\
         [program:once]\ncommand = /bin/true\nstartsecs = 0\nautorestart = false\n\n\
         [program:extra]\ncommand = /bin/sleep 602\nstartsecs = 0\n";
    let write = |sections: &str| {
        gate.server.rewrite_ini(&watchdog_support::mark_programs(
            &watchdog_support::gate_ini_with(CONTROL_GLOBAL, sections),
            &gate.mark,
        ))
    };
    write(changed);
    let r = ctl(ini, &["reread"]);
    assert_eq!(
        (r.code, r.lines()),
        (
            0,
            vec!["extra: available", "sleeper: changed", "web: disappeared"]
        ),
        "{r:?}"
    );
    let r = ctl(ini, &["update", "nosuch"]);
    assert_eq!(
        (r.code, r.lines()),
        (1, vec!["ERROR: no such group: nosuch"])
    );
    let r = ctl(ini, &["update", "extra"]);
    assert_eq!(
        (r.code, r.lines()),
        (0, vec!["extra: added process group"]),
        "{r:?}"
    );
    assert_eq!(
        gate.last_pid("sleeper"),
        before,
        "only the named program changed"
    );
    let r = ctl(ini, &["update"]);
    assert_eq!(
        (r.code, r.lines()),
        (
            0,
            vec![
                "web: stopped",
                "web: removed process group",
                "sleeper: stopped",
                "sleeper: updated process group"
            ]
        ),
        "{r:?}"
    );
    let status = ctl(ini, &["status"]);
    assert!(!status.out.contains("web"), "{status:?}");
    assert!(common::wait_until(Duration::from_secs(5), || {
        status_of(&ctl(ini, &["status"]).out, "sleeper").is_some_and(|(s, _)| s == "RUNNING")
    }));
    assert_ne!(gate.last_pid("sleeper"), before);

    // reload: uwgate's own configuration, with the error the file has.
    let good = std::fs::read_to_string(ini).unwrap();
    let bad_line = good.lines().count() + 1;
    std::fs::write(ini, format!("{good}[program:broken\n")).unwrap();
    let r = ctl(ini, &["reload"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.out.starts_with("ERROR: ") && r.out.contains(&format!("uwgate.ini:{bad_line}: ")),
        "the running uwgate's error, though ctl could not parse the file either: {r:?}"
    );
    let r = ctl(ini, &["reread"]);
    assert!(r.out.starts_with("ERROR: CANT_REREAD: "), "{r:?}");
    write(changed);
    let r = ctl(ini, &["reload"]);
    assert_eq!((r.code, r.lines()), (0, vec!["Reloaded uwgate"]), "{r:?}");
    gate.expect_log("configuration reloaded from", Duration::from_secs(5));
    gate.finish();
}

#[test]
fn a_uid_neither_root_nor_in_the_group_is_refused_and_logged() {
    // The socket file: 0600 by default, so another uid cannot even connect.
    let gate = start("ctl_refused", PROGRAMS);
    let sock = socket(&gate);
    let mode = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600));
    let r = ctl_as(65534, 65534, &[], &sock, &["status"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.out.contains("permission denied"), "{r:?}");
    gate.finish();

    // A socket everyone may open: SO_PEERCRED decides. nobody is refused and logged; a member
    // of control_socket_group (supplementary group 100, "users") is served.
    let gate = Gate::start_with_global(
        "ctl_peercred",
        &format!("{CONTROL_GLOBAL}control_socket_group = users\ncontrol_socket_mode = 0666\n"),
        PROGRAMS,
        |_| {},
    );
    gate.expect_log(
        "success: sleeper entered RUNNING state",
        Duration::from_secs(10),
    );
    let sock = socket(&gate);
    let r = ctl_as(65534, 65534, &[], &sock, &["stop", "sleeper"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(
        r.lines(),
        vec!["ERROR: permission denied: uid 65534 is not root and not a member of control_socket_group users"]
    );
    gate.expect_log("control socket: refused pid ", Duration::from_secs(5));
    assert!(
        gate.log().contains("uid 65534 gid 65534: not root"),
        "{}",
        gate.log()
    );
    assert!(
        ctl(&gate.server.ini, &["status", "sleeper"])
            .out
            .contains("RUNNING"),
        "nothing was done"
    );
    let r = ctl_as(65534, 65534, &[100], &sock, &["status", "sleeper"]);
    assert_eq!(r.code, 0, "a member of the group is served: {r:?}");
    let r = ctl_as(65534, 100, &[], &sock, &["status", "sleeper"]);
    assert_eq!(r.code, 0, "the group as primary group too: {r:?}");
    gate.finish();
}

/// One raw HTTP exchange over the socket, as `curl --unix-socket` makes it.
fn raw(sock: &std::path::Path, request: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_wire_is_http_with_json_answers_and_shutdown_stops_uwgate() {
    let mut gate = start("ctl_wire", PROGRAMS);
    let sock = socket(&gate);
    let status = raw(
        &sock,
        "GET /status HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 200 OK\r\n"), "{status}");
    assert!(
        status.contains("Content-Type: application/json\r\n"),
        "{status}"
    );
    let body = &status[status.find("\r\n\r\n").unwrap() + 4..];
    assert!(
        body.starts_with(&format!(
            "{{\"pid\":{},\"version\":\"{}\",\"processes\":[",
            gate.pid(),
            common::version()
        )),
        "{body}"
    );
    assert!(
        body.contains("\"name\":\"sleeper\",\"group\":\"sleeper\",\"state\":\"RUNNING\""),
        "{body}"
    );
    let wrong = raw(&sock, "GET /stop?name=sleeper HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(wrong.starts_with("HTTP/1.1 405 "), "{wrong}");
    let nope = raw(&sock, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        nope.starts_with("HTTP/1.1 404 ") && nope.contains("{\"error\":"),
        "{nope}"
    );
    let stop = raw(
        &sock,
        "POST /stop?name=sleeper HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(stop.ends_with("{\"results\":[{\"name\":\"sleeper\",\"action\":\"stop\",\"result\":\"stopped\",\"ok\":true}]}\n"), "{stop}");

    let r = ctl(&gate.server.ini, &["shutdown"]);
    assert_eq!((r.code, r.lines()), (0, vec!["Shut down"]));
    let exited = gate.server.wait_exit(Duration::from_secs(15));
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "{}", gate.log());
    assert!(!sock.exists(), "the socket file goes with uwgate");
    let r = ctl(&gate.server.ini, &["status"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.out.ends_with("ctl.sock no such file\n"), "{r:?}");
    let r = ctl(&gate.server.ini, &["shutdown"]);
    assert_eq!(r.code, 1);
    assert!(r.out.contains("(already shut down?)"), "{r:?}");
}
