//! The watchdog: supervisor's `[program:x]` semantics inside uwgate's event loop.
//!
//! Owns the supervised processes (one entry per `numprocs` instance), their output pipes and
//! ready probes, start order (priority, depends_on), stop order (reverse priority, dependents
//! first), reload diffs and the shutdown sweep of orphaned descendants. Every rule about states
//! lives in the pure `state` module; this module performs the actions it returns (spawn, signal),
//! feeds back what happened and words the log lines.
//!
//! Must never block or sleep (delays are deadlines the loop polls for; a spawn returns after
//! fork, and the child's exec report is a pipe the loop watches), never reap a pid it does
//! not then account for, and never signal pid 0 or -1. Driven by the event loop only: SIGCHLD,
//! readiness of its tokens (all ≥ `TOKEN_BASE`), and `next_deadline()`. Programs arrive
//! validated by `config`; only what needs the running system (users) is checked here.

mod commands;
pub mod handoff;
pub mod output;
pub mod ready;
pub mod ring;
pub mod run_state;
pub mod spawn;
pub mod state;

use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config;
use crate::sys::process as sys;

use crate::logging::Severity;
pub use commands::{Availability, Refusal};
use output::{OutputPipe, Pump, Sink, READ_BUDGET};
use ring::Ring;
use state::{Action, Event, ExitStatus, Machine, Note, Policy, State};

/// Every mio Token at or above this belongs to the watchdog (1 << 40 on 64-bit targets,
/// 1 << 20 on 32-bit ones, where 1 << 40 does not fit a usize).
pub const TOKEN_BASE: usize = 1 << (usize::BITS * 5 / 8);

/// Old output pipes kept per process after a respawn (a surviving grandchild may still write
/// to them); older ones are closed.
const LINGERING_PIPES: usize = 2;

/// Starts go one at a time, in start order: the next fork waits until the previous child's exec
/// report is in (about a millisecond), but never longer than this after its fork, so that a
/// child stuck before exec (a hung NFS `directory`) holds the others back no longer. The loop
/// does not wait: the held starts are retried when the report comes in or this time is up.
const EXEC_HOLD: Duration = Duration::from_secs(2);

/// After every program is down at shutdown, orphaned descendants get SIGTERM, then SIGKILL
/// after this long.
const ORPHAN_STOPWAIT: Duration = Duration::from_secs(3);

/// SIGKILL rounds (one a second) for orphans before the sweep gives up and lets uwgate exit.
const ORPHAN_KILL_ROUNDS: u8 = 5;

/// A `[program:x]` section with what start-up resolved for it.
struct ProgramDef {
    config: config::Program,
    policy: Policy,
    credentials: Option<sys::Credentials>,
    processes: Vec<config::ProcessSpec>,
}

impl ProgramDef {
    /// Same settings, wherever the section sits in the file (`required_for_health` is the
    /// health page's, not the process's: changing it restarts nothing).
    fn same_settings(&self, other: &config::Program) -> bool {
        config::Program {
            line: other.line,
            required_for_health: other.required_for_health,
            ..self.config.clone()
        } == *other
    }
}

/// One supervised process.
struct Proc {
    /// Unique for the life of the watchdog (pipes point back with it).
    id: u64,
    def: Rc<ProgramDef>,
    name: Rc<str>,
    argv: Vec<String>,
    machine: Machine,
    /// The exec report of the child forked last, until it is conclusive.
    exec_report: Option<PendingExec>,
    /// The process group the live child leads, as the run-state file records it.
    group: Option<run_state::Group>,
    /// Its program was removed or changed by a reload: dropped once down.
    retired: bool,
    probe: ready::Probe,
    /// "waiting for dependency" was logged for the current wait.
    told_waiting: bool,
    /// Shutdown step: processes stop in ascending rank, equal ranks together.
    stop_rank: usize,
    /// Recent stdout and stderr (`output_buffer_size` each), for `uwgate ctl tail`.
    out: Ring,
    err: Ring,
    /// `uwgate ctl restart`: start again once the stop is complete.
    restart_pending: bool,
    /// Until then an upstream failure of this process is expected and retried (a restart just
    /// made it RUNNING, or `reload-program` sent its reload signal); see `commands`.
    settling_until: Option<Instant>,
    /// Until then an exit is part of a `reload-program`: the process is started again whatever
    /// `autorestart` says.
    reload_until: Option<Instant>,
    /// Why the last spawn failed (supervisor's `spawnerr`), for `ctl status`.
    spawnerr: Option<String>,
    /// When the last child ended (seconds since the epoch), for `ctl status`.
    stopped_unix: Option<i64>,
}

/// A forked child whose exec report is not conclusive yet.
struct PendingExec {
    pid: u32,
    report: sys::ExecReport,
    /// Until when later starts wait for this exec (`EXEC_HOLD` after the fork); `None` once
    /// that time has passed (so that a stuck child is no deadline any more).
    holds_until: Option<Instant>,
}

/// Orphan sweep at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sweep {
    /// No signal sent yet.
    NotYet,
    /// `rounds` SIGKILL rounds done (0: only SIGTERM); the next at `next_at`.
    Signalled { next_at: Instant, rounds: u8 },
    /// Orphans survived every round (or cannot be listed): uwgate may exit anyway.
    GaveUp,
}

