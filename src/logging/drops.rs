//! Drop accounting shared by the log sinks (syslog datagrams, stderr lines): a sink that cannot
//! deliver a line now drops it and counts it here, and the next line it does deliver is preceded
//! by one notice saying how many were lost and why.
//!
//! Owns counters only. Must never do I/O, allocate, or decide anything about a sink's socket
//! or descriptor: the sink says why a line was lost; this says what to report and when.

use core::fmt;

/// Why a line was dropped; selects the wording of the notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Nothing to write to: syslogd gone or restarting, /dev/log missing, stderr closed.
    Unavailable,
    /// The reader is there but not reading fast enough (EAGAIN, ENOBUFS, a full pipe).
    Slow,
}

/// Lines a sink has dropped: the total since start, and those not yet reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    total: u64,
    pending_unavailable: u64,
    pending_slow: u64,
}

impl Drops {
    /// Counts one dropped line.
    pub fn count(&mut self, reason: DropReason) {
        self.total = self.total.saturating_add(1);
        let pending = match reason {
            DropReason::Unavailable => &mut self.pending_unavailable,
            DropReason::Slow => &mut self.pending_slow,
        };
        *pending = pending.saturating_add(1);
    }

    /// Adds drops counted elsewhere (a sink replaced on reload) to the total only: they were
    /// that sink's to report.
    pub fn add_total(&mut self, n: u64) {
        self.total = self.total.saturating_add(n);
    }

    /// Lines dropped since start.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The notice owed before the next line, if any line was dropped since the last one.
    /// `what` names the lines ("messages"), `sink` the sink ("syslog").
    pub fn notice(&self, what: &'static str, sink: &'static str) -> Option<Notice> {
        let count = self.pending_unavailable.saturating_add(self.pending_slow);
        if count == 0 {
            return None;
        }
        let reason = match (self.pending_unavailable > 0, self.pending_slow > 0) {
            (true, true) => "unavailable or not keeping up",
            (true, false) => "unavailable",
            _ => "not keeping up",
        };
        Some(Notice {
            count,
            what,
            sink,
            reason,
        })
    }

    /// The notice went out: nothing is pending any more.
    pub fn reported(&mut self) {
        self.pending_unavailable = 0;
        self.pending_slow = 0;
    }
}

/// `N messages dropped while syslog was not keeping up`: displayed, never allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Lines dropped since the last notice.
    pub count: u64,
    what: &'static str,
    sink: &'static str,
    reason: &'static str,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} dropped while {} was {}",
            self.count, self.what, self.sink, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drop_owes_no_notice() {
        assert_eq!(Drops::default().notice("messages", "syslog"), None);
    }

    #[test]
    fn notice_names_the_count_and_every_reason_seen() {
        let mut d = Drops::default();
        d.count(DropReason::Slow);
        d.count(DropReason::Slow);
        let n = d.notice("log lines", "stderr").map(|n| n.to_string());
        assert_eq!(
            n.as_deref(),
            Some("2 log lines dropped while stderr was not keeping up")
        );
        d.count(DropReason::Unavailable);
        let n = d.notice("messages", "syslog").map(|n| n.to_string());
        assert_eq!(
            n.as_deref(),
            Some("3 messages dropped while syslog was unavailable or not keeping up")
        );
        let mut u = Drops::default();
        u.count(DropReason::Unavailable);
        let n = u.notice("messages", "syslog").map(|n| n.to_string());
        assert_eq!(
            n.as_deref(),
            Some("1 messages dropped while syslog was unavailable")
        );
    }

    #[test]
    fn a_reported_notice_clears_pending_but_keeps_the_total() {
        let mut d = Drops::default();
        d.count(DropReason::Slow);
        d.reported();
        assert_eq!(d.notice("messages", "syslog"), None);
        assert_eq!(d.total(), 1);
        d.add_total(5);
        assert_eq!(d.total(), 6);
        assert_eq!(d.notice("messages", "syslog"), None);
    }
}
