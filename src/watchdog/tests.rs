//! Watchdog tests with real processes, driving a `Watchdog` with its own mio::Poll the way the
//! event loop does, but polling `on_sigchld` every few milliseconds instead of a signalfd.
//! Every test holds `fork_lock` (waitpid(-1) is process-wide) and leaves no child behind.

use super::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// A line of child output: (tag, pid, line, is_stderr).
type Line = (String, u32, Vec<u8>, bool);

thread_local! {
    static OUTPUT: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Captures a line; "stderr" is the default stderr severity (err), as the tests configure.
fn capture(tag: &str, pid: u32, line: &[u8], severity: crate::logging::Severity) {
    let is_stderr = severity == crate::logging::Severity::Err;
    OUTPUT.with(|o| {
        o.borrow_mut()
            .push((tag.to_string(), pid, line.to_vec(), is_stderr))
    });
}

fn output_of(tag: &str) -> Vec<(String, bool)> {
    OUTPUT.with(|o| {
        o.borrow()
            .iter()
            .filter(|(t, ..)| t == tag)
            .map(|(_, _, l, e)| (String::from_utf8_lossy(l).into_owned(), *e))
            .collect()
    })
}

fn prog(name: &str, command: &str) -> config::Program {
    config::Program {
        line: 1,
        ..config::Program::new(name, command)
    }
}

/// A state change seen by the rig: (process, state, pid, when).
type Seen = (String, &'static str, Option<u32>, Instant);

struct Rig {
    poll: mio::Poll,
    events: mio::Events,
    wd: Watchdog,
    seen: Vec<Seen>,
    last: HashMap<String, (&'static str, Option<u32>)>,
    /// Longest single call into the watchdog, to show output floods do not stall the loop.
    longest_call: Duration,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Rig {
    fn new(programs: &[config::Program]) -> Rig {
        let lock = sys::fork_lock();
        OUTPUT.with(|o| o.borrow_mut().clear());
        let mut wd = Watchdog::new(programs).unwrap();
        wd.set_output_sink(capture);
        Rig {
            poll: mio::Poll::new().unwrap(),
            events: mio::Events::with_capacity(64),
            wd,
            seen: Vec::new(),
            last: HashMap::new(),
            longest_call: Duration::ZERO,
            _lock: lock,
        }
    }

    fn start(&mut self) {
        self.wd.start(self.poll.registry(), Instant::now());
        self.record();
    }

    fn timed(&mut self, f: impl FnOnce(&mut Watchdog, &mio::Registry)) {
        let t = Instant::now();
        f(&mut self.wd, self.poll.registry());
        self.longest_call = self.longest_call.max(t.elapsed());
    }

    /// One loop iteration, as the event loop will run it.
    fn turn(&mut self) {
        let now = Instant::now();
        let mut timeout = Duration::from_millis(5);
        if self.wd.has_pending_output() {
            timeout = Duration::ZERO;
        }
        if let Some(d) = self.wd.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let events: Vec<mio::event::Event> = self.events.iter().cloned().collect();
        for ev in &events {
            assert!(ev.token().0 >= TOKEN_BASE);
            self.timed(|wd, reg| wd.on_event(reg, ev, Instant::now()));
        }
        self.timed(|wd, reg| wd.on_sigchld(reg, Instant::now()));
        if self.wd.has_pending_output() {
            self.timed(|wd, reg| wd.drain_pending(reg, Instant::now()));
        }
        if self.wd.next_deadline().is_some_and(|d| d <= Instant::now()) {
            self.timed(|wd, reg| wd.on_timer(reg, Instant::now()));
        }
        self.record();
    }

    fn record(&mut self) {
        let now = Instant::now();
        let rows: Vec<(String, &'static str, Option<u32>)> = self
            .wd
            .status()
            .map(|s| (s.name.to_string(), s.state, s.pid))
            .collect();
        for (name, state, pid) in rows {
            if self.last.get(&name) != Some(&(state, pid)) {
                self.last.insert(name.clone(), (state, pid));
                self.seen.push((name, state, pid, now));
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.turn();
        }
    }

    fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Rig) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            self.turn();
            if cond(self) {
                return true;
            }
        }
        false
    }

    fn state(&self, name: &str) -> (&'static str, Option<u32>) {
        self.wd
            .status()
            .find(|s| s.name == name)
            .map(|s| (s.state, s.pid))
            .unwrap_or(("GONE", None))
    }

    fn status(&self, name: &str) -> ProcessStatus<'_> {
        self.wd.status().find(|s| s.name == name).unwrap()
    }

    fn wait_state(&mut self, name: &str, state: &str, limit: Duration) {
        let ok = self.run_until(limit, |r| r.state(name).0 == state);
        assert!(ok, "{name} never reached {state}; history: {:?}", self.seen);
    }

    /// When each new pid of `name` appeared.
    fn spawn_times(&self, name: &str) -> Vec<Instant> {
        let mut pids = Vec::new();
        let mut times = Vec::new();
        for (n, _, pid, t) in &self.seen {
            if let (true, Some(pid)) = (n == name, pid) {
                if !pids.contains(pid) {
                    pids.push(*pid);
                    times.push(*t);
                }
            }
        }
        times
    }

    fn shutdown(&mut self) {
        self.wd.stop_all(self.poll.registry(), Instant::now());
        let ok = self.run_until(Duration::from_secs(20), |r| r.wd.all_stopped());
        assert!(ok, "children left after stop_all: {:?}", self.seen);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !self.wd.all_stopped() {
            self.wd.stop_all(self.poll.registry(), Instant::now());
            let _ = self.run_until(Duration::from_secs(20), |r| r.wd.all_stopped());
        }
        // Whatever happened in the test: no zombie, no child left for the next one.
        if !std::thread::panicking() {
            assert!(!sys::has_children(), "a child outlived its test");
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/PID, but its state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn close_to(d: Duration, want_ms: u64, slack_ms: u64) -> bool {
    let ms = d.as_millis() as u64;
    ms + 20 >= want_ms && ms <= want_ms + slack_ms
}

#[test]
fn tokens_start_at_the_base_and_rotate_pipe_probe_and_exec_report() {
    assert_eq!(TOKEN_BASE, 1 << 40);
    assert_eq!(pipe_token(3), mio::Token(TOKEN_BASE + 9));
    assert_eq!(probe_token(3), mio::Token(TOKEN_BASE + 10));
    assert_eq!(exec_token(3), mio::Token(TOKEN_BASE + 11));
}

#[test]
fn new_rejects_unknown_users() {
    // depends_on names, cycles and duplicate process names are config's checks (config/program.rs).
    let mut p = prog("a", "/bin/true");
    p.user = Some("no-such-user-uwgate".into());
    assert!(Watchdog::new(&[p]).err().unwrap().contains("no such user"));
}

#[test]
fn stop_ranks_put_dependents_first_then_higher_priority_numbers() {
    let none: &[String] = &[];
    let on_b = ["b".to_string()];
    // Priority alone: 999 before 10; equal priorities share a rank.
    let ranks = stop_ranks(&[("db", 10, none), ("app", 999, none), ("web", 999, none)]);
    assert_eq!(ranks, vec![1, 0, 0]);
    // a (1) depends on b (3): a must stop before b although b's number is higher; c (2) is free.
    let ranks = stop_ranks(&[("a", 1, &on_b), ("b", 3, none), ("c", 2, none)]);
    assert_eq!(ranks, vec![1, 2, 0]);
    assert!(stop_ranks(&[]).is_empty());
}

#[test]
fn seconds_are_printed_like_supervisor() {
    assert_eq!(Secs(Duration::from_secs(10)).to_string(), "10");
    assert_eq!(Secs(Duration::from_millis(500)).to_string(), "0.5");
    assert_eq!(Secs(Duration::from_millis(1050)).to_string(), "1.05");
    assert_eq!(Secs(Duration::from_millis(7)).to_string(), "0.007");
}

#[test]
fn seconds_print_exactly_for_every_config_duration() {
    // A config gives whole seconds or milliseconds: each prints as the decimal it is, without
    // trailing zeros (the float formatting this replaced printed 1118 ms as 1.1179999999999999).
    let check = |d: Duration| {
        let text = Secs(d).to_string();
        let (secs, frac) = text.split_once('.').unwrap_or((&text, ""));
        assert!(!frac.ends_with('0') && frac.len() <= 9, "{text}");
        let nanos: u32 = format!("{frac:0<9}").parse().unwrap();
        assert_eq!(Duration::new(secs.parse().unwrap(), nanos), d, "{text}");
    };
    for ms in 0..200_000 {
        check(Duration::from_millis(ms));
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check(Duration::from_millis(x % 100_000_000_000));
    }
    assert_eq!(Secs(Duration::from_millis(1118)).to_string(), "1.118");
}

#[test]
fn program_exiting_at_once_backs_off_one_then_two_seconds_then_is_fatal() {
    let mut p = prog("quick", "sh -c 'exit 1'");
    p.startretries = 2;
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.wait_state("quick", "FATAL", Duration::from_secs(6));
    let t = rig.spawn_times("quick");
    assert_eq!(t.len(), 3, "1 + startretries attempts: {:?}", rig.seen);
    assert!(
        close_to(t[1] - t[0], 1000, 150),
        "first delay {:?}",
        t[1] - t[0]
    );
    assert!(
        close_to(t[2] - t[1], 2000, 150),
        "second delay {:?}",
        t[2] - t[1]
    );
    let states: Vec<&str> = rig.seen.iter().map(|s| s.1).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "BACKOFF").count(),
        2,
        "{states:?}"
    );
    assert_eq!(rig.status("quick").last_exit, Some(ExitStatus::Code(1)));
    // FATAL stays FATAL.
    rig.run_for(Duration::from_millis(300));
    assert_eq!(rig.state("quick"), ("FATAL", None));
}

#[test]
fn crash_loop_with_startsecs_zero_spawns_at_most_once_a_second() {
    let mut p = prog("crashy", "sh -c 'exit 1'");
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Always;
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.run_for(Duration::from_millis(3500));
    let t = rig.spawn_times("crashy");
    assert!((3..=4).contains(&t.len()), "spawns in 3.5 s: {}", t.len());
    for w in t.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(990),
            "spawned twice within a second: {:?}",
            w[1] - w[0]
        );
    }
    assert_ne!(
        rig.state("crashy").0,
        "FATAL",
        "exits after RUNNING never count as failed starts"
    );
}

#[test]
fn running_program_killed_is_respawned_at_once() {
    let mut p = prog("sleeper", "sleep 30");
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Always;
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.wait_state("sleeper", "RUNNING", Duration::from_secs(2));
    rig.run_for(Duration::from_millis(1050)); // past the one-second throttle
    let (_, Some(old)) = rig.state("sleeper") else {
        panic!("no pid")
    };
    let killed = Instant::now();
    sys::send_signal(old, libc::SIGKILL, false).unwrap();
    let ok = rig.run_until(
        Duration::from_secs(2),
        |r| matches!(r.state("sleeper"), ("RUNNING", Some(p)) if p != old),
    );
    assert!(ok, "{:?}", rig.seen);
    let latency = killed.elapsed();
    assert!(
        latency < Duration::from_millis(300),
        "respawn took {latency:?}"
    );
    let st = rig.status("sleeper");
    assert_eq!(st.restarts, 1);
    assert_eq!(
        st.last_exit,
        Some(ExitStatus::Signal {
            signal: libc::SIGKILL,
            core_dumped: false
        })
    );
    assert!(!alive(old));
}

#[test]
fn expected_exit_code_is_not_restarted_but_unexpected_one_is() {
    let mut ok = prog("ok", "sh -c 'sleep 0.2; exit 3'");
    ok.startsecs = Duration::from_millis(100);
    ok.exitcodes = vec![0, 3];
    let mut bad = prog("bad", "sh -c 'sleep 0.2; exit 4'");
    bad.startsecs = Duration::from_millis(100);
    bad.exitcodes = vec![0, 3];
    let mut rig = Rig::new(&[ok, bad]);
    rig.start();
    rig.run_for(Duration::from_millis(1800));
    assert_eq!(rig.state("ok"), ("EXITED", None));
    assert_eq!(rig.status("ok").restarts, 0);
    assert_eq!(rig.status("ok").last_exit, Some(ExitStatus::Code(3)));
    assert!(rig.status("bad").restarts >= 1, "{:?}", rig.seen);
}

#[test]
fn stop_escalates_to_sigkill_after_stopwaitsecs_for_a_child_ignoring_sigterm() {
    let mut p = prog(
        "stubborn",
        "sh -c 'trap \"\" TERM; echo trapped; while :; do sleep 0.05; done'",
    );
    p.startsecs = Duration::ZERO;
    p.stopwaitsecs = Duration::from_millis(700);
    let mut rig = Rig::new(&[p]);
    rig.start();
    assert!(
        rig.run_until(Duration::from_secs(2), |_| !output_of("stubborn")
            .is_empty())
    );
    let stop = Instant::now();
    rig.wd.stop_all(rig.poll.registry(), stop);
    rig.record();
    assert_eq!(rig.state("stubborn").0, "STOPPING");
    rig.wait_state("stubborn", "STOPPED", Duration::from_secs(3));
    let took = stop.elapsed();
    assert!(close_to(took, 700, 200), "SIGKILL after {took:?}");
    assert_eq!(
        rig.status("stubborn").last_exit,
        Some(ExitStatus::Signal {
            signal: libc::SIGKILL,
            core_dumped: false
        })
    );
    rig.shutdown();
}

#[test]
fn removing_a_program_with_stopasgroup_kills_its_shells_children_too() {
    let script = "sh -c 'sleep 300 & echo $!; sleep 300 & echo $!; wait'";
    let mut group = prog("group", script);
    group.startsecs = Duration::ZERO;
    group.stopasgroup = true;
    let mut single = prog("single", script);
    single.startsecs = Duration::ZERO;
    let mut rig = Rig::new(&[group, single]);
    rig.start();
    assert!(
        rig.run_until(Duration::from_secs(3), |_| output_of("group").len() == 2
            && output_of("single").len() == 2)
    );
    let pids = |tag: &str| {
        output_of(tag)
            .iter()
            .map(|(l, _)| l.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    let (group_kids, single_kids) = (pids("group"), pids("single"));
    rig.wd.reload(rig.poll.registry(), &[], Instant::now());
    assert!(
        rig.run_until(Duration::from_secs(3), |r| r.wd.status().count() == 0),
        "{:?}",
        rig.seen
    );
    assert!(
        rig.run_until(Duration::from_secs(2), |_| group_kids
            .iter()
            .all(|&p| !alive(p))),
        "group children survived"
    );
    assert!(
        single_kids.iter().all(|&p| alive(p)),
        "without stopasgroup only the shell gets the signal"
    );
    // Shutdown sweeps the orphans left behind (uwgate reaps them as subreaper).
    rig.shutdown();
    assert!(single_kids.iter().all(|&p| !alive(p)));
}

#[test]
fn depends_on_and_ready_hold_the_dependent_until_the_port_accepts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut db = prog("db", "sleep 30");
    db.priority = 10;
    db.ready = Some(config::ReadyCheck::Tcp(port));
    db.ready_timeout = Duration::from_secs(10);
    let mut app = prog("app", "sleep 30");
    app.startsecs = Duration::ZERO;
    app.depends_on = vec!["db".into()];
    let mut rig = Rig::new(&[app, db]);
    rig.start();
    rig.run_for(Duration::from_millis(1500)); // well past db's startsecs: only the check counts
    assert_eq!(rig.state("db").0, "STARTING");
    assert_eq!(rig.state("app"), ("STOPPED", None));
    let listener = std::net::TcpListener::bind(port).unwrap();
    let bound = Instant::now();
    rig.wait_state("app", "RUNNING", Duration::from_secs(2));
    assert!(
        bound.elapsed() < Duration::from_millis(500),
        "took {:?}",
        bound.elapsed()
    );
    assert_eq!(rig.state("db").0, "RUNNING");
    // Stop order: the dependent first.
    rig.wd.stop_all(rig.poll.registry(), Instant::now());
    rig.record();
    assert_eq!(
        (rig.state("app").0, rig.state("db").0),
        ("STOPPING", "RUNNING")
    );
    rig.shutdown();
    let stopped = |n: &str| {
        rig.seen
            .iter()
            .position(|s| s.0 == n && s.1 == "STOPPED" && s.3 > bound)
            .unwrap()
    };
    assert!(stopped("app") < stopped("db"));
    drop(listener);
}

#[test]
fn ready_timeout_stops_the_process_and_backs_off() {
    let mut p = prog("never", "sleep 30");
    // Port 1: privileged, nothing listens there.
    p.ready = Some(config::ReadyCheck::Tcp("127.0.0.1:1".parse().unwrap()));
    p.ready_timeout = Duration::from_millis(400);
    p.stopwaitsecs = Duration::from_secs(1);
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.wait_state("never", "BACKOFF", Duration::from_secs(2));
    assert_eq!(
        rig.status("never").last_exit,
        Some(ExitStatus::Signal {
            signal: libc::SIGTERM,
            core_dumped: false
        })
    );
    rig.shutdown();
}

#[test]
fn ten_megabytes_of_output_arrive_whole_without_stalling_the_loop() {
    let mut p = prog("flood", "seq 1 1500000");
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Never;
    let mut rig = Rig::new(&[p]);
    rig.start();
    let got = rig.run_until(Duration::from_secs(60), |r| {
        r.state("flood").0 == "EXITED" && !r.wd.pipes.iter().flatten().any(|_| true)
    });
    assert!(got, "{:?}", rig.seen);
    let lines = output_of("flood");
    assert_eq!(lines.len(), 1_500_000);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, (l, _))| l.parse::<usize>() == Ok(i + 1)),
        "a line was lost or cut"
    );
    assert!(
        rig.longest_call < Duration::from_millis(100),
        "one call took {:?}",
        rig.longest_call
    );
    eprintln!("10 MB: longest watchdog call {:?}", rig.longest_call);
}

