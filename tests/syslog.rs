//! Logging: RFC 3164 datagrams (`<PRI>Mmm dd hh:mm:ss [host] TAG[pid]: MSG`) to a UDP or unix
//! socket the test owns; facility and tag from the config; the access log in nginx's "combined"
//! format on its own tag (`uwgate-access` or `access_log_tag`), silenced by `access_log = off`;
//! a missing syslogd never stalls serving and its dropped messages are counted and reported;
//! reconnect when syslogd restarts, and on SIGUSR1.

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const HELLO: &str = "hello, world\n";

/// A parsed RFC 3164 message.
#[derive(Debug)]
struct Msg {
    pri: u32,
    tag: String,
    pid: Option<u32>,
    text: String,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses `<PRI>TIMESTAMP [HOSTNAME] TAG[PID]: MSG`; `Err` says what is wrong.
fn parse_3164(raw: &str) -> Result<Msg, String> {
    let raw = raw.trim_end_matches(['\n', '\0']);
    let rest = raw.strip_prefix('<').ok_or("no '<' PRI")?;
    let gt = rest.find('>').ok_or("no '>' after PRI")?;
    let pri: u32 = rest[..gt].parse().map_err(|_| "PRI not a number")?;
    if gt == 0 || gt > 3 || pri > 191 {
        return Err(format!("bad PRI {:?}", &rest[..gt]));
    }
    let rest = &rest[gt + 1..];
    // TIMESTAMP: "Mmm dd hh:mm:ss" with the day space-padded, then one space.
    let ts = rest.get(..15).ok_or("short timestamp")?;
    let b = ts.as_bytes();
    let month_ok = MONTHS.contains(&&ts[..3]);
    let day_ok = b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[4] != b'0';
    let time_ok = b[6] == b' '
        && b[7].is_ascii_digit()
        && b[8].is_ascii_digit()
        && b[9] == b':'
        && b[10].is_ascii_digit()
        && b[11].is_ascii_digit()
        && b[12] == b':'
        && b[13].is_ascii_digit()
        && b[14].is_ascii_digit();
    if !(month_ok && day_ok && time_ok) {
        return Err(format!("bad TIMESTAMP {:?}", ts));
    }
    let rest = rest.get(15..).ok_or("nothing after timestamp")?;
    let rest = rest.strip_prefix(' ').ok_or("no space after timestamp")?;
    // Optional HOSTNAME, then TAG followed by "[pid]:" or ":".
    let mut tokens = rest.splitn(3, ' ');
    let first = tokens.next().unwrap_or("");
    let (tag_token, after) = if first.ends_with(':') {
        (first, rest[first.len()..].trim_start_matches(' '))
    } else {
        let second = tokens.next().ok_or("no TAG")?;
        if !second.ends_with(':') {
            return Err(format!("no 'TAG:' in {:?}", rest));
        }
        let off = first.len() + 1 + second.len();
        (second, rest[off..].trim_start_matches(' '))
    };
    let tag_token = &tag_token[..tag_token.len() - 1];
    let (tag, pid) = match tag_token.find('[') {
        Some(i) => {
            let pid = tag_token[i + 1..]
                .strip_suffix(']')
                .ok_or("unclosed [pid]")?
                .parse()
                .map_err(|_| "pid not a number")?;
            (&tag_token[..i], Some(pid))
        }
        None => (tag_token, None),
    };
    if tag.is_empty() || tag.len() > 32 {
        return Err(format!("bad TAG {:?}", tag));
    }
    Ok(Msg {
        pri,
        tag: tag.to_string(),
        pid,
        text: after.to_string(),
    })
}

fn syslog_site(name: &str, target: &str, global_extra: &str) -> (TempTree, Server) {
    let t = TempTree::new(name);
    t.write("static/hello.txt", HELLO);
    let text = static_ini(&format!("{}\n", global_extra), "")
        .replace("syslog = stderr", &format!("syslog = {}", target));
    let s = Server::start_in(&t, &text);
    (t, s)
}

/// Waits for a message with `tag` whose text satisfies `pred`; panics with everything seen.
fn expect_msg(sink: &SyslogSink, timeout: Duration, tag: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
    let mut seen = Vec::new();
    let found = sink.wait_for(timeout, &mut seen, |raw| {
        parse_3164(raw)
            .map(|m| m.tag == tag && pred(&m))
            .unwrap_or(false)
    });
    match found {
        Some(raw) => parse_3164(&raw).expect("parsed above"),
        None => panic!(
            "no matching message with tag {:?}; received:\n{}",
            tag,
            seen.join("\n")
        ),
    }
}

#[test]
fn every_datagram_is_rfc3164_with_the_daemon_facility() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site("rfc3164", &format!("udp:127.0.0.1:{}", sink.port), "");
    assert_eq!(s.get("/static/hello.txt").status, 200);
    assert_eq!(s.get("/static/missing").status, 404);
    let msgs = sink.collect(Duration::from_millis(1500));
    assert!(!msgs.is_empty(), "no syslog datagrams at all");
    for raw in &msgs {
        let m = parse_3164(raw).unwrap_or_else(|e| panic!("not RFC 3164 ({}): {:?}", e, raw));
        assert_eq!(m.pri >> 3, 3, "facility is not daemon (3): {:?}", raw);
        if let Some(pid) = m.pid {
            assert_eq!(pid as i32, s.pid(), "wrong pid in {:?}", raw);
        }
    }
}

