//! The descriptors a configuration needs, and the configuration scaled down to fit a descriptor
//! limit (RLIMIT_NOFILE) that cannot be raised far enough: a low limit degrades, it does not
//! refuse (nginx starts and warns "worker_connections exceed open file resource limit").
//!
//! Owns pure arithmetic over three `[uwgate]` numbers. Must never do I/O, never touch any other
//! key, and never give numbers that need more descriptors than the limit.

use std::fmt;

use super::Global;

/// Descriptors kept for the loop itself: epoll, the signalfd, listeners, the syslog socket,
/// supervised programs' output pipes, the odd /dev/null.
pub const RESERVED: u64 = 64;

/// The three numbers that cost descriptors: a slot holds its client socket; a pool buffer may
/// have an upstream socket and a file or spool beside it; a cache entry holds an open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptors {
    /// `worker_connections`.
    pub worker_connections: usize,
    /// `buffer_pool`.
    pub buffer_pool: usize,
    /// `open_file_cache`.
    pub open_file_cache: usize,
}

/// The smallest configuration that runs: one slot, one buffer, no cache.
const LEAST: Descriptors = Descriptors {
    worker_connections: 1,
    buffer_pool: 1,
    open_file_cache: 0,
};

impl Descriptors {
    /// The numbers `global` asks for.
    pub fn of(global: &Global) -> Descriptors {
        Descriptors {
            worker_connections: global.worker_connections,
            buffer_pool: global.buffer_pool,
            open_file_cache: global.open_file_cache,
        }
    }

    /// Writes these numbers into `global`.
    pub fn apply(self, global: &mut Global) {
        global.worker_connections = self.worker_connections;
        global.buffer_pool = self.buffer_pool;
        global.open_file_cache = self.open_file_cache;
    }

    /// worker_connections + 2 × buffer_pool + open_file_cache + [`RESERVED`].
    pub fn needed(self) -> u64 {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        n(self.worker_connections)
            .saturating_add(n(self.buffer_pool).saturating_mul(2))
            .saturating_add(n(self.open_file_cache))
            .saturating_add(RESERVED)
    }

    /// These numbers when they fit in `limit` descriptors; else all three scaled by the same
    /// factor, (limit − RESERVED) / (needed − RESERVED), rounded down, with at least one slot
    /// and one buffer and `buffer_pool` ≤ 2 × `worker_connections` kept. `Err(least)` when not
    /// even the smallest configuration fits.
    pub fn fit(self, limit: u64) -> Result<Descriptors, u64> {
        let needed = self.needed();
        if needed <= limit {
            return Ok(self);
        }
        if limit < LEAST.needed() {
            return Err(LEAST.needed());
        }
        let budget = limit.saturating_sub(RESERVED);
        let total = needed.saturating_sub(RESERVED).max(1);
        let scale = |n: usize| -> u64 {
            let scaled = u128::from(u64::try_from(n).unwrap_or(u64::MAX))
                .saturating_mul(u128::from(budget))
                / u128::from(total);
            u64::try_from(scaled).unwrap_or(u64::MAX)
        };
        let mut slots = scale(self.worker_connections).max(1);
        let buffers = scale(self.buffer_pool).max(1).min(slots.saturating_mul(2));
        // The floors can overshoot a tiny budget: slots give way (2 × buffers < budget here).
        slots = slots.min(budget.saturating_sub(buffers.saturating_mul(2)).max(1));
        let cache = scale(self.open_file_cache).min(
            budget
                .saturating_sub(slots)
                .saturating_sub(buffers.saturating_mul(2)),
        );
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Descriptors {
            worker_connections: size(slots),
            buffer_pool: size(buffers),
            open_file_cache: size(cache),
        })
    }
}

/// The start-up warning when a configuration was scaled down to the descriptor limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaled {
    /// What the file asked for.
    pub wanted: Descriptors,
    /// What runs.
    pub running: Descriptors,
    /// RLIMIT_NOFILE in force.
    pub limit: u64,
}

impl fmt::Display for Scaled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w, r) = (self.wanted, self.running);
        write!(
            f,
            "worker_connections = {}, buffer_pool = {} and open_file_cache = {} need {} \
             descriptors, more than the open file resource limit (RLIMIT_NOFILE) of {}: \
             running with worker_connections = {}, buffer_pool = {}, open_file_cache = {}",
            w.worker_connections,
            w.buffer_pool,
            w.open_file_cache,
            w.needed(),
            self.limit,
            r.worker_connections,
            r.buffer_pool,
            r.open_file_cache
        )
    }
}