#[test]
fn long_lines_are_split_and_stderr_is_kept_apart_unless_redirected() {
    let mut p = prog("talk", "sh -c 'head -c 10000 /dev/zero | tr \"\\\\000\" a; echo; echo out; echo err >&2; printf tail'");
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Never;
    let mut q = prog("merged", "sh -c 'echo out; echo err >&2'");
    q.startsecs = Duration::ZERO;
    q.autorestart = config::AutoRestart::Never;
    q.redirect_stderr = true;
    let mut rig = Rig::new(&[p, q]);
    rig.start();
    assert!(rig.run_until(Duration::from_secs(3), |r| r
        .wd
        .pipes
        .iter()
        .flatten()
        .count()
        == 0
        && r.state("talk").0 == "EXITED"));
    let out = output_of("talk");
    let lens: Vec<usize> = out
        .iter()
        .filter(|(l, _)| l.starts_with('a'))
        .map(|(l, _)| l.len())
        .collect();
    assert_eq!(lens, vec![4096, 4096, 1808]);
    assert!(out.contains(&("out".to_string(), false)));
    assert!(out.contains(&("err".to_string(), true)));
    assert!(
        out.contains(&("tail".to_string(), false)),
        "unterminated last line at EOF"
    );
    let merged = output_of("merged");
    assert!(
        merged.contains(&("out".to_string(), false))
            && merged.contains(&("err".to_string(), false))
    );
}

