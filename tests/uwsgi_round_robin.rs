//! Several `uwsgi_pass` lines: a round-robin group, with a failed peer skipped and retried after
//! `fail_timeout`, as nginx's upstream module does.

#[path = "common/mod.rs"]
mod common;
#[path = "uwsgi_support/mod.rs"]
mod uwsgi_support;

use std::time::Duration;
use uwsgi_support::{gate_ini, Json, Uwsgi, UwsgiOpts};

fn instance(name: &str) -> Uwsgi {
    Uwsgi::start(UwsgiOpts {
        processes: 1,
        instance: name.to_string(),
        ..UwsgiOpts::default()
    })
}

/// `(instance, pid)` answering one `/pid` through uwgate.
fn who(port: u16) -> (String, u64) {
    let r = uwsgi_support::get(port, "/pid");
    assert_eq!(r.status, 200, "{}{}", r.head_raw, r.text());
    let j = Json::parse(&r.text());
    (j.get("instance").str().to_string(), j.get("pid").u64())
}

#[test]
fn two_instances_share_the_requests_in_turn() {
    let a = instance("a");
    let b = instance("b");
    let gate = common::Server::start(&gate_ini("", &[a.pass(), b.pass()], ""));
    let answers: Vec<(String, u64)> = (0..10).map(|_| who(gate.port)).collect();
    let on_a = answers.iter().filter(|(i, _)| i == "a").count();
    let on_b = answers.iter().filter(|(i, _)| i == "b").count();
    assert_eq!((on_a, on_b), (5, 5), "{:?}", answers);
    // Two instances, one worker each: exactly two pids.
    let mut pids: Vec<u64> = answers.iter().map(|(_, p)| *p).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 2, "{:?}", answers);
}

#[test]
fn a_down_peer_is_skipped_and_every_request_succeeds() {
    let a = instance("a");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let gate = common::Server::start(&gate_ini("", &[dead.clone(), a.pass()], ""));
    for i in 0..10 {
        let r = uwsgi_support::get(gate.port, "/pid");
        assert_eq!(
            r.status,
            200,
            "request {}: {}{}",
            i,
            r.head_raw,
            gate.stderr()
        );
    }
    assert!(
        gate.wait_stderr_contains(&dead, Duration::from_secs(3)),
        "the failure of {} is not logged:\n{}",
        dead,
        gate.stderr()
    );
}

#[test]
fn a_failed_peer_is_not_tried_again_within_fail_timeout() {
    let a = instance("a");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let gate = common::Server::start(&gate_ini(
        "",
        &[format!("{} max_fails=1 fail_timeout=30s", dead), a.pass()],
        "",
    ));
    for _ in 0..4 {
        assert_eq!(uwsgi_support::get(gate.port, "/pid").status, 200);
    }
    assert!(
        gate.wait_stderr_contains(&dead, Duration::from_secs(3)),
        "{}",
        gate.stderr()
    );
    std::thread::sleep(Duration::from_millis(200));
    let mentions = |log: &str| log.lines().filter(|l| l.contains(&dead)).count();
    let before = mentions(&gate.stderr());
    for _ in 0..10 {
        assert_eq!(uwsgi_support::get(gate.port, "/pid").status, 200);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = mentions(&gate.stderr());
    assert_eq!(
        before,
        after,
        "the dead peer was tried again within fail_timeout:\n{}",
        gate.stderr()
    );
}

#[test]
fn a_failed_peer_gets_requests_again_after_fail_timeout() {
    let a = instance("a");
    let b_port = common::free_port();
    let gate = common::Server::start(&gate_ini(
        "",
        &[
            a.pass(),
            format!("127.0.0.1:{} max_fails=1 fail_timeout=1s", b_port),
        ],
        "",
    ));
    // b is down: everything goes to a.
    for _ in 0..4 {
        assert_eq!(who(gate.port).0, "a");
    }
    // b comes up on its port; after fail_timeout it is tried and used again.
    let _b = Uwsgi::start(UwsgiOpts {
        processes: 1,
        instance: "b".to_string(),
        port: Some(b_port),
        ..UwsgiOpts::default()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let answers: Vec<String> = (0..10).map(|_| who(gate.port).0).collect();
    assert!(
        answers.iter().any(|i| i == "b"),
        "b never used after recovering: {:?}\n{}",
        answers,
        gate.stderr()
    );
}
