//! The program table across an in-place upgrade: what the old image writes into the handoff
//! record (`export`) and how the new image takes its children over from it (`adopt`), so that no
//! child is signalled, respawned or forgotten.
//!
//! Per process (`proc`): program and process name, the machine (state, pid, spawn time, the
//! state's deadline, backoff, spawn count, last exit, wanted), and the process group it leads.
//! Per output pipe (`pipe`): the read end, the process and pid it belongs to, and the unfinished
//! line. Per child still between fork and exec (`exec`): its exec report pipe and what arrived of
//! it. Per ended group (`ended`): pgid, start time, name. Times are monotonic nanoseconds, so a
//! start time, a startsecs or a backoff deadline is the same instant on both sides of the exec.
//!
//! Adoption matches processes by program and process name (the old image refuses to upgrade
//! while the programs differ from the file, so both images see the same set); it works on
//! close-on-exec duplicates of the inherited descriptors, and reaps, spawns and signals nothing
//! until `resume` (a reaped status would be lost if the new image rolled back). Ready probes
//! start afresh. Owns only this mapping; never decides when an upgrade happens (the gate does).

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use super::output::OutputPipe;
use super::state::{ExitStatus, Machine, StartPhase, State};
use super::{exec_token, pipe_token, run_state, PendingExec, Watchdog};
use crate::config;
use crate::handoff::record::{Clock, Entry};
use crate::logging::Severity;
use crate::sys::exec as sysexec;
use crate::sys::process as sys;

/// Non-program children whose exit status is kept for the gate (the upgrade check).
const OTHER_EXITS: usize = 8;

impl Watchdog {
    /// Why the table cannot be handed over now, if it cannot: uwgate is stopping, or a reload
    /// is still stopping the old instance of a changed or removed program.
    pub fn handoff_blocker(&self) -> Option<String> {
        if self.shutting_down {
            return Some("the programs are being stopped".into());
        }
        let retired = self.procs.iter().flatten().find(|p| p.retired)?;
        Some(format!(
            "a reload is still stopping the old {} (try again once it is down)",
            retired.name
        ))
    }

    /// Whether `programs` (the file as it is now) differ from the running set: an upgrade then
    /// waits for a reload, since adoption matches processes by name and settings.
    pub fn programs_differ(&self, programs: &[config::Program]) -> Option<String> {
        for prog in programs {
            match self.programs.iter().find(|d| d.config.name == prog.name) {
                Some(def) if def.same_settings(prog) => {}
                Some(_) => return Some(format!("[program:{}] changed", prog.name)),
                None => return Some(format!("[program:{}] was added", prog.name)),
            }
        }
        self.programs
            .iter()
            .find(|d| !programs.iter().any(|p| p.name == d.config.name))
            .map(|d| format!("[program:{}] was removed", d.config.name))
    }

    /// The table as handoff entries. The descriptors stay open and registered here: the caller
    /// clears their FD_CLOEXEC just before the exec.
    #[cold]
    #[inline(never)]
    pub fn export(&self, clock: &Clock) -> Vec<Entry> {
        let mut out = Vec::new();
        for p in self.procs.iter().flatten() {
            let m = &p.machine;
            let e = Entry::new("proc")
                .put_bytes("program", p.def.config.name.as_bytes())
                .put_bytes("name", p.name.as_bytes())
                .put("backoff", m.backoff)
                .put_opt("last_spawn", m.last_spawn.map(|t| clock.encode(t)))
                .put("spawns", m.spawns)
                .put_bytes("exit", m.last_exit.map_or("-".into(), exit_text).as_bytes())
                .put("wanted", u8::from(m.wanted))
                .put_opt("pgid", p.group.as_ref().map(|g| g.pgid))
                .put_opt("pgstart", p.group.as_ref().map(|g| g.start));
            out.push(state_fields(e, &m.state, clock));
            if let Some(pending) = &p.exec_report {
                out.push(
                    Entry::new("exec")
                        .put("fd", pending.report.as_raw_fd())
                        .put_bytes("name", p.name.as_bytes())
                        .put("pid", pending.pid)
                        .put_bytes("got", pending.report.received())
                        .put_opt("hold", pending.holds_until.map(|t| clock.encode(t))),
                );
            }
        }
        for pipe in self.pipes.iter().flatten() {
            out.push(
                Entry::new("pipe")
                    .put("fd", pipe.rx.as_raw_fd())
                    .put("serial", pipe.serial)
                    .put_bytes("name", pipe.tag.as_bytes())
                    .put("pid", pipe.pid)
                    .put("stderr", u8::from(pipe.is_stderr))
                    .put("severity", pipe.severity.code())
                    .put_bytes("partial", pipe.unfinished()),
            );
        }
        for g in &self.ended_groups {
            out.push(
                Entry::new("ended")
                    .put("pgid", g.pgid)
                    .put("start", g.start)
                    .put_bytes("name", g.name.as_bytes()),
            );
        }
        out
    }

