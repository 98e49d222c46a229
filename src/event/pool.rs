//! Pools of fixed-size I/O buffers, sized once from the config at start, in two classes
//! ([`Buffers`]): small head buffers, one per connection slot (so a connection never waits for
//! one), and large buffers (`buffer_pool` of `buffer_size`) for what outgrows a head buffer.
//!
//! A connection checks a buffer out while it reads a head or moves a body and returns it when
//! idle, so idle keep-alive connections cost a slot and no buffer. `checkout` returns `None`
//! when the pool is empty (the caller waits, or the loop evicts a stalled holder); the pool
//! never allocates after `new`. The backing memory is one zeroed allocation, so pages that are
//! never used are never touched, and buffers are handed out lowest first.

/// Index of a buffer in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufId(u32);

/// The fixed pool. Owned by the event loop; connections hold `BufId`s.
pub struct BufferPool {
    mem: Vec<u8>,
    size: usize,
    free: Vec<u32>,
}

impl BufferPool {
    /// Reserves `count` buffers of `size` bytes each.
    pub fn new(count: usize, size: usize) -> BufferPool {
        let mem = vec![0u8; count.saturating_mul(size)];
        // Hand out low indices first so a lightly loaded server touches few pages.
        let free = (0..count as u32).rev().collect();
        BufferPool { mem, size, free }
    }

    /// Takes a buffer, or `None` when every buffer is in use.
    pub fn checkout(&mut self) -> Option<BufId> {
        self.free.pop().map(BufId)
    }

    /// Returns a buffer. Each `BufId` must be checked in exactly once.
    pub fn checkin(&mut self, id: BufId) {
        debug_assert!(!self.free.contains(&id.0));
        self.free.push(id.0);
    }

    /// The bytes of a checked-out buffer (empty for an id this pool never gave out).
    pub fn get_mut(&mut self, id: BufId) -> &mut [u8] {
        let start = id.0 as usize * self.size;
        self.mem
            .get_mut(start..start + self.size)
            .unwrap_or(&mut [])
    }

    /// Two distinct checked-out buffers at once (a client's and its upstream's); asking for
    /// one buffer twice gives it once and an empty second.
    pub fn get_two(&mut self, a: BufId, b: BufId) -> (&mut [u8], &mut [u8]) {
        let size = self.size;
        if a == b {
            return (self.get_mut(a), &mut []);
        }
        let (lo, hi, swapped) = if a.0 < b.0 {
            (a, b, false)
        } else {
            (b, a, true)
        };
        let at = (hi.0 as usize * size).min(self.mem.len());
        let (left, right) = self.mem.split_at_mut(at);
        let lo_start = lo.0 as usize * size;
        let lo_slice = left.get_mut(lo_start..lo_start + size).unwrap_or(&mut []);
        let hi_slice = right.get_mut(..size).unwrap_or(&mut []);
        if swapped {
            (hi_slice, lo_slice)
        } else {
            (lo_slice, hi_slice)
        }
    }

    /// Size of every buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// A checked-out buffer of either class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// A head buffer.
    Head(BufId),
    /// A large buffer.
    Large(BufId),
}

/// The loop's two pools.
pub struct Buffers {
    /// Head buffers: as many as connection slots.
    pub heads: BufferPool,
    /// Large buffers: `buffer_pool` of them.
    pub large: BufferPool,
}

impl Buffers {
    /// The bytes of `b`.
    pub fn get_mut(&mut self, b: Buf) -> &mut [u8] {
        match b {
            Buf::Head(id) => self.heads.get_mut(id),
            Buf::Large(id) => self.large.get_mut(id),
        }
    }

    /// A connection's buffer and a large one beside it (a proxy's), at once.
    pub fn get_two(&mut self, a: Buf, b: BufId) -> (&mut [u8], &mut [u8]) {
        match a {
            Buf::Head(id) => (self.heads.get_mut(id), self.large.get_mut(b)),
            Buf::Large(id) => self.large.get_two(id, b),
        }
    }

    /// Returns `b` to its pool.
    pub fn checkin(&mut self, b: Buf) {
        match b {
            Buf::Head(id) => self.heads.checkin(id),
            Buf::Large(id) => self.large.checkin(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pool_returns_none_instead_of_allocating() {
        let mut pool = BufferPool::new(2, 64);
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        assert_ne!(a, b);
        assert!(pool.checkout().is_none());
        pool.checkin(a);
        assert_eq!(pool.checkout(), Some(a));
    }

    #[test]
    fn buffers_do_not_overlap() {
        let mut pool = BufferPool::new(2, 8);
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        pool.get_mut(a).fill(1);
        pool.get_mut(b).fill(2);
        assert!(pool.get_mut(a).iter().all(|&x| x == 1));
        assert_eq!(pool.get_mut(b).len(), 8);
    }
}
