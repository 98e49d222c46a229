//! Waiting for the program behind a location (`uwsgi_program = django`): while the watchdog
//! says it is starting, backing off or being restarted, a request for the location waits in
//! its slot instead of getting a 502, and goes on once the program is RUNNING — bounded by
//! `uwsgi_connect_timeout` (504 after it), with a deadline of its own (`Timer::Program`).
//!
//! Two places wait: before a proxy slot is taken (`AwaitingProgram`: the request holds only
//! its slot and head buffer), and after an upstream failure that the restart explains — a
//! refused connect, or a connection closed before any byte of an answer, while the program is
//! not RUNNING or has just become so (`Forward::held`: the proxy keeps the encoded request and
//! the body, and sends them again; only when replaying is safe, as for `uwsgi_next_upstream`).
//! The loop wakes waiting connections when the watchdog's state changes, and on its sweep.
//!
//! Owns those two waits. Never: waits for a program stopped on purpose (`Down`: the request
//! goes on and fails as before), blocks, or allocates.

use super::proxy::{uwsgi_conf, Forward};
use super::{ClientSocket, Connection, Env, State, Step, Timer};
use crate::config::UwsgiConf;
use crate::http::Status;
use crate::server::dispatch::Extra;
use crate::watchdog::Availability;

impl<S: ClientSocket> Connection<S> {
    /// Before a request takes a proxy slot: `Some(Wait)` while its location's program is not
    /// ready (AwaitingProxy → AwaitingProgram, deadline `uwsgi_connect_timeout`); `None` to go
    /// on (AwaitingProgram → AwaitingProxy).
    pub(super) fn wait_for_program(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let route = match &self.state {
            State::AwaitingProxy(f) | State::AwaitingProgram(f) => f.route(),
            _ => return None,
        };
        let ctx = env.ctx;
        let conf = uwsgi_conf(ctx.cfg, route)?;
        let waits = conf
            .program
            .as_deref()
            .is_some_and(|name| ctx.watchdog.availability(name, ctx.now) == Availability::Wait);
        match std::mem::replace(&mut self.state, State::Idle) {
            State::AwaitingProxy(f) if waits => {
                // AwaitingProxy -> AwaitingProgram: the program is (re)starting.
                self.state = State::AwaitingProgram(f);
                self.set_deadline(ctx.now + conf.connect_timeout, Timer::Program);
                Some(Step::Wait)
            }
            State::AwaitingProgram(f) if waits => {
                self.state = State::AwaitingProgram(f);
                Some(Step::Wait)
            }
            // AwaitingProgram -> AwaitingProxy: RUNNING (or stopped for good).
            State::AwaitingProgram(f) | State::AwaitingProxy(f) => {
                self.state = State::AwaitingProxy(f);
                None
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// An upstream failure before any byte of an answer (`began`: some of the request was
    /// sent): `true` when the location's program explains it — it is (re)starting, or became
    /// RUNNING a moment ago — and the request may be sent again; it then waits, held.
    pub(super) fn hold_for_program(
        &mut self,
        env: &mut Env<'_, '_>,
        conf: &UwsgiConf,
        began: bool,
    ) -> bool {
        let ctx = env.ctx;
        let Some(name) = conf.program.as_deref() else {
            return false;
        };
        let explained = matches!(
            ctx.watchdog.availability(name, ctx.now),
            Availability::Wait | Availability::Ready { settling: true }
        );
        let State::Proxying(f) = &mut self.state else {
            return false;
        };
        let Some(p) = env.proxies.get_mut(f.slot()) else {
            return false;
        };
        if !explained || (began && !p.replayable()) {
            return false;
        }
        p.close_upstream(env.registry);
        let first = !f.held();
        f.set_held(true);
        if first {
            log::info!(
                "slot {}: upstream failed while {name} restarts; the request waits for it, client: {}",
                env.slot,
                self.peer
            );
            self.set_deadline(ctx.now + conf.connect_timeout, Timer::Program);
        }
        true
    }

    /// A held request, woken: sends it again once the program is RUNNING (`None`: go on with
    /// the proxy's stages), else waits on.
    pub(super) fn resume_held(&mut self, env: &mut Env<'_, '_>, conf: &UwsgiConf) -> Option<Step> {
        let ctx = env.ctx;
        let ready = conf.program.as_deref().is_none_or(|name| {
            !matches!(ctx.watchdog.availability(name, ctx.now), Availability::Wait)
        });
        if !ready {
            return Some(Step::Wait);
        }
        let State::Proxying(f) = &mut self.state else {
            return Some(Step::Close);
        };
        f.set_held(false);
        let Some(p) = env.proxies.get_mut(f.slot()) else {
            return Some(Step::Close);
        };
        let mut up = up_env!(self, env);
        let connected = p.connect_again(&mut up);
        self.connect_begun(env, conf, connected)
    }

    /// `Timer::Program` passed: the program did not become ready within
    /// `uwsgi_connect_timeout` — 504, as a connect timeout.
    pub(super) fn program_timeout(&mut self, env: &mut Env<'_, '_>) -> Option<Step> {
        let route = match &self.state {
            State::AwaitingProgram(f) | State::Proxying(f) => f.route(),
            _ => return Some(Step::Close),
        };
        let conf = uwsgi_conf(env.ctx.cfg, route);
        log::error!(
            "slot {}: program {} not ready within uwsgi_connect_timeout ({} s), client: {}",
            env.slot,
            conf.and_then(|c| c.program.as_deref()).unwrap_or("?"),
            conf.map_or(0, |c| c.connect_timeout.as_secs()),
            self.peer
        );
        match std::mem::replace(&mut self.state, State::Idle) {
            State::AwaitingProgram(_) => {
                self.answer_error(Status::GatewayTimeout, Extra::None, env);
            }
            other => {
                self.state = other;
                self.proxy_error(Status::GatewayTimeout, env);
            }
        }
        None
    }

    /// Waiting for its location's program (either wait).
    pub fn awaits_program(&self) -> bool {
        match &self.state {
            State::AwaitingProgram(_) => true,
            State::Proxying(f) => f.held(),
            _ => false,
        }
    }
}

/// The held flag lives in the forward (the client side of a proxied request).
impl Forward {
    pub(super) fn held(&self) -> bool {
        self.held
    }

    pub(super) fn set_held(&mut self, held: bool) {
        self.held = held;
    }
}
