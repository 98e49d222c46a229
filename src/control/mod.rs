//! The control socket (`[uwgate] control_socket`): supervisorctl's verbs and `nginx -s reload`
//! over HTTP/1.1 on a unix socket, served by the same loop, and `uwgate ctl`, its client.
//!
//! Owns the listening socket (made at start, before privileges drop; handed to the next image
//! by an in-place upgrade, which keeps it open and in place; removed at exit), the
//! permission rule (root, uwgate's own uid, or a member of `control_socket_group`, by
//! `SO_PEERCRED`; anyone else gets 403 and a log line), and a few fixed session slots, each
//! with its two buffers allocated at start. The loop routes tokens `TOKEN_BASE..` here and
//! calls `turn` while a session waits or streams; what only the loop can do (reload its own
//! configuration, stop, upgrade) comes back as an [`Ask`]. Sessions do not cross an exec: the
//! gate closes them just before one ([`Control::close_sessions`]).
//!
//! Never: blocks (sockets are non-blocking, sessions answer as far as they can and wait for
//! readiness or a turn), allocates per command beyond the slots' fixed buffers (except the ini
//! parse of `reread`, `update` and `reload`, as SIGHUP), or lets a refused peer do anything.

pub mod api;
pub mod client;
mod json;
mod programs;
mod reply;
mod session;
pub mod upgrade_wait;

use crate::config::Global;
use crate::handoff::Inherited;
use crate::sys;
use crate::sys::peer::PeerCred;
use crate::watchdog::{self, Watchdog};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use session::{Next, Session};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Session slots: concurrent `uwgate ctl` commands (a `tail -f` holds one while it runs).
pub const MAX_SESSIONS: usize = 8;
/// The listener's token; session `i` is `TOKEN_BASE + 1 + i`. Just below the watchdog's range.
pub const TOKEN_BASE: usize = watchdog::TOKEN_BASE - 64;
/// A session's input buffer: the request head.
const IN_SIZE: usize = 4096;
/// A session's output buffer: the whole JSON answer (status of about 140 processes).
const OUT_SIZE: usize = 32 << 10;

/// What a session needs from the loop for one call.
pub struct Env<'a> {
    pub watchdog: &'a mut Watchdog,
    pub registry: &'a Registry,
    pub now: Instant,
    /// The ini file (`reread`, `update` read it again).
    pub config_file: &'a Path,
    /// What `/version` tells of in-place upgrades.
    pub upgrade: UpgradeView<'a>,
}

/// In-place upgrades as the gate knows them, for `/version` (and `uwgate ctl upgrade`, which
/// polls it for the outcome).
#[derive(Clone, Copy, Debug, Default)]
pub struct UpgradeView<'a> {
    /// This image's identity: CLOCK_MONOTONIC nanoseconds when its loop was made, so it
    /// changes at every exec (an upgrade, a rollback) and at no other time.
    pub image: u64,
    /// An upgrade is under way: its check runs, or connections drain before the exec.
    pub upgrading: bool,
    /// How the last upgrade this image knows of ended: (succeeded, what happened), e.g.
    /// `(true, "from 0.1.0 in 35 ms, 2 process(es) kept")`.
    pub last: Option<(bool, &'a str)>,
}

/// What the loop must do for a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Reload uwgate's configuration (as SIGHUP), then call `reloaded` with the outcome.
    Reload,
    /// Stop gracefully (as SIGTERM); the answer is already sent.
    Shutdown,
    /// Begin an in-place upgrade (as SIGUSR2), then call `upgrade_asked` with whether it began.
    Upgrade,
}

/// Who may use the socket besides root.
pub struct Access {
    own_uid: u32,
    group: Option<(String, u32, Vec<u32>)>,
}

impl Access {
    /// uwgate's effective uid at start.
    pub fn own_uid(&self) -> u32 {
        self.own_uid
    }

    /// `control_socket_group`, or "".
    pub fn group_name(&self) -> &str {
        self.group.as_ref().map_or("", |(name, _, _)| name.as_str())
    }