    /// Takes the children over from the entries of a handoff record: machines, groups, output
    /// pipes (registered), pending exec reports (registered). A process of the file that the
    /// record lacks is treated as added by a reload. Spawns, signals and reaps nothing (see the
    /// module header); `resume` does, once the new image serves. Returns the processes adopted.
    #[cold]
    #[inline(never)]
    pub fn adopt(
        &mut self,
        registry: &mio::Registry,
        entries: &[Entry],
        clock: &Clock,
    ) -> Result<usize, String> {
        let mut adopted = vec![false; self.procs.len()];
        for e in entries {
            match e.kind.as_str() {
                "proc" => self.adopt_proc(e, clock, &mut adopted)?,
                "exec" => self.adopt_exec(registry, e, clock)?,
                "pipe" => self.adopt_pipe(registry, e)?,
                "ended" => self.ended_groups.push(run_state::Group {
                    pgid: e.get("pgid")?,
                    start: e.get("start")?,
                    name: e.text("name")?.to_string(),
                }),
                other => return Err(format!("unknown handoff entry '{other}'")),
            }
        }
        for (idx, slot) in self.procs.iter_mut().enumerate() {
            if let Some(p) = slot {
                if !adopted.get(idx).copied().unwrap_or(false) {
                    log::info!("{}: not in the handoff; starting it as added", p.name);
                    p.machine.set_wanted(p.def.config.autostart);
                }
            }
        }
        for idx in 0..self.procs.len() {
            self.sync_probe(registry, idx, clock.now());
        }
        self.save_run_state();
        Ok(adopted.iter().filter(|&&a| a).count())
    }

    /// The new image serves: reaps what exited around the exec (its SIGCHLD is pending still,
    /// so this is belt and braces) and starts what is due, as the loop's first turn would.
    pub fn resume(&mut self, registry: &mio::Registry, now: Instant) {
        self.on_sigchld(registry, now);
    }

    /// Records a reaped child that is no program's (bounded: the last `OTHER_EXITS`).
    pub(super) fn note_other_exit(&mut self, pid: u32, status: ExitStatus) {
        if self.other_exits.len() >= OTHER_EXITS {
            self.other_exits.remove(0);
        }
        self.other_exits.push((pid, status));
    }

    /// How the non-program child `pid` ended, once reaped (the gate's upgrade check).
    pub fn take_other_exit(&mut self, pid: u32) -> Option<ExitStatus> {
        let at = self.other_exits.iter().position(|&(p, _)| p == pid)?;
        Some(self.other_exits.remove(at).1)
    }

