//! `uwgate ctl upgrade`'s wait for the outcome, as pure logic: what the client concludes from
//! each look at `GET /version` after `POST /upgrade` began, and the line it prints.
//!
//! The running image answered with its identity (`image`, which changes at every exec) and a
//! bound. Until the image that answers says it is no longer upgrading, the client looks again;
//! a connection that gets no answer (the loop is busy in the exec, or a session closed by it
//! with a 503) is a moment to wait through, not an error. Then: another image with a good
//! `last_upgrade` is the new version serving; another image with a bad one is a rollback; the
//! same image no longer upgrading ended without an exec (a `-t` that failed, an exec that
//! failed, a stop) and says why in `last_upgrade`. A socket that stays unreachable means
//! uwgate went away; past the bound the client gives up and says so.
//!
//! Owns those rules and the wording, as supervisorctl's `NAME: ERROR (…)`. Never does I/O
//! (the client probes and prints) and never reads a clock (times come in).

use super::json::Value;
use std::time::{Duration, Instant};

/// Without a `wait_s` in the answer (an older uwgate): the suggested 60 s plus a default
/// `shutdown_timeout`.
const DEFAULT_BOUND: Duration = Duration::from_secs(70);

/// The socket refusing connections (or missing) this long means uwgate stopped: an image
/// that takes over keeps the socket and answers within a few seconds, or rolls back.
pub const GONE_AFTER: Duration = Duration::from_secs(15);

/// What one look at the socket gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// `GET /version` answered 200 with this JSON.
    Answer(Value),
    /// The connection was taken but no answer came (timed out, closed, or a 503).
    Busy,
    /// No connection: the socket is missing or refuses (the text says which).
    Unreachable(String),
}

/// How the wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Upgraded: the new version serves.
    pub ok: bool,
    /// uwgate is gone (exit 7, as a socket that is not there).
    pub gone: bool,
    /// The line to print.
    pub line: String,
}

impl Verdict {
    fn ok(line: String) -> Verdict {
        Verdict {
            ok: true,
            gone: false,
            line,
        }
    }

    fn error(why: &str) -> Verdict {
        Verdict {
            ok: false,
            gone: false,
            line: format!("uwgate: ERROR ({why})"),
        }
    }
}

/// An upgrade being waited for.
#[derive(Clone, Debug)]
pub struct Wait {
    /// The image that began it (as the answer wrote it: compared, never computed with).
    image: Value,
    deadline: Instant,
    bound: Duration,
    unreachable_since: Option<Instant>,
}

/// The line for an upgrade the running uwgate refused at once (`POST /upgrade` said why).
pub fn refused(why: &str) -> String {
    Verdict::error(&format!("upgrade refused: {why}")).line
}

/// The line printed when the upgrade began: the version it leaves.
pub fn began(started: &Value) -> String {
    format!("uwgate: upgrading from {}", started.get("version").str())
}

impl Wait {
    /// After `POST /upgrade` answered `started` at `now`.
    pub fn new(started: &Value, now: Instant) -> Wait {
        let bound = started
            .get("wait_s")
            .as_u64()
            .map_or(DEFAULT_BOUND, Duration::from_secs);
        Wait {
            image: started.get("image").clone(),
            deadline: now + bound,
            bound,
            unreachable_since: None,
        }
    }

    /// What `probe`, taken at `now`, settles: `None` to look again.
    pub fn observe(&mut self, probe: &Probe, now: Instant) -> Option<Verdict> {
        let verdict = match probe {
            Probe::Answer(v) => {
                self.unreachable_since = None;
                self.settled(v)
            }
            Probe::Busy => {
                self.unreachable_since = None;
                None
            }
            Probe::Unreachable(why) => {
                let since = *self.unreachable_since.get_or_insert(now);
                (now.saturating_duration_since(since) >= GONE_AFTER).then(|| Verdict {
                    ok: false,
                    gone: true,
                    line: format!("uwgate: ERROR (gone during the upgrade: {why})"),
                })
            }
        };
        verdict.or_else(|| {
            (now >= self.deadline).then(|| {
                Verdict::error(&format!(
                    "no outcome within {} s: the upgrade may still be under way; uwgate's log says what happened",
                    self.bound.as_secs()
                ))
            })
        })
    }

