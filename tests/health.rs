//! `health = on`: the page a balancer's health check reads. 200 `ok` while every process of
//! every `required_for_health` program is RUNNING (with a `ready` check, RUNNING comes only
//! once the check connects); 503 naming the first that is not; 503 `draining` from the moment
//! a graceful stop begins — and with `shutdown_delay` uwgate keeps serving that long first,
//! so the balancer takes the box out before its listeners close.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use common::*;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use watchdog_support::{try_get, Gate};

/// `(status, body)` of the health page, or `None` if uwgate did not answer.
fn health(port: u16) -> Option<(u16, String)> {
    try_get(port, "/health", Duration::from_secs(2))
        .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls the health page until it says `want`; the last answer otherwise.
fn wait_health(
    port: u16,
    want: (u16, &str),
    timeout: Duration,
) -> Result<(), Option<(u16, String)>> {
    let mut last = None;
    let ok = wait_until(timeout, || {
        last = health(port);
        last.as_ref()
            .is_some_and(|(s, b)| *s == want.0 && b == want.1)
    });
    if ok {
        Ok(())
    } else {
        Err(last)
    }
}

#[test]
fn health_follows_the_required_program_and_its_ready_check() {
    let ready_port = free_port();
    let sections = format!(
        "[location:/health]\nhealth = on\n\n\
         [program:app]\ncommand = /bin/sleep 1000\nready = tcp:127.0.0.1:{ready_port}\n\
         startsecs = 0\nautorestart = false\nrequired_for_health = true\n\n\
         [program:helper]\ncommand = /bin/false\nstartretries = 0\nstartsecs = 1\n"
    );
    let gate = Gate::start("health_program", &sections, |_| {});
    let port = gate.server.port;

    // Nothing listens on the ready port yet: STARTING, 503 (a failed, unrequired helper
    // does not matter).
    let starting = wait_health(port, (503, "down: app STARTING\n"), Duration::from_secs(5));
    assert!(starting.is_ok(), "{starting:?}; log:\n{}", gate.log());

    // The ready check connects: RUNNING, 200.
    let _listener = TcpListener::bind(("127.0.0.1", ready_port)).expect("bind the ready port");
    let up = wait_health(port, (200, "ok\n"), Duration::from_secs(5));
    assert!(up.is_ok(), "{up:?}; log:\n{}", gate.log());
    gate.expect_log("helper entered FATAL", Duration::from_secs(5));
    assert_eq!(health(port), Some((200, "ok\n".to_string())));

    // Any method, as balancers send (HAProxy's default check is OPTIONS); HEAD has no body.
    for method in ["OPTIONS", "HEAD", "POST"] {
        let raw = format!("{method} /health HTTP/1.0\r\n\r\n");
        let r = request(port, raw.as_bytes());
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.text(), if method == "HEAD" { "" } else { "ok\n" });
    }

    // The program dies (autorestart = false): EXITED, 503 within the next check.
    let pid = gate.last_pid("app");
    watchdog_support::kill(pid as i32, libc::SIGKILL);
    let down = wait_health(port, (503, "down: app EXITED\n"), Duration::from_secs(3));
    assert!(down.is_ok(), "{down:?}; log:\n{}", gate.log());
    gate.finish();
}

/// A server with `/health`, `/static/` and `shutdown_delay = 2s`.
fn draining_server(tree: &TempTree) -> Server {
    tree.write("static/ok.txt", "ok\n");
    let ini = "[uwgate]\nsyslog = stderr\ntemp_path = {DIR}/tmp\nshutdown_delay = 2s\n\
               [server]\nlisten = 127.0.0.1:{PORT}\n\
               [location:/health]\nhealth = on\n\
               [location:/static/]\nalias = {DIR}/static/\n";
    Server::start_in(tree, ini)
}

#[test]
fn a_graceful_stop_answers_503_at_once_and_serves_on_for_shutdown_delay() {
    let tree = TempTree::new("health_drain");
    let mut s = draining_server(&tree);
    assert_eq!(health(s.port), Some((200, "ok\n".to_string())));
    // A keep-alive client from before the stop.
    let mut kept = s.connect();
    kept.send(b"GET /static/ok.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(kept.read_response().connection_has("keep-alive"));

    let stopped = Instant::now();
    s.signal(libc::SIGTERM);
    let drained = wait_health(s.port, (503, "draining\n"), Duration::from_secs(1));
    assert!(drained.is_ok(), "{drained:?}; log:\n{}", s.stderr());
    assert!(
        stopped.elapsed() < Duration::from_millis(1000),
        "503 at once, not at the end of the delay"
    );
    // Everything else is still served, on new and kept connections, and closes after.
    let r = s.get("/static/ok.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    kept.send(b"GET /static/ok.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = kept.read_response();
    assert_eq!(r.status, 200);
    assert!(r.connection_has("close"), "{}", r.head_raw);

    // Then the usual graceful stop: exit 0 once the delay is over.
    let status = s.wait_exit(Duration::from_secs(8)).expect("uwgate exits");
    let took = stopped.elapsed();
    assert_eq!(status.code(), Some(0), "{}", s.stderr());
    assert!(
        took >= Duration::from_millis(1900),
        "exited after {took:?}, before shutdown_delay = 2s"
    );
    let log = s.stderr();
    assert!(log.contains("draining for 2s (shutdown_delay)"), "{log}");
    assert!(log.contains("health locations answer 503"), "{log}");
}

#[test]
fn a_second_stop_signal_cuts_the_delay_short() {
    let tree = TempTree::new("health_second_signal");
    let mut s = draining_server(&tree);
    let stopped = Instant::now();
    s.signal(libc::SIGTERM);
    assert!(s.wait_stderr_contains("draining for", Duration::from_secs(2)));
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(5)).expect("uwgate exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        stopped.elapsed() < Duration::from_millis(1900),
        "the second signal stops at once ({:?})",
        stopped.elapsed()
    );
}