    fn find_proc(&self, program: Option<&str>, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| {
            p.as_ref().is_some_and(|p| {
                !p.retired && &*p.name == name && program.is_none_or(|g| p.def.config.name == g)
            })
        })
    }

    fn adopt_proc(&mut self, e: &Entry, clock: &Clock, adopted: &mut [bool]) -> Result<(), String> {
        let (program, name) = (e.text("program")?, e.text("name")?);
        let state = decode_state(e, clock)?;
        let pgid: Option<u32> = e.get_opt("pgid")?;
        let group = pgid.map(|pgid| run_state::Group {
            pgid,
            start: e.get_opt("pgstart").ok().flatten().unwrap_or(0),
            name: name.to_string(),
        });
        let found = self
            .find_proc(Some(program), name)
            .filter(|&i| !adopted.get(i).copied().unwrap_or(true));
        let Some(idx) = found else {
            return self.orphan(name, &state, group);
        };
        let machine = Machine {
            state,
            backoff: e.get("backoff")?,
            last_spawn: e.get_opt("last_spawn")?.map(|ns| clock.decode(ns)),
            spawns: e.get("spawns")?,
            last_exit: match e.text("exit")? {
                "-" => None,
                text => Some(exit_status(text)?),
            },
            wanted: e.flag("wanted")?,
        };
        if let (Some(Some(p)), Some(mark)) = (self.procs.get_mut(idx), adopted.get_mut(idx)) {
            p.machine = machine;
            p.group = group;
            *mark = true;
        }
        Ok(())
    }

    /// A process of the record that the file no longer has: its group gets SIGTERM and is
    /// remembered as ended (its exit is reaped as no program's).
    fn orphan(
        &mut self,
        name: &str,
        state: &State,
        group: Option<run_state::Group>,
    ) -> Result<(), String> {
        let pid = match *state {
            State::Starting { pid, .. }
            | State::Running { pid, .. }
            | State::Stopping { pid, .. } => pid,
            _ => return Ok(()),
        };
        log::warn!("{name} (pid {pid}) is not in the configuration any more; sending SIGTERM");
        if let Err(e) = sys::send_signal(pid, libc::SIGTERM, group.is_some()) {
            log::warn!("{name}: kill({pid}): {e}");
        }
        self.ended_groups.extend(group);
        Ok(())
    }

    fn adopt_exec(
        &mut self,
        registry: &mio::Registry,
        e: &Entry,
        clock: &Clock,
    ) -> Result<(), String> {
        let (fd, pid): (RawFd, u32) = (e.get("fd")?, e.get("pid")?);
        let Some(idx) = self.find_proc(None, e.text("name")?).filter(
            |&i| matches!(self.procs.get(i), Some(Some(p)) if p.machine.pid() == Some(pid)),
        ) else {
            return Ok(()); // its process was not adopted: its report is not needed
        };
        let owned = inherit(fd, libc::S_IFIFO)?;
        let report = sys::ExecReport::adopt(owned, e.bytes("got")?);
        registry
            .register(
                &mut mio::unix::SourceFd(&report.as_raw_fd()),
                exec_token(idx),
                mio::Interest::READABLE,
            )
            .map_err(|err| format!("exec report of pid {pid}: {err}"))?;
        let holds_until = e.get_opt("hold")?.map(|ns| clock.decode(ns));
        if let Some(Some(p)) = self.procs.get_mut(idx) {
            p.exec_report = Some(PendingExec {
                pid,
                report,
                holds_until,
            });
        }
        Ok(())
    }

    fn adopt_pipe(&mut self, registry: &mio::Registry, e: &Entry) -> Result<(), String> {
        let (fd, name, pid): (RawFd, &str, u32) = (e.get("fd")?, e.text("name")?, e.get("pid")?);
        let owned = inherit(fd, libc::S_IFIFO)?;
        let (tag, owner) = match self
            .find_proc(None, name)
            .and_then(|i| self.procs.get(i)?.as_ref())
        {
            Some(p) => (Rc::clone(&p.name), p.id),
            None => (Rc::from(name), self.fresh_id()),
        };
        // Spawn order among the pipes (the oldest lingering ones close first): kept, and later
        // spawns numbered after it.
        let serial: u64 = e.get("serial")?;
        // A record from a build without syslog priorities: its defaults (stdout info, stderr err).
        let is_stderr = e.flag("stderr")?;
        let severity = e
            .get_opt::<u8>("severity")?
            .unwrap_or(if is_stderr { 3 } else { 6 });
        self.next_id = self.next_id.max(serial.saturating_add(1));
        let mut pipe = OutputPipe::new(
            mio::unix::pipe::Receiver::from(owned),
            tag,
            pid,
            (is_stderr, Severity::from_code(severity)),
            owner,
            serial,
        );
        pipe.restore_unfinished(e.bytes("partial")?);
        let idx = self
            .pipes
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.pipes.len());
        registry
            .register(&mut pipe.rx, pipe_token(idx), mio::Interest::READABLE)
            .map_err(|err| format!("output pipe of pid {pid}: {err}"))?;
        match self.pipes.get_mut(idx) {
            Some(slot) => *slot = Some(pipe),
            None => self.pipes.push(Some(pipe)),
        }
        Ok(())
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }
}

