//! What `uwgate ctl` asks of the watchdog (supervisorctl's verbs: start, stop, restart,
//! signal, reload-program, status detail, tail), and what the request path asks of it
//! (`availability` of a `uwsgi_program`). The control server resolves names and waits; this
//! module only changes what the process should do and lets the state machine do it.
//!
//! Must never block, signal pid 0 or -1, or bypass the state machine: a start or stop is an
//! `Event` fed through `drive`, as every other one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ring::Ring;
use super::state::{self, Event, State};
use super::{Proc, Watchdog};
use crate::sys::process as sys;

/// How long after a process became RUNNING, or after `reload-program`, a failed upstream
/// connection to it is taken for the restart still settling (retried) rather than a failure.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The least time a `reload-program` counts as in progress: an exit in it (a reload that
/// re-execs and fails) is started again whatever `autorestart` says.
const RELOAD_WINDOW: Duration = Duration::from_secs(10);

/// Why a command could not be carried out (supervisorctl's fault names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such process (it may have been removed by a reload meanwhile).
    NoSuchProcess,
    /// `start` of a process that is STARTING, RUNNING or BACKOFF.
    AlreadyStarted,
    /// `stop`, `signal` or `reload-program` of a process without a live child.
    NotRunning,
    /// uwgate is stopping: nothing starts any more.
    ShuttingDown,
    /// The signal could not be sent.
    Failed,
}

impl Refusal {
    /// supervisorctl's words in `NAME: ERROR (…)`.
    pub fn words(self) -> &'static str {
        match self {
            Refusal::NoSuchProcess => "no such process",
            Refusal::AlreadyStarted => "already started",
            Refusal::NotRunning => "not running",
            Refusal::ShuttingDown => "shutting down",
            Refusal::Failed => "failed",
        }
    }
}

/// Whether requests for a program's location may be sent to it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// RUNNING. `settling`: it became RUNNING (or was sent its reload signal) a moment ago, so
    /// a refused or reset connection is the restart still settling — wait and retry.
    Ready { settling: bool },
    /// STARTING, BACKOFF, or being restarted: wait for it.
    Wait,
    /// Stopped on purpose, FATAL, removed, or uwgate is stopping: do not wait.
    Down,
}

/// Seconds since the epoch now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Bookkeeping for status and waiting requests after process `p` moved from `before` on
/// `event` (called by `drive` on every state change).
pub(super) fn note_transition(p: &mut Proc, before: State, event: Event, now: Instant) {
    match p.machine.state {
        // -> Running: a moment of grace for upstream failures (the socket may be settling).
        State::Running { .. } => {
            p.settling_until = Some(state::after(now, SETTLE));
            p.spawnerr = None;
        }
        // Starting -> Backoff|Fatal by an exit: supervisor's spawnerr for it.
        State::Backoff { .. } | State::Fatal
            if matches!(event, Event::Exited(_)) && matches!(before, State::Starting { .. }) =>
        {
            p.spawnerr = Some("Exited too quickly (process log may have details)".to_string());
        }
        _ => {}
    }
    if matches!(event, Event::Exited(_)) {
        p.stopped_unix = Some(unix_now());
    }
}

/// A process's availability for a waiting request.
fn availability_of(p: &Proc, now: Instant) -> Availability {
    let restarting = p.restart_pending || p.machine.wanted;
    match p.machine.state {
        State::Running { .. } => Availability::Ready {
            settling: p.settling_until.is_some_and(|t| t > now),
        },
        State::Starting { .. } | State::Backoff { .. } => Availability::Wait,
        State::Stopped { start_at: Some(_) }
        | State::Exited {
            restart_at: Some(_),
        } => Availability::Wait,
        State::Stopping { .. } | State::Stopped { start_at: None } if restarting => {
            Availability::Wait
        }
        State::Exited { restart_at: None } if p.reload_until.is_some_and(|t| t > now) => {
            Availability::Wait
        }
        _ => Availability::Down,
    }
}

