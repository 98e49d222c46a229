//! The health page (`health = on`): what a balancer's health check reads to decide whether
//! this box gets traffic. 200 `ok` while every process of every `required_for_health` program is
//! RUNNING (a program with a `ready` check reaches RUNNING only once the check connected) and
//! uwgate is not draining; 503 otherwise — `draining` from the moment a graceful stop (or an
//! in-place upgrade) begins, `down: NAME STATE` naming the first required process that is not
//! RUNNING.
//!
//! Owns the verdict (a pure function of the draining flag, the configured programs and the
//! watchdog's rows) and the response written for it. Never: probes a program itself, changes
//! a program's state, or allocates (the answer is written into the caller's output region).

use super::dispatch::Answer;
use super::Ctx;
use crate::config::{Program, NO_ROUTE};
use crate::http::response::{start, HeadWriter};
use crate::http::Status;
use crate::static_files::body::Body;
use crate::static_files::connection_header;
use crate::watchdog::ProcessStatus;

/// What the health page says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// 200: every required process is RUNNING and uwgate is not draining.
    Healthy,
    /// 503: a graceful stop or an upgrade began; the balancer should drain this box.
    Draining,
    /// 503: this required process is not RUNNING.
    Down {
        /// The process name (`django`, `worker_01`).
        process: &'a str,
        /// Its supervisor state name (STARTING, BACKOFF, EXITED, ...).
        state: &'static str,
    },
}

/// The verdict for uwgate `draining` (or stopping), with `programs` as configured and
/// `processes` as the watchdog reports them. Draining wins over a program that is down.
pub fn verdict<'a>(
    draining: bool,
    programs: &[Program],
    processes: impl Iterator<Item = ProcessStatus<'a>>,
) -> Verdict<'a> {
    if draining {
        return Verdict::Draining;
    }
    let required = |group: &str| {
        programs
            .iter()
            .any(|p| p.required_for_health && p.name == group)
    };
    for row in processes {
        if row.state != "RUNNING" && required(row.group) {
            return Verdict::Down {
                process: row.name,
                state: row.state,
            };
        }
    }
    Verdict::Healthy
}

/// The body of the page for `verdict`, into `w`.
fn write_body(w: &mut HeadWriter<'_>, verdict: Verdict<'_>) {
    match verdict {
        Verdict::Healthy => w.put(b"ok\n"),
        Verdict::Draining => w.put(b"draining\n"),
        Verdict::Down { process, state } => w
            .put(b"down: ")
            .put(process.as_bytes())
            .put(b" ")
            .put(state.as_bytes())
            .put(b"\n"),
    };
}

/// The health page as a complete response into `out` (any method: HAProxy's default check is
/// `OPTIONS /`); `None` when it does not fit.
pub fn page(keep_alive: bool, head_only: bool, out: &mut [u8], ctx: &Ctx<'_>) -> Option<Answer> {
    let found = verdict(
        ctx.draining || ctx.stopping,
        &ctx.cfg.programs,
        ctx.watchdog.status(),
    );
    let status = match found {
        Verdict::Healthy => Status::Ok,
        Verdict::Draining | Verdict::Down { .. } => Status::ServiceUnavailable,
    };
    let mut body = [0u8; 160];
    let body_len = {
        let mut w = HeadWriter::new(&mut body);
        write_body(&mut w, found);
        if w.overflowed() {
            // A very long process name: the status line says enough.
            0
        } else {
            w.len()
        }
    };
    let body = body.get(..body_len).unwrap_or(&[]);
    let mut w = HeadWriter::new(out);
    start(&mut w, status, ctx.cfg.global.server_tokens, ctx.date);
    w.header(b"Content-Type", b"text/plain")
        .put(b"Content-Length: ")
        .num(body.len() as u64)
        .put(b"\r\n")
        .header(b"Cache-Control", b"no-cache");
    connection_header(&mut w, keep_alive);
    w.put(b"\r\n");
    if !head_only {
        w.put(body);
    }
    if w.overflowed() {
        return None;
    }
    Some(Answer {
        status,
        len: w.len(),
        inline: if head_only { 0 } else { body.len() },
        body: Body::None,
        keep_alive,
        route: (NO_ROUTE, NO_ROUTE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str, required: bool) -> Program {
        let mut p = Program::new(name, "/bin/true");
        p.required_for_health = required;
        p
    }

    fn row<'a>(name: &'a str, group: &'a str, state: &'static str) -> ProcessStatus<'a> {
        ProcessStatus {
            name,
            group,
            state,
            pid: None,
            uptime_secs: 0,
            restarts: 0,
            last_exit: None,
            id: 0,
            retired: false,
            started: state != "STOPPED",
            spawnerr: None,
            stopped_unix: None,
            wanted: true,
        }
    }

    #[test]
    fn healthy_when_every_required_program_runs() {
        let programs = [program("django", true), program("cron", false)];
        let rows = [
            row("django", "django", "RUNNING"),
            row("cron", "cron", "FATAL"),
        ];
        assert_eq!(
            verdict(false, &programs, rows.into_iter()),
            Verdict::Healthy
        );
    }

    #[test]
    fn a_required_program_not_running_is_down_with_its_state() {
        let programs = [program("mysql", true), program("django", true)];
        for state in [
            "STARTING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "STOPPED",
        ] {
            let rows = [
                row("mysql", "mysql", "RUNNING"),
                row("django", "django", state),
            ];
            assert_eq!(
                verdict(false, &programs, rows.into_iter()),
                Verdict::Down {
                    process: "django",
                    state
                },
                "{state}"
            );
        }
    }

    #[test]
    fn every_process_of_a_required_program_must_run() {
        let programs = [program("worker", true)];
        let rows = [
            row("worker_00", "worker", "RUNNING"),
            row("worker_01", "worker", "BACKOFF"),
        ];
        assert_eq!(
            verdict(false, &programs, rows.into_iter()),
            Verdict::Down {
                process: "worker_01",
                state: "BACKOFF"
            }
        );
    }

    #[test]
    fn draining_is_503_even_when_everything_runs() {
        let programs = [program("django", true)];
        let rows = [row("django", "django", "RUNNING")];
        assert_eq!(
            verdict(true, &programs, rows.into_iter()),
            Verdict::Draining
        );
        assert_eq!(verdict(true, &[], std::iter::empty()), Verdict::Draining);
    }

    #[test]
    fn no_required_program_is_healthy() {
        assert_eq!(verdict(false, &[], std::iter::empty()), Verdict::Healthy);
        let programs = [program("django", false)];
        let rows = [row("django", "django", "EXITED")];
        assert_eq!(
            verdict(false, &programs, rows.into_iter()),
            Verdict::Healthy
        );
    }

    #[test]
    fn the_body_names_what_is_wrong() {
        let mut buf = [0u8; 64];
        let mut w = HeadWriter::new(&mut buf);
        write_body(
            &mut w,
            Verdict::Down {
                process: "django",
                state: "EXITED",
            },
        );
        let n = w.len();
        assert_eq!(&buf[..n], b"down: django EXITED\n");
    }
}