#[test]
fn syslog_facility_sets_the_pri_facility() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site(
        "facility",
        &format!("udp:127.0.0.1:{}", sink.port),
        "syslog_facility = local0",
    );
    assert_eq!(s.get("/static/hello.txt").status, 200);
    let m = expect_msg(&sink, Duration::from_secs(3), "uwgate-access", |_| true);
    assert_eq!(m.pri >> 3, 16, "local0 is facility 16: {:?}", m);
    assert_eq!(m.pri & 7, 6, "access lines are severity info (6): {:?}", m);
}

#[test]
fn error_messages_use_syslog_tag_and_an_error_severity() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site(
        "error_tag",
        &format!("udp:127.0.0.1:{}", sink.port),
        "syslog_tag = mytag",
    );
    // A broken reload is logged as an error naming FILE:LINE.
    let good = std::fs::read_to_string(&s.ini).expect("ini");
    let bad = format!("{}\n[location:/x/]\nalais = /nowhere\n", good);
    std::fs::write(&s.ini, &bad).expect("write");
    s.signal(libc::SIGHUP);
    let line = bad
        .lines()
        .position(|l| l.starts_with("alais"))
        .expect("line")
        + 1;
    let m = expect_msg(&sink, Duration::from_secs(3), "mytag", |m| {
        m.text.contains(&format!("uwgate.ini:{}:", line))
    });
    assert!(
        m.pri & 7 <= 4,
        "a rejected config should be err/warning, got severity {}",
        m.pri & 7
    );
}

#[test]
fn access_log_line_is_nginx_combined_on_the_access_tag() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site("combined", &format!("udp:127.0.0.1:{}", sink.port), "");
    let r = get_with(
        s.port,
        "/static/hello.txt?x=1",
        &[
            "User-Agent: test-agent/1.0 (x)",
            "Referer: http://ref.test/page",
        ],
    );
    assert_eq!(r.status, 200);
    let m = expect_msg(&sink, Duration::from_secs(3), "uwgate-access", |m| {
        m.text.contains("/static/hello.txt?x=1")
    });
    // 127.0.0.1 - - [25/Nov/2025:20:20:01 +0000] "GET /static/hello.txt?x=1 HTTP/1.1" 200 13 "http://ref.test/page" "test-agent/1.0 (x)"
    let text = m.text.as_str();
    let prefix = "127.0.0.1 - - [";
    assert!(text.starts_with(prefix), "{:?}", text);
    let close = text.find("] ").expect("end of [time_local]");
    let time = &text[prefix.len()..close];
    assert!(
        is_time_local(time),
        "bad $time_local {:?} in {:?}",
        time,
        text
    );
    let after = &text[close + 2..];
    assert_eq!(
        after,
        "\"GET /static/hello.txt?x=1 HTTP/1.1\" 200 13 \"http://ref.test/page\" \"test-agent/1.0 (x)\"",
        "combined format mismatch in {:?}",
        text
    );
}

/// `dd/Mon/yyyy:hh:mm:ss +zzzz`
fn is_time_local(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 26
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'/'
        && MONTHS.contains(&&s[3..6])
        && b[6] == b'/'
        && s[7..11].bytes().all(|c| c.is_ascii_digit())
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b':'
        && b[20] == b' '
        && (b[21] == b'+' || b[21] == b'-')
        && s[22..26].bytes().all(|c| c.is_ascii_digit())
}

