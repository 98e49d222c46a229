//! One control connection: read one request head, check who asks, do what it asks, answer,
//! close. Commands that take time (start, stop, restart, update, reload) wait inside the
//! session — the loop calls `poll` on every turn — and answer when the outcome is known, as
//! supervisorctl's do; `tail` streams the output ring, and with `follow` keeps streaming.
//!
//! Owns the session's state and its two fixed buffers (lent by the slot). Never blocks (the
//! socket is non-blocking; every loop is bounded), never allocates on a command but `reread`,
//! `update` and `reload` (which parse the ini file, like SIGHUP), and never waits unbounded
//! (`OP_TIMEOUT`, `HEAD_TIMEOUT`).

use super::api::{self, Spec, Verb};
use super::reply;
use super::{programs, Access, Ask, Env, UpgradeView};
use crate::http::request::{parse_head, Span};
use crate::http::response::HeadWriter;
use crate::http::Status;
use crate::sys;
use crate::sys::peer::PeerCred;
use crate::watchdog::{ProcessStatus, Refusal, Watchdog};
use mio::net::UnixStream;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The whole request head must arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a start, stop, restart or update to finish.
const OP_TIMEOUT: Duration = Duration::from_secs(600);
/// Most processes one command names (`all` included).
pub const MAX_TARGETS: usize = 64;
/// Default of `tail` without `bytes` or `lines`: supervisorctl's 1600 bytes.
const TAIL_BYTES: u64 = 1600;

/// What a command's process ended with (or that it is still going on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Not part of this command.
    Skip,
    Waiting,
    Ok(&'static str),
    Err(&'static str),
}

/// One name of a command, resolved to a process (or not).
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: Option<u64>,
    /// Index of the `name` parameter it came from (for an unknown name).
    spec: u16,
    /// From `all` or `group:*`: "not running" / "already started" are not reported.
    quiet: bool,
    /// The stop of `stop` and `restart`.
    first: Outcome,
    /// The start of `start` and `restart`; the signal of `signal` and `reload-program`.
    second: Outcome,
    /// The child being stopped.
    old_pid: Option<u32>,
}

type Entries = heapless::Vec<Entry, MAX_TARGETS>;

/// Where a session is.
enum Phase {
    Reading,
    /// A command's processes are being started or stopped.
    Waiting {
        verb: Verb,
        since: Instant,
    },
    /// `update`: the answer is written; sent once removed and changed programs are down.
    Updating {
        since: Instant,
    },
    /// `reload`, `upgrade`: the loop does it and calls `reloaded` or `upgrade_asked`.
    Asking,
    /// Sending the answer, then closing.
    Writing,
    /// `tail`: output from the ring, from `pos` to `end` (forever with `follow`).
    Streaming {
        id: u64,
        stderr: bool,
        pos: u64,
        end: Option<u64>,
    },
}

/// What the loop does with the session after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    Close,
    Ask(Ask),
}

/// A control connection.
pub struct Session {
    sock: UnixStream,
    cred: PeerCred,
    allowed: bool,
    in_len: usize,
    out_pos: usize,
    out_len: usize,
    phase: Phase,
    /// The request's query (names and parameters), kept in the input buffer.
    query: Option<Span>,
    deadline: Instant,
    /// The processes of a waiting command (in the slot, no allocation).
    entries: Entries,
}

/// The namespec a process is shown as: `name`, or `group:name` when they differ.
fn namespec<'a>(group: &'a str, name: &'a str) -> (&'a str, &'a str) {
    if group == name {
        ("", name)
    } else {
        (group, name)
    }
}

impl Session {
    pub fn new(sock: UnixStream, cred: PeerCred, allowed: bool, now: Instant) -> Session {
        Session {
            sock,
            cred,
            allowed,
            in_len: 0,
            out_pos: 0,
            out_len: 0,
            phase: Phase::Reading,
            query: None,
            deadline: now + HEAD_TIMEOUT,
            entries: Entries::new(),
        }
    }

    pub fn socket(&mut self) -> &mut UnixStream {
        &mut self.sock
    }