    /// root, uwgate's own uid, the group as primary or supplementary group (SO_PEERGROUPS,
    /// Linux 4.13+), or a member listed in /etc/group (read at start).
    fn allows(&self, cred: &PeerCred, fd: std::os::fd::RawFd) -> bool {
        if cred.uid == 0 || cred.uid == self.own_uid {
            return true;
        }
        let Some((_, gid, members)) = &self.group else {
            return false;
        };
        if cred.gid == *gid || members.contains(&cred.uid) {
            return true;
        }
        let mut groups = [0u32; 256];
        sys::peer::peer_groups(fd, &mut groups)
            .is_ok_and(|n| groups.get(..n).is_some_and(|g| g.contains(gid)))
    }
}

struct Slot {
    input: Box<[u8]>,
    out: Box<[u8]>,
    session: Option<Session>,
}

/// The control socket and its sessions.
pub struct Control {
    listener: Option<UnixListener>,
    path: Option<PathBuf>,
    /// The listener came from the previous image (an in-place upgrade): until the upgrade is
    /// committed its file is not this image's to remove (a rollback serves it again).
    inherited: bool,
    access: Access,
    slots: Vec<Slot>,
    /// The watchdog generation waiting sessions were last checked at.
    seen_generation: u64,
}

impl Control {
    /// No control socket (`control_socket` unset).
    pub fn off() -> Control {
        Control {
            listener: None,
            path: None,
            inherited: false,
            access: Access {
                own_uid: sys::geteuid(),
                group: None,
            },
            slots: Vec::new(),
            seen_generation: 0,
        }
    }

    /// Creates the socket `control_socket` names (mode `control_socket_mode`, else 0600, or
    /// 0660 owned by `control_socket_group`) and the session slots. Called by `main` before
    /// privileges drop. A socket file left by a dead uwgate is replaced; one a running uwgate
    /// answers on is an error.
    pub fn bind(g: &Global) -> Result<Control, String> {
        match g.control_socket.as_deref() {
            Some(path) => Control::make(g, path, None),
            None => Ok(Control::off()),
        }
    }

    /// [`Control::bind`] for the new image of an in-place upgrade: the listener the previous
    /// image served is taken over open when the file still names its path — the same file
    /// (inode), no privilege needed, no moment without it (mode and group are set again if
    /// they changed in the file, when the process still may). When the file names another
    /// path, or none, that is bound as at a start, and the old file goes once the new image
    /// serves (`Inherited::commit`); should the bind fail (a process that dropped privileges
    /// may no longer create a file where the socket lives), the old socket is kept, with a
    /// warning, rather than failing the upgrade. `Err`: the caller rolls back.
    pub fn take_over(g: &Global, h: &mut Inherited) -> Result<Control, String> {
        let inherited = |h: &mut Inherited, path: &Path| {
            h.take_control(Some(path))
                .map_err(|e| format!("control socket: {e}"))
        };
        if let Some(path) = g.control_socket.as_deref() {
            if let Some(l) = inherited(h, path)? {
                return Control::make(g, path, Some(l));
            }
        }
        let Some(old) = h.control_path().map(Path::to_path_buf) else {
            return Control::bind(g);
        };
        match Control::bind(g) {
            Ok(c) => Ok(c),
            Err(e) => {
                log::warn!(
                    "{e}; keeping the control socket at {} (as the previous image served it)",
                    old.display()
                );
                match inherited(h, &old)? {
                    Some(l) => Control::make(g, &old, Some(l)),
                    None => Err(e),
                }
            }
        }
    }