#[test]
fn access_log_records_status_bytes_and_dashes_for_missing_fields() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site("combined_404", &format!("udp:127.0.0.1:{}", sink.port), "");
    let r = request(
        s.port,
        b"GET /static/nope.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    let m = expect_msg(&sink, Duration::from_secs(3), "uwgate-access", |m| {
        m.text.contains("/static/nope.txt")
    });
    let want = format!(
        "\"GET /static/nope.txt HTTP/1.1\" 404 {} \"-\" \"-\"",
        r.body.len()
    );
    assert!(
        m.text.ends_with(&want),
        "{:?} does not end with {:?}",
        m.text,
        want
    );
}

#[test]
fn access_log_request_line_has_no_line_end_for_crlf_or_bare_lf() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site("combined_lf", &format!("udp:127.0.0.1:{}", sink.port), "");
    for (raw, marker) in [
        (&b"GET /static/hello.txt?lf HTTP/1.1\nHost: localhost\nConnection: close\n\n"[..], "?lf "),
        (b"\r\nGET /static/hello.txt?crlf HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "?crlf "),
    ] {
        assert_eq!(request(s.port, raw).status, 200);
        let m = expect_msg(&sink, Duration::from_secs(3), "uwgate-access", |m| {
            m.text.contains(marker)
        });
        let want = format!("\"GET /static/hello.txt{}HTTP/1.1\" 200 ", marker);
        assert!(m.text.contains(&want), "{:?} lacks {:?}", m.text, want);
    }
}

#[test]
fn access_log_counts_zero_body_bytes_for_head() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site("combined_head", &format!("udp:127.0.0.1:{}", sink.port), "");
    let r = request(
        s.port,
        b"HEAD /static/hello.txt HTTP/1.0\r\nUser-Agent: h\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let m = expect_msg(&sink, Duration::from_secs(3), "uwgate-access", |m| {
        m.text.contains("HEAD /static/hello.txt")
    });
    assert!(
        m.text
            .ends_with("\"HEAD /static/hello.txt HTTP/1.0\" 200 0 \"-\" \"h\""),
        "{:?}",
        m.text
    );
}

#[test]
fn access_log_tag_is_configurable() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site(
        "access_tag",
        &format!("udp:127.0.0.1:{}", sink.port),
        "access_log_tag = web-access",
    );
    assert_eq!(s.get("/static/hello.txt").status, 200);
    expect_msg(&sink, Duration::from_secs(3), "web-access", |m| {
        m.text.contains("/static/hello.txt")
    });
}

#[test]
fn access_log_off_sends_no_access_lines() {
    let sink = SyslogSink::bind();
    let (_t, s) = syslog_site(
        "access_off",
        &format!("udp:127.0.0.1:{}", sink.port),
        "access_log = off",
    );
    for _ in 0..5 {
        assert_eq!(s.get("/static/hello.txt").status, 200);
    }
    let msgs = sink.collect(Duration::from_millis(1500));
    for raw in &msgs {
        let m = parse_3164(raw).unwrap_or_else(|e| panic!("not RFC 3164 ({}): {:?}", e, raw));
        assert_ne!(
            m.tag, "uwgate-access",
            "access line with access_log = off: {:?}",
            raw
        );
        assert!(
            !m.text.contains("GET /static/hello.txt"),
            "access line: {:?}",
            raw
        );
    }
}

#[test]
fn access_log_on_stderr_in_the_foreground() {
    let t = TempTree::new("stderr_access");
    t.write("static/hello.txt", HELLO);
    let s = Server::start_in(&t, &static_ini("", ""));
    assert_eq!(s.get("/static/hello.txt?stderr=1").status, 200);
    assert!(
        s.wait_stderr_contains(
            "\"GET /static/hello.txt?stderr=1 HTTP/1.1\" 200 13",
            Duration::from_secs(3)
        ),
        "access line not on stderr; got:\n{}",
        s.stderr()
    );
}

#[test]
fn absent_syslogd_never_stalls_serving_and_drops_are_reported_on_recovery() {
    // A UDP port nobody listens on: sends fail with ECONNREFUSED (ICMP port unreachable).
    let port = {
        let probe = SyslogSink::bind();
        probe.port
    };
    let (_t, s) = syslog_site("absent_syslogd", &format!("udp:127.0.0.1:{}", port), "");
    let start = Instant::now();
    for _ in 0..30 {
        let r = s.get("/static/hello.txt");
        assert_eq!(r.status, 200);
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "30 requests took {:?} with syslogd absent",
        start.elapsed()
    );
    // syslogd comes back on the same port.
    let sink = SyslogSink::bind_port(port).expect("rebind syslog port");
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut seen = Vec::new();
    let mut found = None;
    while Instant::now() < deadline && found.is_none() {
        let _ = s.get("/static/hello.txt");
        found = sink.wait_for(Duration::from_millis(200), &mut seen, |raw| {
            let l = raw.to_ascii_lowercase();
            l.contains("drop") && raw.chars().any(|c| c.is_ascii_digit())
        });
    }
    assert!(
        found.is_some(),
        "no report of dropped messages after syslogd came back; received:\n{}",
        seen.join("\n")
    );
    assert!(!seen.is_empty(), "nothing received after recovery");
}

