//! The run-state file: which process groups uwgate's children lead, so that the next uwgate can
//! end what a crashed one (SIGKILL, OOM kill, panic) left behind.
//!
//! A child leads its own session and process group (pgid = sid = its pid). When uwgate dies
//! without stopping its programs, each leader dies by PR_SET_PDEATHSIG, but what the leader
//! forked (uWSGI's workers) lives on as orphans in that group, holding the program's listening
//! socket, and the next uwgate's uWSGI cannot bind. So the watchdog records every group it
//! starts — pgid, the leader's start time from /proc/PID/stat (against pid reuse), the process
//! name — with uwgate's own pid, start time and the boot id, rewriting the file (write to a
//! temporary name, then rename) whenever a child is forked or a leader ends. At start, before
//! anything is spawned, `init` reads the file left by the previous uwgate and terminates what is
//! verifiably left of those groups: SIGTERM, then SIGKILL, each wait bounded.
//!
//! Owns the file format, the path rule, the verification and the bounded clean-up. Must never
//! signal a group it cannot tie to the record (another boot; a live owner; a leader pid now
//! held by another process; members in another session), never signal pid 0, 1 or uwgate's own
//! group, and never wait without a bound. The file is written from the loop only at a spawn or a
//! leader's end (a small write and a rename; no fsync: a machine crash changes the boot id).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys::process as sys;

/// First line of the file; a file without it is not ours.
const MAGIC: &str = "uwgate run state 1";

/// Leftovers get this long after SIGTERM before SIGKILL.
const TERM_WAIT: Duration = Duration::from_secs(2);

/// And this long after SIGKILL before uwgate starts anyway.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// How often the clean-up looks whether the leftovers are gone.
const POLL: Duration = Duration::from_millis(20);

/// Ended groups remembered (their leader gone, members maybe not) at the most; older ones drop.
pub const MAX_ENDED: usize = 64;

/// One process group a child of uwgate leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The process group (and session) id: the leader's pid.
    pub pgid: u32,
    /// The leader's start time (clock ticks after boot, /proc/PID/stat field 22); 0 if unknown.
    pub start: u64,
    /// The process name, for the log.
    pub name: String,
}

impl Group {
    /// The group `pid` leads (or is about to: a fresh child calls setsid right away).
    /// Called by the watchdog right after fork, when /proc/PID/stat is certainly there.
    pub fn of(pid: u32, name: &str) -> Group {
        let start = read_stat(pid).map_or(0, |s| s.start);
        Group {
            pgid: pid,
            start,
            name: name.to_string(),
        }
    }
}

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    /// /proc/sys/kernel/random/boot_id of the boot that wrote it.
    pub boot_id: String,
    /// The uwgate that wrote it.
    pub owner: u32,
    /// That uwgate's start time.
    pub owner_start: u64,
    /// The groups it had started and not seen end (empty).
    pub groups: Vec<Group>,
}

impl RunState {
    /// The file's text: a magic line, `boot`, `owner`, then one `group PGID START NAME` line each.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{MAGIC}\nboot {}\nowner {} {}\n",
            self.boot_id, self.owner, self.owner_start
        );
        for g in &self.groups {
            text.push_str(&format!("group {} {} {}\n", g.pgid, g.start, g.name));
        }
        text
    }

    /// Reads `to_text`'s format; `None` when the magic line, boot or owner is missing or a
    /// line is malformed (then nothing in it is trusted).
    pub fn parse(text: &str) -> Option<RunState> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut boot_id = None;
        let mut owner = None;
        let mut groups = Vec::new();
        for line in lines {
            let mut words = line.splitn(4, ' ');
            match words.next()? {
                "boot" => boot_id = Some(words.next()?.to_string()),
                "owner" => {
                    let pid = words.next()?.parse().ok()?;
                    let start = words.next()?.parse().ok()?;
                    owner = Some((pid, start));
                }
                "group" => groups.push(Group {
                    pgid: words.next()?.parse().ok()?,
                    start: words.next()?.parse().ok()?,
                    name: words.next().unwrap_or("").to_string(),
                }),
                _ => return None,
            }
        }
        let (owner, owner_start) = owner?;
        Some(RunState {
            boot_id: boot_id?,
            owner,
            owner_start,
            groups,
        })
    }
}