    /// A `/version` answer: an outcome once that image is not upgrading.
    fn settled(&self, v: &Value) -> Option<Verdict> {
        if v.get("upgrading").as_bool() == Some(true) {
            return None;
        }
        let version = v.get("version").str();
        let last = v.get("last_upgrade").as_str();
        let same_image = *v.get("image") == self.image && !self.image.is_null();
        Some(
            match (same_image, v.get("last_upgrade_ok").as_bool(), last) {
                // Another image, and it says it took over.
                (false, Some(true), Some(text)) => {
                    Verdict::ok(format!("uwgate: upgraded to {version} {text}"))
                }
                // Another image that does not say (an older uwgate): it runs, as far as is known.
                (false, None, _) => Verdict::ok(format!("uwgate: upgraded: {version} runs")),
                // A rollback, or (the same image) a check or exec that failed, or a stop.
                (_, _, Some(text)) => Verdict::error(&format!("upgrade {text}")),
                (_, _, None) => Verdict::error(&format!(
                    "the upgrade ended without an outcome; {version} runs (see uwgate's log)"
                )),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::json;
    use super::*;

    fn v(text: &str) -> Value {
        json::parse(text).unwrap()
    }

    fn started(now: Instant) -> Wait {
        Wait::new(
            &v(r#"{"result":"started","version":"0.1.0","image":111,"wait_s":70}"#),
            now,
        )
    }

    fn version(image: u64, upgrading: bool, last: Option<(bool, &str)>) -> Probe {
        let last = match last {
            Some((ok, text)) => format!(r#""last_upgrade":"{text}","last_upgrade_ok":{ok}"#),
            None => r#""last_upgrade":null,"last_upgrade_ok":null"#.to_string(),
        };
        Probe::Answer(v(&format!(
            r#"{{"version":"0.2.0","pid":7,"image":{image},"upgrading":{upgrading},{last}}}"#
        )))
    }

    #[test]
    fn it_waits_while_the_image_is_upgrading_or_busy_in_the_exec() {
        let t = Instant::now();
        let mut w = started(t);
        assert_eq!(w.observe(&version(111, true, None), t), None);
        assert_eq!(w.observe(&Probe::Busy, t + Duration::from_secs(1)), None);
        let refused = Probe::Unreachable("refused connection".into());
        assert_eq!(w.observe(&refused, t + Duration::from_secs(2)), None);
        assert_eq!(w.observe(&Probe::Busy, t + Duration::from_secs(3)), None);
    }

    #[test]
    fn a_new_image_that_took_over_is_an_upgrade() {
        let t = Instant::now();
        let mut w = started(t);
        let done = version(
            222,
            false,
            Some((true, "from 0.1.0 in 35 ms, 2 process(es) kept")),
        );
        let verdict = w.observe(&done, t).unwrap();
        assert!(verdict.ok && !verdict.gone);
        assert_eq!(
            verdict.line,
            "uwgate: upgraded to 0.2.0 from 0.1.0 in 35 ms, 2 process(es) kept"
        );
    }

    #[test]
    fn a_rollback_and_a_failure_in_place_are_errors_with_why() {
        let t = Instant::now();
        let mut w = started(t);
        let back = version(
            333,
            false,
            Some((
                false,
                "to 0.2.0 failed (exited before it served); rolled back to 0.1.0",
            )),
        );
        let verdict = w.observe(&back, t).unwrap();
        assert!(!verdict.ok);
        assert_eq!(
            verdict.line,
            "uwgate: ERROR (upgrade to 0.2.0 failed (exited before it served); rolled back to 0.1.0)"
        );
        let mut w = started(t);
        let refused = version(
            111,
            false,
            Some((false, "refused: /usr/sbin/uwgate -t failed")),
        );
        let verdict = w.observe(&refused, t).unwrap();
        assert_eq!(
            verdict.line,
            "uwgate: ERROR (upgrade refused: /usr/sbin/uwgate -t failed)"
        );
        // The same image without a word (cannot happen with this build): still an error.
        let mut w = started(t);
        let verdict = w.observe(&version(111, false, None), t).unwrap();
        assert!(!verdict.ok && verdict.line.contains("without an outcome"));
    }

    #[test]
    fn an_older_uwgate_without_upgrade_fields_counts_as_upgraded() {
        let t = Instant::now();
        let mut w = started(t);
        let old = Probe::Answer(v(r#"{"version":"0.0.9"}"#));
        let verdict = w.observe(&old, t).unwrap();
        assert!(verdict.ok);
        assert_eq!(verdict.line, "uwgate: upgraded: 0.0.9 runs");
    }

    #[test]
    fn the_wait_ends_at_its_bound_and_when_the_socket_stays_away() {
        let t = Instant::now();
        let mut w = started(t);
        let late = t + Duration::from_secs(70);
        let verdict = w.observe(&version(111, true, None), late).unwrap();
        assert!(!verdict.ok && !verdict.gone);
        assert!(
            verdict.line.contains("no outcome within 70 s"),
            "{verdict:?}"
        );

        let mut w = started(t);
        let away = Probe::Unreachable("unix:///run/uwgate.sock no such file".into());
        assert_eq!(w.observe(&away, t), None);
        // An answer in between starts the count again.
        assert_eq!(w.observe(&Probe::Busy, t + Duration::from_secs(10)), None);
        assert_eq!(w.observe(&away, t + Duration::from_secs(11)), None);
        assert_eq!(w.observe(&away, t + Duration::from_secs(20)), None);
        let verdict = w.observe(&away, t + Duration::from_secs(26)).unwrap();
        assert!(verdict.gone && !verdict.ok);
        assert_eq!(
            verdict.line,
            "uwgate: ERROR (gone during the upgrade: unix:///run/uwgate.sock no such file)"
        );
    }

    #[test]
    fn the_lines_before_the_wait() {
        let s = v(r#"{"result":"started","version":"0.1.0","image":1}"#);
        assert_eq!(began(&s), "uwgate: upgrading from 0.1.0");
        assert_eq!(Wait::new(&s, Instant::now()).bound, DEFAULT_BOUND);
        assert_eq!(
            refused("an upgrade is already in progress"),
            "uwgate: ERROR (upgrade refused: an upgrade is already in progress)"
        );
    }
}
