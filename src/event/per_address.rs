//! Connections per client address, counted so that one address cannot hold every slot
//! (`limit_conn_per_ip`): a fixed open-addressing table, sized at start for every slot to
//! come from a different address, so it never fills and never allocates.
//!
//! Owns the counts. Never: allocates after `new`, or admits past the limit.

use std::net::IpAddr;

/// Counts of open connections by address.
pub struct PerAddress {
    /// `(address, count)`; a count of 0 is an empty entry.
    entries: Vec<(u128, u32)>,
    /// Most connections one address may hold; 0 = no limit (still counted, so a reload may
    /// set one).
    limit: u32,
}

/// An address as a table key: IPv4 as its IPv4-mapped IPv6 form.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl PerAddress {
    /// A table for `slots` connections, each allowed `limit` per address (0: no limit). Its
    /// memory is zeroed, so pages no address hashes to are never touched.
    pub fn new(slots: usize, limit: u32) -> PerAddress {
        let size = (slots.max(1) * 2).next_power_of_two();
        PerAddress {
            entries: vec![(0, 0); size],
            limit,
        }
    }

    /// A new limit (a reload); connections already open stay counted.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    fn home(&self, k: u128) -> usize {
        // Fibonacci hashing of the folded key; the table size is a power of two.
        let folded = (k as u64) ^ ((k >> 64) as u64);
        let mask = self.entries.len().saturating_sub(1);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
    }

    /// Where `k` is, or the empty entry where it would go.
    fn find(&self, k: u128) -> Option<usize> {
        let n = self.entries.len();
        let mut i = self.home(k);
        for _ in 0..n {
            match self.entries.get(i) {
                Some(&(key, count)) if count == 0 || key == k => return Some(i),
                Some(_) => i = (i + 1) & (n - 1),
                None => return None,
            }
        }
        None
    }

    /// Counts a new connection from `ip`: `false` (and nothing counted) when `ip` already
    /// holds `limit` connections.
    pub fn admit(&mut self, ip: IpAddr) -> bool {
        let k = key(ip);
        let Some(i) = self.find(k) else {
            // Cannot happen: the table has room for every slot twice over.
            return true;
        };
        let limit = self.limit;
        match self.entries.get_mut(i) {
            Some(e) if limit > 0 && e.1 >= limit => false,
            Some(e) => {
                *e = (k, e.1 + 1);
                true
            }
            None => true,
        }
    }

    /// A connection from `ip` (counted by `admit`) closed.
    pub fn release(&mut self, ip: IpAddr) {
        let Some(i) = self.find(key(ip)) else {
            return;
        };
        match self.entries.get_mut(i) {
            Some(e) if e.1 > 1 => e.1 -= 1,
            Some(e) if e.1 == 1 => {
                e.1 = 0;
                self.close_gap(i);
            }
            _ => {}
        }
    }

    /// Linear probing's deletion: entries after the emptied one that would not be found past
    /// the gap move back into it.
    fn close_gap(&mut self, mut gap: usize) {
        let n = self.entries.len();
        let mut i = (gap + 1) & (n - 1);
        for _ in 0..n {
            let Some(&(k, count)) = self.entries.get(i) else {
                return;
            };
            if count == 0 {
                return;
            }
            let home = self.home(k);
            // The entry at `i` may move to `gap` unless its home lies cyclically in (gap, i].
            let stays = if gap <= i {
                gap < home && home <= i
            } else {
                gap < home || home <= i
            };
            if !stays {
                self.entries.swap(gap, i);
                gap = i;
            }
            i = (i + 1) & (n - 1);
        }
    }

    /// Connections `ip` holds now (for tests and the log).
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.find(key(ip))
            .and_then(|i| self.entries.get(i))
            .map_or(0, |e| e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn one_address_is_held_to_the_limit_and_others_are_not() {
        let mut t = PerAddress::new(8, 2);
        assert!(t.admit(ip(1)) && t.admit(ip(1)));
        assert!(!t.admit(ip(1)));
        assert!(t.admit(ip(2)));
        t.release(ip(1));
        assert!(t.admit(ip(1)));
        assert_eq!((t.count(ip(1)), t.count(ip(2))), (2, 1));
    }

    #[test]
    fn ipv4_and_its_mapped_ipv6_form_are_one_address() {
        let mut t = PerAddress::new(4, 1);
        assert!(t.admit("10.0.0.1".parse().unwrap()));
        assert!(!t.admit("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_zero_limit_admits_all_and_a_later_limit_applies_to_what_is_open() {
        let mut t = PerAddress::new(4, 0);
        for _ in 0..3 {
            assert!(t.admit(ip(1)));
        }
        assert_eq!(t.count(ip(1)), 3);
        t.set_limit(3);
        assert!(!t.admit(ip(1)));
        t.release(ip(1));
        assert!(t.admit(ip(1)));
    }

    #[test]
    fn counts_survive_any_order_of_releases_in_a_full_table() {
        // Every slot from its own address, released in a scrambled order, the counts of
        // the rest checked after each release (deletion must not lose an entry).
        let slots = 64;
        let mut t = PerAddress::new(slots, 1);
        for a in 0..slots as u32 {
            assert!(t.admit(ip(a * 7919)));
        }
        let mut order: Vec<u32> = (0..slots as u32).collect();
        order.sort_by_key(|a| a.wrapping_mul(2654435761) % 97);
        for (done, &a) in order.iter().enumerate() {
            t.release(ip(a * 7919));
            for &b in order.iter().skip(done + 1) {
                assert_eq!(t.count(ip(b * 7919)), 1, "lost {b} after releasing {a}");
            }
            assert_eq!(t.count(ip(a * 7919)), 0);
        }
    }
}
