//! The pure process state machine: supervisor's STOPPED, STARTING, RUNNING, BACKOFF, STOPPING,
//! EXITED, FATAL and their transitions, as `(machine, event, now) -> (machine, step)`.
//!
//! Owns the rules (startsecs, backoff 1 s, 2 s, 3 s… up to startretries, autorestart/exitcodes,
//! stopwaitsecs escalation, ready timeout, the one-spawn-per-second throttle, "a spawn while not
//! wanted becomes a stop", "when a group-killed leader dies, SIGKILL what is left of its group")
//! and nothing else: it never forks, signals, reads a clock or logs. The watchdog performs the
//! returned `Action` (and `kill_group` first), logs the returned `Note`s and feeds back what
//! happened (`Forked`, then `Spawned` once the child exec'd or `SpawnFailed`; `Exited`, `Ready`,
//! `Timer` when `deadline()` has passed).

use std::fmt;
use std::time::{Duration, Instant};

use crate::config;

/// No program is spawned twice within this interval, so a crash loop throttles itself.
pub const MIN_SPAWN_INTERVAL: Duration = Duration::from_secs(1);

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by a signal.
    Signal {
        /// The signal number.
        signal: i32,
        /// A core file was written.
        core_dumped: bool,
    },
}

impl fmt::Display for ExitStatus {
    /// supervisor's wording: `exit status 1`, `terminated by SIGKILL`,
    /// `terminated by SIGSEGV (core dumped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exit status {code}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, "terminated by {}", SignalName(signal))?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Displays a signal number as `SIGTERM`, `SIGRTMIN+3` or `signal 99`.
#[derive(Clone, Copy, Debug)]
pub struct SignalName(pub i32);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGSTKFLT => "SIGSTKFLT",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGCONT => "SIGCONT",
            libc::SIGSTOP => "SIGSTOP",
            libc::SIGTSTP => "SIGTSTP",
            libc::SIGTTIN => "SIGTTIN",
            libc::SIGTTOU => "SIGTTOU",
            libc::SIGURG => "SIGURG",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGVTALRM => "SIGVTALRM",
            libc::SIGPROF => "SIGPROF",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGIO => "SIGIO",
            libc::SIGPWR => "SIGPWR",
            libc::SIGSYS => "SIGSYS",
            n if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) => {
                return write!(f, "SIGRTMIN+{}", n.saturating_sub(libc::SIGRTMIN()));
            }
            n => return write!(f, "signal {n}"),
        };
        f.write_str(name)
    }
}

/// `autorestart`: the config's own enum (`Always`, `Never`, `Unexpected`).
pub use config::AutoRestart as Restart;

/// The per-program settings the machine needs (from `[program:x]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// A process must stay up this long to be RUNNING (when there is no ready check).
    pub startsecs: Duration,
    /// Failed starts tolerated before FATAL.
    pub startretries: u32,
    /// When a RUNNING process that exits is started again.
    pub autorestart: Restart,
    /// Exit codes that count as expected.
    pub exitcodes: Vec<i32>,
    /// Signal that asks the process to stop.
    pub stopsignal: i32,
    /// Time between stopsignal and SIGKILL.
    pub stopwaitsecs: Duration,
    /// stopsignal goes to the process group.
    pub stopasgroup: bool,
    /// SIGKILL goes to the process group (implied by stopasgroup).
    pub killasgroup: bool,
    /// `Some(timeout)` when a ready check, not startsecs, decides RUNNING.
    pub ready_timeout: Option<Duration>,
}

impl From<&config::Program> for Policy {
    /// The one place a `[program:x]` section becomes the machine's settings (stopasgroup
    /// already implies killasgroup there, as in supervisor).
    fn from(p: &config::Program) -> Policy {
        Policy {
            startsecs: p.startsecs,
            startretries: p.startretries,
            autorestart: p.autorestart,
            exitcodes: p.exitcodes.clone(),
            stopsignal: p.stopsignal,
            stopwaitsecs: p.stopwaitsecs,
            stopasgroup: p.stopasgroup,
            killasgroup: p.killasgroup,
            ready_timeout: p.ready.as_ref().map(|_| p.ready_timeout),
        }
    }
}

impl Policy {
    fn kill_group(&self) -> bool {
        self.killasgroup || self.stopasgroup
    }
    /// Whether `status` is one of `exitcodes` (a signal death never is, as in supervisor).
    pub fn expected(&self, status: ExitStatus) -> bool {
        match status {
            ExitStatus::Code(code) => self.exitcodes.contains(&code),
            // supervisor decodes a signal death as exit status -1: never expected.
            ExitStatus::Signal { .. } => false,
        }
    }
}

/// Where a STARTING process is on its way to RUNNING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPhase {
    /// Forked; its exec report (EOF: exec'd, or the errno of the step that failed) is not in yet.
    /// No deadline: the child's own set-up decides, and a stop still reaches it.
    Exec,
    /// Waiting for startsecs (or for the ready check until its timeout) — `deadline`.
    Waiting {
        /// startsecs elapsed, or the ready check gave up.
        deadline: Instant,
    },
    /// The ready check timed out; stopsignal was sent, SIGKILL at `kill_at`.
    Abandoning {
        /// When SIGKILL follows.
        kill_at: Instant,
    },
    /// The ready check timed out and SIGKILL was sent; waiting for the exit.
    Killed,
}

/// A process state, with the data that state needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running; `start_at` when a start waits for the spawn throttle.
    Stopped {
        /// The throttled start.
        start_at: Option<Instant>,
    },
    /// Spawned, not yet RUNNING.
    Starting {
        /// The child.
        pid: u32,
        /// Spawn time.
        since: Instant,
        /// Progress towards RUNNING.
        phase: StartPhase,
    },
    /// Up (stayed startsecs, or passed its ready check).
    Running {
        /// The child.
        pid: u32,
        /// Spawn time.
        since: Instant,
    },
    /// A start failed; the next attempt is at `retry_at`.
    Backoff {
        /// The next attempt.
        retry_at: Instant,
    },
    /// stopsignal sent, waiting for the exit; SIGKILL at `kill_at` (None once sent).
    Stopping {
        /// The child.
        pid: u32,
        /// When SIGKILL follows.
        kill_at: Option<Instant>,
    },
    /// Exited from RUNNING; `restart_at` when autorestart waits for the spawn throttle.
    Exited {
        /// The throttled restart.
        restart_at: Option<Instant>,
    },
    /// Too many failed starts; stays here until started again.
    Fatal,
}