    /// When the session gives up (a head that does not come, a command that does not end);
    /// `None` while it follows output or sends.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Reading => Some(self.deadline),
            Phase::Waiting { since, .. } | Phase::Updating { since } => Some(since + OP_TIMEOUT),
            _ => None,
        }
    }

    /// Whether it streams output (checked on every turn: new output raises no event here).
    pub fn streams(&self) -> bool {
        matches!(self.phase, Phase::Streaming { .. })
    }

    /// Whether the loop must call `poll` on its turns (a command waits, or output streams).
    pub fn needs_poll(&self) -> bool {
        matches!(
            self.phase,
            Phase::Waiting { .. } | Phase::Updating { .. } | Phase::Streaming { .. }
        )
    }

    /// Which phase, for "did it change".
    fn phase_kind(&self) -> u8 {
        match self.phase {
            Phase::Reading => 0,
            Phase::Waiting { .. } => 1,
            Phase::Updating { .. } => 2,
            Phase::Asking => 3,
            Phase::Writing => 4,
            Phase::Streaming { .. } => 5,
        }
    }

    /// Reads, acts and sends as far as it goes now. `event`: the socket reported readiness
    /// (a waiting or following session then also checks whether its peer hung up); otherwise
    /// this is a turn of the loop after the programs or their output changed.
    pub fn advance(
        &mut self,
        (input, out): (&mut [u8], &mut [u8]),
        env: &mut Env<'_>,
        access: &Access,
        event: bool,
    ) -> Next {
        for _ in 0..8 {
            let before = self.phase_kind();
            let next = match self.phase {
                Phase::Reading => self.read_head(input, out, env, access),
                Phase::Waiting { .. } => self.check_waiting(input, out, env),
                Phase::Updating { since } => {
                    if env.watchdog.retired_alive() && env.now < since + OP_TIMEOUT {
                        Next::Keep
                    } else {
                        self.phase = Phase::Writing;
                        Next::Keep
                    }
                }
                Phase::Asking => Next::Keep,
                Phase::Writing => self.flush(out),
                Phase::Streaming { .. } => self.stream(out, env.watchdog),
            };
            if next != Next::Keep {
                return next;
            }
            if self.phase_kind() == before {
                let waits = matches!(
                    self.phase,
                    Phase::Waiting { .. }
                        | Phase::Updating { .. }
                        | Phase::Asking
                        | Phase::Streaming { .. }
                );
                return if event && waits {
                    self.watch_peer()
                } else {
                    Next::Keep
                };
            }
            // The phase moved on (an answer is ready): carry on with it now.
        }
        Next::Keep
    }

    /// While waiting: a peer that hung up ends the session (a Ctrl-C'd `ctl`).
    fn watch_peer(&mut self) -> Next {
        let mut scratch = [0u8; 64];
        match self.sock.read(&mut scratch) {
            Ok(0) => Next::Close,
            Err(e) if !sys::would_block(&e) && !sys::interrupted(&e) => Next::Close,
            _ => Next::Keep,
        }
    }

    /// Reads the head; once it is complete, carries out the request.
    fn read_head(
        &mut self,
        input: &mut [u8],
        out: &mut [u8],
        env: &mut Env<'_>,
        access: &Access,
    ) -> Next {
        for _ in 0..16 {
            let Some(room) = input.get_mut(self.in_len..) else {
                return Next::Close;
            };
            if room.is_empty() {
                self.answer_error(
                    out,
                    Status::RequestHeaderFieldsTooLarge,
                    b"request too large",
                );
                return Next::Keep;
            }
            match self.sock.read(room) {
                Ok(0) => return Next::Close,
                Ok(n) => self.in_len += n,
                Err(e) if sys::interrupted(&e) => continue,
                Err(e) if sys::would_block(&e) => return Next::Keep,
                Err(_) => return Next::Close,
            }
            let head = input.get(..self.in_len).unwrap_or_default();
            match parse_head(head) {
                Ok(Some(h)) => {
                    self.query = h.query;
                    let path = h.path(head);
                    return self.dispatch((h.method, path), input, out, env, access);
                }
                Ok(None) => {}
                Err(status) => {
                    self.answer_error(out, status, b"bad request");
                    return Next::Keep;
                }
            }
        }
        Next::Keep
    }

    /// Writes a complete JSON error answer and sends it.
    fn answer_error(&mut self, out: &mut [u8], status: Status, message: &[u8]) {
        let mut w = HeadWriter::new(out);
        reply::error(&mut w, status, message);
        self.out_len = w.len();
        self.out_pos = 0;
        self.phase = Phase::Writing;
    }

    /// An answer was written with `w`: send it (a reply too big for the buffer is an error).
    fn answer(&mut self, out: &mut [u8], len: usize, overflowed: bool) {
        if overflowed {
            self.answer_error(
                out,
                Status::InternalServerError,
                b"the answer does not fit the control buffer (32 KiB); name fewer processes",
            );
            return;
        }
        self.out_len = len;
        self.out_pos = 0;
        self.phase = Phase::Writing;
    }

    /// Carries out a parsed request.
    fn dispatch(
        &mut self,
        (method, path): (crate::http::request::Method, &[u8]),
        input: &[u8],
        out: &mut [u8],
        env: &mut Env<'_>,
        access: &Access,
    ) -> Next {
        let verb = match api::route(method, path) {
            Ok(v) => v,
            Err((status, why)) => {
                self.answer_error(out, status, why.as_bytes());
                return Next::Keep;
            }
        };
        if !self.allowed {
            self.refuse(out, access);
            return Next::Keep;
        }
        let query = self.query.map_or(&[][..], |q| q.get(input));
        if env.upgrade.upgrading && matches!(verb, Verb::Reload | Verb::Update) {
            // The programs and the file must stay as the upgrade checked them.
            self.answer_error(
                out,
                Status::ServiceUnavailable,
                b"an in-place upgrade is in progress: try again once it is done",
            );
            return Next::Keep;
        }
        match verb {
            Verb::Status => self.status(out, env.watchdog),
            Verb::Version => self.version(out, &env.upgrade),
            Verb::Start | Verb::Stop | Verb::Restart | Verb::Signal | Verb::ReloadProgram => {
                self.command(verb, query, input, out, env);
            }
            Verb::Tail => self.tail(query, out, env.watchdog),
            Verb::Reread => self.reread(out, env),
            Verb::Update => self.update(query, out, env),
            Verb::Reload => {
                self.phase = Phase::Asking;
                return Next::Ask(Ask::Reload);
            }
            Verb::Upgrade => {
                log::info!(
                    "control socket: upgrade asked by pid {} uid {}",
                    self.cred.pid,
                    self.cred.uid
                );
                self.phase = Phase::Asking;
                return Next::Ask(Ask::Upgrade);
            }
            Verb::Shutdown => {
                let mut w = HeadWriter::new(out);
                reply::head(&mut w, Status::Ok, b"application/json");
                w.put(b"{\"result\":\"Shut down\"}\n");
                let (len, over) = (w.len(), w.overflowed());
                self.answer(out, len, over);
                log::info!(
                    "control socket: shutdown asked by pid {} uid {}",
                    self.cred.pid,
                    self.cred.uid
                );
                let _ = self.flush(out);
                return Next::Ask(Ask::Shutdown);
            }
        }
        Next::Keep
    }

    /// 403, and a log line naming the peer.
    fn refuse(&mut self, out: &mut [u8], access: &Access) {
        let group = access.group_name();
        log::warn!(
            "control socket: refused pid {} uid {} gid {}: not root, not uid {} and not in control_socket_group{}{}",
            self.cred.pid,
            self.cred.uid,
            self.cred.gid,
            access.own_uid(),
            if group.is_empty() { "" } else { " " },
            group
        );
        let mut msg = heapless::String::<192>::new();
        use std::fmt::Write as _;
        let _ = write!(
            msg,
            "permission denied: uid {} is not root and not a member of control_socket_group{}{}",
            self.cred.uid,
            if group.is_empty() { "" } else { " " },
            group
        );
        self.answer_error(out, Status::Forbidden, msg.as_bytes());
    }

    fn status(&mut self, out: &mut [u8], wd: &Watchdog) {
        let mut w = HeadWriter::new(out);
        reply::head(&mut w, Status::Ok, b"application/json");
        w.put(b"{\"pid\":").num(u64::from(sys::getpid()));
        w.put(b",\"version\":");
        reply::string(&mut w, crate::VERSION.as_bytes());
        w.put(b",\"processes\":[");
        for (i, p) in wd.status().filter(|p| !p.retired).enumerate() {
            if i > 0 {
                w.put(b",");
            }
            reply::process(&mut w, &p);
        }
        w.put(b"]}\n");
        let (len, over) = (w.len(), w.overflowed());
        self.answer(out, len, over);
    }

    fn version(&mut self, out: &mut [u8], upgrade: &UpgradeView<'_>) {
        let mut w = HeadWriter::new(out);
        reply::head(&mut w, Status::Ok, b"application/json");
        reply::version(&mut w, upgrade);
        let (len, over) = (w.len(), w.overflowed());
        self.answer(out, len, over);
    }

    /// start, stop, restart, signal, reload-program: resolve the names, act on each process,
    /// and wait for the outcomes that take time.
    fn command(
        &mut self,
        verb: Verb,
        query: &[u8],
        input: &[u8],
        out: &mut [u8],
        env: &mut Env<'_>,
    ) {
        if api::names(query).next().is_none() {
            let msg: &[u8] = match verb {
                Verb::Start => b"start requires a process name",
                Verb::Stop => b"stop requires a process name",
                Verb::Restart => b"restart requires a process name",
                _ => b"a process name is required",
            };
            self.answer_error(out, Status::BadRequest, msg);
            return;
        }
        let signal = match verb {
            Verb::Signal => match api::param(query, b"sig").and_then(api::signal_number) {
                Some(s) => Some(s),
                None => {
                    self.answer_error(out, Status::BadRequest, b"bad signal name");
                    return;
                }
            },
            _ => None,
        };
        let mut entries = match resolve(verb, query, env.watchdog) {
            Ok(e) => e,
            Err(why) => {
                self.answer_error(out, Status::BadRequest, why);
                return;
            }
        };
        log::info!(
            "control socket: {} by pid {} uid {}",
            verb.word(),
            self.cred.pid,
            self.cred.uid
        );
        for e in entries.iter_mut() {
            act(verb, e, signal, env);
        }
        self.entries = entries;
        self.phase = Phase::Waiting {
            verb,
            since: env.now,
        };
        let _ = self.check_waiting(input, out, env);
    }

    /// Updates every waiting outcome; when none is left, writes the results.
    fn check_waiting(&mut self, input: &[u8], out: &mut [u8], env: &mut Env<'_>) -> Next {
        let Phase::Waiting { verb, since } = self.phase else {
            return Next::Keep;
        };
        let timed_out = env.now >= since + OP_TIMEOUT;
        let mut waiting = false;
        for e in self.entries.iter_mut() {
            progress(e, env.watchdog, timed_out);
            waiting |= e.first == Outcome::Waiting || e.second == Outcome::Waiting;
        }
        if waiting {
            return Next::Keep;
        }
        let query = self.query.map_or(&[][..], |q| q.get(input));
        let mut w = HeadWriter::new(out);
        write_results(&mut w, verb, &self.entries, query, env.watchdog);
        let (len, over) = (w.len(), w.overflowed());
        self.answer(out, len, over);
        Next::Keep
    }

    /// `tail`: the last `bytes` (1600) or `lines` of a process's stdout or stderr, and with
    /// `follow` everything after, as it comes.
    fn tail(&mut self, query: &[u8], out: &mut [u8], wd: &Watchdog) {
        let name = api::param(query, b"name").unwrap_or_default();
        let stderr = match api::param(query, b"stream") {
            None | Some(b"stdout") => false,
            Some(b"stderr") => true,
            Some(_) => {
                self.answer_error(out, Status::BadRequest, b"bad channel (stdout or stderr)");
                return;
            }
        };
        let id = match api::spec(name) {
            Spec::Process { group, name } => wd
                .status()
                .find(|p| !p.retired && p.group.as_bytes() == group && p.name.as_bytes() == name)
                .map(|p| p.id),
            _ => None,
        };
        let Some(ring) = id.and_then(|id| wd.output(id, stderr)) else {
            self.answer_error(out, Status::NotFound, b"no such process name");
            return;
        };
        let from = match (
            api::param(query, b"lines").and_then(api::number),
            api::param(query, b"bytes").and_then(api::number),
        ) {
            (Some(lines), _) => ring.last_lines(usize::try_from(lines).unwrap_or(usize::MAX)),
            (None, bytes) => ring.last_bytes(bytes.unwrap_or(TAIL_BYTES)),
        };
        let follow = api::param(query, b"follow").is_some_and(|v| v != b"0");
        let end = (!follow).then_some(ring.total());
        let mut w = HeadWriter::new(out);
        reply::head(&mut w, Status::Ok, b"text/plain; charset=utf-8");
        self.out_len = w.len();
        self.out_pos = 0;
        self.phase = Phase::Streaming {
            id: id.unwrap_or(0),
            stderr,
            pos: from,
            end,
        };
    }

    /// `reread`: the program diff between the running set and the file.
    fn reread(&mut self, out: &mut [u8], env: &mut Env<'_>) {
        let file = match crate::config::load(env.config_file) {
            Ok(c) => c,
            Err(e) => {
                let mut msg = heapless::String::<1024>::new();
                use std::fmt::Write as _;
                let _ = write!(msg, "CANT_REREAD: {e}");
                self.answer_error(out, Status::InternalServerError, msg.as_bytes());
                return;
            }
        };
        let running: Vec<&crate::config::Program> = env.watchdog.program_configs().collect();
        let diff = programs::diff(&running, &file.programs);
        let mut w = HeadWriter::new(out);
        reply::head(&mut w, Status::Ok, b"application/json");
        write_diff(&mut w, &diff, &[]);
        let (len, over) = (w.len(), w.overflowed());
        self.answer(out, len, over);
    }

    /// `update [NAME…]`: applies the program diff (for the named programs only, when named),
    /// answering once what it stops is down.
    fn update(&mut self, query: &[u8], out: &mut [u8], env: &mut Env<'_>) {
        let file = match crate::config::load(env.config_file) {
            Ok(c) => c,
            Err(e) => {
                let mut msg = heapless::String::<1024>::new();
                use std::fmt::Write as _;
                let _ = write!(msg, "CANT_REREAD: {e}");
                self.answer_error(out, Status::InternalServerError, msg.as_bytes());
                return;
            }
        };
        let running: Vec<&crate::config::Program> = env.watchdog.program_configs().collect();
        let named: Vec<&[u8]> = api::names(query).filter(|n| *n != b"all").collect();
        let selected = |name: &str| named.is_empty() || named.contains(&name.as_bytes());
        let mut diff = programs::diff(&running, &file.programs);
        diff.added.retain(|n| selected(n));
        diff.changed.retain(|n| selected(n));
        diff.removed.retain(|n| selected(n));
        let unknown: Vec<&[u8]> = named
            .iter()
            .copied()
            .filter(|n| {
                !running.iter().any(|r| r.name.as_bytes() == *n)
                    && !file.programs.iter().any(|f| f.name.as_bytes() == *n)
            })
            .collect();
        let set = programs::updated_set(&running, &file.programs, &selected);
        let mut w = HeadWriter::new(out);
        reply::head(&mut w, Status::Ok, b"application/json");
        write_diff(&mut w, &diff, &unknown);
        let (len, over) = (w.len(), w.overflowed());
        drop(running);
        if !diff.is_empty() {
            log::info!(
                "control socket: update by pid {} uid {}",
                self.cred.pid,
                self.cred.uid
            );
            env.watchdog.reload(env.registry, &set, env.now);
        }
        self.answer(out, len, over);
        if !over {
            self.phase = Phase::Updating { since: env.now };
        }
    }

    /// The loop reloaded uwgate's configuration for this session's `reload`.
    pub fn reloaded(&mut self, out: &mut [u8], result: Result<(), String>) {
        let mut w = HeadWriter::new(out);
        match result {
            Ok(()) => {
                reply::head(&mut w, Status::Ok, b"application/json");
                w.put(b"{\"result\":\"reloaded\"}\n");
            }
            Err(e) => reply::error(&mut w, Status::InternalServerError, e.as_bytes()),
        }
        let (len, over) = (w.len(), w.overflowed());
        self.answer(out, len, over);
    }

    /// The loop began (`Ok`) or refused (`Err`) this session's `upgrade`: `{"result":"started",
    /// …}` with what the client needs to wait for the outcome (this image, the bound), or the
    /// refusal's why.
    pub fn upgrade_asked(
        &mut self,
        out: &mut [u8],
        result: Result<(), String>,
        upgrade: &UpgradeView<'_>,
        bound: Duration,
    ) {
        let mut w = HeadWriter::new(out);
        match result {
            Ok(()) => {
                reply::head(&mut w, Status::Ok, b"application/json");
                reply::upgrade_started(&mut w, upgrade, bound);
            }
            Err(e) => reply::error(&mut w, Status::InternalServerError, e.as_bytes()),
        }
        let (len, over) = (w.len(), w.overflowed());
        self.answer(out, len, over);
    }

    /// uwgate is about to exec: the session cannot cross it. A command without its answer yet
    /// gets a 503 saying so (a command that waits for processes goes on without it); an
    /// answer on its way (`update`'s too) gets one more send; a `tail` just ends. One
    /// non-blocking try; the caller closes.
    pub fn farewell(&mut self, out: &mut [u8]) {
        let why: &[u8] = match self.phase {
            Phase::Writing | Phase::Updating { .. } => {
                self.phase = Phase::Writing;
                let _ = self.flush(out);
                return;
            }
            Phase::Streaming { .. } => return,
            Phase::Waiting { .. } => {
                b"uwgate is being upgraded in place: the command goes on, but its outcome is not reported (see status)"
            }
            Phase::Reading | Phase::Asking => {
                b"uwgate is being upgraded in place: ask again"
            }
        };
        self.answer_error(out, Status::ServiceUnavailable, why);
        let _ = self.flush(out);
    }

    /// Sends the rest of the output buffer; closes when it is out.
    fn flush(&mut self, out: &[u8]) -> Next {
        for _ in 0..64 {
            let Some(pending) = out.get(self.out_pos..self.out_len) else {
                return Next::Close;
            };
            if pending.is_empty() {
                return if matches!(self.phase, Phase::Writing) {
                    Next::Close
                } else {
                    Next::Keep
                };
            }
            match sys::send(self.sock.as_raw_fd(), pending, false) {
                Ok(n) => self.out_pos += n,
                Err(e) if sys::interrupted(&e) => {}
                Err(e) if sys::would_block(&e) => return Next::Keep,
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }

    /// `tail`: the head, then ring bytes up to `end` (or, following, what there is).
    fn stream(&mut self, out: &[u8], wd: &Watchdog) -> Next {
        if self.out_pos < self.out_len {
            match self.flush(out) {
                Next::Keep if self.out_pos >= self.out_len => {}
                other => return other,
            }
        }
        let Phase::Streaming {
            id,
            stderr,
            pos,
            end,
        } = &mut self.phase
        else {
            return Next::Close;
        };
        let Some(ring) = wd.output(*id, *stderr) else {
            return Next::Close; // the process is gone (removed by a reload)
        };
        for _ in 0..64 {
            *pos = (*pos).max(ring.oldest());
            let to = end.unwrap_or(u64::MAX);
            let (a, b) = ring.slices(*pos, to);
            if a.is_empty() && b.is_empty() {
                return if end.is_some() {
                    Next::Close
                } else {
                    Next::Keep
                };
            }
            match sys::send2(self.sock.as_raw_fd(), a, b) {
                Ok(n) => *pos = pos.saturating_add(n as u64),
                Err(e) if sys::interrupted(&e) => {}
                Err(e) if sys::would_block(&e) => return Next::Keep,
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }
}

/// The processes a command's names stand for, in order; an unknown name is an entry without
/// a process. `Err` when `all` or the names reach more than `MAX_TARGETS`.
fn resolve(verb: Verb, query: &[u8], wd: &Watchdog) -> Result<Entries, &'static [u8]> {
    let mut entries = Entries::new();
    let too_many: &'static [u8] = b"too many processes for one command (64 at most)";
    let blank = |spec: u16, id: Option<u64>, quiet: bool| Entry {
        id,
        spec,
        quiet,
        first: Outcome::Skip,
        second: Outcome::Skip,
        old_pid: None,
    };
    for (i, name) in api::names(query).enumerate() {
        let spec = u16::try_from(i).unwrap_or(u16::MAX);
        let before = entries.len();
        let (quiet, matches): (bool, &dyn Fn(&ProcessStatus<'_>) -> bool) = match api::spec(name) {
            Spec::All => (true, &|_| true),
            Spec::Group(g) => (true, &move |p: &ProcessStatus<'_>| p.group.as_bytes() == g),
            Spec::Process { group, name } => (false, &move |p: &ProcessStatus<'_>| {
                p.group.as_bytes() == group && p.name.as_bytes() == name
            }),
        };
        for p in wd.status().filter(|p| !p.retired && matches(p)) {
            entries
                .push(blank(spec, Some(p.id), quiet))
                .map_err(|_| too_many)?;
        }
        if entries.len() == before {
            let mut e = blank(spec, None, false);
            let why = match api::spec(name) {
                Spec::Group(_) => "no such group",
                _ => "no such process",
            };
            e.first = if matches!(verb, Verb::Stop | Verb::Restart) {
                Outcome::Err(why)
            } else {
                Outcome::Skip
            };
            e.second = if matches!(verb, Verb::Stop) {
                Outcome::Skip
            } else {
                Outcome::Err(why)
            };
            entries.push(e).map_err(|_| too_many)?;
        }
    }
    Ok(entries)
}

/// Starts, stops, signals one resolved process and records what is known now.
fn act(verb: Verb, e: &mut Entry, signal: Option<i32>, env: &mut Env<'_>) {
    let Some(id) = e.id else {
        return;
    };
    let refused = |r: Refusal| Outcome::Err(r.words());
    let wd = &mut *env.watchdog;
    e.old_pid = wd.status().find(|p| p.id == id).and_then(|p| p.pid);
    let running = wd
        .status()
        .find(|p| p.id == id)
        .is_some_and(|p| matches!(p.state, "STARTING" | "RUNNING" | "BACKOFF"));
    match verb {
        Verb::Start => {
            e.second = match wd.start_process(env.registry, id, env.now) {
                Ok(()) => Outcome::Waiting,
                Err(r) => refused(r),
            };
        }
        Verb::Stop => {
            e.first = match wd.stop_process(env.registry, id, env.now) {
                Ok(()) => Outcome::Waiting,
                Err(r) => refused(r),
            };
        }
        Verb::Restart => {
            e.first = if running {
                Outcome::Waiting
            } else {
                Outcome::Err("not running")
            };
            e.second = match wd.restart_process(env.registry, id, env.now) {
                Ok(_) => Outcome::Waiting,
                Err(r) => {
                    e.first = refused(r);
                    refused(r)
                }
            };
        }
        Verb::Signal => {
            e.second = match wd.signal_process(id, signal.unwrap_or(0)) {
                Ok(()) => Outcome::Ok("signalled"),
                Err(r) => refused(r),
            };
        }
        Verb::ReloadProgram => {
            e.second = match wd.reload_process(id, env.now) {
                Ok(_) => Outcome::Ok("reloading"),
                Err(r) => refused(r),
            };
        }
        _ => {}
    }
}

/// Moves a waiting outcome on from what the process does now.
fn progress(e: &mut Entry, wd: &Watchdog, timed_out: bool) {
    let Some(id) = e.id else {
        return;
    };
    let p = wd.status().find(|p| p.id == id);
    if e.first == Outcome::Waiting {
        // Stopped once the child that was asked to stop is gone.
        let gone = p
            .as_ref()
            .is_none_or(|p| p.pid != e.old_pid || (p.pid.is_none() && p.state != "STOPPING"));
        if gone {
            e.first = Outcome::Ok("stopped");
        } else {
            if timed_out {
                e.first = Outcome::Err("timed out");
                if e.second == Outcome::Waiting {
                    e.second = Outcome::Err("timed out");
                }
            }
            return;
        }
    }
    if e.second != Outcome::Waiting {
        return;
    }
    e.second = match p {
        None => Outcome::Err("abnormal termination"),
        Some(p) => match p.state {
            "RUNNING" => Outcome::Ok("started"),
            "BACKOFF" | "FATAL" => Outcome::Err("spawn error"),
            "STARTING" => Outcome::Waiting,
            "STOPPED" | "STOPPING" if p.wanted => Outcome::Waiting,
            _ => Outcome::Err("abnormal termination"),
        },
    };
    if timed_out && e.second == Outcome::Waiting {
        e.second = Outcome::Err("timed out");
    }
}

/// `{"results":[{"name","action","result","ok"}…]}`: the stops first, then the starts (or
/// signals), as supervisorctl prints a restart.
fn write_results(
    w: &mut HeadWriter<'_>,
    verb: Verb,
    entries: &Entries,
    query: &[u8],
    wd: &Watchdog,
) {
    reply::head(w, Status::Ok, b"application/json");
    w.put(b"{\"results\":[");
    let mut any = false;
    let second_action = match verb {
        Verb::Signal => "signal",
        Verb::ReloadProgram => "reload-program",
        _ => "start",
    };
    for (action, first) in [("stop", true), (second_action, false)] {
        for e in entries {
            let outcome = if first { e.first } else { e.second };
            let (word, ok) = match outcome {
                Outcome::Skip | Outcome::Waiting => continue,
                Outcome::Ok(word) => (word, true),
                Outcome::Err(word) => (word, false),
            };
            if e.quiet && matches!(word, "not running" | "already started") {
                continue;
            }
            if any {
                w.put(b",");
            }
            any = true;
            w.put(b"{\"name\":");
            match e.id.and_then(|id| wd.status().find(|p| p.id == id)) {
                Some(p) => {
                    let (group, name) = namespec(p.group, p.name);
                    w.put(b"\"");
                    if !group.is_empty() {
                        w.put(group.as_bytes()).put(b":");
                    }
                    w.put(name.as_bytes()).put(b"\"");
                }
                None => {
                    let given = api::names(query)
                        .nth(usize::from(e.spec))
                        .unwrap_or_default();
                    reply::string(w, given);
                }
            }
            w.put(b",\"action\":\"").put(action.as_bytes());
            w.put(b"\",\"result\":\"").put(word.as_bytes());
            w.put(b"\",\"ok\":")
                .put(if ok { b"true" } else { b"false" });
            w.put(b"}");
        }
    }
    w.put(b"]}\n");
}

/// `{"added":[…],"changed":[…],"removed":[…],"unknown":[…]}`.
fn write_diff(w: &mut HeadWriter<'_>, diff: &programs::Diff, unknown: &[&[u8]]) {
    let list = |w: &mut HeadWriter<'_>, key: &[u8], names: &mut dyn Iterator<Item = &[u8]>| {
        w.put(b"\"").put(key).put(b"\":[");
        for (i, n) in names.enumerate() {
            if i > 0 {
                w.put(b",");
            }
            reply::string(w, n);
        }
        w.put(b"]");
    };
    w.put(b"{");
    list(w, b"added", &mut diff.added.iter().map(|s| s.as_bytes()));
    w.put(b",");
    list(
        w,
        b"changed",
        &mut diff.changed.iter().map(|s| s.as_bytes()),
    );
    w.put(b",");
    list(
        w,
        b"removed",
        &mut diff.removed.iter().map(|s| s.as_bytes()),
    );
    w.put(b",");
    list(w, b"unknown", &mut unknown.iter().copied());
    w.put(b"}\n");
}

/// Best effort when no session slot is free: a one-shot 503 and close.
pub fn turn_away(sock: &UnixStream) {
    let mut buf = [0u8; 256];
    let mut w = HeadWriter::new(&mut buf);
    reply::error(
        &mut w,
        Status::ServiceUnavailable,
        b"too many control connections",
    );
    let n = w.len();
    let _ = sys::send(sock.as_raw_fd(), buf.get(..n).unwrap_or_default(), false);
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(pid {}, uid {})", self.cred.pid, self.cred.uid)
    }
}