#[test]
fn child_sees_supervisor_variables_its_environment_directory_and_user() {
    let mut p = prog("env", "sh -c 'echo $SUPERVISOR_ENABLED $SUPERVISOR_PROCESS_NAME $SUPERVISOR_GROUP_NAME $FOO; pwd; id -u; umask'");
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Never;
    p.environment = vec![("FOO".into(), "bar".into())];
    p.directory = Some("/tmp".into());
    p.umask = Some(0o077);
    if sys::effective_uid() == 0 {
        p.user = Some("nobody".into());
    }
    let mut rig = Rig::new(&[p]);
    rig.start();
    assert!(
        rig.run_until(Duration::from_secs(3), |_| output_of("env").len() == 4),
        "{:?}",
        output_of("env")
    );
    let out: Vec<String> = output_of("env").into_iter().map(|(l, _)| l).collect();
    assert_eq!(out[0], "1 env env bar");
    assert_eq!(out[1], "/tmp");
    if sys::effective_uid() == 0 {
        assert_eq!(out[2], "65534");
    }
    assert_eq!(out[3], "0077");
}

#[test]
fn missing_command_is_a_spawn_error_and_ends_fatal() {
    let mut p = prog("ghost", "no-such-command-uwgate --flag");
    p.startretries = 1;
    let mut rig = Rig::new(&[p]);
    rig.start();
    assert_eq!(rig.state("ghost").0, "BACKOFF");
    rig.wait_state("ghost", "FATAL", Duration::from_secs(3));
    assert_eq!(rig.status("ghost").restarts, 0);
}