/// Where the run state lives: beside the pidfile (`/run/uwgate.pid` → `/run/uwgate.state`, so
/// it goes with the boot as /run does), else `temp_path/uwgate.state`.
pub fn path_for(pidfile: Option<&Path>, temp_path: &Path) -> PathBuf {
    match pidfile {
        Some(pidfile) => {
            let beside = pidfile.with_extension("state");
            if beside == pidfile {
                let mut name = pidfile.as_os_str().to_os_string();
                name.push(".run");
                PathBuf::from(name)
            } else {
                beside
            }
        }
        None => temp_path.join("uwgate.state"),
    }
}

/// The fields of /proc/PID/stat that identify a process and its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The process.
    pub pid: u32,
    /// `R`, `S`, `D`, `Z`…
    pub state: char,
    /// Its process group.
    pub pgrp: u32,
    /// Its session.
    pub session: u32,
    /// Start time, clock ticks after boot.
    pub start: u64,
}

impl ProcStat {
    /// Parses the text of /proc/PID/stat (the command name may hold spaces and parentheses:
    /// the fields start after the last ')').
    pub fn parse(pid: u32, text: &str) -> Option<ProcStat> {
        let rest = text.get(text.rfind(')')?.saturating_add(1)..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state): pgrp is 5, session 6, starttime 22.
        Some(ProcStat {
            pid,
            state: fields.first()?.chars().next()?,
            pgrp: fields.get(2)?.parse().ok()?,
            session: fields.get(3)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
        })
    }

    fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Which of a record's processes may be signalled: `None` when the group is not verifiably
/// the recorded one; else its live (non-zombie) members, possibly none.
///
/// A pid is not reused while a process group or session still carries it, so members in the
/// recorded pgid and session are the recorded group's — unless a process holds the leader's
/// pid with another start time: then the group that pgid names now was made after ours ended.
pub fn verify(group: &Group, procs: &[ProcStat]) -> Option<Vec<u32>> {
    if group.pgid <= 1 {
        return None;
    }
    if let Some(leader) = procs.iter().find(|p| p.pid == group.pgid) {
        if group.start == 0 || leader.start != group.start {
            return None;
        }
    }
    let members = procs
        .iter()
        .filter(|p| p.pgrp == group.pgid && !p.is_zombie())
        .collect::<Vec<_>>();
    if members.iter().any(|p| p.session != group.pgid) {
        return None; // not the session the leader made: someone else's group
    }
    Some(members.iter().map(|p| p.pid).collect())
}

/// What the run state of this uwgate is written to (set once by `init`).
struct Target {
    path: PathBuf,
    boot_id: String,
    owner: u32,
    owner_start: u64,
}

static TARGET: OnceLock<Target> = OnceLock::new();

/// Start-up, before any program is spawned: reads the run state at `path` left by the previous
/// uwgate, terminates what is left of its groups (SIGTERM, then SIGKILL after 2 s, then at
/// most 1 s more; each step logged with the count), and makes `save` write there from now on.
/// Blocks at most about 3 s, and only when leftovers ignore SIGTERM. Called once by `main`.
pub fn init(path: PathBuf) {
    let boot_id = boot_id();
    let owner = std::process::id();
    let owner_start = read_stat(owner).map_or(0, |s| s.start);
    match previous(&path, &boot_id, owner) {
        Previous::Nothing => {}
        // Another live uwgate owns the file: leave it (and its programs) to that one.
        Previous::Live => return,
        Previous::Crashed(state) => end_leftovers(&path, &state, owner),
    }
    let _ = TARGET.set(Target {
        path,
        boot_id,
        owner,
        owner_start,
    });
}

/// Start-up of an image exec'd in place by an upgrade: the same process, whose children live
/// on and are adopted, so the file is this uwgate's own and nothing in it is a leftover. Only
/// makes `save` write to `path` again.
pub fn adopt(path: PathBuf) {
    let owner = std::process::id();
    let _ = TARGET.set(Target {
        path,
        boot_id: boot_id(),
        owner,
        owner_start: read_stat(owner).map_or(0, |s| s.start),
    });
}

/// What the file at start says about the previous uwgate.
enum Previous {
    /// No file, an unreadable one, one from another boot: nothing to do.
    Nothing,
    /// Written by a uwgate that is still running.
    Live,
    /// Written by a uwgate that is gone.
    Crashed(RunState),
}

fn previous(path: &Path, boot_id: &str, me: u32) -> Previous {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Previous::Nothing,
        Err(e) => {
            log::warn!("run state {}: {e}; not cleaning up", path.display());
            return Previous::Nothing;
        }
    };
    let Some(state) = RunState::parse(&text) else {
        log::warn!("run state {}: unreadable; ignored", path.display());
        return Previous::Nothing;
    };
    if state.boot_id != boot_id {
        log::info!(
            "run state {}: from an earlier boot; ignored",
            path.display()
        );
        return Previous::Nothing;
    }
    // A zombie owner is dead (its parent has not reaped it yet): its leftovers are ours to end.
    let owner_alive =
        read_stat(state.owner).is_some_and(|s| s.start == state.owner_start && !s.is_zombie());
    if state.owner != me && owner_alive {
        log::warn!(
            "run state {}: written by uwgate pid {}, which is still running; its programs are left alone and this uwgate keeps no run state",
            path.display(),
            state.owner
        );
        return Previous::Live;
    }
    Previous::Crashed(state)
}