/// A close-on-exec duplicate of the inherited `fd`, checked to be of file type `kind`.
fn inherit(fd: RawFd, kind: libc::mode_t) -> Result<std::os::fd::OwnedFd, String> {
    match sysexec::file_type(fd) {
        Ok(t) if t == kind => sysexec::dup_cloexec(fd).map_err(|e| format!("dup of fd {fd}: {e}")),
        Ok(_) => Err(format!("inherited fd {fd} is not a pipe")),
        Err(e) => Err(format!("inherited fd {fd}: {e}")),
    }
}

/// The state's own fields: `state`, `pid`, `since`, `phase`, `at` (its deadline), `-` when
/// the state has none.
fn state_fields(e: Entry, state: &State, clock: &Clock) -> Entry {
    let enc = |t: Instant| clock.encode(t);
    let (name, pid, since, phase, at) = match *state {
        State::Stopped { start_at } => ("stopped", None, None, None, start_at.map(enc)),
        State::Starting { pid, since, phase } => {
            let (phase, at) = match phase {
                StartPhase::Exec => ("exec", None),
                StartPhase::Waiting { deadline } => ("waiting", Some(enc(deadline))),
                StartPhase::Abandoning { kill_at } => ("abandoning", Some(enc(kill_at))),
                StartPhase::Killed => ("killed", None),
            };
            ("starting", Some(pid), Some(enc(since)), Some(phase), at)
        }
        State::Running { pid, since } => ("running", Some(pid), Some(enc(since)), None, None),
        State::Backoff { retry_at } => ("backoff", None, None, None, Some(enc(retry_at))),
        State::Stopping { pid, kill_at } => ("stopping", Some(pid), None, None, kill_at.map(enc)),
        State::Exited { restart_at } => ("exited", None, None, None, restart_at.map(enc)),
        State::Fatal => ("fatal", None, None, None, None),
    };
    e.put_bytes("state", name.as_bytes())
        .put_opt("pid", pid)
        .put_opt("since", since)
        .put_bytes("phase", phase.unwrap_or("-").as_bytes())
        .put_opt("at", at)
}

/// Reads what `state_fields` wrote.
fn decode_state(e: &Entry, clock: &Clock) -> Result<State, String> {
    let at: Option<Instant> = e.get_opt("at")?.map(|ns| clock.decode(ns));
    let need_at = || at.ok_or_else(|| "proc: no deadline".to_string());
    let pid = || -> Result<u32, String> { e.get_opt("pid")?.ok_or_else(|| "proc: no pid".into()) };
    let since = || -> Result<Instant, String> {
        let ns: Option<u64> = e.get_opt("since")?;
        ns.map(|ns| clock.decode(ns))
            .ok_or_else(|| "proc: no since".into())
    };
    Ok(match e.text("state")? {
        "stopped" => State::Stopped { start_at: at },
        "starting" => State::Starting {
            pid: pid()?,
            since: since()?,
            phase: match e.text("phase")? {
                "exec" => StartPhase::Exec,
                "waiting" => StartPhase::Waiting {
                    deadline: need_at()?,
                },
                "abandoning" => StartPhase::Abandoning {
                    kill_at: need_at()?,
                },
                "killed" => StartPhase::Killed,
                other => return Err(format!("proc: unknown phase '{other}'")),
            },
        },
        "running" => State::Running {
            pid: pid()?,
            since: since()?,
        },
        "backoff" => State::Backoff {
            retry_at: need_at()?,
        },
        "stopping" => State::Stopping {
            pid: pid()?,
            kill_at: at,
        },
        "exited" => State::Exited { restart_at: at },
        "fatal" => State::Fatal,
        other => return Err(format!("proc: unknown state '{other}'")),
    })
}

/// `code:N`, `signal:N` or `signal:N:core`.
fn exit_text(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("code:{code}"),
        ExitStatus::Signal {
            signal,
            core_dumped: false,
        } => format!("signal:{signal}"),
        ExitStatus::Signal {
            signal,
            core_dumped: true,
        } => format!("signal:{signal}:core"),
    }
}