/// One row of the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessStatus<'a> {
    /// The process name (`django`, `worker_01`).
    pub name: &'a str,
    /// The program (`[program:NAME]`).
    pub group: &'a str,
    /// supervisor's state name: STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL.
    pub state: &'static str,
    /// The live child.
    pub pid: Option<u32>,
    /// Seconds since spawn, while RUNNING; 0 otherwise.
    pub uptime_secs: u64,
    /// Spawns after the first.
    pub restarts: u32,
    /// How the last child ended; `Display` words it like supervisor (`exit status 1`).
    pub last_exit: Option<ExitStatus>,
    /// Identity for the control socket (stable while the process entry lives).
    pub id: u64,
    /// Its program was removed or changed by a reload; it goes once down.
    pub retired: bool,
    /// A child was spawned at least once.
    pub started: bool,
    /// Why the last spawn failed, or supervisor's "Exited too quickly" (BACKOFF, FATAL).
    pub spawnerr: Option<&'a str>,
    /// When the last child ended, seconds since the epoch.
    pub stopped_unix: Option<i64>,
    /// A start is asked and still to come (a dependency, the spawn throttle, a restart).
    pub wanted: bool,
}

/// The supervisor. One per uwgate, owned and driven by the event loop.
pub struct Watchdog {
    programs: Vec<Rc<ProgramDef>>,
    procs: Vec<Option<Proc>>,
    /// Indices into `procs`, in start order (priority, then name).
    order: Vec<usize>,
    pipes: Vec<Option<OutputPipe>>,
    next_id: u64,
    shutting_down: bool,
    sweep: Sweep,
    sink: Sink,
    /// Groups whose leader ended but whose members may live on (recorded until they are gone).
    ended_groups: Vec<run_state::Group>,
    /// A failed run-state write was logged (once).
    run_state_failed: bool,
    /// Reaped children that are no program's, for the gate (the upgrade check): see `handoff`.
    other_exits: Vec<(u32, ExitStatus)>,
    /// Bumped on every state change: the loop wakes requests waiting for a program.
    generation: u64,
}

impl Watchdog {
    /// Resolves the programs (config validated them; here: users exist and uwgate may switch
    /// to them) and makes uwgate a child subreaper. Called once before the loop; starts nothing.
    pub fn new(programs: &[config::Program]) -> Result<Watchdog, String> {
        let defs = build_defs(programs)?;
        if let Err(e) = sys::set_child_subreaper() {
            log::warn!(
                "prctl(PR_SET_CHILD_SUBREAPER): {e}; orphaned grandchildren will not be reaped"
            );
        }
        let mut wd = Watchdog {
            programs: Vec::new(),
            procs: Vec::new(),
            order: Vec::new(),
            pipes: Vec::new(),
            next_id: 0,
            shutting_down: false,
            sweep: Sweep::NotYet,
            sink: crate::logging::program_output,
            ended_groups: Vec::new(),
            run_state_failed: false,
            other_exits: Vec::new(),
            generation: 0,
        };
        for def in defs {
            wd.add_program(def, false);
        }
        wd.sort_order();
        Ok(wd)
    }

    /// Starts the autostart programs in priority order; one that `depends_on` others starts
    /// when they are all RUNNING. Called once by the loop after it is set up.
    pub fn start(&mut self, registry: &mio::Registry, now: Instant) {
        for p in self.procs.iter_mut().flatten() {
            if !p.retired && p.def.config.autostart {
                p.machine.set_wanted(true);
            }
        }
        self.settle(registry, now);
    }

    /// SIGCHLD: reaps every exited child (`waitpid(-1, WNOHANG)` until none), including
    /// reparented grandchildren, and runs the transitions for ours.
    pub fn on_sigchld(&mut self, registry: &mio::Registry, now: Instant) {
        while let Some((pid, status)) = sys::reap_one() {
            let status = match status {
                sys::WaitStatus::Exited(code) => ExitStatus::Code(code),
                sys::WaitStatus::Signaled {
                    signal,
                    core_dumped,
                } => ExitStatus::Signal {
                    signal,
                    core_dumped,
                },
            };
            if let Some(idx) = self.find_exec_report(pid) {
                // Reaped before its exec report was read: the report is complete now.
                self.resolve_exec(registry, idx, true, now);
            }
            match self.find_pid(pid) {
                Some(idx) => {
                    // Its last words (a traceback, say) are in its pipes: log them before the
                    // `exited:` line, as supervisor's log order has them.
                    self.pump_pipes_of(registry, pid);
                    self.drive(registry, idx, Event::Exited(status), now)
                }
                None => {
                    log::debug!("reaped pid {pid} ({status}), not a program");
                    self.note_other_exit(pid, status);
                }
            }
        }
        // Reaped orphans may have emptied an ended group: the file then drops it (and goes
        // once nothing is left, as after a clean stop).
        let ended = self.ended_groups.len();
        self.ended_groups.retain(run_state::may_have_members);
        if self.ended_groups.len() != ended {
            self.save_run_state();
        }
        self.settle(registry, now);
    }

    /// Readiness of a watchdog token (≥ `TOKEN_BASE`): a child's output pipe, a ready probe,
    /// or a child's exec report.
    pub fn on_event(&mut self, registry: &mio::Registry, event: &mio::event::Event, now: Instant) {
        let Some(offset) = event.token().0.checked_sub(TOKEN_BASE) else {
            return;
        };
        let idx = offset / TOKEN_KINDS;
        match offset % TOKEN_KINDS {
            PIPE => self.pump_pipe(registry, idx),
            PROBE => {
                let Some(Some(p)) = self.procs.get_mut(idx) else {
                    return;
                };
                if p.probe.on_event(registry, now) {
                    self.drive(registry, idx, Event::Ready, now);
                    self.settle(registry, now);
                }
            }
            _ => {
                self.resolve_exec(registry, idx, false, now);
                self.settle(registry, now);
            }
        }
    }

    /// Whether some pipe stopped at its read budget with data left. The loop must then call
    /// `drain_pending` again (and poll with a zero timeout) before sleeping.
    pub fn has_pending_output(&self) -> bool {
        self.pipes.iter().flatten().any(|p| p.pending)
    }