/// Groups with the members to signal.
type Leftovers<'a> = Vec<(&'a Group, Vec<u32>)>;

/// SIGTERM to what is verifiably left of `state`'s groups, SIGKILL to what survives 2 s, and
/// at most 1 s more for that; never uwgate's own pid or group.
fn end_leftovers(path: &Path, state: &RunState, me: u32) {
    let own_group = read_stat(me).map_or(0, |s| s.pgrp);
    let groups: Vec<&Group> = state
        .groups
        .iter()
        .filter(|g| g.pgid != me && g.pgid != own_group)
        .collect();
    let left = |procs: &[ProcStat]| -> Leftovers<'_> {
        groups
            .iter()
            .filter_map(|g| verify(g, procs).map(|m| (*g, m)))
            .filter(|(_, m)| !m.is_empty())
            .collect()
    };
    let found = left(&snapshot());
    if found.is_empty() {
        return;
    }
    let count = members(&found);
    let names: Vec<String> = found
        .iter()
        .map(|(g, m)| format!("{} (group {}: {})", g.name, g.pgid, m.len()))
        .collect();
    log::warn!(
        "{count} process(es) left by uwgate pid {} (run state {}): {}; sending SIGTERM",
        state.owner,
        path.display(),
        names.join(", ")
    );
    let began = Instant::now();
    signal_groups(&found, libc::SIGTERM);
    let mut survivors = wait_gone(&left, TERM_WAIT);
    if !survivors.is_empty() {
        log::warn!(
            "{} leftover process(es) still alive {} ms after SIGTERM; sending SIGKILL",
            members(&survivors),
            began.elapsed().as_millis()
        );
        signal_groups(&survivors, libc::SIGKILL);
        survivors = wait_gone(&left, KILL_WAIT);
    }
    if survivors.is_empty() {
        log::info!(
            "all {count} leftover process(es) gone after {} ms",
            began.elapsed().as_millis()
        );
    } else {
        let pids: Vec<String> = survivors
            .iter()
            .flat_map(|(_, m)| m.iter().map(u32::to_string))
            .collect();
        log::error!(
            "leftover process(es) {} survive SIGKILL; starting anyway",
            pids.join(" ")
        );
    }
}

fn members(groups: &Leftovers<'_>) -> usize {
    groups.iter().map(|(_, m)| m.len()).sum()
}

fn signal_groups(groups: &Leftovers<'_>, signal: i32) {
    for (g, _) in groups {
        if let Err(e) = sys::send_signal(g.pgid, signal, true) {
            log::warn!("kill(-{}): {e}", g.pgid);
        }
    }
}

/// Polls every `POLL` until `left` finds nothing, at most `limit`; returns what is left.
fn wait_gone<'a>(left: &dyn Fn(&[ProcStat]) -> Leftovers<'a>, limit: Duration) -> Leftovers<'a> {
    let until = Instant::now() + limit;
    loop {
        let found = left(&snapshot());
        if found.is_empty() || Instant::now() >= until {
            return found;
        }
        // Start-up, before the loop exists: the only place the watchdog sleeps, bounded.
        std::thread::sleep(POLL);
    }
}

