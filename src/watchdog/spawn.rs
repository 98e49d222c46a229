//! Everything a spawn needs before fork: the command found on PATH (supervisor's checks and
//! wording), the environment, the exec image, and spawn errors worded like supervisor's.
//!
//! Owns no state. Allocates freely (a spawn is not a request), but never in the child: the child
//! side is `sys::process::spawn`, which gets everything from here ready-made.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys::process::{ChildStep, SpawnError};

/// PATH when neither the program nor uwgate has one (supervisor's default).
const DEFAULT_PATH: &str = "/bin:/usr/bin:/usr/local/bin";

/// Variables that address uwgate itself (systemd's notify socket, socket activation): a child
/// that inherited them would talk to systemd as if it were uwgate.
const NOT_INHERITED: [&str; 4] = [
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// uwgate's environment (less `NOT_INHERITED`), then supervisor's SUPERVISOR_* variables, then
/// the program's own `environment` (which wins, as in supervisor).
pub fn environment(
    program: &str,
    process: &str,
    extra: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    compose(std::env::vars_os(), program, process, extra)
}

fn compose(
    base: impl Iterator<Item = (OsString, OsString)>,
    program: &str,
    process: &str,
    extra: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .filter(|(k, _)| !NOT_INHERITED.iter().any(|n| k == n))
        .collect();
    let mut set = |k: &str, v: &OsStr| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_os_string(),
        None => env.push((OsString::from(k), v.to_os_string())),
    };
    set("SUPERVISOR_ENABLED", OsStr::new("1"));
    set("SUPERVISOR_PROCESS_NAME", OsStr::new(process));
    set("SUPERVISOR_GROUP_NAME", OsStr::new(program));
    for (k, v) in extra {
        set(k, OsStr::new(v));
    }
    env
}

/// Finds the file to exec for `command` (argv[0]) like supervisor: as given when it holds a '/',
/// else the first PATH entry (from `env`) where it exists. Errors are supervisor's spawnerr texts.
pub fn resolve(command: &str, env: &[(OsString, OsString)]) -> Result<PathBuf, String> {
    let found = if command.contains('/') {
        let p = PathBuf::from(command);
        p.metadata().ok().map(|m| (p, m))
    } else {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str())
            .unwrap_or(OsStr::new(DEFAULT_PATH));
        path.as_bytes()
            .split(|&b| b == b':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(OsStr::from_bytes(dir)).join(command))
            .find_map(|p| p.metadata().ok().map(|m| (p, m)))
    };
    let Some((path, meta)) = found else {
        return Err(format!("can't find command '{command}'"));
    };
    if meta.is_dir() {
        return Err(format!("command at '{}' is a directory", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("command at '{}' is not executable", path.display()));
    }
    Ok(path)
}

/// A spawn error as supervisor words it (`couldn't chdir to /x: ENOENT`).
pub fn describe(err: &SpawnError, argv0: &str, dir: Option<&Path>, user: Option<&str>) -> String {
    match err {
        SpawnError::Parent(what, e) => format!("{what} failed: {}", errno_text(e)),
        SpawnError::Child(step, e) => {
            let e = errno_text(e);
            match step {
                ChildStep::Exec => format!("couldn't exec {argv0}: {e}"),
                ChildStep::Chdir => format!(
                    "couldn't chdir to {}: {e}",
                    dir.map(|d| d.display().to_string()).unwrap_or_default()
                ),
                ChildStep::Setgroups | ChildStep::Setgid | ChildStep::Setuid => {
                    format!("couldn't setuid to {}: {e}", user.unwrap_or("?"))
                }
                ChildStep::Setsid => format!("couldn't setsid: {e}"),
                ChildStep::Dup2 => format!("couldn't set up stdin/stdout/stderr: {e}"),
                ChildStep::Pdeathsig => format!("couldn't set the parent-death signal: {e}"),
                ChildStep::CloseFds => format!("couldn't close inherited descriptors: {e}"),
                ChildStep::ParentGone => "uwgate exited while the child was starting".to_string(),
            }
        }
    }
}

/// `ENOENT`-style names for the errors a spawn meets; the OS text for any other.
fn errno_text(e: &std::io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::ENOEXEC) => "ENOEXEC",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::ELOOP) => "ELOOP",
        Some(libc::ETXTBSY) => "ETXTBSY",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EMFILE) => "EMFILE",
        Some(libc::ENFILE) => "ENFILE",
        _ => return e.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_path(path: &str) -> Vec<(OsString, OsString)> {
        vec![(OsString::from("PATH"), OsString::from(path))]
    }

    #[test]
    fn command_is_found_on_path() {
        assert_eq!(
            resolve("sh", &env_with_path("/nonexistent::/bin")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(resolve("/bin/sh", &[]).unwrap(), PathBuf::from("/bin/sh"));
    }

    #[test]
    fn missing_directory_and_non_executable_commands_are_spawn_errors() {
        assert_eq!(
            resolve("no-such-cmd-uwgate", &env_with_path("/bin")).unwrap_err(),
            "can't find command 'no-such-cmd-uwgate'"
        );
        assert_eq!(
            resolve("/no/such", &[]).unwrap_err(),
            "can't find command '/no/such'"
        );
        assert_eq!(
            resolve("/tmp", &[]).unwrap_err(),
            "command at '/tmp' is a directory"
        );
        assert_eq!(
            resolve("/etc/passwd", &[]).unwrap_err(),
            "command at '/etc/passwd' is not executable"
        );
    }

    #[test]
    fn program_environment_overrides_and_supervisor_variables_are_set() {
        let env = environment(
            "django",
            "django_01",
            &[
                ("SUPERVISOR_ENABLED".into(), "x".into()),
                ("LANG".into(), "C".into()),
            ],
        );
        let get = |k: &str| {
            env.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("SUPERVISOR_ENABLED"), vec![OsString::from("x")]);
        assert_eq!(
            get("SUPERVISOR_PROCESS_NAME"),
            vec![OsString::from("django_01")]
        );
        assert_eq!(get("SUPERVISOR_GROUP_NAME"), vec![OsString::from("django")]);
        assert_eq!(get("LANG"), vec![OsString::from("C")]);
    }

    #[test]
    fn systemd_notify_and_activation_variables_are_not_passed_on() {
        let base = [
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "2"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = compose(base, "p", "p", &[]);
        let keys: Vec<&OsString> = env.iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&&OsString::from("HOME")));
        assert!(!keys
            .iter()
            .any(|k| *k == "NOTIFY_SOCKET" || *k == "LISTEN_FDS"));
        let env = compose(
            std::iter::empty(),
            "p",
            "p",
            &[("NOTIFY_SOCKET".into(), "x".into())],
        );
        assert!(
            env.iter().any(|(k, v)| k == "NOTIFY_SOCKET" && v == "x"),
            "explicit is kept"
        );
    }

    #[test]
    fn child_errors_are_worded_like_supervisor() {
        let e = SpawnError::Child(
            ChildStep::Chdir,
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(
            describe(&e, "x", Some(Path::new("/srv")), None),
            "couldn't chdir to /srv: ENOENT"
        );
        let e = SpawnError::Child(
            ChildStep::Exec,
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(
            describe(&e, "/bin/x", None, None),
            "couldn't exec /bin/x: EACCES"
        );
    }
}
