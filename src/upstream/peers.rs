//! Upstream groups at run time: round robin over a location's `uwsgi_pass` peers, skipping a
//! peer that failed `max_fails` times within `fail_timeout` until `fail_timeout` has passed
//! (nginx's semantics). Built from the config at start and on reload.

use crate::config::{Config, Handler, Upstream};
use std::time::Instant;

/// Failure bookkeeping of one peer.
#[derive(Clone, Debug, Default)]
struct PeerState {
    fails: u32,
    first_fail: Option<Instant>,
    down_until: Option<Instant>,
}

/// One location's peers.
#[derive(Debug)]
pub struct Group {
    pub peers: Vec<Upstream>,
    state: Vec<PeerState>,
    next: usize,
}

impl Group {
    fn new(peers: &[Upstream]) -> Group {
        Group {
            peers: peers.to_vec(),
            state: vec![PeerState::default(); peers.len()],
            next: 0,
        }
    }

    /// The next live peer in round-robin order, skipping `tried` (a bitmask of peers already
    /// tried for this request). When every untried peer is marked down, the one whose mark
    /// expires first is used anyway, as nginx does when all are down... unless all were tried.
    pub fn pick(&mut self, now: Instant, tried: u64) -> Option<usize> {
        let n = self.peers.len();
        let mut fallback = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            if i < 64 && tried & (1 << i) != 0 {
                continue;
            }
            match self.state.get(i).and_then(|st| st.down_until) {
                Some(t) if t > now => {
                    if fallback.is_none() {
                        fallback = Some(i);
                    }
                }
                _ => {
                    self.next = (i + 1) % n;
                    return Some(i);
                }
            }
        }
        if n == 1 {
            // nginx never marks the only server of a group down.
            return fallback;
        }
        None
    }

    /// Records a failed attempt (connect error, timeout, reset) against peer `i`.
    pub fn failed(&mut self, i: usize, now: Instant) {
        let Some(peer) = self.peers.get(i) else {
            return;
        };
        let (max_fails, fail_timeout) = (peer.max_fails, peer.fail_timeout);
        let lone = self.peers.len() == 1;
        let Some(st) = self.state.get_mut(i) else {
            return;
        };
        if max_fails == 0 || lone {
            // nginx never marks the only server of a group down.
            return;
        }
        if st
            .first_fail
            .is_none_or(|t| now.duration_since(t) > fail_timeout)
        {
            st.first_fail = Some(now);
            st.fails = 0;
        }
        st.fails += 1;
        if st.fails >= max_fails {
            st.down_until = Some(now + fail_timeout);
            st.fails = 0;
            st.first_fail = None;
            log::warn!(
                "upstream {} marked down for {:?} after {} failure(s)",
                super::PeerName(&peer.addr),
                fail_timeout,
                max_fails
            );
        }
    }

    /// A request succeeded on peer `i`.
    pub fn succeeded(&mut self, i: usize) {
        if let Some(st) = self.state.get_mut(i) {
            st.fails = 0;
            st.first_fail = None;
            st.down_until = None;
        }
    }
}

/// Every uwsgi location's group, addressed by (server, location).
pub struct Groups {
    groups: Vec<Group>,
    index: Vec<Vec<Option<usize>>>,
}

impl Groups {
    pub fn new(cfg: &Config) -> Groups {
        let mut groups = Vec::new();
        let index = cfg
            .servers
            .iter()
            .map(|s| {
                s.locations
                    .iter()
                    .map(|l| match &l.handler {
                        Handler::Uwsgi(u) => {
                            groups.push(Group::new(&u.upstreams));
                            Some(groups.len() - 1)
                        }
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        Groups { groups, index }
    }

    /// The group of location `li` of server `si`.
    pub fn group_of(&self, si: usize, li: usize) -> Option<usize> {
        *self.index.get(si)?.get(li)?
    }

    pub fn get(&self, g: usize) -> Option<&Group> {
        self.groups.get(g)
    }

    pub fn get_mut(&mut self, g: usize) -> Option<&mut Group> {
        self.groups.get_mut(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamAddr;
    use std::time::Duration;

    fn peer(port: u16, max_fails: u32) -> Upstream {
        Upstream {
            addr: UpstreamAddr::Tcp(([127, 0, 0, 1], port).into()),
            max_fails,
            fail_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn round_robin_alternates_between_live_peers() {
        let mut g = Group::new(&[peer(1, 1), peer(2, 1)]);
        let now = Instant::now();
        assert_eq!(g.pick(now, 0), Some(0));
        assert_eq!(g.pick(now, 0), Some(1));
        assert_eq!(g.pick(now, 0), Some(0));
    }

    #[test]
    fn failed_peer_is_skipped_until_fail_timeout_passes() {
        let mut g = Group::new(&[peer(1, 1), peer(2, 1)]);
        let now = Instant::now();
        g.failed(0, now);
        assert_eq!(g.pick(now, 0), Some(1));
        assert_eq!(g.pick(now, 0), Some(1));
        let later = now + Duration::from_secs(11);
        assert_eq!(g.pick(later, 0), Some(0));
    }

    #[test]
    fn tried_peers_are_not_picked_again_for_the_same_request() {
        let mut g = Group::new(&[peer(1, 1), peer(2, 1)]);
        let now = Instant::now();
        assert_eq!(g.pick(now, 0b01), Some(1));
        assert_eq!(g.pick(now, 0b11), None);
    }

    #[test]
    fn a_lone_peer_is_never_skipped() {
        let mut g = Group::new(&[peer(1, 1)]);
        let now = Instant::now();
        g.failed(0, now);
        assert_eq!(g.pick(now, 0), Some(0));
    }
}