impl Watchdog {
    /// Bumped on every process state change: the loop compares it to wake requests that
    /// wait for a program.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether requests for `uwsgi_program = program` may go to it now (`Ready`), should wait
    /// (`Wait`), or should not wait (`Down`). A program with several processes is ready when
    /// one is. Called per request (no allocation: a scan of the processes).
    pub fn availability(&self, program: &str, now: Instant) -> Availability {
        if self.shutting_down {
            return Availability::Down;
        }
        let mut best = Availability::Down;
        for p in self.procs.iter().flatten() {
            if p.def.config.name != program {
                continue;
            }
            // A changed program's old instance still stopping: its successor waits for it.
            let a = if p.retired {
                Availability::Down
            } else {
                availability_of(p, now)
            };
            best = match (best, a) {
                (Availability::Ready { settling: x }, Availability::Ready { settling: y }) => {
                    Availability::Ready { settling: x && y }
                }
                (r @ Availability::Ready { .. }, _) | (_, r @ Availability::Ready { .. }) => r,
                (Availability::Wait, _) | (_, Availability::Wait) => Availability::Wait,
                _ => Availability::Down,
            };
        }
        best
    }

    /// The running set of `[program:x]` sections (what `reread` compares the file with).
    pub fn program_configs(&self) -> impl Iterator<Item = &crate::config::Program> + '_ {
        self.programs.iter().map(|d| &d.config)
    }

    /// uwgate is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether a process of a removed or changed program is still alive (`update` waits
    /// until none is).
    pub fn retired_alive(&self) -> bool {
        self.procs.iter().flatten().any(|p| p.retired)
    }

    /// The recent output of process `id`: stdout, or stderr when `stderr`.
    pub fn output(&self, id: u64, stderr: bool) -> Option<&Ring> {
        let p = self.procs.iter().flatten().find(|p| p.id == id)?;
        Some(if stderr { &p.err } else { &p.out })
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.procs
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.id == id && !p.retired))
    }

    /// `ctl start`: a STOPPED, EXITED or FATAL process starts (a STOPPED one once its
    /// `depends_on` are RUNNING, as at boot); a STOPPING one starts again once it is down.
    /// The caller waits for RUNNING.
    pub fn start_process(
        &mut self,
        registry: &mio::Registry,
        id: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        if self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        let idx = self.index_of(id).ok_or(Refusal::NoSuchProcess)?;
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return Err(Refusal::NoSuchProcess);
        };
        match p.machine.state {
            State::Starting { .. } | State::Running { .. } | State::Backoff { .. } => {
                return Err(Refusal::AlreadyStarted)
            }
            State::Stopping { .. } => p.restart_pending = true,
            State::Stopped { .. } => p.machine.set_wanted(true),
            State::Exited { .. } | State::Fatal => {
                self.drive(registry, idx, Event::Start, now);
            }
        }
        self.settle(registry, now);
        Ok(())
    }

    /// `ctl stop`: stopsignal now, SIGKILL after stopwaitsecs; a pending (re)start is
    /// cancelled. The caller waits until the process has no child.
    pub fn stop_process(
        &mut self,
        registry: &mio::Registry,
        id: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        let idx = self.index_of(id).ok_or(Refusal::NoSuchProcess)?;
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return Err(Refusal::NoSuchProcess);
        };
        let pending_start = matches!(
            p.machine.state,
            State::Stopped { start_at: Some(_) }
                | State::Exited {
                    restart_at: Some(_)
                }
        );
        let running = matches!(
            p.machine.state,
            State::Starting { .. } | State::Running { .. } | State::Backoff { .. }
        );
        if !running && !pending_start && !matches!(p.machine.state, State::Stopping { .. }) {
            return Err(Refusal::NotRunning);
        }
        p.restart_pending = false;
        p.reload_until = None;
        p.machine.set_wanted(false);
        self.drive(registry, idx, Event::Stop, now);
        self.settle(registry, now);
        Ok(())
    }

    /// `ctl restart`: stops the process (if it has a child) and starts it again once it is
    /// down, as one step, so requests waiting for it never see it STOPPED. `Ok(true)` when a
    /// child is being stopped, `Ok(false)` when it was not running (it just starts).
    pub fn restart_process(
        &mut self,
        registry: &mio::Registry,
        id: u64,
        now: Instant,
    ) -> Result<bool, Refusal> {
        if self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        let idx = self.index_of(id).ok_or(Refusal::NoSuchProcess)?;
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return Err(Refusal::NoSuchProcess);
        };
        let had_child = p.machine.pid().is_some();
        p.reload_until = None;
        if matches!(
            p.machine.state,
            State::Exited { restart_at: None } | State::Fatal
        ) {
            // Nothing to stop: just a start.
            self.drive(registry, idx, Event::Start, now);
        } else if !matches!(p.machine.state, State::Stopping { .. }) {
            p.restart_pending = true;
            // Starting/Running -> Stopping; Backoff or a parked start -> Stopped. Either way
            // `resume_requested` starts it again once it is down.
            self.drive(registry, idx, Event::Stop, now);
        } else {
            p.restart_pending = true;
        }
        self.settle(registry, now);
        Ok(had_child)
    }

    /// `ctl signal SIG NAME`: `signal` to the process's child (not its group, as supervisor).
    pub fn signal_process(&mut self, id: u64, signal: i32) -> Result<(), Refusal> {
        let idx = self.index_of(id).ok_or(Refusal::NoSuchProcess)?;
        let Some(Some(p)) = self.procs.get(idx) else {
            return Err(Refusal::NoSuchProcess);
        };
        let pid = p.machine.pid().ok_or(Refusal::NotRunning)?;
        log::info!(
            "{}: sending {} to pid {pid} (uwgate ctl signal)",
            p.name,
            state::SignalName(signal)
        );
        sys::send_signal(pid, signal, false).map_err(|e| {
            log::warn!("{}: kill({pid}): {e}", p.name);
            Refusal::Failed
        })
    }

    /// `ctl reload-program`: sends the program's `reloadsignal` (HUP: uWSGI reloads its
    /// workers gracefully, keeping its socket and pid). For a while an exit is part of the
    /// reload — the process is started again whatever `autorestart` says — and upstream
    /// failures are retried. Returns the signal sent.
    pub fn reload_process(&mut self, id: u64, now: Instant) -> Result<i32, Refusal> {
        let idx = self.index_of(id).ok_or(Refusal::NoSuchProcess)?;
        let Some(Some(p)) = self.procs.get_mut(idx) else {
            return Err(Refusal::NoSuchProcess);
        };
        let (State::Running { pid, .. } | State::Starting { pid, .. }) = p.machine.state else {
            return Err(Refusal::NotRunning);
        };
        let signal = p.def.config.reloadsignal;
        log::info!(
            "{}: sending {} to pid {pid} (uwgate ctl reload-program)",
            p.name,
            state::SignalName(signal)
        );
        if let Err(e) = sys::send_signal(pid, signal, false) {
            log::warn!("{}: kill({pid}): {e}", p.name);
            return Err(Refusal::Failed);
        }
        let window = p.def.config.startsecs.max(RELOAD_WINDOW);
        p.reload_until = Some(state::after(now, window));
        p.settling_until = Some(state::after(now, window));
        Ok(signal)
    }

    /// Called first by `settle`: a restart whose stop is complete starts again, and a process
    /// that exited during its reload window (and is not restarted by `autorestart`) too.
    pub(super) fn resume_requested(&mut self, registry: &mio::Registry, now: Instant) {
        if self.shutting_down {
            return;
        }
        for idx in 0..self.procs.len() {
            let Some(Some(p)) = self.procs.get_mut(idx) else {
                continue;
            };
            if p.retired {
                continue;
            }
            match p.machine.state {
                State::Stopped { start_at: None } if p.restart_pending => {
                    // Stopping -> Stopped with a restart asked: wanted again, and
                    // `schedule_starts` starts it (dependencies and start order apply).
                    p.restart_pending = false;
                    p.machine.set_wanted(true);
                }
                State::Exited { restart_at: None } if p.reload_until.is_some_and(|t| t > now) => {
                    log::info!(
                        "{}: exited during reload-program; starting it again",
                        p.name
                    );
                    p.reload_until = None;
                    self.drive(registry, idx, Event::Start, now);
                }
                _ => {}
            }
        }
    }
}
