//! Child output through the real binary: every line of a program's stdout/stderr reaches the
//! log tagged `NAME[PID]:` (stdout at info, stderr at error, or info with redirect_stderr), a
//! line longer than the line buffer is split and not lost, the unterminated last line of an
//! exiting program is kept and logged before its `exited:` line, and a program flooding 10 MB
//! neither loses a line nor stalls the static requests uwgate serves meanwhile.

#[path = "common/mod.rs"]
mod common;
#[path = "watchdog_support/mod.rs"]
mod watchdog_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watchdog_support::*;

const FLOOD_LINES: usize = 200_000;

/// `flood.py GO`: builds 200,000 numbered 50-byte lines (10 MB), waits for the file GO, then
/// writes them to stdout in one `write` loop through a 1 MiB pipe, so uwgate's end of the pipe
/// never runs dry while it lasts; says so on stderr, and sleeps.
const FLOOD_PY: &str = r#"import fcntl, os, sys, time
pad = b"x" * 36
data = b"".join(b"line %07d %s\n" % (i, pad) for i in range(200000))
try:
    fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ
except OSError:
    pass
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
view = memoryview(data)
while view:
    view = view[os.write(1, view):]
sys.stderr.write("flood done\n")
sys.stderr.flush()
time.sleep(1000)
"#;

#[test]
fn ten_mb_flood_loses_no_line_and_does_not_stall_static_requests() {
    let gate = Gate::start(
        "wd_flood",
        "[program:flood]\ncommand = {PY} {DIR}/flood.py {DIR}/go\n",
        |t| {
            t.write("flood.py", FLOOD_PY);
        },
    );
    let pid = gate.expect_spawns("flood", 1, Duration::from_secs(3))[0];
    let port = gate.server.port;
    assert_eq!(
        try_get(port, "/static/ok.txt", Duration::from_secs(2)).map(|r| r.0),
        Some(200)
    );

    // Static requests back to back, each timed, for as long as the flood lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let client = std::thread::spawn(move || {
        let mut done: Vec<(Instant, Duration, Option<u16>)> = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            let t = Instant::now();
            let r = try_get(port, "/static/ok.txt", Duration::from_secs(5));
            done.push((Instant::now(), t.elapsed(), r.map(|r| r.0)));
        }
        done
    });

    let needle = format!("flood[{}]: line ", pid);
    let mut tail = gate.tail();
    gate.tree.write("go", "");
    let go = Instant::now();
    let (mut first, mut last, mut count) = (None, None, 0usize);
    while count < FLOOD_LINES && go.elapsed() < Duration::from_secs(60) {
        let lines = tail.poll();
        let now = Instant::now();
        let n = lines.iter().filter(|l| l.contains(&needle)).count();
        if n > 0 {
            first.get_or_insert(now);
            last = Some(now);
            count += n;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let requests = client.join().expect("client thread");
    let log = gate.log();
    let (Some(first), Some(last)) = (first, last) else {
        panic!("no flood line in the log within 60 s");
    };

    // Every line, once, in order.
    let numbers: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split_once(&needle))
        .map(|(_, rest)| {
            rest.get(..7)
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX)
        })
        .collect();
    let first_bad = numbers.iter().enumerate().find(|(i, n)| *i != **n);
    assert!(
        numbers.len() == FLOOD_LINES && first_bad.is_none(),
        "{} flood lines logged of {}; first out of sequence: {:?}",
        numbers.len(),
        FLOOD_LINES,
        first_bad
    );
    let full = format!("{}0123456 {}", needle, "x".repeat(36));
    assert!(log.contains(&full), "a whole line reads {:?}", full);
    assert!(log.contains(&format!("[error] flood[{}]: flood done", pid)));

    // Static requests kept being answered, promptly, while the flood went through the loop.
    let during: Vec<&(Instant, Duration, Option<u16>)> = requests
        .iter()
        .filter(|(at, _, _)| *at >= first && *at <= last)
        .collect();
    let failed: Vec<_> = requests.iter().filter(|r| r.2 != Some(200)).collect();
    let worst = requests.iter().map(|r| r.1).max().unwrap_or_default();
    let worst_during = during.iter().map(|r| r.1).max().unwrap_or_default();
    println!(
        "flood: {} lines logged over {:?}; {} static requests meanwhile ({} in all), worst {:?} \
         (overall worst {:?})",
        count,
        last.duration_since(first),
        during.len(),
        requests.len(),
        worst_during,
        worst
    );
    assert!(failed.is_empty(), "failed requests: {:?}", failed);
    assert!(
        during.len() >= 5,
        "only {} static requests completed during the {:?} flood",
        during.len(),
        last.duration_since(first)
    );
    // Typically under 20 ms; a loop that drained the pipe before serving anyone else would
    // hold a request for most of the flood (about 0.5 s here).
    assert!(
        worst < Duration::from_millis(250),
        "a static request took {:?} while the program flooded",
        worst
    );
    gate.finish();
}

