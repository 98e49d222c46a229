//! `stub_status = on` answers nginx's stub_status text byte for byte (so nginx monitors parse
//! it unchanged), `?format=json` adds the programs, and allow/deny guard it.

#[path = "common/mod.rs"]
mod common;

use common::{ini, Server, TempTree};
use std::time::Duration;

fn status_ini(extra: &str) -> String {
    ini(
        "",
        &format!(
            "[location:/static/]\nalias = {{DIR}}/static/\n\n[location:/uwgate_status]\nstub_status = on\n{extra}\n"
        ),
    )
}

fn parse_stub(text: &str) -> [u64; 7] {
    // Active connections: N \nserver accepts handled requests\n A H R \nReading: r Writing: w Waiting: k \n
    let nums: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 7, "{text:?}");
    [
        nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], nums[6],
    ]
}

#[test]
fn stub_status_is_nginx_s_text_with_counters_that_move() {
    let t = TempTree::new("status_text");
    t.write("static/a.txt", "a");
    let s = Server::start_in(&t, &status_ini(""));
    let r = s.get("/uwgate_status");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let shape = regex_like(&text);
    assert!(shape, "not nginx's stub_status layout: {text:?}");
    let first = parse_stub(&text);
    // This request itself is active and writing, as nginx counts it.
    assert!(first[0] >= 1 && first[5] >= 1, "{text:?}");
    for _ in 0..5 {
        assert_eq!(s.get("/static/a.txt").status, 200);
    }
    let second = parse_stub(&s.get("/uwgate_status").text());
    assert!(second[1] >= first[1] + 6, "accepts {first:?} -> {second:?}");
    assert_eq!(second[1], second[2], "accepts == handled");
    assert!(
        second[3] >= first[3] + 6,
        "requests {first:?} -> {second:?}"
    );
}

/// `Active connections: N \nserver accepts handled requests\n A H R \nReading: r Writing: w Waiting: k \n`
fn regex_like(t: &str) -> bool {
    let lines: Vec<&str> = t.split('\n').collect();
    lines.len() == 5
        && lines[0].starts_with("Active connections: ")
        && lines[0].ends_with(' ')
        && lines[1] == "server accepts handled requests"
        && lines[2].starts_with(' ')
        && lines[2].ends_with(' ')
        && lines[2].trim().split(' ').count() == 3
        && lines[3].starts_with("Reading: ")
        && lines[3].contains(" Writing: ")
        && lines[3].contains(" Waiting: ")
        && lines[3].ends_with(' ')
        && lines[4].is_empty()
}

#[test]
fn json_status_lists_programs_with_state_pid_and_last_exit() {
    let t = TempTree::new("status_json");
    t.write("static/a.txt", "a");
    let s = Server::start_in(
        &t,
        &format!(
            "{}\n[program:sleeper]\ncommand = sleep 600\nstartsecs = 0\n\n[program:failer]\ncommand = sh -c 'exit 7'\nstartretries = 0\n",
            status_ini("")
        ),
    );
    let mut json = String::new();
    let ok = common::wait_until(Duration::from_secs(5), || {
        json = s.get("/uwgate_status?format=json").text();
        json.contains("\"FATAL\"") && json.contains("\"RUNNING\"")
    });
    assert!(ok, "{json}");
    let head = format!(
        "{{\"version\":\"{}\",\"connections\":{{\"active\":",
        common::version()
    );
    assert!(json.starts_with(&head), "{json}");
    assert!(
        json.contains("\"name\":\"sleeper\",\"group\":\"sleeper\",\"state\":\"RUNNING\",\"pid\":"),
        "{json}"
    );
    assert!(json.contains("\"name\":\"failer\""), "{json}");
    assert!(json.contains("\"last_exit\":\"exit status 7\""), "{json}");
    let r = s.get("/uwgate_status?format=json");
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn deny_all_after_an_allow_for_another_address_gives_403() {
    let t = TempTree::new("status_deny");
    let s = Server::start_in(&t, &status_ini("allow = 10.0.0.0/8\ndeny = all\n"));
    assert_eq!(s.get("/uwgate_status").status, 403);
}

#[test]
fn allow_loopback_then_deny_all_lets_the_local_monitor_in() {
    let t = TempTree::new("status_allow");
    let s = Server::start_in(
        &t,
        &status_ini("allow = 127.0.0.1\nallow = ::1\ndeny = all\n"),
    );
    assert_eq!(s.get("/uwgate_status").status, 200);
}