fn unix_sink(path: &std::path::Path) -> UnixDatagram {
    let _ = std::fs::remove_file(path);
    let s = UnixDatagram::bind(path).expect("bind unix datagram");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// Makes requests until an access line for `path` arrives on `sock`, or `timeout`.
fn wait_unix_access(s: &Server, sock: &UnixDatagram, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        let _ = s.get(path);
        let until = Instant::now() + Duration::from_millis(250);
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]);
                if m.contains(path) {
                    return true;
                }
            }
        }
    }
    false
}

#[test]
fn unix_socket_syslog_receives_datagrams() {
    let t = TempTree::new("unix_syslog");
    t.write("static/hello.txt", HELLO);
    let sock_path = t.join("log.sock");
    let sock = unix_sink(&sock_path);
    let text = static_ini("", "").replace("syslog = stderr", "syslog = unix:{DIR}/log.sock");
    let s = Server::start_in(&t, &text);
    assert!(
        wait_unix_access(
            &s,
            &sock,
            "/static/hello.txt?unix=1",
            Duration::from_secs(3)
        ),
        "no access line on the unix socket"
    );
}

#[test]
fn sigusr1_reconnects_to_a_restarted_syslogd() {
    let t = TempTree::new("usr1_reconnect");
    t.write("static/hello.txt", HELLO);
    let sock_path = t.join("log.sock");
    let first = unix_sink(&sock_path);
    let text = static_ini("", "").replace("syslog = stderr", "syslog = unix:{DIR}/log.sock");
    let s = Server::start_in(&t, &text);
    assert!(wait_unix_access(
        &s,
        &first,
        "/static/hello.txt?before=1",
        Duration::from_secs(3)
    ));
    // syslogd restarts: a new socket at the same path.
    drop(first);
    let second = unix_sink(&sock_path);
    s.signal(libc::SIGUSR1);
    assert!(
        wait_unix_access(
            &s,
            &second,
            "/static/hello.txt?after=1",
            Duration::from_secs(3)
        ),
        "no access line on the new syslog socket after SIGUSR1"
    );
}

#[test]
fn syslog_reconnects_by_itself_when_syslogd_restarts() {
    let t = TempTree::new("auto_reconnect");
    t.write("static/hello.txt", HELLO);
    let sock_path = t.join("log.sock");
    let first = unix_sink(&sock_path);
    let text = static_ini("", "").replace("syslog = stderr", "syslog = unix:{DIR}/log.sock");
    let s = Server::start_in(&t, &text);
    assert!(wait_unix_access(
        &s,
        &first,
        "/static/hello.txt?before=1",
        Duration::from_secs(3)
    ));
    drop(first);
    let second = unix_sink(&sock_path);
    assert!(
        wait_unix_access(
            &s,
            &second,
            "/static/hello.txt?after=1",
            Duration::from_secs(6)
        ),
        "never reconnected to the restarted syslogd without SIGUSR1"
    );
}

#[test]
fn full_syslog_socket_never_stalls_serving_and_drops_are_reported() {
    // A syslogd that stops reading: the unix datagram queue fills after a few messages.
    let t = TempTree::new("full_syslog");
    t.write("static/hello.txt", HELLO);
    let sock_path = t.join("log.sock");
    let sock = unix_sink(&sock_path);
    let text = static_ini("", "").replace("syslog = stderr", "syslog = unix:{DIR}/log.sock");
    let s = Server::start_in(&t, &text);
    let start = Instant::now();
    for i in 0..300 {
        let one = Instant::now();
        let r = s.get("/static/hello.txt");
        assert_eq!(r.status, 200);
        assert!(
            one.elapsed() < Duration::from_secs(1),
            "request #{} took {:?}: blocked on syslog?",
            i,
            one.elapsed()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    // syslogd reads again: a report of the dropped messages arrives.
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut buf = [0u8; 8192];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        while let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.to_ascii_lowercase().contains("drop") {
                return;
            }
            seen.push(m);
        }
        let _ = s.get("/static/hello.txt");
    }
    panic!(
        "no report of dropped messages; last received:\n{}",
        seen.iter()
            .rev()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
