//! `uwgate [-c FILE] [-t] [-f] [-s SIGNAL]`: parses the command line, checks the config,
//! binds, and hands over to the event loop. Exit codes: 0 ok, 1 config/usage/start-up error.
//! Started by an in-place upgrade (`UWGATE_HANDOFF`, see `uwgate::handoff`), it takes the
//! listeners and programs over instead of binding and spawning, and rolls back instead of
//! exiting when it cannot serve. `uwgate ctl …` is the control socket's client
//! (`control::client`), with supervisorctl's exit codes.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks,
    clippy::indexing_slicing
)]

use argh::FromArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uwgate::handoff::{self, Inherited};
use uwgate::{config, gate, sys};

#[cfg(feature = "count-alloc")]
#[global_allocator]
static ALLOC: uwgate::sys::alloc_count::Counting = uwgate::sys::alloc_count::Counting;

/// uwgate: static files, uwsgi forwarding and a process watchdog in one binary.
#[derive(FromArgs)]
struct Args {
    /// configuration file (default /etc/uwgate.ini)
    #[argh(option, short = 'c', default = "PathBuf::from(\"/etc/uwgate.ini\")")]
    config: PathBuf,
    /// test the configuration file and exit, like nginx -t
    #[argh(switch, short = 't')]
    test: bool,
    /// stay in the foreground and log to stderr as well
    #[argh(switch, short = 'f')]
    foreground: bool,
    /// signal the running instance through its pidfile: reload, stop, quit, reopen, upgrade
    #[argh(option, short = 's')]
    signal: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Ctl(CtlArgs),
}