    /// The socket at `path` (bound now, or `inherited`) and the session slots.
    fn make(
        g: &Global,
        path: &Path,
        inherited: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Control, String> {
        let group = match &g.control_socket_group {
            Some(name) => {
                let (gid, members) = sys::peer::group_members(name)
                    .map_err(|e| format!("control_socket_group = {name}: {e}"))?;
                Some((name.clone(), gid, members))
            }
            None => None,
        };
        let mode = g
            .control_socket_mode
            .unwrap_or(if group.is_some() { 0o660 } else { 0o600 });
        let gid = group.as_ref().map(|(_, gid, _)| *gid);
        let was_inherited = inherited.is_some();
        let std_listener = match inherited {
            Some(l) => {
                l.set_nonblocking(true)
                    .map_err(|e| format!("control socket {}: {e}", path.display()))?;
                keep_mode(path, mode, gid);
                l
            }
            None => listen(path, mode, gid)
                .map_err(|e| format!("control socket {}: {e}", path.display()))?,
        };
        let slots = (0..MAX_SESSIONS)
            .map(|_| Slot {
                input: vec![0; IN_SIZE].into_boxed_slice(),
                out: vec![0; OUT_SIZE].into_boxed_slice(),
                session: None,
            })
            .collect();
        Ok(Control {
            listener: Some(UnixListener::from_std(std_listener)),
            path: Some(path.to_path_buf()),
            inherited: was_inherited,
            access: Access {
                own_uid: sys::geteuid(),
                group,
            },
            slots,
            seen_generation: 0,
        })
    }

    /// What an in-place upgrade hands on: the listener's descriptor and its path.
    pub fn handoff(&self) -> Option<(RawFd, PathBuf)> {
        let fd = self.listener.as_ref()?.as_raw_fd();
        Some((fd, self.path.clone()?))
    }

    /// The socket's path, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Registers the listener in the loop (once, by the gate).
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        if let Some(l) = self.listener.as_mut() {
            registry.register(l, Token(TOKEN_BASE), Interest::READABLE)?;
        }
        Ok(())
    }

    /// Readiness of a control token.
    pub fn on_event(&mut self, token: Token, env: &mut Env<'_>) -> Option<(usize, Ask)> {
        let offset = token.0.checked_sub(TOKEN_BASE)?;
        if offset == 0 {
            self.accept_all(env);
            return None;
        }
        self.advance(offset - 1, env, true)
    }

    fn accept_all(&mut self, env: &mut Env<'_>) {
        for _ in 0..64 {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let sock = match listener.accept() {
                Ok((sock, _)) => sock,
                Err(e) if sys::would_block(&e) => return,
                Err(e) if sys::interrupted(&e) => continue,
                Err(e) => {
                    log::warn!("control socket: accept() failed: {e}");
                    return;
                }
            };
            self.admit(sock, env);
        }
    }