    /// Gives each pipe with data left one more read budget.
    pub fn drain_pending(&mut self, registry: &mio::Registry, _now: Instant) {
        for idx in 0..self.pipes.len() {
            if matches!(self.pipes.get(idx), Some(Some(p)) if p.pending) {
                self.pump_pipe(registry, idx);
            }
        }
    }

    /// Runs everything due at `now`: startsecs, backoff retries, throttled restarts,
    /// stopwaitsecs escalation, ready probe attempts and timeouts, starts held by a child that
    /// has not exec'd after `EXEC_HOLD`, the orphan sweep.
    pub fn on_timer(&mut self, registry: &mio::Registry, now: Instant) {
        for pending in self
            .procs
            .iter_mut()
            .flatten()
            .filter_map(|p| p.exec_report.as_mut())
        {
            if pending.holds_until.is_some_and(|t| t <= now) {
                pending.holds_until = None;
            }
        }
        for idx in 0..self.procs.len() {
            let Some(Some(p)) = self.procs.get_mut(idx) else {
                continue;
            };
            if p.machine.deadline().is_some_and(|d| d <= now) {
                self.drive(registry, idx, Event::Timer, now);
            }
            let Some(Some(p)) = self.procs.get_mut(idx) else {
                continue;
            };
            let ready = match p.def.config.ready.as_ref() {
                Some(check) if p.probe.deadline().is_some_and(|d| d <= now) => {
                    p.probe.on_timer(registry, probe_token(idx), check, now)
                }
                _ => false,
            };
            if ready {
                self.drive(registry, idx, Event::Ready, now);
            }
        }
        self.settle(registry, now);
    }