#[test]
fn failed_chdir_is_starting_until_its_report_then_backs_off_and_ends_fatal() {
    let mut p = prog("lost", "/bin/true");
    p.directory = Some("/nonexistent-dir-uwgate".into());
    p.startretries = 1;
    let mut rig = Rig::new(&[p]);
    rig.start();
    // start() returned right after fork: the child's report is not in yet.
    let (state, pid) = rig.state("lost");
    assert_eq!(state, "STARTING");
    assert!(pid.is_some());
    rig.wait_state("lost", "BACKOFF", Duration::from_secs(2));
    assert_eq!(rig.state("lost").1, None);
    rig.wait_state("lost", "FATAL", Duration::from_secs(3));
    // The failed children were reaped through SIGCHLD like any other (Drop checks no child is left).
    assert_eq!(
        rig.status("lost").restarts,
        0,
        "never exec'd, never counted"
    );
    assert!(
        rig.longest_call < Duration::from_millis(200),
        "{:?}",
        rig.longest_call
    );
}

#[test]
fn reload_adds_removes_changes_and_keeps_unchanged_programs() {
    let quick = |name: &str, cmd: &str| {
        let mut p = prog(name, cmd);
        p.startsecs = Duration::ZERO;
        p
    };
    let (keep, change, remove) = (
        quick("keep", "sleep 30"),
        quick("change", "sleep 30"),
        quick("remove", "sleep 30"),
    );
    let mut rig = Rig::new(&[keep.clone(), change.clone(), remove]);
    rig.start();
    assert!(rig.run_until(Duration::from_secs(2), |r| r
        .wd
        .status()
        .all(|s| s.state == "RUNNING")));
    let pid = |r: &Rig, n: &str| r.state(n).1;
    let (keep_pid, change_pid) = (pid(&rig, "keep"), pid(&rig, "change"));
    let mut moved = keep.clone();
    moved.line = 40; // moving a section in the file is no change
    moved.required_for_health = true; // nor is what the health page requires
    let changed = quick("change", "sleep 31");
    let added = quick("added", "sleep 30");
    rig.wd.reload(
        rig.poll.registry(),
        &[changed, moved, added],
        Instant::now(),
    );
    let ok = rig.run_until(Duration::from_secs(3), |r| {
        r.state("remove").0 == "GONE"
            && r.state("added").0 == "RUNNING"
            && matches!(r.state("change"), ("RUNNING", Some(p)) if Some(p) != change_pid)
    });
    assert!(ok, "{:?}", rig.seen);
    assert_eq!(pid(&rig, "keep"), keep_pid);
    assert_eq!(rig.wd.status().count(), 3);
    rig.shutdown();
}