/// What happened to a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Start requested (autostart, reload, a dependency became RUNNING).
    Start,
    /// Stop requested (shutdown, reload).
    Stop,
    /// The watchdog performed `Action::Spawn` and forked; the exec report is pending.
    Forked {
        /// The child.
        pid: u32,
    },
    /// The child exec'd (its exec report ended without an error), or a spawn that forked and
    /// exec'd in one go (from a pid-less state).
    Spawned {
        /// The child.
        pid: u32,
    },
    /// The spawn failed: in the parent (pipe, fork), or the child reported the step that
    /// failed before exec (spawnerr).
    SpawnFailed,
    /// The child was reaped.
    Exited(ExitStatus),
    /// The ready check connected.
    Ready,
    /// `deadline()` has passed.
    Timer,
}

/// What the watchdog must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Spawn the process, then feed `Forked` (or `SpawnFailed`) back at once, and `Spawned` or
    /// `SpawnFailed` when the exec report comes in.
    Spawn,
    /// Send `signal` to the pid, or to its process group when `group`.
    Signal {
        /// The child.
        pid: u32,
        /// The signal.
        signal: i32,
        /// To the whole group (`kill(-pid)`).
        group: bool,
    },
}

/// A transition worth a log line; the watchdog words it (it knows the name and settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// `spawned: 'NAME' with pid PID`
    Spawned {
        /// The child.
        pid: u32,
    },
    /// `success: NAME entered RUNNING state, process has stayed up for > than N seconds (startsecs)`
    Success,
    /// RUNNING because the ready check connected.
    Ready,
    /// `exited: NAME (STATUS; expected|not expected)`
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// In exitcodes, after a successful start.
        expected: bool,
    },
    /// `gave up: NAME entered FATAL state, too many start retries too quickly`
    GaveUp,
    /// `waiting for NAME to stop`
    WaitingStop,
    /// `stopped: NAME (STATUS)`
    Stopped {
        /// How it ended.
        status: ExitStatus,
    },
    /// `killing 'NAME' (PID) with SIGKILL`
    Killing {
        /// The child.
        pid: u32,
    },
    /// The ready check did not connect within ready_timeout; stopping the process.
    ReadyTimeout,
    /// A start is delayed by the spawn throttle until this instant.
    Throttled {
        /// The delayed spawn.
        until: Instant,
    },
}

/// The result of one transition: an action and up to three notes, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Performed before `action`: the group leader with this pid is gone and the program kills
    /// as a group, so SIGKILL what is left of its process group (`kill(-pid)`), as systemd's
    /// KillMode=control-group does, before a respawn could find old workers on its socket.
    pub kill_group: Option<u32>,
    /// What to perform.
    pub action: Action,
    /// What to log.
    pub notes: [Option<Note>; 3],
}

impl Step {
    fn none() -> Step {
        Step {
            kill_group: None,
            action: Action::None,
            notes: [None; 3],
        }
    }
    fn act(action: Action) -> Step {
        Step {
            action,
            ..Step::none()
        }
    }
    fn note(mut self, note: Note) -> Step {
        if let Some(slot) = self.notes.iter_mut().find(|n| n.is_none()) {
            *slot = Some(note);
        }
        self
    }
    /// The notes, in order.
    pub fn notes(&self) -> impl Iterator<Item = Note> + '_ {
        self.notes.iter().flatten().copied()
    }
}

/// One process's state plus the counters its transitions need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// The current state.
    pub state: State,
    /// Consecutive failed starts (supervisor's `backoff`); the next delay is this many seconds.
    pub backoff: u32,
    /// When the last child was spawned (the throttle's reference).
    pub last_spawn: Option<Instant>,
    /// Children spawned so far.
    pub spawns: u32,
    /// How the last child ended.
    pub last_exit: Option<ExitStatus>,
    /// The watchdog wants the process up: set by `Start`, cleared by `Stop` and by
    /// `set_wanted(false)` (shutdown, whose stops come in order later). A (re)spawn that falls
    /// due while not wanted ends in STOPPED instead.
    pub wanted: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

impl Machine {
    /// A process that has never run: STOPPED.
    pub const fn new() -> Machine {
        Machine {
            state: State::Stopped { start_at: None },
            backoff: 0,
            last_spawn: None,
            spawns: 0,
            last_exit: None,
            wanted: false,
        }
    }

    /// Whether the process should be up (a start is due once its dependencies allow it) or
    /// not (nothing is respawned any more; a stop follows when its turn comes).
    pub fn set_wanted(&mut self, wanted: bool) {
        self.wanted = wanted;
    }

