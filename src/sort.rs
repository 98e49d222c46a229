//! Stable sorting of the short lists uwgate orders at configuration and control time: program
//! start order, locations by prefix length, config warnings, `ctl` reread/update lists, lingering
//! output pipes.
//!
//! Owns a binary-insertion sort: a few hundred bytes of code per element type, where each
//! `slice::sort*` instantiation of std's driftsort/ipnsort costs 4–12 KB (together ~45 KB of the
//! binary). O(n log n) comparisons and O(n²) element moves (one `memmove` per element), which is
//! nothing for the tens to hundreds of entries these lists hold. Must never: be used on a list
//! whose length a client controls, or on the request path.

use std::cmp::Ordering;

/// Sorts `v` stably, `less(a, b)` saying whether `a` goes strictly before `b` (the same result
/// as `v.sort_by(|a, b| if less(a, b) { Less } else if less(b, a) { Greater } else { Equal })`).
pub fn sort_by_less<T>(v: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    for i in 1..v.len() {
        let Some((sorted, rest)) = v.split_at_checked(i) else {
            return;
        };
        let Some(cur) = rest.first() else {
            return;
        };
        // After every element not greater than `cur`: equal ones keep their order.
        let place = sorted.partition_point(|x| !less(cur, x));
        if let Some(moved) = v.get_mut(place..=i) {
            moved.rotate_right(1);
        }
    }
}

/// Sorts `v` stably by `compare`, as `slice::sort_by`.
pub fn sort_by<T>(v: &mut [T], mut compare: impl FnMut(&T, &T) -> Ordering) {
    sort_by_less(v, |a, b| compare(a, b) == Ordering::Less);
}

/// Sorts `v` stably by the key `f` gives, as `slice::sort_by_key`.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut f: impl FnMut(&T) -> K) {
    sort_by_less(v, |a, b| f(a) < f(b));
}

/// Sorts `v` stably, as `slice::sort` (and as `slice::sort_unstable` wherever equal elements are
/// indistinguishable).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by_less(v, |a, b| a < b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency): xorshift.
    fn numbers(seed: u64, n: usize, modulo: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % modulo
            })
            .collect()
    }

    #[test]
    fn sorts_as_std_does_for_every_length_up_to_64() {
        for n in 0..=64 {
            for seed in 1..20 {
                let mut mine = numbers(seed, n, 1000);
                let mut theirs = mine.clone();
                sort(&mut mine);
                theirs.sort();
                assert_eq!(mine, theirs, "n={n} seed={seed}");
            }
        }
    }

    #[test]
    fn equal_keys_keep_their_order_as_std_sort_by_key() {
        for seed in 1..50 {
            // (key, original position): few distinct keys, so many ties.
            let mut mine: Vec<(u64, usize)> = numbers(seed, 300, 7)
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, i))
                .collect();
            let mut theirs = mine.clone();
            sort_by_key(&mut mine, |&(k, _)| std::cmp::Reverse(k));
            theirs.sort_by_key(|&(k, _)| std::cmp::Reverse(k));
            assert_eq!(mine, theirs, "seed={seed}");
        }
    }

    #[test]
    fn sort_by_follows_the_comparator_as_std() {
        let mut mine: Vec<String> = numbers(3, 200, 50)
            .into_iter()
            .map(|n| format!("p{n}"))
            .collect();
        let mut theirs = mine.clone();
        sort_by(&mut mine, |a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        theirs.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        assert_eq!(mine, theirs);
    }

    #[test]
    fn already_sorted_and_reversed_inputs_come_out_sorted() {
        let mut up: Vec<u32> = (0..500).collect();
        sort(&mut up);
        assert!(up.windows(2).all(|w| w[0] <= w[1]));
        let mut down: Vec<u32> = (0..500).rev().collect();
        sort(&mut down);
        assert_eq!(down, (0..500).collect::<Vec<_>>());
    }
}