    /// The earliest instant `on_timer` has work, if any.
    /// (The loop asks twice per turn, so this is a plain loop, not an iterator chain.)
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next = match self.sweep {
            Sweep::Signalled { next_at, .. } => Some(next_at),
            _ => None,
        };
        for p in self.procs.iter().flatten() {
            // A held start is retried when the hold ends (a report, the usual case, comes
            // sooner).
            let hold = p.exec_report.as_ref().and_then(|r| r.holds_until);
            for at in [p.machine.deadline(), p.probe.deadline(), hold]
                .into_iter()
                .flatten()
            {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    /// uwgate got SIGTERM: stops every program, highest priority number first and dependents
    /// before what they depend on, each with its stopsignal and SIGKILL after stopwaitsecs;
    /// nothing is restarted any more. Then orphaned descendants get SIGTERM, and SIGKILL after
    /// 3 s. The loop exits once `all_stopped()`.
    pub fn stop_all(&mut self, registry: &mio::Registry, now: Instant) {
        self.shutting_down = true;
        for p in self.procs.iter_mut().flatten() {
            p.machine.set_wanted(false);
        }
        self.settle(registry, now);
    }

    /// True when no program has a live child and uwgate has no child process left at all
    /// (or the orphan sweep gave up on survivors after SIGTERM and 5 rounds of SIGKILL).
    pub fn all_stopped(&self) -> bool {
        self.procs
            .iter()
            .flatten()
            .all(|p| p.machine.pid().is_none())
            && (self.sweep == Sweep::GaveUp || !sys::has_children())
    }

    /// SIGHUP with a new configuration, diffed like `supervisorctl update`: added programs start
    /// (when autostart), removed ones stop, changed ones stop and start again with the new
    /// settings, unchanged ones keep running with the same pid. An invalid set (unknown user,
    /// dependency cycle) is logged and the running set is kept as it is.
    pub fn reload(&mut self, registry: &mio::Registry, programs: &[config::Program], now: Instant) {
        if self.shutting_down {
            log::warn!("reload ignored: uwgate is stopping");
            return;
        }
        let defs = match build_defs(programs) {
            Ok(defs) => defs,
            Err(e) => {
                log::error!("reload: {e}; keeping the running programs");
                return;
            }
        };
        let old = std::mem::take(&mut self.programs);
        for def in &old {
            let kept = defs
                .iter()
                .any(|d| d.config.name == def.config.name && def.same_settings(&d.config));
            if kept {
                self.programs.push(Rc::clone(def));
                continue;
            }
            let changed = defs.iter().any(|d| d.config.name == def.config.name);
            log::info!(
                "{}: {}",
                def.config.name,
                if changed {
                    "changed"
                } else {
                    "removed process group"
                }
            );
            for idx in 0..self.procs.len() {
                let Some(Some(p)) = self.procs.get_mut(idx) else {
                    continue;
                };
                if Rc::ptr_eq(&p.def, def) {
                    p.retired = true;
                    p.machine.set_wanted(false);
                    self.drive(registry, idx, Event::Stop, now);
                }
            }
        }
        for def in defs {
            if self
                .programs
                .iter()
                .any(|d| d.config.name == def.config.name)
            {
                continue; // unchanged: the running entry was kept above
            }
            if !old.iter().any(|d| d.config.name == def.config.name) {
                log::info!("{}: added process group", def.config.name);
            }
            self.add_program(def, true);
        }
        self.sort_order();
        self.settle(registry, now);
    }

    /// One row per process, in start order, for the status page.
    pub fn status(&self) -> impl Iterator<Item = ProcessStatus<'_>> + '_ {
        let now = Instant::now();
        self.order.iter().filter_map(move |&idx| {
            let p = self.procs.get(idx)?.as_ref()?;
            let uptime_secs = match p.machine.state {
                State::Running { since, .. } => now.saturating_duration_since(since).as_secs(),
                _ => 0,
            };
            Some(ProcessStatus {
                name: &p.name,
                group: &p.def.config.name,
                state: p.machine.state_name(),
                pid: p.machine.pid(),
                uptime_secs,
                restarts: p.machine.spawns.saturating_sub(1),
                last_exit: p.machine.last_exit,
                id: p.id,
                retired: p.retired,
                started: p.machine.spawns > 0,
                spawnerr: p.spawnerr.as_deref(),
                stopped_unix: p.stopped_unix,
                wanted: p.machine.wanted || p.restart_pending,
            })
        })
    }

    /// Sends child output somewhere else than syslog (tests capture it).
    #[cfg(test)]
    fn set_output_sink(&mut self, sink: Sink) {
        self.sink = sink;
    }

    // ---- internals ---------------------------------------------------------------------------

    /// Adds the processes of `def`; `wanted` when `start_now` and the program autostarts.
    fn add_program(&mut self, def: ProgramDef, start_now: bool) {
        let def = Rc::new(def);
        for spec in &def.processes {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let mut machine = Machine::new();
            machine.set_wanted(start_now && def.config.autostart);
            let proc = Proc {
                id,
                def: Rc::clone(&def),
                name: Rc::from(spec.name.as_str()),
                argv: spec.argv.clone(),
                machine,
                exec_report: None,
                group: None,
                retired: false,
                probe: ready::Probe::default(),
                told_waiting: false,
                stop_rank: 0,
                out: Ring::new(def.config.output_buffer_size),
                err: Ring::new(if def.config.redirect_stderr {
                    0
                } else {
                    def.config.output_buffer_size
                }),
                restart_pending: false,
                settling_until: None,
                reload_until: None,
                spawnerr: None,
                stopped_unix: None,
            };
            match self.procs.iter().position(Option::is_none) {
                Some(free) => {
                    if let Some(slot) = self.procs.get_mut(free) {
                        *slot = Some(proc);
                    }
                }
                None => self.procs.push(Some(proc)),
            }
        }
        self.programs.push(def);
    }

    /// Recomputes the start order and the stop ranks after the program set changed.
    fn sort_order(&mut self) {
        let procs = &self.procs;
        let mut order: Vec<usize> = (0..procs.len())
            .filter(|&i| matches!(procs.get(i), Some(Some(_))))
            .collect();
        crate::sort::sort_by(&mut order, |&a, &b| {
            let key = |i: usize| {
                procs
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|p| (p.def.config.priority, p.name.clone()))
            };
            key(a).cmp(&key(b))
        });
        self.order = order;
        let programs: Vec<(&str, i32, &[String])> = self
            .programs
            .iter()
            .map(|d| {
                let c = &d.config;
                (c.name.as_str(), c.priority, c.depends_on.as_slice())
            })
            .collect();
        let ranks = stop_ranks(&programs);
        for p in self.procs.iter_mut().flatten() {
            // A retired process is stopped already; rank 0 keeps it out of everyone's way.
            p.stop_rank = match self.programs.iter().position(|d| Rc::ptr_eq(d, &p.def)) {
                Some(i) if !p.retired => ranks.get(i).copied().unwrap_or(0),
                _ => 0,
            };
        }
    }

    fn find_pid(&self, pid: u32) -> Option<usize> {
        self.procs
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.machine.pid() == Some(pid)))
    }

    /// Feeds `event` to process `idx` and performs what the machine asks, feeding results back.
    fn drive(&mut self, registry: &mio::Registry, idx: usize, event: Event, now: Instant) {
        let mut event = event;
        // Spawn -> Forked|SpawnFailed ends in two steps; the cap is a guard.
        for _ in 0..3 {
            let Some(Some(p)) = self.procs.get_mut(idx) else {
                return;
            };
            let before = p.machine.state;
            let (machine, step) = p.machine.step(&p.def.policy, event, now);
            p.machine = machine;
            if before != machine.state {
                self.generation = self.generation.wrapping_add(1);
                commands::note_transition(p, before, event, now);
            }
            for note in step.notes() {
                log_note(p, note, now);
            }
            if let Some(leader) = step.kill_group {
                if let Err(e) = sys::send_signal(leader, libc::SIGKILL, true) {
                    log::warn!("killing what is left of process group {leader}: {e}");
                }
            }
            match step.action {
                Action::None => break,
                Action::Signal { pid, signal, group } => {
                    if let Err(e) = sys::send_signal(pid, signal, group) {
                        log::warn!(
                            "{}: kill({}{pid}, {}): {e}",
                            p.name,
                            if group { "-" } else { "" },
                            state::SignalName(signal)
                        );
                    }
                    break;
                }
                Action::Spawn => {
                    event = match self.launch(registry, idx) {
                        Ok((pid, true)) => Event::Forked { pid },
                        // The report cannot be watched: counted as exec'd, as a spawn whose
                        // report never comes would otherwise stay STARTING.
                        Ok((pid, false)) => Event::Spawned { pid },
                        Err(msg) => {
                            log::warn!("spawnerr: {msg}");
                            if let Some(Some(p)) = self.procs.get_mut(idx) {
                                p.spawnerr = Some(msg);
                            }
                            Event::SpawnFailed
                        }
                    };
                }
            }
        }
        self.sync_probe(registry, idx, now);
        self.sync_group(idx);
    }

    /// Records the group of a freshly forked child, and moves that of a child that is gone to
    /// the ended groups; rewrites the run-state file when either happened.
    fn sync_group(&mut self, idx: usize) {
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return;
        };
        match (p.machine.pid(), &p.group) {
            (Some(pid), Some(g)) if g.pgid == pid => return,
            (None, None) => return,
            (Some(pid), _) => {
                let old = p.group.replace(run_state::Group::of(pid, &p.name));
                self.ended_groups.extend(old);
            }
            (None, Some(_)) => self.ended_groups.extend(p.group.take()),
        }
        self.save_run_state();
    }

    /// Rewrites the run-state file: every live child's group, and the ended groups that still
    /// have members (at most `run_state::MAX_ENDED`, newest kept).
    fn save_run_state(&mut self) {
        self.ended_groups.retain(run_state::may_have_members);
        let excess = self.ended_groups.len().saturating_sub(run_state::MAX_ENDED);
        self.ended_groups.drain(..excess);
        let groups: Vec<run_state::Group> = self
            .procs
            .iter()
            .flatten()
            .filter_map(|p| p.group.clone())
            .chain(self.ended_groups.iter().cloned())
            .collect();
        match run_state::save(&groups) {
            Ok(()) => self.run_state_failed = false,
            Err(e) if !self.run_state_failed => {
                log::warn!("run state not saved: {e}; a crash of uwgate may leave orphans");
                self.run_state_failed = true;
            }
            Err(_) => {}
        }
    }

    /// Probing runs exactly while the process is STARTING, waiting for its ready check.
    fn sync_probe(&mut self, registry: &mio::Registry, idx: usize, now: Instant) {
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return;
        };
        let waiting = p.def.config.ready.is_some()
            && matches!(
                p.machine.state,
                State::Starting {
                    phase: state::StartPhase::Waiting { .. },
                    ..
                }
            );
        if waiting {
            p.probe.begin(now);
        } else if p.probe.is_active() {
            p.probe.cancel(registry);
        }
    }

    /// Forks process `idx` with fresh output pipes registered in the loop, and registers its
    /// exec report: `(pid, true)`; `(pid, false)` when the report could not be registered.
    /// Returns right after fork; the child execs on its own.
    fn launch(&mut self, registry: &mio::Registry, idx: usize) -> Result<(u32, bool), String> {
        let Some(Some(p)) = self.procs.get(idx) else {
            return Err("no such process".to_string());
        };
        let cfg = &p.def.config;
        let (out_level, err_level) = (
            Severity::from_code(cfg.stdout_syslog_priority),
            Severity::from_code(cfg.stderr_syslog_priority),
        );
        let argv0 = p
            .argv
            .first()
            .ok_or_else(|| format!("{}: empty command", p.name))?;
        let env = spawn::environment(&cfg.name, &p.name, &cfg.environment);
        let path = spawn::resolve(argv0, &env)?;
        let image = sys::ExecImage::new(&path, &p.argv, &env, cfg.directory.as_deref())
            .map_err(|e| format!("{}: {e}", p.name))?;
        let (out_r, out_w) = sys::output_pipe().map_err(|e| format!("pipe failed: {e}"))?;
        let err_pipe = if cfg.redirect_stderr {
            None
        } else {
            Some(sys::output_pipe().map_err(|e| format!("pipe failed: {e}"))?)
        };
        let setup = sys::ChildSetup {
            image: &image,
            credentials: p.def.credentials.as_ref(),
            umask: cfg.umask,
            stdout: out_w.as_fd(),
            stderr: err_pipe.as_ref().map_or(out_w.as_fd(), |(_, w)| w.as_fd()),
        };
        let sys::Forked { pid, mut report } = sys::spawn(&setup).map_err(|e| {
            spawn::describe(&e, argv0, cfg.directory.as_deref(), cfg.user.as_deref())
        })?;
        // The write ends now live in the child only: EOF comes when it (and its heirs) close them.
        drop(out_w);
        let (name, owner) = (Rc::clone(&p.name), p.id);
        let watched = match registry.register(
            &mut mio::unix::SourceFd(&report.as_raw_fd()),
            exec_token(idx),
            mio::Interest::READABLE,
        ) {
            Ok(()) => true,
            Err(e) => {
                log::error!("{name}: cannot watch the exec report of pid {pid}: {e}");
                false
            }
        };
        if let Some(Some(p)) = self.procs.get_mut(idx) {
            if watched {
                p.exec_report = Some(PendingExec {
                    pid,
                    report,
                    holds_until: Some(state::after(Instant::now(), EXEC_HOLD)),
                });
            } else {
                drop(report.finish()); // nothing to wait for: a failure shows as exit 127
            }
        }
        self.retire_old_pipes(registry, owner);
        self.add_pipe(registry, out_r, &name, pid, (false, out_level), owner);
        if let Some((err_r, err_w)) = err_pipe {
            drop(err_w);
            self.add_pipe(registry, err_r, &name, pid, (true, err_level), owner);
        }
        Ok((pid, watched))
    }

    /// The process whose pending exec report is for `pid`.
    fn find_exec_report(&self, pid: u32) -> Option<usize> {
        self.procs.iter().position(|p| {
            p.as_ref()
                .is_some_and(|p| p.exec_report.as_ref().is_some_and(|e| e.pid == pid))
        })
    }

    /// Reads process `idx`'s exec report (all of it once the child is `reaped`) and, once it
    /// is conclusive, closes it and feeds `Spawned` (EOF: exec'd) or `SpawnFailed` (the step
    /// that failed, logged as `spawnerr:` like a failure in the parent).
    fn resolve_exec(&mut self, registry: &mio::Registry, idx: usize, reaped: bool, now: Instant) {
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return;
        };
        let Some(pending) = p.exec_report.as_mut() else {
            return;
        };
        let pid = pending.pid;
        let outcome = if reaped {
            pending.report.finish()
        } else {
            pending.report.read()
        };
        let event = match outcome {
            sys::ExecOutcome::Pending => return,
            sys::ExecOutcome::Execd => Event::Spawned { pid },
            sys::ExecOutcome::Failed(e) => {
                let cfg = &p.def.config;
                let argv0 = p.argv.first().map_or("", String::as_str);
                let dir = cfg.directory.as_deref();
                let msg = spawn::describe(&e, argv0, dir, cfg.user.as_deref());
                log::warn!("spawnerr: {msg}");
                p.spawnerr = Some(msg);
                Event::SpawnFailed
            }
        };
        if let Some(pending) = p.exec_report.take() {
            // Out of the epoll set before the close (see `sys::spawn` on copies in children).
            let fd = pending.report.as_raw_fd();
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
        }
        self.drive(registry, idx, event, now);
    }

    fn add_pipe(
        &mut self,
        registry: &mio::Registry,
        fd: std::os::fd::OwnedFd,
        name: &Rc<str>,
        pid: u32,
        stream: (bool, Severity),
        owner: u64,
    ) {
        let serial = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut pipe = OutputPipe::new(
            mio::unix::pipe::Receiver::from(fd),
            Rc::clone(name),
            pid,
            stream,
            owner,
            serial,
        );
        let idx = self
            .pipes
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.pipes.len());
        if let Err(e) = registry.register(&mut pipe.rx, pipe_token(idx), mio::Interest::READABLE) {
            log::error!("{name}: cannot watch the output of pid {pid}: {e}; it is discarded");
            return;
        }
        // Output written before registration is reported by epoll at registration.
        match self.pipes.get_mut(idx) {
            Some(slot) => *slot = Some(pipe),
            None => self.pipes.push(Some(pipe)),
        }
    }

    /// Before a respawn: drains and closes all but the newest `LINGERING_PIPES` pipes of `owner`.
    fn retire_old_pipes(&mut self, registry: &mio::Registry, owner: u64) {
        let mut mine: Vec<(u64, usize)> = self
            .pipes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.as_ref()
                    .filter(|p| p.owner == owner)
                    .map(|p| (p.serial, i))
            })
            .collect();
        if mine.len() <= LINGERING_PIPES {
            return;
        }
        // (serial, slot) pairs are unique: a stable sort gives what an unstable one would.
        crate::sort::sort(&mut mine);
        let excess = mine.len().saturating_sub(LINGERING_PIPES);
        for &(_, idx) in mine.iter().take(excess) {
            self.pump_pipe(registry, idx);
            self.close_pipe(registry, idx);
        }
    }

    /// Drains the pipes of the child `pid`, which has exited: what it wrote is at most a pipe
    /// buffer (1 MiB at the most, F_SETPIPE_SZ's default cap), so the rounds are bounded;
    /// a grandchild still writing gets the usual per-turn budget afterwards.
    fn pump_pipes_of(&mut self, registry: &mio::Registry, pid: u32) {
        const ROUNDS: usize = (1 << 20) / READ_BUDGET + 1;
        for idx in 0..self.pipes.len() {
            for _ in 0..ROUNDS {
                if !matches!(self.pipes.get(idx), Some(Some(p)) if p.pid == pid) {
                    break;
                }
                self.pump_pipe(registry, idx);
                if !matches!(self.pipes.get(idx), Some(Some(p)) if p.pending) {
                    break;
                }
            }
        }
    }

    fn pump_pipe(&mut self, registry: &mio::Registry, idx: usize) {
        let sink = self.sink;
        let Some(Some(pipe)) = self.pipes.get_mut(idx) else {
            return;
        };
        let ring = self
            .procs
            .iter_mut()
            .flatten()
            .find(|p| p.id == pipe.owner)
            .map(|p| {
                if pipe.is_stderr {
                    &mut p.err
                } else {
                    &mut p.out
                }
            });
        if pipe.pump(READ_BUDGET, sink, ring) == Pump::Closed {
            self.close_pipe(registry, idx);
        }
    }

    fn close_pipe(&mut self, registry: &mio::Registry, idx: usize) {
        if let Some(slot) = self.pipes.get_mut(idx) {
            if let Some(mut pipe) = slot.take() {
                let _ = registry.deregister(&mut pipe.rx);
            }
        }
    }

    /// After any change: drop retired processes that are down, start what may start, and at
    /// shutdown stop what may stop and sweep orphans.
    fn settle(&mut self, registry: &mio::Registry, now: Instant) {
        self.resume_requested(registry, now);
        let mut dropped = false;
        for slot in self.procs.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|p| p.retired && p.machine.pid().is_none())
            {
                if let Some(mut p) = slot.take() {
                    p.probe.cancel(registry);
                    if let Some(pending) = p.exec_report.take() {
                        let fd = pending.report.as_raw_fd();
                        let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
                    }
                    dropped = true;
                }
            }
        }
        if dropped {
            self.sort_order();
        }
        if self.shutting_down {
            self.schedule_stops(registry, now);
        } else {
            self.schedule_starts(registry, now);
        }
    }

    /// Starts every wanted, never-started process whose dependencies are RUNNING and whose
    /// retired namesake (a changed program) is gone. Repeats while something became RUNNING
    /// at once (startsecs = 0), so a chain of dependents starts in one call.
    fn schedule_starts(&mut self, registry: &mio::Registry, now: Instant) {
        for _ in 0..=self.order.len() {
            let mut progressed = false;
            for pos in 0..self.order.len() {
                let Some(&idx) = self.order.get(pos) else {
                    break;
                };
                let Some(Some(p)) = self.procs.get(idx) else {
                    continue;
                };
                if !p.machine.wanted
                    || p.retired
                    || p.machine.state != (State::Stopped { start_at: None })
                {
                    continue;
                }
                if self.start_blocked(idx) {
                    if matches!(self.procs.get(idx), Some(Some(p)) if !p.told_waiting) {
                        let why = self.describe_blocker(idx);
                        if let Some(Some(p)) = self.procs.get_mut(idx) {
                            log::info!("{}: waiting for {why} before starting", p.name);
                            p.told_waiting = true;
                        }
                    }
                    continue;
                }
                if self.exec_hold(now).is_some() {
                    return; // this one and the rest of the order start once that child exec'd
                }
                if let Some(Some(p)) = self.procs.get_mut(idx) {
                    p.told_waiting = false;
                }
                self.drive(registry, idx, Event::Start, now);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// While a child forked less than `EXEC_HOLD` ago has not exec'd: when that hold ends.
    fn exec_hold(&self, now: Instant) -> Option<Instant> {
        self.procs
            .iter()
            .flatten()
            .filter_map(|p| p.exec_report.as_ref()?.holds_until)
            .filter(|&until| until > now)
            .min()
    }

    /// Whether process `idx` must wait: a dependency is not RUNNING, or the old instance of a
    /// changed program is still alive.
    fn start_blocked(&self, idx: usize) -> bool {
        let Some(Some(p)) = self.procs.get(idx) else {
            return false;
        };
        self.procs.iter().flatten().any(|q| {
            let dependency_down = !q.retired
                && p.def.config.depends_on.contains(&q.def.config.name)
                && !matches!(q.machine.state, State::Running { .. });
            let old_alive = q.retired && q.name == p.name && q.machine.pid().is_some();
            dependency_down || old_alive
        })
    }

    /// Words what `start_blocked` found, for one log line per wait.
    fn describe_blocker(&self, idx: usize) -> String {
        let Some(Some(p)) = self.procs.get(idx) else {
            return String::new();
        };
        for q in self.procs.iter().flatten() {
            if !q.retired
                && p.def.config.depends_on.contains(&q.def.config.name)
                && !matches!(q.machine.state, State::Running { .. })
            {
                return format!(
                    "{} to be RUNNING (depends_on = {}; it is {})",
                    q.name,
                    q.def.config.name,
                    q.machine.state_name()
                );
            }
            if q.retired && q.name == p.name && q.machine.pid().is_some() {
                return format!("the old {} to stop", q.name);
            }
        }
        String::new()
    }

    /// Shutdown: cancels pending restarts, stops each live process once nothing that must stop
    /// before it is alive, then sweeps orphaned descendants.
    fn schedule_stops(&mut self, registry: &mio::Registry, now: Instant) {
        for idx in 0..self.procs.len() {
            let pending = matches!(self.procs.get(idx), Some(Some(p)) if p.machine.pid().is_none() && p.machine.deadline().is_some());
            if pending {
                self.drive(registry, idx, Event::Stop, now);
            }
        }
        for pos in (0..self.order.len()).rev() {
            let Some(&idx) = self.order.get(pos) else {
                continue;
            };
            let Some(Some(p)) = self.procs.get(idx) else {
                continue;
            };
            if p.machine.pid().is_none() || matches!(p.machine.state, State::Stopping { .. }) {
                continue;
            }
            if self.stop_blocked(p) {
                continue;
            }
            self.drive(registry, idx, Event::Stop, now);
        }
        if self
            .procs
            .iter()
            .flatten()
            .all(|p| p.machine.pid().is_none())
        {
            self.sweep_orphans(now);
        }
    }

    /// Whether a live process must stop before `p`: one with a lower stop rank.
    fn stop_blocked(&self, p: &Proc) -> bool {
        self.procs
            .iter()
            .flatten()
            .any(|q| q.machine.pid().is_some() && q.stop_rank < p.stop_rank)
    }

    /// Once every program is down: SIGTERM to orphaned descendants, then SIGKILL every second
    /// while some remain, and after `ORPHAN_KILL_ROUNDS` rounds give up (uwgate exits anyway).
    fn sweep_orphans(&mut self, now: Instant) {
        let (signal, rounds) = match self.sweep {
            Sweep::NotYet => (libc::SIGTERM, 0),
            Sweep::Signalled { next_at, rounds } if next_at <= now => (libc::SIGKILL, rounds),
            _ => return,
        };
        if !sys::has_children() {
            return;
        }
        let orphans = children();
        if orphans.is_empty() || rounds >= ORPHAN_KILL_ROUNDS {
            log::error!("orphaned descendants survive the shutdown sweep; exiting without them");
            self.sweep = Sweep::GaveUp;
            return;
        }
        for pid in orphans {
            log::warn!(
                "sending {} to orphaned descendant pid {pid}",
                state::SignalName(signal)
            );
            if let Err(e) = sys::send_signal(pid, signal, false) {
                log::warn!("kill({pid}): {e}");
            }
        }
        self.sweep = if signal == libc::SIGTERM {
            Sweep::Signalled {
                next_at: state::after(now, ORPHAN_STOPWAIT),
                rounds: 0,
            }
        } else {
            Sweep::Signalled {
                next_at: state::after(now, Duration::from_secs(1)),
                rounds: rounds.saturating_add(1),
            }
        };
    }
}

/// Shutdown ranks for programs `(name, priority, depends_on)`: rank 0 stops first. Among the
/// programs no remaining program depends on, the highest priority number goes next (ties share
/// a rank and stop together). Dependents therefore always stop before their dependencies, and
/// priority orders the rest, without the deadlock that mixing both rules pairwise could cause.
fn stop_ranks(programs: &[(&str, i32, &[String])]) -> Vec<usize> {
    let mut rank = vec![usize::MAX; programs.len()];
    for r in 0..programs.len() {
        let unranked = |i: usize| rank.get(i) == Some(&usize::MAX);
        let depended_on = |i: usize| {
            let name = programs.get(i).map_or("", |p| p.0);
            (0..programs.len()).any(|j| {
                unranked(j)
                    && programs
                        .get(j)
                        .is_some_and(|p| p.2.iter().any(|d| d == name))
            })
        };
        let free: Vec<usize> = (0..programs.len())
            .filter(|&i| unranked(i) && !depended_on(i))
            .collect();
        let Some(top) = free
            .iter()
            .filter_map(|&i| programs.get(i).map(|p| p.1))
            .max()
        else {
            break; // all ranked (a cycle cannot happen: config rejects them)
        };
        for i in free {
            if programs.get(i).is_some_and(|p| p.1 == top) {
                if let Some(slot) = rank.get_mut(i) {
                    *slot = r;
                }
            }
        }
    }
    rank.iter()
        .map(|&r| if r == usize::MAX { 0 } else { r })
        .collect()
}

/// The pids of uwgate's children, from /proc/self/task/*/children (orphans reparented to
/// uwgate as subreaper or PID 1 included).
fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// Tokens rotate over three kinds: `TOKEN_BASE + 3 * idx + kind`.
const TOKEN_KINDS: usize = 3;
/// Output pipe `idx` (an index into `pipes`).
const PIPE: usize = 0;
/// The ready probe of process `idx` (an index into `procs`).
const PROBE: usize = 1;
/// The exec report of process `idx`.
const EXEC_REPORT: usize = 2;

fn token(idx: usize, kind: usize) -> mio::Token {
    mio::Token(
        TOKEN_BASE
            .saturating_add(idx.saturating_mul(TOKEN_KINDS))
            .saturating_add(kind),
    )
}

fn pipe_token(idx: usize) -> mio::Token {
    token(idx, PIPE)
}

fn probe_token(idx: usize) -> mio::Token {
    token(idx, PROBE)
}

fn exec_token(idx: usize) -> mio::Token {
    token(idx, EXEC_REPORT)
}

/// Seconds as supervisor prints them: `10`, or `0.5` for a fraction. The fraction is written
/// from the integer nanoseconds, trailing zeros dropped: for the whole seconds and milliseconds
/// a config gives, the digits `{}` of `as_secs_f64()` printed, without linking the float
/// formatter (12 KB) for these two log lines.
struct Secs(Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut nanos = self.0.subsec_nanos();
        if nanos == 0 {
            return write!(f, "{}", self.0.as_secs());
        }
        let mut width = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            width -= 1;
        }
        write!(f, "{}.{nanos:0width$}", self.0.as_secs())
    }
}