#[test]
fn numprocs_instances_are_supervised_separately() {
    let mut p = prog("w", "sleep 30");
    p.numprocs = 2;
    p.process_name = "%(program_name)s_%(process_num)d".into();
    p.startsecs = Duration::ZERO;
    let mut rig = Rig::new(&[p]);
    rig.start();
    // Each is RUNNING once its own exec report is in (startsecs = 0), in either order.
    rig.wait_state("w_1", "RUNNING", Duration::from_secs(2));
    rig.wait_state("w_0", "RUNNING", Duration::from_secs(2));
    let names: Vec<(String, String)> = rig
        .wd
        .status()
        .map(|s| (s.name.to_string(), s.group.to_string()))
        .collect();
    assert_eq!(
        names,
        vec![("w_0".into(), "w".into()), ("w_1".into(), "w".into())]
    );
    rig.shutdown();
}

#[test]
fn starts_fork_one_at_a_time_in_priority_order_each_after_the_previous_exec() {
    let names = ["a", "b", "c"];
    let programs: Vec<config::Program> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut p = prog(n, "sleep 30");
            p.priority = 10 - i as i32; // c starts first, a last
            p.startsecs = Duration::ZERO;
            p
        })
        .collect();
    let mut rig = Rig::new(&programs);
    rig.start();
    // The first fork happened; the others wait for its exec report (the loop does not).
    assert_eq!(rig.state("c").0, "STARTING");
    assert_eq!(rig.state("b"), ("STOPPED", None));
    assert_eq!(rig.state("a"), ("STOPPED", None));
    rig.wait_state("a", "RUNNING", Duration::from_secs(3));
    let running_at = |n: &str| {
        rig.seen
            .iter()
            .find(|s| s.0 == n && s.1 == "RUNNING")
            .map(|s| s.3)
            .unwrap()
    };
    let first_seen = |n: &str| rig.spawn_times(n)[0];
    assert!(running_at("c") <= first_seen("b"), "{:?}", rig.seen);
    assert!(running_at("b") <= first_seen("a"), "{:?}", rig.seen);
    assert!(rig.longest_call < Duration::from_millis(200));
    rig.shutdown();
}

