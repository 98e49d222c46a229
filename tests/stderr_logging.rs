//! Logging to stderr never stalls serving: with stderr a pipe whose reader has stopped (a hung
//! `| logger`, a wedged journald), lines that cannot be written at once are dropped and counted
//! (`"log_dropped"` in the JSON status page), and once the reader is back one line says how many
//! were lost. Both ways of logging to stderr are covered: `syslog = stderr`, and `-f` mirroring
//! a syslog target.

mod common;
use common::*;

use std::io::Read;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests sent while nobody reads the pipe: ~100-byte access lines, far more than the 64 KiB
/// a pipe holds.
const REQUESTS: usize = 5_000;
/// Bound on all of them together (a few seconds on an idle machine; generous for a busy one).
const ALL_REQUESTS_WITHIN: Duration = Duration::from_secs(60);
/// What the notice says, after the count.
const NOTICE: &str = " log lines dropped while stderr was not keeping up";

const GET: &[u8] = b"GET /static/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// `uwgate -f` with stderr a pipe the test holds; killed on drop (SIGTERM, then SIGKILL).
struct PipedServer {
    child: Child,
    port: u16,
}

impl PipedServer {
    /// Starts uwgate with stderr a pipe nobody reads yet; returns the read end too.
    fn start(tree: &TempTree, ini_template: &str) -> (PipedServer, ChildStderr) {
        let port = free_port();
        let ini = tree.join("uwgate.ini");
        std::fs::write(&ini, tree.render(ini_template, port)).expect("write ini");
        let mut child = Command::new(uwgate_bin())
            .arg("-f")
            .arg("-c")
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn uwgate");
        let stderr = child.stderr.take().expect("stderr pipe");
        let mut server = PipedServer { child, port };
        let listening = wait_until(START_TIMEOUT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !listening {
            let _ = server.child.kill();
            panic!("uwgate not listening on {port} within {START_TIMEOUT:?}");
        }
        (server, stderr)
    }

    /// `"log_dropped":N` from the JSON status page.
    fn log_dropped(&self) -> u64 {
        let json = get(self.port, "/uwgate_status?format=json").text();
        let at = json
            .find("\"log_dropped\":")
            .unwrap_or_else(|| panic!("no log_dropped in {json}"));
        json[at + "\"log_dropped\":".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("log_dropped is not a number in {json}"))
    }
}

impl Drop for PipedServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_until(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the pipe from now on, into a shared buffer.
fn drain(mut stderr: ChildStderr) -> Arc<Mutex<Vec<u8>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    out
}

/// The N of the first `N log lines dropped ...` line in `text`.
fn reported(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.contains(NOTICE))?;
    let before = &line[..line.find(NOTICE)?];
    before.rsplit(' ').next()?.parse().ok()
}

/// With `syslog` as the `[uwgate]` syslog line, sends `REQUESTS` keep-alive GETs with nobody reading stderr, checks every answer and the
/// total time, then drains the pipe and checks the notice; returns (dropped before draining,
/// count in the notice, dropped after it, everything read from the pipe).
fn requests_while_stderr_is_stalled(syslog: &str) -> (u64, u64, u64, String) {
    let t = TempTree::new("stderr_stall");
    t.write("static/a.txt", "AAAA");
    let template = ini(
        "access_log = on",
        "[location:/static/]\nalias = {DIR}/static/\n\n\
         [location:/uwgate_status]\nstub_status = on\n",
    )
    .replace("syslog = stderr", syslog);
    let (server, stderr) = PipedServer::start(&t, &template);

    let started = Instant::now();
    let mut c = Client::connect(server.port);
    for i in 0..REQUESTS {
        // Well within keepalive_requests (1000).
        if i % 500 == 0 {
            c = Client::connect(server.port);
        }
        c.send(GET);
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("request #{i} not answered (stalled on stderr?): {e}"));
        assert_eq!(r.status, 200, "request #{i}");
        assert_eq!(r.body, b"AAAA", "request #{i}");
    }
    let took = started.elapsed();
    assert!(
        took < ALL_REQUESTS_WITHIN,
        "{REQUESTS} requests took {took:?}"
    );

    let dropped = server.log_dropped();
    assert!(
        dropped > 0,
        "{REQUESTS} access lines cannot fit in a pipe nobody reads, yet none was dropped"
    );

    // The reader comes back; the next line written is the notice.
    let out = drain(stderr);
    let mut count = None;
    let found = wait_until(Duration::from_secs(10), || {
        assert_eq!(get(server.port, "/static/a.txt").status, 200);
        count = reported(&String::from_utf8_lossy(&out.lock().expect("lock")));
        count.is_some()
    });
    let text = String::from_utf8_lossy(&out.lock().expect("lock")).into_owned();
    assert!(found, "no '{NOTICE}' line once the pipe drained:\n{text}");
    let count = count.unwrap_or(0);
    let after = server.log_dropped();
    (dropped, count, after, text)
}

#[test]
fn stalled_stderr_pipe_with_syslog_stderr_drops_counts_and_reports_lines() {
    let (dropped, count, after, text) = requests_while_stderr_is_stalled("syslog = stderr");
    assert!(
        count >= dropped,
        "notice says {count}, status page said {dropped} earlier"
    );
    assert_eq!(after, count, "status page after the notice");
    assert_eq!(text.matches(NOTICE).count(), 1, "one notice only:\n{text}");
    // Every line after the notice arrived whole, and the notice line has the error-log shape.
    let notice = text.lines().find(|l| l.contains(NOTICE)).unwrap_or("");
    assert!(notice.contains(" [warn] "), "{notice}");
    assert!(text.ends_with('\n'), "a cut line at the end:\n{text}");
}

#[test]
fn stalled_stderr_pipe_with_foreground_mirror_of_syslog_drops_counts_and_reports_lines() {
    // -f mirrors a syslog target to stderr; the syslog socket itself is read by the test.
    let syslog = SyslogSink::bind();
    let reader = {
        let sock = syslog.sock.try_clone().expect("clone udp");
        std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = [0u8; 4096];
            while sock.recv(&mut buf).is_ok() {}
        })
    };
    let (dropped, count, _, _) =
        requests_while_stderr_is_stalled(&format!("syslog = udp:127.0.0.1:{}", syslog.port));
    assert!(count > 0 && dropped > 0);
    let _ = reader.join();
}

#[test]
fn status_page_counts_dropped_log_lines_from_zero() {
    let t = TempTree::new("stderr_zero");
    t.write("static/a.txt", "AAAA");
    let template = ini(
        "access_log = on",
        "[location:/static/]\nalias = {DIR}/static/\n\n\
         [location:/uwgate_status]\nstub_status = on\n",
    );
    let (server, stderr) = PipedServer::start(&t, &template);
    let _out = drain(stderr);
    for _ in 0..10 {
        assert_eq!(get(server.port, "/static/a.txt").status, 200);
    }
    assert_eq!(server.log_dropped(), 0);
}