/// One log line per transition, in supervisor's words.
fn log_note(p: &Proc, note: Note, now: Instant) {
    let name = &*p.name;
    let cfg = &p.def.config;
    match note {
        Note::Spawned { pid } => log::info!("spawned: '{name}' with pid {pid}"),
        Note::Success => log::info!(
            "success: {name} entered RUNNING state, process has stayed up for > than {} seconds (startsecs)",
            Secs(cfg.startsecs)
        ),
        Note::Ready => match &cfg.ready {
            Some(check) => log::info!("success: {name} entered RUNNING state, {} accepts connections (ready)", ready::Target(check)),
            None => log::info!("success: {name} entered RUNNING state"),
        },
        Note::Exited { status, expected: true } => log::info!("exited: {name} ({status}; expected)"),
        Note::Exited { status, expected: false } => log::warn!("exited: {name} ({status}; not expected)"),
        Note::GaveUp => log::warn!("gave up: {name} entered FATAL state, too many start retries too quickly"),
        Note::WaitingStop => log::info!("waiting for {name} to stop"),
        // supervisor's levels: info when the exit code is in exitcodes, else warning.
        Note::Stopped { status } if p.def.policy.expected(status) => {
            log::info!("stopped: {name} ({status})")
        }
        Note::Stopped { status } => log::warn!("stopped: {name} ({status})"),
        Note::Killing { pid } => log::warn!("killing '{name}' ({pid}) with SIGKILL"),
        Note::ReadyTimeout => log::warn!(
            "{name} not ready within {} seconds (ready_timeout): {} refused connections; stopping it",
            Secs(cfg.ready_timeout),
            cfg.ready.as_ref().map(|c| ready::Target(c).to_string()).unwrap_or_default()
        ),
        Note::Throttled { until } => log::info!(
            "{name}: respawn delayed {} ms (spawned less than a second ago)",
            until.saturating_duration_since(now).as_millis()
        ),
    }
}