/// control the running uwgate through its control socket, as supervisorctl: status, start,
/// stop, restart, signal, reload-program, pid, tail, reread, update, reload, shutdown, upgrade,
/// version
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "ctl",
    note = "Verbs (`uwgate ctl` without one prints them with their arguments):
  status [NAME...]                 process status (exit 3: one is not running, 4: unknown name)
  start|stop|restart NAME...|all   as supervisorctl (group:* names a program's processes)
  signal SIG NAME...|all           send a signal (HUP, USR1, 9...)
  reload-program NAME...|all       send the program's reloadsignal (a graceful app reload)
  pid [NAME...|all]                uwgate's pid, or the processes'
  tail [-f] [-BYTES|-n LINES] NAME [stdout|stderr]
  reread | update [NAME...]        compare with / apply the ini's [program:x] sections
  reload                           reload uwgate's configuration (as SIGHUP, nginx -s reload)
  shutdown                         stop uwgate and its programs
  upgrade                          replace uwgate's binary in place (as -s upgrade) and wait for the outcome
  version"
)]
struct CtlArgs {
    /// configuration file whose control_socket to use (default: uwgate's -c, /etc/uwgate.ini)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// the control socket itself (instead of the configuration's control_socket)
    #[argh(option, short = 's')]
    socket: Option<PathBuf>,
    /// VERB [ARGS...]
    #[argh(positional, greedy)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    // Exec'd by the running image for an in-place upgrade (or a rollback): same process. First
    // of all, so that even a command line this version rejects (argh exits) rolls back.
    let inherited = match Inherited::from_env() {
        None => {
            handoff::remember_own_binary();
            None
        }
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            eprintln!("uwgate: {e}");
            return handoff::roll_back(&e);
        }
    };
    let args: Args = argh::from_env();
    if let Some(Command::Ctl(ctl)) = args.command {
        let opts = uwgate::control::client::Options {
            config: ctl.config.unwrap_or(args.config),
            socket: ctl.socket,
            args: ctl.args,
        };
        let code = uwgate::control::client::run(&opts);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if args.version {
        println!("uwgate version {}", uwgate::VERSION);
        return ExitCode::SUCCESS;
    }
    let path = args.config.display().to_string();
    let mut cfg = match load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("uwgate: {e}");
            if args.test {
                eprintln!("uwgate: configuration file {path} test failed");
            }
            if inherited.is_some() {
                return handoff::roll_back(&e);
            }
            return ExitCode::FAILURE;
        }
    };
    if args.test {
        return test_config(&mut cfg, &path);
    }
    if let Some(sig) = args.signal {
        return send_signal(&cfg, &sig);
    }
    let upgrading = inherited.is_some();
    match start(cfg, args.foreground, inherited) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if upgrading && handoff::is_pending() => handoff::roll_back(&e),
        Err(e) => {
            eprintln!("uwgate: {e}");
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `-t` on a loaded configuration: its warnings, the descriptor check a start would make,
/// then nginx's two success lines (`path` is the file as given).
fn test_config(cfg: &mut config::Config, path: &str) -> ExitCode {
    for w in &cfg.warnings {
        eprintln!("uwgate: [warn] {w}");
    }
    // The same descriptor check as a start, so -t warns as the start would.
    match fit_descriptors(cfg) {
        Ok(Some(scaled)) => eprintln!("uwgate: [warn] {scaled}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("uwgate: {e}");
            eprintln!("uwgate: configuration file {path} test failed");
            return ExitCode::FAILURE;
        }
    }
    if std::env::var_os(handoff::CHECK_ENV).is_some() {
        eprintln!("{}", handoff::check_line());
    }
    eprintln!("uwgate: the configuration file {path} syntax is ok");
    eprintln!("uwgate: configuration file {path} test is successful");
    ExitCode::SUCCESS
}

/// The configuration file, checked (an `upgrade-test` build also refuses its test value).
fn load(file: &Path) -> Result<config::Config, String> {
    let cfg = config::load(file).map_err(|e| e.to_string())?;
    #[cfg(feature = "upgrade-test")]
    if let Some(e) = handoff::test_hooks::reject(&cfg) {
        return Err(e);
    }
    Ok(cfg)
}

fn pidfile(cfg: &config::Config) -> PathBuf {
    cfg.global
        .pidfile
        .clone()
        .unwrap_or_else(|| PathBuf::from("/run/uwgate.pid"))
}

/// `-s reload|stop|quit|reopen|upgrade`, as `nginx -s` (upgrade: SIGUSR2, as nginx's binary
/// upgrade signal, but the whole upgrade happens in place).
fn send_signal(cfg: &config::Config, name: &str) -> ExitCode {
    let sig = match name {
        "reload" => libc::SIGHUP,
        "stop" => libc::SIGTERM,
        "quit" => libc::SIGQUIT,
        "reopen" => libc::SIGUSR1,
        "upgrade" => libc::SIGUSR2,
        other => {
            eprintln!(
                "uwgate: invalid option: \"-s {other}\" (reload, stop, quit, reopen or upgrade)"
            );
            return ExitCode::FAILURE;
        }
    };
    let file = pidfile(cfg);
    let pid = match std::fs::read_to_string(&file) {
        Ok(text) => match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => pid,
            _ => {
                eprintln!(
                    "uwgate: invalid PID number \"{}\" in \"{}\"",
                    text.trim(),
                    file.display()
                );
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("uwgate: open() \"{}\" failed: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match sys::kill(pid, sig) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uwgate: kill({pid}, {sig}) failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises RLIMIT_NOFILE towards what `cfg` needs and, when the limit stays lower, scales
/// `worker_connections`, `buffer_pool` and `open_file_cache` down to it (start-up and `-t`).
/// `Some` says what was scaled, for the one warning.
fn fit_descriptors(
    cfg: &mut config::Config,
) -> Result<Option<config::descriptors::Scaled>, String> {
    let need = config::descriptors::Descriptors::of(&cfg.global).needed();
    let limit = sys::raise_nofile(need).map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    config::descriptors::fit_to_limit(&mut cfg.global, limit)
}

fn start(
    mut cfg: config::Config,
    foreground: bool,
    mut inherited: Option<Inherited>,
) -> Result<(), String> {
    // Under systemd stderr is the journal, which rsyslog already reads: a second copy of
    // every line would be filed twice.
    let stderr_copy = foreground && std::env::var_os("JOURNAL_STREAM").is_none();
    uwgate::set_stderr_logging(stderr_copy);
    uwgate::logging::init(&uwgate::log_settings(&cfg, stderr_copy))?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    // A low descriptor limit degrades (fewer slots, buffers and cache entries), warned once.
    if let Some(scaled) = fit_descriptors(&mut cfg)? {
        log::warn!("{scaled}");
    }
    let g = &cfg.global;
    let signals = sys::signalfd(&sys::LOOP_SIGNALS).map_err(|e| format!("signalfd: {e}"))?;
    let bound = match inherited.as_mut() {
        Some(h) => gate::bind_all_inheriting(&cfg, |addr| h.take_listener(addr)),
        None => gate::bind_all(&cfg),
    }
    .map_err(|e| e.to_string())?;
    // Made before privileges drop (it lives in /run); served by the loop. An upgrade hands it
    // over open, as the listeners: no new file, no privilege needed, no moment without it.
    let control = match inherited.as_mut() {
        Some(h) => uwgate::control::Control::take_over(g, h)?,
        None => uwgate::control::Control::bind(g)?,
    };
    if let Err(e) = std::fs::create_dir_all(&g.temp_path) {
        log::warn!("temp_path {}: {e}", g.temp_path.display());
    }
    let run_state = uwgate::watchdog::run_state::path_for(g.pidfile.as_deref(), &g.temp_path);
    if inherited.is_some() {
        // Same process: already detached, the pidfile holds this pid, the run state is ours.
        uwgate::watchdog::run_state::adopt(run_state);
    } else {
        if !foreground {
            sys::daemonize().map_err(|e| format!("daemonize: {e}"))?;
            uwgate::logging::reopen_stderr();
        }
        if let Some(p) = &g.pidfile {
            std::fs::write(p, format!("{}\n", sys::getpid()))
                .map_err(|e| format!("pidfile {}: {e}", p.display()))?;
        }
        // What a crashed uwgate's programs left behind is ended before anything is spawned
        // (and before a privilege drop could make it impossible).
        uwgate::watchdog::run_state::init(run_state);
    }
    drop_privileges(&cfg)?;
    log_start(&cfg, bound.len(), inherited.as_ref());
    let pidfile = cfg.global.pidfile.clone();
    let mut gate = gate::Gate::new(cfg, bound, signals).map_err(|e| e.to_string())?;
    gate.attach_control(control)
        .map_err(|e| format!("control socket: {e}"))?;
    if let Some(h) = &inherited {
        take_over(&mut gate, h)?;
    }
    let result = gate.run().map_err(|e| format!("event loop: {e}"));
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// `user`/`group` when started as root, unless `[program:*]` sections need root (already
/// dropped, or kept, by the image before an in-place upgrade: then nothing changes).
fn drop_privileges(cfg: &config::Config) -> Result<(), String> {
    let g = &cfg.global;
    if g.user.is_some() && sys::geteuid() == 0 && !cfg.programs.is_empty() {
        // Like supervisord: spawning programs as their own `user=` and signalling them needs
        // root, so the process keeps it (programs without `user=` run as root, as there).
        log::warn!(
            "[uwgate] user = {} not applied: [program:*] sections need root to spawn and stop their processes",
            g.user.as_deref().unwrap_or("")
        );
    } else if let (Some(user), 0) = (&g.user, sys::geteuid()) {
        let (uid, mut gid) = sys::lookup_user(user).map_err(|e| e.to_string())?;
        if let Some(group) = &g.group {
            gid = sys::lookup_group(group).map_err(|e| e.to_string())?;
        }
        // The spool directory must stay writable after the drop (nginx chowns its temp
        // directories the same way).
        if let Err(e) = std::os::unix::fs::chown(&g.temp_path, Some(uid), Some(gid)) {
            log::warn!("chown {} to {user}: {e}", g.temp_path.display());
        }
        sys::drop_privileges(uid, gid).map_err(|e| format!("dropping to {user}: {e}"))?;
    }
    Ok(())
}

fn log_start(cfg: &config::Config, listeners: usize, inherited: Option<&Inherited>) {
    let g = &cfg.global;
    let how = match inherited {
        Some(Inherited {
            rolled_back_from: Some(_),
            ..
        }) => format!(
            "back in place after a failed upgrade (pid {})",
            sys::getpid()
        ),
        Some(h) => format!(
            "taking over from {} in place (pid {})",
            h.record.from_version,
            sys::getpid()
        ),
        None => "started".to_string(),
    };
    log::info!(
        "uwgate {} {how}: {listeners} listener(s), {} connection slots, {} buffers of {} bytes",
        uwgate::VERSION,
        g.worker_connections,
        g.buffer_pool,
        uwgate::server::conn::large_buffer_size(cfg)
    );
}

/// The new image of an in-place upgrade: adopts the programs, and serves (commit) — or returns
/// why not, and the caller rolls back.
#[cold]
#[inline(never)]
fn take_over(gate: &mut gate::Gate, h: &Inherited) -> Result<(), String> {
    let adopted = gate.adopt(h)?;
    #[cfg(feature = "upgrade-test")]
    handoff::test_hooks::exit_before_serving(gate.config());
    h.commit()?;
    let took = h.elapsed().as_millis();
    match &h.rolled_back_from {
        Some(failed) => {
            let (version, why) = failed.split_once(": ").unwrap_or((failed, "unknown"));
            log::error!(
                "upgrade to {version} failed ({why}); rolled back: {} serves again after {took} ms, {adopted} process(es) kept",
                uwgate::VERSION
            );
            gate.note_upgrade(
                false,
                format!(
                    "to {version} failed ({why}); rolled back to {}",
                    uwgate::VERSION
                ),
            );
        }
        None => {
            log::info!(
                "upgraded in place from {} to {} in {took} ms: pid {}, {adopted} process(es) kept",
                h.record.from_version,
                uwgate::VERSION,
                sys::getpid()
            );
            gate.note_upgrade(
                true,
                format!(
                    "from {} in {took} ms, {adopted} process(es) kept",
                    h.record.from_version
                ),
            );
        }
    }
    Ok(())
}