fn exit_status(text: &str) -> Result<ExitStatus, String> {
    let bad = || format!("proc: bad exit '{text}'");
    let mut parts = text.split(':');
    let (kind, n) = (parts.next(), parts.next().and_then(|n| n.parse().ok()));
    match (kind, n, parts.next()) {
        (Some("code"), Some(code), None) => Ok(ExitStatus::Code(code)),
        (Some("signal"), Some(signal), core) => Ok(ExitStatus::Signal {
            signal,
            core_dumped: match core {
                None => false,
                Some("core") => true,
                Some(_) => return Err(bad()),
            },
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::exec::monotonic_ns;
    use std::time::Duration;

    fn discard(_: &str, _: u32, _: &[u8], _: crate::logging::Severity) {}

    fn now_clock() -> Clock {
        Clock::new(Instant::now(), monotonic_ns())
    }

    /// Machines equal but for the instants, which cross to within the moment between reading
    /// `Instant` and the monotonic clock (microseconds).
    fn same_machine(a: &Machine, b: &Machine) {
        let close =
            |x: Instant, y: Instant| x.max(y).duration_since(x.min(y)) < Duration::from_millis(1);
        match (a.state, b.state) {
            (
                State::Starting { pid, since, phase },
                State::Starting {
                    pid: p2,
                    since: s2,
                    phase: ph2,
                },
            ) => assert!(
                pid == p2 && close(since, s2) && phase == ph2,
                "{a:?} / {b:?}"
            ),
            (State::Running { pid, since }, State::Running { pid: p2, since: s2 }) => {
                assert!(pid == p2 && close(since, s2), "{a:?} / {b:?}")
            }
            (x, y) => assert_eq!(x, y),
        }
        assert_eq!(
            (a.backoff, a.spawns, a.last_exit, a.wanted),
            (b.backoff, b.spawns, b.last_exit, b.wanted)
        );
        assert_eq!(a.last_spawn.is_some(), b.last_spawn.is_some());
    }

    /// One turn of the old watchdog's loop: its events, its children, its pipes.
    fn turn(wd: &mut Watchdog, poll: &mut mio::Poll, events: &mut mio::Events) {
        poll.poll(events, Some(Duration::from_millis(10))).unwrap();
        for ev in events.iter() {
            wd.on_event(poll.registry(), ev, Instant::now());
        }
        wd.on_sigchld(poll.registry(), Instant::now());
    }

    #[test]
    fn a_child_is_adopted_before_and_after_its_exec_with_its_pid_spawn_time_and_unfinished_line() {
        let _lock = sys::fork_lock();
        let program = config::Program {
            line: 1,
            startsecs: Duration::ZERO,
            ..config::Program::new("talker", "/bin/sh -c 'printf half-a-line; exec sleep 30'")
        };
        let programs = [program];
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(16);
        let mut old = Watchdog::new(&programs).unwrap();
        old.set_output_sink(discard);
        old.start(poll.registry(), Instant::now());

        // 1. Forked, its exec report pending: the report crosses with the machine.
        let entries = old.export(&now_clock());
        assert!(entries.iter().any(|e| e.kind == "exec"), "{entries:?}");
        let poll_mid = mio::Poll::new().unwrap();
        let mut mid = Watchdog::new(&programs).unwrap();
        assert_eq!(
            mid.adopt(poll_mid.registry(), &entries, &now_clock())
                .unwrap(),
            1
        );
        let (a, b) = (
            old.procs[0].as_ref().unwrap(),
            mid.procs[0].as_ref().unwrap(),
        );
        same_machine(&a.machine, &b.machine);
        assert_eq!(b.machine.state_name(), "STARTING");
        assert_eq!(b.exec_report.as_ref().map(|e| e.pid), a.machine.pid());

        // 2. Running, its half line in the pipe's line buffer.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            turn(&mut old, &mut poll, &mut events);
            let partial = old
                .pipes
                .iter()
                .flatten()
                .any(|p| p.unfinished() == b"half-a-line");
            if partial && old.status().all(|s| s.state == "RUNNING") {
                break;
            }
        }
        let entries = old.export(&now_clock());
        let poll_new = mio::Poll::new().unwrap();
        let mut new = Watchdog::new(&programs).unwrap();
        new.set_output_sink(discard);
        assert_eq!(
            new.adopt(poll_new.registry(), &entries, &now_clock())
                .unwrap(),
            1
        );
        let (a, b) = (
            old.procs[0].as_ref().unwrap(),
            new.procs[0].as_ref().unwrap(),
        );
        assert_eq!(b.machine.state_name(), "RUNNING");
        same_machine(&a.machine, &b.machine);
        assert_eq!(b.group, a.group);
        let pipe = new.pipes.iter().flatten().find(|p| !p.is_stderr).unwrap();
        assert_eq!(pipe.unfinished(), b"half-a-line");
        assert_eq!(pipe.owner, b.id);
        assert_eq!(pipe.pid, a.machine.pid().unwrap());

        // Done: the child goes, reaped here (waitpid is process-wide).
        let pid = a.machine.pid().unwrap();
        sys::send_signal(pid, libc::SIGKILL, true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !matches!(sys::reap_one(), Some((p, _)) if p == pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_process_the_file_no_longer_has_is_not_adopted_and_a_new_one_is_wanted() {
        let entries = [Entry::new("proc")
            .put_bytes("program", b"gone")
            .put_bytes("name", b"gone")
            .put("backoff", 0)
            .put_opt("last_spawn", None::<u64>)
            .put("spawns", 0)
            .put_bytes("exit", b"-")
            .put("wanted", 0)
            .put_opt("pgid", None::<u32>)
            .put_opt("pgstart", None::<u64>)
            .put_bytes("state", b"stopped")
            .put_opt("pid", None::<u32>)
            .put_opt("since", None::<u64>)
            .put_bytes("phase", b"-")
            .put_opt("at", None::<u64>)];
        let programs = [config::Program {
            line: 1,
            ..config::Program::new("fresh", "sleep 1")
        }];
        let poll = mio::Poll::new().unwrap();
        let mut wd = Watchdog::new(&programs).unwrap();
        assert_eq!(
            wd.adopt(poll.registry(), &entries, &now_clock()).unwrap(),
            0
        );
        assert!(
            wd.procs[0].as_ref().unwrap().machine.wanted,
            "autostart, as if added"
        );
        let bad = [Entry::new("mystery")];
        assert!(wd.adopt(poll.registry(), &bad, &now_clock()).is_err());
    }

    fn clock() -> Clock {
        Clock::new(Instant::now(), 500_000_000_000)
    }

    #[test]
    fn every_state_crosses_with_its_pid_and_instants() {
        let c = clock();
        let t = c.now() + Duration::from_secs(3);
        let since = c.now() - Duration::from_secs(60);
        let states = [
            State::Stopped { start_at: None },
            State::Stopped { start_at: Some(t) },
            State::Starting {
                pid: 7,
                since,
                phase: StartPhase::Exec,
            },
            State::Starting {
                pid: 7,
                since,
                phase: StartPhase::Waiting { deadline: t },
            },
            State::Starting {
                pid: 7,
                since,
                phase: StartPhase::Abandoning { kill_at: t },
            },
            State::Starting {
                pid: 7,
                since,
                phase: StartPhase::Killed,
            },
            State::Running { pid: 8, since },
            State::Backoff { retry_at: t },
            State::Stopping {
                pid: 9,
                kill_at: Some(t),
            },
            State::Stopping {
                pid: 9,
                kill_at: None,
            },
            State::Exited { restart_at: None },
            State::Fatal,
        ];
        for s in states {
            let e = state_fields(Entry::new("proc"), &s, &c);
            assert_eq!(decode_state(&e, &c).unwrap(), s);
        }
    }

    #[test]
    fn exit_statuses_cross_as_text() {
        for s in [
            ExitStatus::Code(0),
            ExitStatus::Code(-1),
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false,
            },
            ExitStatus::Signal {
                signal: 11,
                core_dumped: true,
            },
        ] {
            assert_eq!(exit_status(&exit_text(s)).unwrap(), s);
        }
        assert!(exit_status("signal:9:x").is_err());
        assert!(exit_status("code").is_err());
        assert!(exit_status("").is_err());
    }

    #[test]
    fn a_state_without_what_it_needs_is_an_error() {
        let c = clock();
        let e = Entry::new("proc")
            .put_bytes("state", b"running")
            .put_opt("pid", None::<u32>);
        assert!(decode_state(&e, &c).is_err());
        let e = Entry::new("proc")
            .put_bytes("state", b"backoff")
            .put_opt("at", None::<u64>);
        assert!(decode_state(&e, &c).is_err());
        let e = Entry::new("proc")
            .put_bytes("state", b"dancing")
            .put_opt("at", None::<u64>);
        assert!(decode_state(&e, &c).is_err());
    }
}