#[test]
fn stop_all_stops_in_reverse_priority_order_and_leaves_no_child() {
    let mut first = prog(
        "first",
        "sh -c 'trap \"sleep 0.3; exit 0\" TERM; while :; do sleep 0.05; done'",
    );
    first.priority = 1;
    first.startsecs = Duration::ZERO;
    let mut last = prog(
        "last",
        "sh -c 'trap \"sleep 0.3; exit 0\" TERM; while :; do sleep 0.05; done'",
    );
    last.priority = 2;
    last.startsecs = Duration::ZERO;
    let mut rig = Rig::new(&[first, last]);
    rig.start();
    rig.run_for(Duration::from_millis(200));
    let t = Instant::now();
    rig.shutdown();
    let at = |n: &str, st: &str| {
        rig.seen
            .iter()
            .find(|s| s.0 == n && s.1 == st && s.3 >= t)
            .map(|s| s.3)
            .unwrap()
    };
    assert!(
        at("last", "STOPPED") <= at("first", "STOPPING"),
        "{:?}",
        rig.seen
    );
    assert!(!sys::has_children());
}

/// Crash-to-respawn latency as the watchdog sees it: from SIGKILL to the new child exec'd (its
/// exec report in), with SIGCHLD noticed by busy polling (the real loop wakes on its signalfd).
#[test]
#[ignore = "measurement, ~25 s: cargo test respawn_latency -- --ignored --nocapture"]
fn respawn_latency_median_of_20() {
    let mut p = prog("victim", "sleep 60");
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Always;
    let mut rig = Rig::new(&[p]);
    rig.start();
    let mut samples = Vec::new();
    for _ in 0..20 {
        rig.run_for(Duration::from_millis(1020)); // past the one-spawn-a-second throttle
        let (_, Some(old)) = rig.state("victim") else {
            panic!("not running: {:?}", rig.seen)
        };
        let t = Instant::now();
        sys::send_signal(old, libc::SIGKILL, false).unwrap();
        loop {
            rig.wd.on_sigchld(rig.poll.registry(), Instant::now());
            // The new child's exec report arrives as an event.
            rig.poll
                .poll(&mut rig.events, Some(Duration::ZERO))
                .unwrap();
            let events: Vec<mio::event::Event> = rig.events.iter().cloned().collect();
            for ev in &events {
                rig.wd.on_event(rig.poll.registry(), ev, Instant::now());
            }
            if matches!(rig.state("victim"), ("RUNNING", Some(p)) if p != old) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "respawn latency: median {:?}, min {:?}, max {:?}",
        samples[10], samples[0], samples[19]
    );
    rig.shutdown();
}

// ---- uwgate ctl (commands.rs) ------------------------------------------------------------

fn id_of(rig: &Rig, name: &str) -> u64 {
    rig.status(name).id
}

#[test]
fn ctl_stop_then_start_runs_a_new_child_and_refuses_what_does_not_apply() {
    let mut p = prog("sleeper", "/bin/sleep 30");
    p.startsecs = Duration::ZERO;
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.wait_state("sleeper", "RUNNING", Duration::from_secs(5));
    let id = id_of(&rig, "sleeper");
    let first = rig.state("sleeper").1;
    let now = Instant::now();
    assert_eq!(
        rig.wd.start_process(rig.poll.registry(), id, now),
        Err(Refusal::AlreadyStarted)
    );
    assert_eq!(rig.wd.stop_process(rig.poll.registry(), id, now), Ok(()));
    rig.wait_state("sleeper", "STOPPED", Duration::from_secs(5));
    assert_eq!(
        rig.wd.availability("sleeper", Instant::now()),
        Availability::Down,
        "stopped on purpose: requests do not wait"
    );
    assert_eq!(
        rig.wd.stop_process(rig.poll.registry(), id, Instant::now()),
        Err(Refusal::NotRunning)
    );
    assert_eq!(
        rig.wd.signal_process(id, libc::SIGHUP),
        Err(Refusal::NotRunning)
    );
    assert!(rig.status("sleeper").stopped_unix.is_some());
    assert_eq!(
        rig.wd
            .start_process(rig.poll.registry(), id, Instant::now()),
        Ok(())
    );
    rig.wait_state("sleeper", "RUNNING", Duration::from_secs(5));
    assert_ne!(rig.state("sleeper").1, first, "a new child");
    assert_eq!(
        rig.wd
            .start_process(rig.poll.registry(), 9999, Instant::now()),
        Err(Refusal::NoSuchProcess)
    );
    rig.shutdown();
}

#[test]
fn ctl_restart_keeps_requests_waiting_from_stop_to_running() {
    let mut p = prog("sleeper", "/bin/sleep 30");
    p.startsecs = Duration::from_millis(300);
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.wait_state("sleeper", "RUNNING", Duration::from_secs(5));
    let id = id_of(&rig, "sleeper");
    let first = rig.state("sleeper").1;
    let generation = rig.wd.generation();
    assert_eq!(
        rig.wd
            .restart_process(rig.poll.registry(), id, Instant::now()),
        Ok(true)
    );
    assert_ne!(
        rig.wd.generation(),
        generation,
        "a transition bumps the generation"
    );
    let mut states = Vec::new();
    let mut waits = Vec::new();
    let ok = rig.run_until(Duration::from_secs(5), |r| {
        let (state, pid) = r.state("sleeper");
        if state == "RUNNING" && pid != first {
            return true;
        }
        waits.push((state, r.wd.availability("sleeper", Instant::now())));
        false
    });
    for (name, state, _, _) in &rig.seen {
        if name == "sleeper" {
            states.push(*state);
        }
    }
    assert!(ok, "not RUNNING again: {states:?}");
    assert!(
        waits.iter().all(|(_, a)| *a == Availability::Wait),
        "from the stop to RUNNING, requests wait: {waits:?}"
    );
    assert!(states.contains(&"STARTING"));
    rig.shutdown();
}

#[test]
fn availability_waits_while_starting_and_backing_off_and_settles_after_running() {
    let mut p = prog("sleeper", "/bin/sleep 30");
    p.startsecs = Duration::from_millis(400);
    let mut rig = Rig::new(&[p, prog("crasher", "/bin/false")]);
    assert_eq!(
        rig.wd.availability("sleeper", Instant::now()),
        Availability::Down,
        "not started yet, not wanted"
    );
    rig.start();
    assert_eq!(
        rig.wd.availability("sleeper", Instant::now()),
        Availability::Wait
    );
    rig.wait_state("crasher", "BACKOFF", Duration::from_secs(5));
    assert_eq!(
        rig.wd.availability("crasher", Instant::now()),
        Availability::Wait
    );
    assert_eq!(
        rig.status("crasher").spawnerr,
        Some("Exited too quickly (process log may have details)")
    );
    rig.wait_state("sleeper", "RUNNING", Duration::from_secs(5));
    assert_eq!(
        rig.wd.availability("sleeper", Instant::now()),
        Availability::Ready { settling: true }
    );
    assert_eq!(
        rig.wd
            .availability("sleeper", Instant::now() + commands::SETTLE),
        Availability::Ready { settling: false }
    );
    assert_eq!(
        rig.wd.availability("nosuch", Instant::now()),
        Availability::Down
    );
    rig.wait_state("crasher", "FATAL", Duration::from_secs(15));
    assert_eq!(
        rig.wd.availability("crasher", Instant::now()),
        Availability::Down
    );
    rig.shutdown();
}

#[test]
fn reload_program_sends_the_reload_signal_and_restarts_a_child_that_exits_from_it() {
    // A shell that exits on HUP (status 129): with autorestart = false, only the reload
    // window starts it again.
    let mut p = prog(
        "hup",
        "/bin/sh -c 'trap \"exit 3\" HUP; while :; do sleep 0.05; done'",
    );
    p.startsecs = Duration::ZERO;
    p.autorestart = config::AutoRestart::Never;
    let mut rig = Rig::new(&[p]);
    rig.start();
    rig.wait_state("hup", "RUNNING", Duration::from_secs(5));
    let id = id_of(&rig, "hup");
    let first = rig.state("hup").1;
    assert_eq!(rig.wd.reload_process(id, Instant::now()), Ok(libc::SIGHUP));
    let ok = rig.run_until(Duration::from_secs(5), |r| {
        r.state("hup").0 == "RUNNING" && r.state("hup").1 != first
    });
    assert!(
        ok,
        "not started again after exiting from its reload: {:?}",
        rig.seen
    );
    rig.shutdown();
}

#[test]
fn output_is_kept_in_the_rings_for_tail() {
    let mut p = prog(
        "talker",
        "/bin/sh -c 'echo out1; echo err1 >&2; echo out2; sleep 30'",
    );
    p.output_buffer_size = 1024;
    let mut rig = Rig::new(&[p]);
    rig.start();
    let id = loop {
        rig.turn();
        let id = id_of(&rig, "talker");
        let out = rig.wd.output(id, false).map_or(0, |r| r.total());
        let err = rig.wd.output(id, true).map_or(0, |r| r.total());
        if out >= 10 && err >= 5 {
            break id;
        }
    };
    let text = |ring: &ring::Ring| {
        let (a, b) = ring.slices(0, u64::MAX);
        String::from_utf8([a, b].concat()).unwrap()
    };
    assert_eq!(text(rig.wd.output(id, false).unwrap()), "out1\nout2\n");
    assert_eq!(text(rig.wd.output(id, true).unwrap()), "err1\n");
    rig.shutdown();
}