    /// supervisor's name for the state.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Stopped { .. } => "STOPPED",
            State::Starting { .. } => "STARTING",
            State::Running { .. } => "RUNNING",
            State::Backoff { .. } => "BACKOFF",
            State::Stopping { .. } => "STOPPING",
            State::Exited { .. } => "EXITED",
            State::Fatal => "FATAL",
        }
    }

    /// The live child, if any.
    pub fn pid(&self) -> Option<u32> {
        match self.state {
            State::Starting { pid, .. }
            | State::Running { pid, .. }
            | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// When the machine wants a `Timer` event.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Stopped { start_at } => start_at,
            State::Starting { phase, .. } => match phase {
                StartPhase::Waiting { deadline } => Some(deadline),
                StartPhase::Abandoning { kill_at } => Some(kill_at),
                StartPhase::Exec | StartPhase::Killed => None,
            },
            State::Backoff { retry_at } => Some(retry_at),
            State::Stopping { kill_at, .. } => kill_at,
            State::Exited { restart_at } => restart_at,
            State::Running { .. } | State::Fatal => None,
        }
    }

    /// Whether the state allows an `Event::Start` to do something (not started, not stopping).
    pub fn is_startable(&self) -> bool {
        matches!(
            self.state,
            State::Stopped { start_at: None } | State::Exited { .. } | State::Fatal
        )
    }

    /// The transition: `(self, event, now) -> (next, step)`. Pure.
    pub fn step(self, policy: &Policy, event: Event, now: Instant) -> (Machine, Step) {
        let mut m = self;
        let step = match event {
            Event::Start => {
                m.wanted = true;
                m.on_start(now)
            }
            Event::Stop => {
                m.wanted = false;
                m.on_stop(policy, now)
            }
            Event::Forked { pid } => m.on_forked(pid, now),
            Event::Spawned { pid } => m.on_spawned(policy, pid, now),
            Event::SpawnFailed => m.on_spawn_failed(policy, now),
            Event::Exited(status) => m.on_exit(policy, status, now),
            Event::Ready => m.on_ready(),
            Event::Timer => match m.deadline() {
                Some(due) if due <= now => m.on_timer(policy, now),
                // Early or spurious: nothing is due.
                _ => Step::none(),
            },
        };
        (m, step)
    }

    /// The earliest instant the throttle allows a spawn.
    fn spawn_allowed_at(&self) -> Option<Instant> {
        self.last_spawn.map(|t| after(t, MIN_SPAWN_INTERVAL))
    }

    /// Spawn now, or park in `parked(at)` until the throttle allows it.
    fn spawn_or_park(&mut self, now: Instant, parked: fn(Instant) -> State) -> Step {
        match self.spawn_allowed_at() {
            Some(at) if at > now => {
                self.state = parked(at);
                Step::none().note(Note::Throttled { until: at })
            }
            _ => Step::act(Action::Spawn),
        }
    }

    fn on_start(&mut self, now: Instant) -> Step {
        match self.state {
            // Stopped/Exited/Fatal -> Starting (via Spawn): an explicit start forgets old failures.
            State::Stopped { start_at: None } | State::Exited { .. } | State::Fatal => {
                self.backoff = 0;
                self.spawn_or_park(now, |at| State::Stopped { start_at: Some(at) })
            }
            // Already starting, running, backing off, stopping, or parked by the throttle.
            _ => Step::none(),
        }
    }

    fn on_stop(&mut self, policy: &Policy, now: Instant) -> Step {
        match self.state {
            // Starting, not exec'd yet -> Stopping: stopsignal to the child itself (it has no
            // descendants yet, and may not lead its group yet), SIGKILL after stopwaitsecs.
            State::Starting {
                pid,
                phase: StartPhase::Exec,
                ..
            } => {
                self.state = State::Stopping {
                    pid,
                    kill_at: Some(after(now, policy.stopwaitsecs)),
                };
                Step::act(Action::Signal {
                    pid,
                    signal: policy.stopsignal,
                    group: false,
                })
                .note(Note::WaitingStop)
            }
            // Starting/Running -> Stopping: stopsignal now, SIGKILL after stopwaitsecs.
            State::Starting {
                pid,
                phase: StartPhase::Waiting { .. },
                ..
            }
            | State::Running { pid, .. } => {
                self.state = State::Stopping {
                    pid,
                    kill_at: Some(after(now, policy.stopwaitsecs)),
                };
                Step::act(Action::Signal {
                    pid,
                    signal: policy.stopsignal,
                    group: policy.stopasgroup,
                })
                .note(Note::WaitingStop)
            }
            // Starting (ready timeout already stopping it) -> Stopping, keeping the kill schedule.
            State::Starting {
                pid,
                phase: StartPhase::Abandoning { kill_at },
                ..
            } => {
                self.state = State::Stopping {
                    pid,
                    kill_at: Some(kill_at),
                };
                Step::none().note(Note::WaitingStop)
            }
            State::Starting {
                pid,
                phase: StartPhase::Killed,
                ..
            } => {
                self.state = State::Stopping { pid, kill_at: None };
                Step::none().note(Note::WaitingStop)
            }
            // Backoff/Exited/parked Stopped -> Stopped: cancel the pending (re)start.
            State::Backoff { .. } | State::Exited { .. } | State::Stopped { start_at: Some(_) } => {
                self.state = State::Stopped { start_at: None };
                self.backoff = 0;
                Step::none()
            }
            // Already stopped, stopping, or fatal.
            State::Stopped { start_at: None } | State::Stopping { .. } | State::Fatal => {
                Step::none()
            }
        }
    }

    fn on_forked(&mut self, pid: u32, now: Instant) -> Step {
        if self.pid().is_some() {
            // Spawn is only asked for from pid-less states; a second child would be untracked.
            return Step::none();
        }
        // -> Starting, until the exec report says exec'd (Spawned) or failed (SpawnFailed).
        self.state = State::Starting {
            pid,
            since: now,
            phase: StartPhase::Exec,
        };
        Step::none()
    }

    fn on_spawn_failed(&mut self, policy: &Policy, now: Instant) -> Step {
        match self.state {
            // Starting (exec pending) -> Backoff: the child reported a failed step and exits
            // by itself; its reaping is no longer this machine's.
            State::Starting {
                phase: StartPhase::Exec,
                ..
            } => self.enter_backoff(policy, now, Step::none()),
            // A spawn that failed in the parent (no child) -> Backoff.
            _ if self.pid().is_none() => self.enter_backoff(policy, now, Step::none()),
            // Stopping (stopped while exec was pending): its exit ends it.
            _ => Step::none(),
        }
    }

    fn on_spawned(&mut self, policy: &Policy, pid: u32, now: Instant) -> Step {
        match self.state {
            State::Starting {
                pid: forked,
                phase: StartPhase::Exec,
                ..
            } if forked == pid => {}
            // Spawn is only asked for from pid-less states; a second child would be untracked.
            _ if self.pid().is_some() => return Step::none(),
            _ => {}
        }
        self.last_spawn = Some(now);
        self.spawns = self.spawns.saturating_add(1);
        let spawned = Step::none().note(Note::Spawned { pid });
        match policy.ready_timeout {
            // -> Starting until the ready check connects or times out.
            Some(timeout) => {
                self.state = State::Starting {
                    pid,
                    since: now,
                    phase: StartPhase::Waiting {
                        deadline: after(now, timeout),
                    },
                };
                spawned
            }
            // startsecs = 0 -> Running at once (supervisor does it on its next tick).
            None if policy.startsecs.is_zero() => {
                self.state = State::Running { pid, since: now };
                self.backoff = 0;
                spawned.note(Note::Success)
            }
            // -> Starting until startsecs.
            None => {
                self.state = State::Starting {
                    pid,
                    since: now,
                    phase: StartPhase::Waiting {
                        deadline: after(now, policy.startsecs),
                    },
                };
                spawned
            }
        }
    }

    /// A start failed: Backoff with a delay of `backoff` seconds, or Fatal past startretries.
    fn enter_backoff(&mut self, policy: &Policy, now: Instant, step: Step) -> Step {
        self.backoff = self.backoff.saturating_add(1);
        if self.backoff > policy.startretries {
            // Backoff -> Fatal: too many start retries too quickly.
            self.backoff = 0;
            self.state = State::Fatal;
            return step.note(Note::GaveUp);
        }
        // -> Backoff: retry after 1 s, 2 s, 3 s…
        self.state = State::Backoff {
            retry_at: after(now, Duration::from_secs(u64::from(self.backoff))),
        };
        step
    }

    fn on_exit(&mut self, policy: &Policy, status: ExitStatus, now: Instant) -> Step {
        let Some(pid) = self.pid() else {
            // No child in these states: not ours.
            return Step::none();
        };
        self.last_exit = Some(status);
        // The leader is gone; with stopasgroup/killasgroup, whatever is left of its process
        // group goes too (a SIGKILLed uWSGI master leaves workers bound to its socket).
        let step = Step {
            kill_group: policy.kill_group().then_some(pid),
            ..Step::none()
        };
        match self.state {
            State::Starting { since, phase, .. } => {
                let stayed = now.saturating_duration_since(since);
                let too_quickly = match phase {
                    StartPhase::Waiting { .. } => {
                        policy.ready_timeout.is_some() || stayed < policy.startsecs
                    }
                    StartPhase::Exec | StartPhase::Abandoning { .. } | StartPhase::Killed => true,
                };
                if too_quickly {
                    // Starting -> Backoff: exited before startsecs (or before it was ready,
                    // or before its exec report came in).
                    let step = step.note(Note::Exited {
                        status,
                        expected: false,
                    });
                    self.enter_backoff(policy, now, step)
                } else {
                    // Starting -> Running -> Exited: startsecs passed but its timer had not run yet.
                    self.backoff = 0;
                    let step = step.note(Note::Success);
                    self.exit_from_running(policy, status, now, step)
                }
            }
            State::Running { .. } => self.exit_from_running(policy, status, now, step),
            // Stopping -> Stopped.
            _ => {
                self.state = State::Stopped { start_at: None };
                step.note(Note::Stopped { status })
            }
        }
    }

    fn exit_from_running(
        &mut self,
        policy: &Policy,
        status: ExitStatus,
        now: Instant,
        step: Step,
    ) -> Step {
        let expected = policy.expected(status);
        let step = step.note(Note::Exited { status, expected });
        self.backoff = 0;
        if !self.wanted {
            // Running -> Stopped: a restart would be due, but the process is no longer wanted.
            self.state = State::Stopped { start_at: None };
            return step;
        }
        self.state = State::Exited { restart_at: None };
        let restart = match policy.autorestart {
            Restart::Always => true,
            Restart::Unexpected => !expected,
            Restart::Never => false,
        };
        if !restart {
            // Running -> Exited, and stays.
            return step;
        }
        // Running -> Exited -> Starting at once, unless spawned less than a second ago.
        let restart = self.spawn_or_park(now, |at| State::Exited {
            restart_at: Some(at),
        });
        restart.notes().fold(
            Step {
                action: restart.action,
                ..step
            },
            Step::note,
        )
    }

    fn on_ready(&mut self) -> Step {
        match self.state {
            // Starting -> Running: the ready check connected.
            State::Starting {
                pid,
                since,
                phase: StartPhase::Waiting { .. },
            } => {
                self.state = State::Running { pid, since };
                self.backoff = 0;
                Step::none().note(Note::Ready)
            }
            _ => Step::none(),
        }
    }

    fn on_timer(&mut self, policy: &Policy, now: Instant) -> Step {
        match self.state {
            State::Starting {
                pid,
                since,
                phase: StartPhase::Waiting { .. },
            } => {
                if policy.ready_timeout.is_some() {
                    // Starting, ready timeout: stopsignal now, SIGKILL after stopwaitsecs, then Backoff.
                    self.state = State::Starting {
                        pid,
                        since,
                        phase: StartPhase::Abandoning {
                            kill_at: after(now, policy.stopwaitsecs),
                        },
                    };
                    Step::act(Action::Signal {
                        pid,
                        signal: policy.stopsignal,
                        group: policy.stopasgroup,
                    })
                    .note(Note::ReadyTimeout)
                } else {
                    // Starting -> Running: stayed up startsecs.
                    self.state = State::Running { pid, since };
                    self.backoff = 0;
                    Step::none().note(Note::Success)
                }
            }
            State::Starting {
                pid,
                since,
                phase: StartPhase::Abandoning { .. },
            } => {
                self.state = State::Starting {
                    pid,
                    since,
                    phase: StartPhase::Killed,
                };
                Step::act(Action::Signal {
                    pid,
                    signal: libc::SIGKILL,
                    group: policy.kill_group(),
                })
                .note(Note::Killing { pid })
            }
            // Stopping, stopwaitsecs passed: SIGKILL.
            State::Stopping {
                pid,
                kill_at: Some(_),
            } => {
                self.state = State::Stopping { pid, kill_at: None };
                Step::act(Action::Signal {
                    pid,
                    signal: libc::SIGKILL,
                    group: policy.kill_group(),
                })
                .note(Note::Killing { pid })
            }
            // Backoff -> Starting; Exited/Stopped parked by the throttle -> Starting. No longer
            // wanted -> Stopped: the spawn that fell due becomes a stop.
            State::Backoff { .. }
            | State::Exited {
                restart_at: Some(_),
            }
            | State::Stopped { start_at: Some(_) } => {
                if self.wanted {
                    return Step::act(Action::Spawn);
                }
                self.state = State::Stopped { start_at: None };
                self.backoff = 0;
                Step::none()
            }
            _ => Step::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: u32 = 4242;

    fn policy() -> Policy {
        Policy {
            startsecs: Duration::from_secs(10),
            startretries: 3,
            autorestart: Restart::Unexpected,
            exitcodes: vec![0],
            stopsignal: libc::SIGTERM,
            stopwaitsecs: Duration::from_secs(10),
            stopasgroup: false,
            killasgroup: false,
            ready_timeout: None,
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn ms(t0: Instant, m: u64) -> Instant {
        t0 + Duration::from_millis(m)
    }

    /// Start and feed Spawned when asked: the machine as the watchdog drives it.
    fn started(p: &Policy, m: Machine, now: Instant) -> Machine {
        let (m, s) = m.step(p, Event::Start, now);
        assert_eq!(s.action, Action::Spawn);
        m.step(p, Event::Spawned { pid: PID }, now).0
    }

    fn running(p: &Policy, t0: Instant) -> Machine {
        let m = started(p, Machine::new(), t0);
        let (m, s) = m.step(p, Event::Timer, secs(t0, 10));
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::Success]);
        m
    }

    #[test]
    fn new_machine_is_stopped_without_deadline() {
        let m = Machine::new();
        assert_eq!(m.state_name(), "STOPPED");
        assert_eq!(m.deadline(), None);
        assert_eq!(m.pid(), None);
    }

    #[test]
    fn start_asks_for_spawn_and_spawned_is_starting_until_startsecs() {
        let p = policy();
        let t0 = Instant::now();
        let (m, s) = Machine::new().step(&p, Event::Start, t0);
        assert_eq!(s.action, Action::Spawn);
        assert_eq!(m.state_name(), "STOPPED");
        let (m, s) = m.step(&p, Event::Spawned { pid: PID }, t0);
        assert_eq!(m.state_name(), "STARTING");
        assert_eq!(m.pid(), Some(PID));
        assert_eq!(m.deadline(), Some(secs(t0, 10)));
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Spawned { pid: PID }]
        );
        assert_eq!(m.spawns, 1);
    }

    #[test]
    fn timer_before_deadline_does_nothing() {
        let p = policy();
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m2, s) = m.step(&p, Event::Timer, secs(t0, 9));
        assert_eq!(m2, m);
        assert_eq!(s, Step::none());
    }

    #[test]
    fn staying_up_startsecs_is_running_and_resets_backoff() {
        let p = policy();
        let t0 = Instant::now();
        let mut m = started(&p, Machine::new(), t0);
        m.backoff = 2;
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 10));
        assert_eq!(
            m.state,
            State::Running {
                pid: PID,
                since: t0
            }
        );
        assert_eq!(m.backoff, 0);
        assert_eq!(m.deadline(), None);
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::Success]);
    }

    #[test]
    fn startsecs_zero_is_running_at_spawn() {
        let p = Policy {
            startsecs: Duration::ZERO,
            ..policy()
        };
        let t0 = Instant::now();
        let (m, _) = Machine::new().step(&p, Event::Start, t0);
        let (m, s) = m.step(&p, Event::Spawned { pid: PID }, t0);
        assert_eq!(m.state_name(), "RUNNING");
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Spawned { pid: PID }, Note::Success]
        );
    }

    #[test]
    fn early_exit_backs_off_one_two_three_seconds_then_fatal() {
        let p = policy(); // startretries = 3: 4 attempts in all, like supervisor
        let t0 = Instant::now();
        let mut m = started(&p, Machine::new(), t0);
        let mut now = t0;
        for attempt in 1..=3u64 {
            now += Duration::from_millis(100);
            let (m2, s) = m.step(&p, Event::Exited(ExitStatus::Code(1)), now);
            assert_eq!(
                m2.state,
                State::Backoff {
                    retry_at: now + Duration::from_secs(attempt)
                }
            );
            assert_eq!(
                s.notes().collect::<Vec<_>>(),
                vec![Note::Exited {
                    status: ExitStatus::Code(1),
                    expected: false
                }]
            );
            // Not yet due: nothing.
            let (m3, s) = m2.step(
                &p,
                Event::Timer,
                now + Duration::from_millis(attempt * 1000 - 1),
            );
            assert_eq!((m3, s.action), (m2, Action::None));
            now += Duration::from_secs(attempt);
            let (m3, s) = m2.step(&p, Event::Timer, now);
            assert_eq!(s.action, Action::Spawn);
            m = m3.step(&p, Event::Spawned { pid: PID }, now).0;
            assert_eq!(m.state_name(), "STARTING");
        }
        let (m, s) = m.step(
            &p,
            Event::Exited(ExitStatus::Code(1)),
            now + Duration::from_millis(100),
        );
        assert_eq!(m.state, State::Fatal);
        assert_eq!(m.backoff, 0);
        assert_eq!(m.deadline(), None);
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![
                Note::Exited {
                    status: ExitStatus::Code(1),
                    expected: false
                },
                Note::GaveUp
            ]
        );
        assert_eq!(m.spawns, 4);
    }

    #[test]
    fn startretries_zero_is_fatal_on_first_early_exit() {
        let p = Policy {
            startretries: 0,
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m, _) = m.step(&p, Event::Exited(ExitStatus::Code(0)), secs(t0, 1));
        assert_eq!(m.state, State::Fatal);
    }

    #[test]
    fn early_exit_with_expected_code_is_still_not_expected() {
        let p = policy();
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (_, s) = m.step(&p, Event::Exited(ExitStatus::Code(0)), secs(t0, 1));
        assert_eq!(
            s.notes[0],
            Some(Note::Exited {
                status: ExitStatus::Code(0),
                expected: false
            })
        );
    }

    #[test]
    fn spawn_failure_backs_off_then_fatal() {
        let p = Policy {
            startretries: 1,
            ..policy()
        };
        let t0 = Instant::now();
        let (m, _) = Machine::new().step(&p, Event::Start, t0);
        let (m, s) = m.step(&p, Event::SpawnFailed, t0);
        assert_eq!(
            m.state,
            State::Backoff {
                retry_at: secs(t0, 1)
            }
        );
        assert_eq!(s.notes().count(), 0);
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 1));
        assert_eq!(s.action, Action::Spawn);
        let (m, s) = m.step(&p, Event::SpawnFailed, secs(t0, 1));
        assert_eq!(m.state, State::Fatal);
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::GaveUp]);
        assert_eq!(m.spawns, 0);
    }

    #[test]
    fn exit_after_startsecs_before_timer_counts_as_running_then_exited() {
        let p = policy();
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m, s) = m.step(&p, Event::Exited(ExitStatus::Code(2)), secs(t0, 11));
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![
                Note::Success,
                Note::Exited {
                    status: ExitStatus::Code(2),
                    expected: false
                }
            ]
        );
        assert_eq!(s.action, Action::Spawn, "unexpected exit restarts");
        assert_eq!(m.state, State::Exited { restart_at: None });
    }

    /// The exitcodes × autorestart matrix for a RUNNING process.
    #[test]
    fn running_exit_restarts_per_autorestart_and_exitcodes() {
        let t0 = Instant::now();
        let kill = ExitStatus::Signal {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        let cases = [
            (Restart::Always, ExitStatus::Code(0), true, true),
            (Restart::Always, ExitStatus::Code(1), false, true),
            (Restart::Always, kill, false, true),
            (Restart::Never, ExitStatus::Code(0), true, false),
            (Restart::Never, ExitStatus::Code(1), false, false),
            (Restart::Never, kill, false, false),
            (Restart::Unexpected, ExitStatus::Code(0), true, false),
            (Restart::Unexpected, ExitStatus::Code(2), true, false),
            (Restart::Unexpected, ExitStatus::Code(1), false, true),
            (Restart::Unexpected, kill, false, true),
        ];
        for (autorestart, status, expected, restarts) in cases {
            let p = Policy {
                autorestart,
                exitcodes: vec![0, 2],
                ..policy()
            };
            let m = running(&p, t0);
            let (m, s) = m.step(&p, Event::Exited(status), secs(t0, 60));
            let case = format!("{autorestart:?} {status:?}");
            assert_eq!(
                s.notes[0],
                Some(Note::Exited { status, expected }),
                "{case}"
            );
            assert_eq!(m.state, State::Exited { restart_at: None }, "{case}");
            assert_eq!(s.action == Action::Spawn, restarts, "{case}");
            assert_eq!(m.last_exit, Some(status), "{case}");
        }
    }

    #[test]
    fn crash_loop_with_startsecs_zero_is_throttled_to_one_spawn_per_second() {
        let p = Policy {
            startsecs: Duration::ZERO,
            autorestart: Restart::Always,
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        assert_eq!(m.state_name(), "RUNNING");
        // Crashes 10 ms after spawn: parked in EXITED until a second after the spawn.
        let (m, s) = m.step(&p, Event::Exited(ExitStatus::Code(1)), ms(t0, 10));
        assert_eq!(s.action, Action::None);
        assert_eq!(
            m.state,
            State::Exited {
                restart_at: Some(secs(t0, 1))
            }
        );
        assert!(s
            .notes()
            .any(|n| n == Note::Throttled { until: secs(t0, 1) }));
        assert_eq!(m.step(&p, Event::Timer, ms(t0, 999)).1.action, Action::None);
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 1));
        assert_eq!(s.action, Action::Spawn);
        let m = m.step(&p, Event::Spawned { pid: PID + 1 }, secs(t0, 1)).0;
        assert_eq!(
            m.state,
            State::Running {
                pid: PID + 1,
                since: secs(t0, 1)
            }
        );
        assert_eq!(m.backoff, 0, "RUNNING exits never count towards FATAL");
    }

    #[test]
    fn running_exit_long_after_spawn_restarts_at_once() {
        let p = Policy {
            autorestart: Restart::Always,
            ..policy()
        };
        let t0 = Instant::now();
        let m = running(&p, t0);
        let (_, s) = m.step(
            &p,
            Event::Exited(ExitStatus::Signal {
                signal: libc::SIGKILL,
                core_dumped: false,
            }),
            secs(t0, 30),
        );
        assert_eq!(s.action, Action::Spawn);
    }

    #[test]
    fn stop_running_sends_stopsignal_then_sigkill_after_stopwaitsecs() {
        let p = Policy {
            stopsignal: libc::SIGQUIT,
            ..policy()
        };
        let t0 = Instant::now();
        let m = running(&p, t0);
        let (m, s) = m.step(&p, Event::Stop, secs(t0, 20));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGQUIT,
                group: false
            }
        );
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::WaitingStop]);
        assert_eq!(
            m.state,
            State::Stopping {
                pid: PID,
                kill_at: Some(secs(t0, 30))
            }
        );
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 30));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGKILL,
                group: false
            }
        );
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Killing { pid: PID }]
        );
        assert_eq!(m.deadline(), None);
        let killed = ExitStatus::Signal {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        let (m, s) = m.step(&p, Event::Exited(killed), secs(t0, 31));
        assert_eq!(m.state, State::Stopped { start_at: None });
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Stopped { status: killed }]
        );
        assert_eq!(s.action, Action::None, "a stopped process is not restarted");
    }

    #[test]
    fn stopasgroup_signals_the_group_and_implies_killasgroup() {
        let t0 = Instant::now();
        let p = Policy {
            stopasgroup: true,
            ..policy()
        };
        let m = running(&p, t0);
        let (m, s) = m.step(&p, Event::Stop, secs(t0, 20));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGTERM,
                group: true
            }
        );
        let (_, s) = m.step(&p, Event::Timer, secs(t0, 30));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGKILL,
                group: true
            }
        );

        let p = Policy {
            killasgroup: true,
            ..policy()
        };
        let m = running(&p, t0);
        let (m, s) = m.step(&p, Event::Stop, secs(t0, 20));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGTERM,
                group: false
            }
        );
        let (_, s) = m.step(&p, Event::Timer, secs(t0, 30));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGKILL,
                group: true
            }
        );
    }

    #[test]
    fn stop_while_starting_stops() {
        let p = policy();
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m, s) = m.step(&p, Event::Stop, secs(t0, 1));
        assert_eq!(m.state_name(), "STOPPING");
        assert!(matches!(
            s.action,
            Action::Signal {
                signal: libc::SIGTERM,
                ..
            }
        ));
    }

    #[test]
    fn stop_cancels_backoff_and_throttled_restarts() {
        let p = Policy {
            startsecs: Duration::ZERO,
            autorestart: Restart::Always,
            ..policy()
        };
        let t0 = Instant::now();
        let backoff = Machine {
            state: State::Backoff {
                retry_at: secs(t0, 2),
            },
            backoff: 2,
            ..Machine::new()
        };
        let parked_exit = Machine {
            state: State::Exited {
                restart_at: Some(secs(t0, 1)),
            },
            ..Machine::new()
        };
        let parked_stop = Machine {
            state: State::Stopped {
                start_at: Some(secs(t0, 1)),
            },
            ..Machine::new()
        };
        for m in [backoff, parked_exit, parked_stop] {
            let (m, s) = m.step(&p, Event::Stop, t0);
            assert_eq!(m.state, State::Stopped { start_at: None });
            assert_eq!(m.deadline(), None);
            assert_eq!(s, Step::none());
        }
    }

    #[test]
    fn stop_is_ignored_when_stopped_stopping_or_fatal() {
        let p = policy();
        let t0 = Instant::now();
        for state in [
            State::Stopped { start_at: None },
            State::Stopping {
                pid: PID,
                kill_at: None,
            },
            State::Fatal,
        ] {
            let m = Machine {
                state,
                ..Machine::new()
            };
            assert_eq!(m.step(&p, Event::Stop, t0), (m, Step::none()));
        }
    }

    #[test]
    fn start_is_ignored_while_started_or_stopping() {
        let p = policy();
        let t0 = Instant::now();
        let states = [
            State::Starting {
                pid: PID,
                since: t0,
                phase: StartPhase::Waiting {
                    deadline: secs(t0, 1),
                },
            },
            State::Running {
                pid: PID,
                since: t0,
            },
            State::Backoff {
                retry_at: secs(t0, 1),
            },
            State::Stopping {
                pid: PID,
                kill_at: None,
            },
        ];
        for state in states {
            // Started before, so wanted already.
            let m = Machine {
                state,
                wanted: true,
                ..Machine::new()
            };
            assert_eq!(m.step(&p, Event::Start, t0), (m, Step::none()));
        }
    }

    #[test]
    fn start_from_fatal_or_exited_resets_backoff_and_spawns() {
        let p = policy();
        let t0 = Instant::now();
        for state in [State::Fatal, State::Exited { restart_at: None }] {
            let m = Machine {
                state,
                backoff: 3,
                ..Machine::new()
            };
            let (m, s) = m.step(&p, Event::Start, t0);
            assert_eq!((m.backoff, s.action), (0, Action::Spawn));
        }
    }

    #[test]
    fn start_within_a_second_of_last_spawn_is_parked() {
        let p = policy();
        let t0 = Instant::now();
        let m = Machine {
            last_spawn: Some(t0),
            ..Machine::new()
        };
        let (m, s) = m.step(&p, Event::Start, ms(t0, 300));
        assert_eq!(s.action, Action::None);
        assert_eq!(
            m.state,
            State::Stopped {
                start_at: Some(secs(t0, 1))
            }
        );
        let (_, s) = m.step(&p, Event::Timer, secs(t0, 1));
        assert_eq!(s.action, Action::Spawn);
    }

    #[test]
    fn ready_check_decides_running_not_startsecs() {
        let p = Policy {
            ready_timeout: Some(Duration::from_secs(30)),
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        assert_eq!(m.deadline(), Some(secs(t0, 30)));
        // Past startsecs, still STARTING: only the ready check counts.
        assert_eq!(m.step(&p, Event::Timer, secs(t0, 15)).0, m);
        let (m, s) = m.step(&p, Event::Ready, secs(t0, 12));
        assert_eq!(
            m.state,
            State::Running {
                pid: PID,
                since: t0
            }
        );
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::Ready]);
        // Ready again while RUNNING: nothing.
        assert_eq!(m.step(&p, Event::Ready, secs(t0, 13)), (m, Step::none()));
    }

    #[test]
    fn exit_before_ready_backs_off_even_after_startsecs() {
        let p = Policy {
            ready_timeout: Some(Duration::from_secs(30)),
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m, _) = m.step(&p, Event::Exited(ExitStatus::Code(0)), secs(t0, 20));
        assert_eq!(
            m.state,
            State::Backoff {
                retry_at: secs(t0, 21)
            }
        );
    }

    #[test]
    fn ready_timeout_stops_then_kills_then_backs_off() {
        let p = Policy {
            ready_timeout: Some(Duration::from_secs(30)),
            stopwaitsecs: Duration::from_secs(5),
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 30));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGTERM,
                group: false
            }
        );
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::ReadyTimeout]);
        assert_eq!(m.state_name(), "STARTING");
        assert_eq!(m.deadline(), Some(secs(t0, 35)));
        // A late Ready no longer counts.
        assert_eq!(m.step(&p, Event::Ready, secs(t0, 31)).0, m);
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 35));
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGKILL,
                group: false
            }
        );
        assert_eq!(m.deadline(), None);
        let (m, _) = m.step(
            &p,
            Event::Exited(ExitStatus::Signal {
                signal: libc::SIGKILL,
                core_dumped: false,
            }),
            secs(t0, 35),
        );
        assert_eq!(
            m.state,
            State::Backoff {
                retry_at: secs(t0, 36)
            }
        );
    }

    #[test]
    fn stop_during_ready_timeout_keeps_kill_schedule() {
        let p = Policy {
            ready_timeout: Some(Duration::from_secs(30)),
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        let (m, _) = m.step(&p, Event::Timer, secs(t0, 30));
        let (m, s) = m.step(&p, Event::Stop, secs(t0, 31));
        assert_eq!(s.action, Action::None, "stopsignal was already sent");
        assert_eq!(
            m.state,
            State::Stopping {
                pid: PID,
                kill_at: Some(secs(t0, 40))
            }
        );
    }

    #[test]
    fn exit_and_spawned_are_ignored_where_they_cannot_happen() {
        let p = policy();
        let t0 = Instant::now();
        for state in [
            State::Stopped { start_at: None },
            State::Fatal,
            State::Backoff { retry_at: t0 },
        ] {
            let m = Machine {
                state,
                ..Machine::new()
            };
            assert_eq!(
                m.step(&p, Event::Exited(ExitStatus::Code(1)), t0),
                (m, Step::none())
            );
        }
        let m = running(&p, t0);
        assert_eq!(m.step(&p, Event::Spawned { pid: 1 }, t0), (m, Step::none()));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let p = Policy {
            startsecs: Duration::MAX,
            stopwaitsecs: Duration::MAX,
            ..policy()
        };
        let t0 = Instant::now();
        let m = started(&p, Machine::new(), t0);
        assert!(m.deadline().is_some_and(|d| d > t0));
        let (m, _) = m.step(&p, Event::Stop, t0);
        assert!(m.deadline().is_some_and(|d| d > t0));
        let m = Machine {
            backoff: u32::MAX,
            ..Machine::new()
        };
        let (m, _) = m.step(
            &Policy {
                startretries: u32::MAX,
                ..policy()
            },
            Event::SpawnFailed,
            t0,
        );
        assert!(m.deadline().is_some_and(|d| d > t0));
    }

    /// Start, then Forked: the child is between fork and exec.
    fn forked(p: &Policy, t0: Instant) -> Machine {
        let (m, s) = Machine::new().step(p, Event::Start, t0);
        assert_eq!(s.action, Action::Spawn);
        m.step(p, Event::Forked { pid: PID }, t0).0
    }

    #[test]
    fn forked_is_starting_without_deadline_until_the_exec_report() {
        let p = policy();
        let t0 = Instant::now();
        let m = forked(&p, t0);
        assert_eq!(m.state_name(), "STARTING");
        assert_eq!(m.pid(), Some(PID));
        assert_eq!(
            m.deadline(),
            None,
            "the child's own set-up decides, no timer"
        );
        assert_eq!(m.spawns, 0, "not spawned before it exec'd");
        // A report for another pid, a ready check or a timer change nothing.
        assert_eq!(m.step(&p, Event::Spawned { pid: PID + 1 }, t0).0, m);
        assert_eq!(m.step(&p, Event::Ready, t0).0, m);
        assert_eq!(m.step(&p, Event::Timer, secs(t0, 60)).0, m);
        // EOF on the report: exec'd; startsecs counts from here.
        let (m, s) = m.step(&p, Event::Spawned { pid: PID }, ms(t0, 30));
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Spawned { pid: PID }]
        );
        assert_eq!(m.deadline(), Some(ms(t0, 10_030)));
        assert_eq!((m.spawns, m.last_spawn), (1, Some(ms(t0, 30))));
    }

    #[test]
    fn exec_report_with_startsecs_zero_is_running_at_once() {
        let p = Policy {
            startsecs: Duration::ZERO,
            ..policy()
        };
        let t0 = Instant::now();
        let (m, s) = forked(&p, t0).step(&p, Event::Spawned { pid: PID }, t0);
        assert_eq!(m.state_name(), "RUNNING");
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Spawned { pid: PID }, Note::Success]
        );
    }

    #[test]
    fn failed_exec_report_backs_off_then_gives_up() {
        let p = Policy {
            startretries: 1,
            ..policy()
        };
        let t0 = Instant::now();
        let (m, s) = forked(&p, t0).step(&p, Event::SpawnFailed, t0);
        assert_eq!(
            m.state,
            State::Backoff {
                retry_at: secs(t0, 1)
            }
        );
        assert_eq!(m.pid(), None, "the failed child exits by itself");
        assert_eq!(s, Step::none());
        let (m, s) = m.step(&p, Event::Timer, secs(t0, 1));
        assert_eq!(s.action, Action::Spawn);
        let m = m.step(&p, Event::Forked { pid: PID + 1 }, secs(t0, 1)).0;
        let (m, s) = m.step(&p, Event::SpawnFailed, secs(t0, 1));
        assert_eq!(m.state, State::Fatal);
        assert_eq!(s.notes().collect::<Vec<_>>(), vec![Note::GaveUp]);
    }

    #[test]
    fn exit_before_the_exec_report_backs_off() {
        let p = policy();
        let t0 = Instant::now();
        let status = ExitStatus::Signal {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        let (m, s) = forked(&p, t0).step(&p, Event::Exited(status), ms(t0, 5));
        assert_eq!(m.state_name(), "BACKOFF");
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Exited {
                status,
                expected: false
            }]
        );
    }

    #[test]
    fn stop_before_exec_signals_the_child_itself_and_ignores_a_late_report() {
        let p = Policy {
            stopasgroup: true,
            ..policy()
        };
        let t0 = Instant::now();
        let (m, s) = forked(&p, t0).step(&p, Event::Stop, t0);
        assert_eq!(
            s.action,
            Action::Signal {
                pid: PID,
                signal: libc::SIGTERM,
                group: false
            },
            "no group yet to signal: the child may not have called setsid"
        );
        assert_eq!(
            m.state,
            State::Stopping {
                pid: PID,
                kill_at: Some(secs(t0, 10))
            }
        );
        assert_eq!(m.step(&p, Event::Spawned { pid: PID }, t0).0, m);
        assert_eq!(m.step(&p, Event::SpawnFailed, t0).0, m);
        let (m, s) = m.step(&p, Event::Exited(ExitStatus::Code(127)), ms(t0, 1));
        assert_eq!(m.state, State::Stopped { start_at: None });
        assert_eq!(s.action, Action::None);
    }

    #[test]
    fn leader_exit_kills_what_is_left_of_its_group_before_the_restart() {
        let killed = ExitStatus::Signal {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        let t0 = Instant::now();
        for (stopasgroup, killasgroup) in [(true, true), (false, true)] {
            let p = Policy {
                stopasgroup,
                killasgroup,
                autorestart: Restart::Always,
                ..policy()
            };
            let (_, s) = running(&p, t0).step(&p, Event::Exited(killed), secs(t0, 30));
            assert_eq!((s.kill_group, s.action), (Some(PID), Action::Spawn));
            // Stopping -> Stopped: the group goes too.
            let m = running(&p, t0).step(&p, Event::Stop, secs(t0, 30)).0;
            let (_, s) = m.step(&p, Event::Exited(killed), secs(t0, 31));
            assert_eq!(s.kill_group, Some(PID));
            // Starting -> Backoff: as well.
            let m = started(&p, Machine::new(), t0);
            assert_eq!(
                m.step(&p, Event::Exited(killed), t0).1.kill_group,
                Some(PID)
            );
        }
        let p = policy();
        let (_, s) = running(&p, t0).step(&p, Event::Exited(killed), secs(t0, 30));
        assert_eq!(
            s.kill_group, None,
            "without the group keys, only the leader"
        );
        // An exit that is not this machine's child kills nothing.
        let (_, s) = Machine::new().step(
            &Policy {
                killasgroup: true,
                ..policy()
            },
            Event::Exited(killed),
            t0,
        );
        assert_eq!(s, Step::none());
    }

    #[test]
    fn a_restart_due_while_not_wanted_becomes_a_stop() {
        let p = Policy {
            autorestart: Restart::Always,
            ..policy()
        };
        let t0 = Instant::now();
        // Running, then unwanted (shutdown waits for its turn), then it exits: STOPPED.
        let mut m = running(&p, t0);
        m.set_wanted(false);
        let (m, s) = m.step(&p, Event::Exited(ExitStatus::Code(1)), secs(t0, 30));
        assert_eq!(m.state, State::Stopped { start_at: None });
        assert_eq!(s.action, Action::None);
        assert_eq!(
            s.notes().collect::<Vec<_>>(),
            vec![Note::Exited {
                status: ExitStatus::Code(1),
                expected: false
            }]
        );
        // Backoff and throttled restarts whose time comes: STOPPED, no spawn.
        for state in [
            State::Backoff {
                retry_at: secs(t0, 1),
            },
            State::Exited {
                restart_at: Some(secs(t0, 1)),
            },
            State::Stopped {
                start_at: Some(secs(t0, 1)),
            },
        ] {
            let m = Machine {
                state,
                backoff: 2,
                ..Machine::new()
            };
            let (m, s) = m.step(&p, Event::Timer, secs(t0, 1));
            assert_eq!(m.state, State::Stopped { start_at: None }, "{state:?}");
            assert_eq!((s.action, m.backoff), (Action::None, 0), "{state:?}");
        }
        // Wanted again by a Start: spawns.
        let (m, s) = Machine::new().step(&p, Event::Start, t0);
        assert!(m.wanted);
        assert_eq!(s.action, Action::Spawn);
        let (m, _) = m.step(&p, Event::Stop, t0);
        assert!(!m.wanted, "a stop request means not wanted");
    }

    #[test]
    fn policy_comes_from_the_program_section() {
        let mut prog = config::Program::new("web", "/bin/true");
        prog.startsecs = Duration::from_secs(3);
        prog.startretries = 7;
        prog.autorestart = config::AutoRestart::Always;
        prog.exitcodes = vec![0, 2];
        prog.stopsignal = libc::SIGQUIT;
        prog.stopwaitsecs = Duration::from_secs(4);
        prog.killasgroup = true;
        prog.ready_timeout = Duration::from_secs(9);
        let p = Policy::from(&prog);
        assert_eq!(
            p,
            Policy {
                startsecs: Duration::from_secs(3),
                startretries: 7,
                autorestart: Restart::Always,
                exitcodes: vec![0, 2],
                stopsignal: libc::SIGQUIT,
                stopwaitsecs: Duration::from_secs(4),
                stopasgroup: false,
                killasgroup: true,
                ready_timeout: None,
            },
            "no ready check: startsecs decides"
        );
        prog.ready = Some(config::ReadyCheck::Tcp("127.0.0.1:1".parse().unwrap()));
        assert_eq!(
            Policy::from(&prog).ready_timeout,
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn exit_status_is_worded_like_supervisor() {
        assert_eq!(ExitStatus::Code(1).to_string(), "exit status 1");
        assert_eq!(
            ExitStatus::Signal {
                signal: libc::SIGKILL,
                core_dumped: false
            }
            .to_string(),
            "terminated by SIGKILL"
        );
        assert_eq!(
            ExitStatus::Signal {
                signal: libc::SIGSEGV,
                core_dumped: true
            }
            .to_string(),
            "terminated by SIGSEGV (core dumped)"
        );
        assert_eq!(SignalName(libc::SIGRTMIN() + 2).to_string(), "SIGRTMIN+2");
        assert_eq!(SignalName(200).to_string(), "signal 200");
    }
}