/// `long.py`: one 10,000-byte line, then a short one, then sleeps.
const LONG_PY: &str = r#"import sys, time
line = "".join(chr(97 + i % 26) for i in range(10000))
sys.stdout.write(line + "\nafter\n")
sys.stdout.flush()
time.sleep(1000)
"#;

#[test]
fn line_longer_than_the_buffer_is_logged_in_pieces_not_lost() {
    let gate = Gate::start(
        "wd_long_line",
        "[program:long]\ncommand = {PY} {DIR}/long.py\n",
        |t| {
            t.write("long.py", LONG_PY);
        },
    );
    let pid = gate.expect_spawns("long", 1, Duration::from_secs(3))[0];
    let tag = format!("long[{}]: ", pid);
    gate.expect_log(&format!("{}after", tag), Duration::from_secs(5));
    let log = gate.log();
    let pieces: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(&tag).map(|(_, m)| m))
        .collect();
    let want: String = (0..10000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(pieces.last(), Some(&"after"), "log:\n{}", log);
    let joined: String = pieces[..pieces.len() - 1].concat();
    assert!(
        joined == want,
        "pieces of {:?} bytes do not rebuild the 10,000-byte line",
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    assert!(
        pieces.len() >= 3,
        "the line was not split: {:?}",
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    gate.finish();
}

const TAGGED_SH: &str = "echo to-stdout\necho to-stderr >&2\nprintf no-newline-at-exit\n";

#[test]
fn output_is_tagged_by_program_stderr_at_error_level_and_the_last_partial_line_is_kept() {
    let gate = Gate::start(
        "wd_tagged",
        "[program:tagged]\ncommand = /bin/sh {DIR}/tagged.sh\nstartsecs = 0\n\n\
         [program:merged]\ncommand = /bin/sh {DIR}/tagged.sh\nstartsecs = 0\n\
         redirect_stderr = true\n",
        |t| {
            t.write("tagged.sh", TAGGED_SH);
        },
    );
    let tagged = gate.expect_spawns("tagged", 1, Duration::from_secs(3))[0];
    let merged = gate.expect_spawns("merged", 1, Duration::from_secs(3))[0];
    gate.expect_log(
        "exited: tagged (exit status 0; expected)",
        Duration::from_secs(3),
    );
    gate.expect_log(
        "exited: merged (exit status 0; expected)",
        Duration::from_secs(3),
    );
    let want = [
        format!("[info] tagged[{}]: to-stdout", tagged),
        format!("[error] tagged[{}]: to-stderr", tagged),
        format!("[info] tagged[{}]: no-newline-at-exit", tagged),
        format!("[info] merged[{}]: to-stdout", merged),
        format!("[info] merged[{}]: to-stderr", merged),
        format!("[info] merged[{}]: no-newline-at-exit", merged),
    ];
    let ok = common::wait_until(Duration::from_secs(2), || {
        let log = gate.log();
        want.iter().all(|w| log.contains(w.as_str()))
    });
    let log = gate.log();
    assert!(ok, "expected {:#?}; log:\n{}", want, log);
    // Exit 0 is in exitcodes: not restarted.
    assert_eq!(spawned_pids(&log, "tagged").len(), 1, "log:\n{}", log);
    gate.finish();
}

/// `dying.py`: raises its stderr pipe to 1 MiB, writes 500 KB of report lines and an
/// unterminated last line in one write (more than uwgate reads per turn), and exits 3 at once.
const DYING_PY: &str = r#"import fcntl, os
try:
    fcntl.fcntl(2, 1031, 1 << 20)  # F_SETPIPE_SZ
except OSError:
    pass
data = b"".join(b"trace line %05d %s\n" % (i, b"y" * 80) for i in range(5000)) + b"fatal: giving up"
view = memoryview(data)
while view:
    view = view[os.write(2, view):]
os._exit(3)
"#;

#[test]
fn a_program_s_last_output_is_logged_before_its_exited_line() {
    let gate = Gate::start(
        "wd_last_words",
        "[program:dying]\ncommand = {PY} {DIR}/dying.py\nstartsecs = 0\nautorestart = false\n",
        |t| {
            t.write("dying.py", DYING_PY);
        },
    );
    gate.expect_log(
        "exited: dying (exit status 3; not expected)",
        Duration::from_secs(10),
    );
    let log = gate.log();
    let exited = log.find("exited: dying").unwrap();
    for line in ["trace line 00000", "trace line 04999", "fatal: giving up"] {
        let at = log.find(line);
        assert!(
            at.is_some_and(|at| at < exited),
            "{line:?} is not logged before the exited line (at {at:?}, exited at {exited})"
        );
    }
    gate.finish();
}