/// Rewrites the run state with `groups` (the live leaders' and the ended ones that may still
/// have members), or removes the file when there are none. A no-op before `init` or when
/// another uwgate owns the file (and in unit tests). Returns the error for the watchdog to log.
pub fn save(groups: &[Group]) -> std::io::Result<()> {
    let Some(t) = TARGET.get() else {
        return Ok(());
    };
    if groups.is_empty() {
        return match std::fs::remove_file(&t.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let state = RunState {
        boot_id: t.boot_id.clone(),
        owner: t.owner,
        owner_start: t.owner_start,
        groups: groups.to_vec(),
    };
    let mut tmp = t.path.as_os_str().to_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, state.to_text())?;
    std::fs::rename(&tmp, &t.path)
}

/// Whether an ended group may still have members worth recording.
pub fn may_have_members(group: &Group) -> bool {
    sys::group_exists(group.pgid)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ProcStat::parse(pid, &text)
}

/// Every process /proc shows now.
fn snapshot() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(pgid: u32, start: u64) -> Group {
        Group {
            pgid,
            start,
            name: "django".into(),
        }
    }

    fn proc(pid: u32, pgrp: u32, session: u32, start: u64, state: char) -> ProcStat {
        ProcStat {
            pid,
            state,
            pgrp,
            session,
            start,
        }
    }

    #[test]
    fn text_round_trips_and_keeps_names_with_spaces() {
        let state = RunState {
            boot_id: "2b8a-77".into(),
            owner: 41,
            owner_start: 9000,
            groups: vec![
                group(100, 9100),
                Group {
                    pgid: 200,
                    start: 0,
                    name: "worker 01".into(),
                },
            ],
        };
        let text = state.to_text();
        assert!(text.starts_with("uwgate run state 1\nboot 2b8a-77\nowner 41 9000\n"));
        assert_eq!(RunState::parse(&text), Some(state));
    }

    #[test]
    fn anything_malformed_is_not_trusted() {
        for text in [
            "",
            "not ours\nboot b\nowner 1 2\n",
            "uwgate run state 1\nowner 1 2\n",
            "uwgate run state 1\nboot b\n",
            "uwgate run state 1\nboot b\nowner 1 2\ngroup x 1 a\n",
            "uwgate run state 1\nboot b\nowner 1 2\ngroup 5\n",
            "uwgate run state 1\nboot b\nowner 1 2\nsurprise\n",
            "uwgate run state 1\nboot b\nowner -1 2\n",
        ] {
            assert_eq!(RunState::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn path_is_beside_the_pidfile_else_in_temp_path() {
        let tmp = Path::new("/var/lib/uwgate/tmp");
        assert_eq!(
            path_for(Some(Path::new("/run/uwgate.pid")), tmp),
            PathBuf::from("/run/uwgate.state")
        );
        assert_eq!(
            path_for(Some(Path::new("/run/uwgate")), tmp),
            PathBuf::from("/run/uwgate.state")
        );
        assert_eq!(
            path_for(Some(Path::new("/run/odd.state")), tmp),
            PathBuf::from("/run/odd.state.run"),
            "never the pidfile itself"
        );
        assert_eq!(
            path_for(None, tmp),
            PathBuf::from("/var/lib/uwgate/tmp/uwgate.state")
        );
    }

    #[test]
    fn proc_stat_fields_are_read_after_the_last_parenthesis() {
        let text = "4242 (uwsgi (worker) 1) S 1 4200 4200 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 \
                    777123 1000 10 18446744073709551615";
        assert_eq!(
            ProcStat::parse(4242, text),
            Some(proc(4242, 4200, 4200, 777_123, 'S'))
        );
        assert_eq!(ProcStat::parse(1, "1 (init) S 0"), None);
    }

    #[test]
    fn orphans_of_a_dead_leader_are_the_groups() {
        // The leader (100) died by PDEATHSIG; its workers live on, reparented to init.
        let procs = [
            proc(101, 100, 100, 5001, 'S'),
            proc(102, 100, 100, 5002, 'S'),
            proc(103, 100, 100, 5003, 'Z'), // a zombie holds nothing any more
            proc(300, 300, 300, 7000, 'S'),
        ];
        assert_eq!(verify(&group(100, 5000), &procs), Some(vec![101, 102]));
    }

    #[test]
    fn a_live_leader_must_have_the_recorded_start_time() {
        let procs = [
            proc(100, 100, 100, 5000, 'S'),
            proc(101, 100, 100, 5001, 'S'),
        ];
        assert_eq!(verify(&group(100, 5000), &procs), Some(vec![100, 101]));
        // The pid now names a process started later: the group is someone else's.
        assert_eq!(verify(&group(100, 4000), &procs), None);
        // Start time unknown: cannot tell, so never.
        assert_eq!(verify(&group(100, 0), &procs), None);
    }

    #[test]
    fn members_of_another_session_are_never_ours() {
        let procs = [proc(101, 100, 55, 5001, 'S')];
        assert_eq!(verify(&group(100, 5000), &procs), None);
    }

    #[test]
    fn an_empty_group_has_nothing_to_signal_and_init_and_zero_are_refused() {
        assert_eq!(verify(&group(100, 5000), &[]), Some(vec![]));
        let init = [proc(1, 1, 1, 1, 'S')];
        assert_eq!(verify(&group(1, 1), &init), None);
        assert_eq!(verify(&group(0, 1), &init), None);
    }
}