/// Scales `global` down to `limit` descriptors when it needs more. `Ok(None)`: it fits as it
/// is; `Ok(Some(scaled))`: it was changed, and `scaled` says how (warn with it);
/// `Err(message)`: not even one slot fits.
pub fn fit_to_limit(global: &mut Global, limit: u64) -> Result<Option<Scaled>, String> {
    let wanted = Descriptors::of(global);
    match wanted.fit(limit) {
        Ok(running) if running == wanted => Ok(None),
        Ok(running) => {
            running.apply(global);
            Ok(Some(Scaled {
                wanted,
                running,
                limit,
            }))
        }
        Err(least) => Err(format!(
            "the open file resource limit (RLIMIT_NOFILE) is {limit}: uwgate needs at least \
             {least} descriptors"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(worker_connections: usize, buffer_pool: usize, open_file_cache: usize) -> Descriptors {
        Descriptors {
            worker_connections,
            buffer_pool,
            open_file_cache,
        }
    }

    /// Every fitted answer: within the limit, never more than asked, the config's rules kept.
    fn check(wanted: Descriptors, limit: u64) -> Descriptors {
        let got = wanted.fit(limit).unwrap();
        assert!(got.needed() <= limit, "{wanted:?} in {limit}: {got:?}");
        assert!(
            got.worker_connections >= 1 && got.buffer_pool >= 1,
            "{got:?}"
        );
        assert!(
            got.worker_connections <= wanted.worker_connections,
            "{got:?}"
        );
        assert!(got.buffer_pool <= wanted.buffer_pool, "{got:?}");
        assert!(got.open_file_cache <= wanted.open_file_cache, "{got:?}");
        assert!(got.buffer_pool <= 2 * got.worker_connections, "{got:?}");
        got
    }

    #[test]
    fn defaults_need_worker_connections_twice_the_pool_the_cache_and_a_reserve() {
        assert_eq!(Descriptors::of(&Global::default()), d(1024, 256, 1000));
        assert_eq!(d(1024, 256, 1000).needed(), 1024 + 512 + 1000 + 64);
    }

    #[test]
    fn a_configuration_that_fits_is_kept() {
        assert_eq!(d(1024, 256, 1000).fit(2600), Ok(d(1024, 256, 1000)));
        assert_eq!(d(1024, 256, 1000).fit(1 << 20), Ok(d(1024, 256, 1000)));
    }

    #[test]
    fn ulimit_256_scales_the_defaults_by_one_factor() {
        // (256 - 64) / (2600 - 64) = 192 / 2536.
        assert_eq!(check(d(1024, 256, 1000), 256), d(77, 19, 75));
    }

    #[test]
    fn ulimit_1024_scales_the_defaults_by_one_factor() {
        assert_eq!(check(d(1024, 256, 1000), 1024), d(387, 96, 378));
    }

    #[test]
    fn the_smallest_limit_runs_one_slot_and_one_buffer() {
        assert_eq!(check(d(1024, 256, 1000), 67), d(1, 1, 0));
        assert_eq!(d(1024, 256, 1000).fit(66), Err(67));
        assert_eq!(d(1, 1, 0).fit(0), Err(67));
    }

    #[test]
    fn every_shape_and_limit_fits_without_breaking_a_rule() {
        let shapes = [
            d(1024, 256, 1000),
            d(1_000_000, 1, 0),
            d(1, 2, 0),
            d(10, 20, 1 << 20),
            d(1_000_000, 2_000_000, 1 << 20),
            d(3, 1, 0),
        ];
        for wanted in shapes {
            for limit in (67..400).chain([1000, 4096, 65_536, 1 << 20, u64::MAX]) {
                let got = check(wanted, limit);
                if wanted.needed() <= limit {
                    assert_eq!(got, wanted);
                }
            }
        }
    }

    #[test]
    fn fitting_a_global_changes_the_three_numbers_and_says_how() {
        let mut g = Global::default();
        let scaled = fit_to_limit(&mut g, 256).unwrap().unwrap();
        assert_eq!(
            (g.worker_connections, g.buffer_pool, g.open_file_cache),
            (77, 19, 75)
        );
        assert_eq!(
            scaled.to_string(),
            "worker_connections = 1024, buffer_pool = 256 and open_file_cache = 1000 need 2600 \
             descriptors, more than the open file resource limit (RLIMIT_NOFILE) of 256: \
             running with worker_connections = 77, buffer_pool = 19, open_file_cache = 75"
        );
        // Fitting again to the same limit changes nothing more (a reload compares like this).
        assert_eq!(fit_to_limit(&mut g, 256), Ok(None));
        let mut fits = Global::default();
        assert_eq!(fit_to_limit(&mut fits, 4096), Ok(None));
        assert_eq!(fits, Global::default());
        assert_eq!(
            fit_to_limit(&mut Global::default(), 20).unwrap_err(),
            "the open file resource limit (RLIMIT_NOFILE) is 20: uwgate needs at least 67 descriptors"
        );
    }
}
