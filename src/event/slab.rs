//! Fixed connection slots and the list of idle keep-alive connections, oldest first.
//!
//! Slots are allocated once (`worker_connections`); a slot index is stable for a connection's
//! life and maps to its mio tokens in O(1). The idle list is intrusive (indices stored beside
//! the slots), so finding the oldest idle connection to evict is O(1) and allocates nothing.

const NIL: u32 = u32::MAX;

/// A slot's place in the idle list.
#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    idle: bool,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    idle: false,
};

/// Bytes the slab keeps per slot beside the `Option<T>`: a free-list entry and its idle-list
/// link.
pub const PER_SLOT_OVERHEAD: usize = 4 + std::mem::size_of::<Link>();

/// Slots of `T` with a free list.
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    links: Vec<Link>,
    idle_head: u32,
    idle_tail: u32,
}

impl<T> Slab<T> {
    /// Preallocates `capacity` empty slots.
    pub fn new(capacity: usize) -> Slab<T> {
        let mut slots = Vec::with_capacity(capacity);
        slots.resize_with(capacity, || None);
        Slab {
            slots,
            free: (0..capacity as u32).rev().collect(),
            links: vec![UNLINKED; capacity],
            idle_head: NIL,
            idle_tail: NIL,
        }
    }

    /// Stores `value` in a free slot and returns its index, or gives it back when full.
    pub fn insert(&mut self, value: T) -> Result<usize, T> {
        match self.free.pop() {
            Some(i) => match self.slots.get_mut(i as usize) {
                Some(slot) => {
                    *slot = Some(value);
                    Ok(i as usize)
                }
                None => Err(value),
            },
            None => Err(value),
        }
    }

    /// Empties slot `i` (and takes it off the idle list).
    pub fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.slots.get_mut(i)?.take()?;
        self.idle_remove(i);
        self.free.push(i as u32);
        Some(v)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut()
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i)?.as_ref()
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Indices of occupied slots (used by the timer sweep and shutdown).
    pub fn occupied(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|_| i))
    }

    fn link_mut(&mut self, i: u32) -> Option<&mut Link> {
        self.links.get_mut(i as usize)
    }

    /// Appends slot `i` to the idle list (newest last). No-op if already idle.
    pub fn idle_push(&mut self, i: usize) {
        let tail = self.idle_tail;
        let Some(link) = self.links.get_mut(i) else {
            return;
        };
        if link.idle {
            return;
        }
        *link = Link {
            prev: tail,
            next: NIL,
            idle: true,
        };
        match self.link_mut(tail) {
            Some(t) => t.next = i as u32,
            None => self.idle_head = i as u32,
        }
        self.idle_tail = i as u32;
    }

    /// Takes slot `i` off the idle list. No-op if not idle.
    pub fn idle_remove(&mut self, i: usize) {
        let Some(link) = self.links.get_mut(i) else {
            return;
        };
        if !link.idle {
            return;
        }
        let (p, n) = (link.prev, link.next);
        *link = UNLINKED;
        match self.link_mut(p) {
            Some(prev) => prev.next = n,
            None => self.idle_head = n,
        }
        match self.link_mut(n) {
            Some(next) => next.prev = p,
            None => self.idle_tail = p,
        }
    }

    /// The connection that has been idle longest.
    pub fn idle_oldest(&self) -> Option<usize> {
        (self.idle_head != NIL).then_some(self.idle_head as usize)
    }

    pub fn is_idle(&self, i: usize) -> bool {
        self.links.get(i).is_some_and(|l| l.idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_slab_gives_the_value_back() {
        let mut s = Slab::new(1);
        assert_eq!(s.insert(1), Ok(0));
        assert_eq!(s.insert(2), Err(2));
        assert_eq!(s.remove(0), Some(1));
        assert_eq!(s.insert(3), Ok(0));
    }

    #[test]
    fn oldest_idle_is_the_first_pushed_and_removal_relinks() {
        let mut s = Slab::new(4);
        for v in 0..4 {
            s.insert(v).unwrap();
        }
        s.idle_push(2);
        s.idle_push(0);
        s.idle_push(3);
        assert_eq!(s.idle_oldest(), Some(2));
        s.idle_remove(2);
        assert_eq!(s.idle_oldest(), Some(0));
        s.remove(0);
        assert_eq!(s.idle_oldest(), Some(3));
        s.idle_remove(3);
        assert_eq!(s.idle_oldest(), None);
        assert!(!s.is_idle(3));
    }
}