    /// A new connection: its peer's credentials decide what it may do (checked now, answered
    /// once its request arrives).
    fn admit(&mut self, mut sock: UnixStream, env: &mut Env<'_>) {
        let Ok(cred) = sys::peer::peer_credentials(sock.as_raw_fd()) else {
            return; // closed at once
        };
        let allowed = self.access.allows(&cred, sock.as_raw_fd());
        let Some(i) = self.slots.iter().position(|s| s.session.is_none()) else {
            log::warn!(
                "control socket: all {MAX_SESSIONS} sessions busy; turning pid {} away",
                cred.pid
            );
            session::turn_away(&sock);
            return;
        };
        let token = Token(TOKEN_BASE + 1 + i);
        if let Err(e) =
            env.registry
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("control socket: epoll registration failed: {e}");
            return;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            slot.session = Some(Session::new(sock, cred, allowed, env.now));
        }
        // A request already there is reported by the registration (epoll checks readiness
        // when a descriptor is added), so the session runs on that event.
    }

    /// Runs session `i` as far as it goes; closes it when it is done.
    fn advance(&mut self, i: usize, env: &mut Env<'_>, event: bool) -> Option<(usize, Ask)> {
        let slot = self.slots.get_mut(i)?;
        let session = slot.session.as_mut()?;
        match session.advance((&mut slot.input, &mut slot.out), env, &self.access, event) {
            Next::Keep => None,
            Next::Ask(ask) => Some((i, ask)),
            Next::Close => {
                self.close(i, env.registry);
                None
            }
        }
    }

    fn close(&mut self, i: usize, registry: &Registry) {
        if let Some(mut s) = self.slots.get_mut(i).and_then(|slot| slot.session.take()) {
            let _ = registry.deregister(s.socket());
        }
    }

    /// Whether `turn` has work now: a session waits for its processes or follows output, or
    /// one's deadline has passed.
    pub fn wants_turn(&self, now: Instant) -> bool {
        self.slots.iter().any(|s| {
            s.session
                .as_ref()
                .is_some_and(|s| s.needs_poll() || s.deadline().is_some_and(|d| d <= now))
        })
    }

    /// A turn of the loop: waiting sessions look at their processes again (when something
    /// changed, or their time is up), streaming ones send new output; expired ones close.
    pub fn turn(&mut self, env: &mut Env<'_>) {
        let generation = env.watchdog.generation();
        let changed = generation != self.seen_generation;
        self.seen_generation = generation;
        for i in 0..self.slots.len() {
            let Some(s) = self.slots.get(i).and_then(|s| s.session.as_ref()) else {
                continue;
            };
            let expired = s.deadline().is_some_and(|d| d <= env.now);
            if expired && !s.needs_poll() {
                log::info!("control socket: {s:?} timed out");
                self.close(i, env.registry);
                continue;
            }
            if s.needs_poll() && (changed || expired || s.streams()) {
                let _ = self.advance(i, env, false);
            }
        }
    }

    /// The earliest session deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.session.as_ref()?.deadline())
            .min()
    }

    /// The loop began (`Ok`) or refused (`Err`, why) session `i`'s `upgrade`; `bound`: how long
    /// its outcome may take (the client's wait).
    pub fn upgrade_asked(
        &mut self,
        i: usize,
        result: Result<(), String>,
        bound: Duration,
        env: &mut Env<'_>,
    ) {
        if let Some(slot) = self.slots.get_mut(i) {
            if let Some(s) = slot.session.as_mut() {
                s.upgrade_asked(&mut slot.out, result, &env.upgrade, bound);
            }
        }
        let _ = self.advance(i, env, false);
    }

    /// uwgate is about to exec (an in-place upgrade) and sessions cannot cross it: each says
    /// so if it has not answered yet (503, `uwgate ctl` asks again), sends what it can, and
    /// closes. The listener stays: connections made meanwhile wait for the next image.
    pub fn close_sessions(&mut self, registry: &Registry) {
        for i in 0..self.slots.len() {
            if let Some(slot) = self.slots.get_mut(i) {
                if let Some(s) = slot.session.as_mut() {
                    s.farewell(&mut slot.out);
                }
            }
            self.close(i, registry);
        }
    }

    /// The loop reloaded for session `i`'s `reload`.
    pub fn reloaded(&mut self, i: usize, result: Result<(), String>, env: &mut Env<'_>) {
        if let Some(slot) = self.slots.get_mut(i) {
            if let Some(s) = slot.session.as_mut() {
                s.reloaded(&mut slot.out, result);
            }
        }
        let _ = self.advance(i, env, false);
    }
}

impl Drop for Control {
    /// The socket file goes with the process (as supervisord's `unix_http_server` file) — but
    /// not an inherited one while the upgrade that handed it over may still roll back.
    fn drop(&mut self) {
        if self.inherited && crate::handoff::is_pending() {
            return;
        }
        if let (Some(path), Some(_)) = (&self.path, &self.listener) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An inherited socket file: `mode` and group `gid` set again where the file differs (a
/// changed `control_socket_mode` or `control_socket_group`); a process that dropped its
/// privileges may no longer do that, which is logged.
fn keep_mode(path: &Path, mode: u32, gid: Option<u32>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let result = if meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    } else {
        Ok(())
    }
    .and_then(|()| match gid {
        Some(gid) if meta.gid() != gid => std::os::unix::fs::chown(path, None, Some(gid)),
        _ => Ok(()),
    });
    if let Err(e) = result {
        log::warn!(
            "control socket {}: kept as it was (mode {:o}, gid {}); applying control_socket_mode/group needs a restart: {e}",
            path.display(),
            meta.mode() & 0o7777,
            meta.gid()
        );
    }
}

/// Binds the unix socket at `path` with `mode` and group `gid`, replacing a stale file.
fn listen(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
) -> io::Result<std::os::unix::net::UnixListener> {
    let listener = match std::os::unix::net::UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "in use by a running uwgate (another instance on the same ini?)",
                ));
            }
            std::fs::remove_file(path)?;
            std::os::unix::net::UnixListener::bind(path)?
        }
        Err(e) => return Err(e),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}