/// Turns `[program:x]` sections, validated by `config` (names, commands, process names,
/// depends_on), into definitions, checking what only the running system can tell: that each
/// `user` exists and uwgate may switch to it.
fn build_defs(programs: &[config::Program]) -> Result<Vec<ProgramDef>, String> {
    let euid = sys::effective_uid();
    let mut defs: Vec<ProgramDef> = Vec::with_capacity(programs.len());
    for prog in programs {
        let what = format!("[program:{}]", prog.name);
        // Cannot fail for a parsed program: config expanded every process already.
        let processes = prog.processes().map_err(|e| format!("{what}: {e}"))?;
        let credentials = match &prog.user {
            None => None,
            Some(user) => {
                let creds = sys::lookup_user(user)
                    .map_err(|e| format!("{what}: user = {user}: {e}"))?
                    .ok_or_else(|| format!("{what}: user = {user}: no such user"))?;
                if creds.uid == euid {
                    None // already that user, like supervisor: nothing to switch
                } else if euid != 0 {
                    return Err(format!(
                        "{what}: user = {user} needs uwgate to run as root (it runs as uid {euid})"
                    ));
                } else {
                    Some(creds)
                }
            }
        };
        defs.push(ProgramDef {
            config: prog.clone(),
            policy: Policy::from(prog),
            credentials,
            processes,
        });
    }
    Ok(defs)
}

#[cfg(test)]
mod tests;
