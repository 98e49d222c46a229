//! A process's recent output: a fixed ring of the last `output_buffer_size` bytes it wrote to
//! one stream, so `uwgate ctl tail` works without syslog access (even when syslog is remote).
//!
//! Owns one buffer, allocated when the process entry is made and never grown, and a count of
//! every byte ever written, which names positions: a reader keeps the position it has read up
//! to and asks for what came after (`slices`), learning how much the ring overwrote meanwhile.
//! Must never allocate after `new`, block, or hand out bytes it no longer holds.

/// The last bytes of one output stream.
pub struct Ring {
    buf: Box<[u8]>,
    /// Bytes ever pushed; the next byte goes to `buf[total % len]`.
    total: u64,
}

impl Ring {
    /// A ring holding the last `capacity` bytes (0: keeps nothing, `tail` shows nothing).
    pub fn new(capacity: usize) -> Ring {
        Ring {
            buf: vec![0; capacity].into_boxed_slice(),
            total: 0,
        }
    }

    fn cap(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Position after the newest byte: bytes ever written.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Position of the oldest byte still held.
    pub fn oldest(&self) -> u64 {
        self.total.saturating_sub(self.cap())
    }

    /// Appends `bytes`, overwriting the oldest when full.
    pub fn push(&mut self, bytes: &[u8]) {
        let cap = self.buf.len();
        if cap == 0 {
            self.total = self.total.saturating_add(bytes.len() as u64);
            return;
        }
        // Only the last `cap` bytes of a large write can survive it.
        let skip = bytes.len().saturating_sub(cap);
        self.total = self.total.saturating_add(skip as u64);
        let mut rest = bytes.get(skip..).unwrap_or_default();
        while !rest.is_empty() {
            let at = (self.total % cap as u64) as usize;
            let room = cap.saturating_sub(at).min(rest.len());
            let (now, later) = rest.split_at(room);
            if let Some(dst) = self.buf.get_mut(at..at + room) {
                dst.copy_from_slice(now);
            }
            self.total = self.total.saturating_add(room as u64);
            rest = later;
        }
    }

    /// The bytes from position `from` (raised to `oldest()` when the ring overwrote it) up to
    /// `to` (lowered to `total()`), in two slices (the ring may wrap between them).
    pub fn slices(&self, from: u64, to: u64) -> (&[u8], &[u8]) {
        let cap = self.cap();
        let from = from.max(self.oldest());
        let to = to.min(self.total);
        if cap == 0 || from >= to {
            return (&[], &[]);
        }
        let start = (from % cap) as usize;
        let len = (to - from) as usize;
        let first = len.min(self.buf.len().saturating_sub(start));
        let a = self.buf.get(start..start + first).unwrap_or_default();
        let b = self.buf.get(..len - first).unwrap_or_default();
        (a, b)
    }

    /// The position `bytes` before the end (not before the oldest byte held).
    pub fn last_bytes(&self, bytes: u64) -> u64 {
        self.total.saturating_sub(bytes).max(self.oldest())
    }

    /// The position where the last `lines` lines begin (a final line without its newline
    /// counts as one); the oldest byte held when the ring has fewer.
    pub fn last_lines(&self, lines: usize) -> u64 {
        if lines == 0 {
            return self.total;
        }
        let (a, b) = self.slices(self.oldest(), self.total);
        // Walk back from the end; a newline that ends the output ends the last line, it does
        // not start another.
        let mut seen = 0usize;
        let mut pos = self.total;
        let mut first = true;
        for &byte in b.iter().rev().chain(a.iter().rev()) {
            if byte == b'\n' && !first {
                seen += 1;
                if seen == lines {
                    return pos;
                }
            }
            first = false;
            pos = pos.saturating_sub(1);
        }
        self.oldest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Ring, from: u64, to: u64) -> String {
        let (a, b) = r.slices(from, to);
        String::from_utf8([a, b].concat()).unwrap()
    }

    #[test]
    fn keeps_the_last_bytes_across_the_wrap() {
        let mut r = Ring::new(8);
        r.push(b"abcdef");
        assert_eq!(text(&r, 0, u64::MAX), "abcdef");
        r.push(b"ghij");
        assert_eq!(r.total(), 10);
        assert_eq!(r.oldest(), 2);
        assert_eq!(text(&r, 0, u64::MAX), "cdefghij");
        assert_eq!(text(&r, 5, 9), "fghi");
        let (a, b) = r.slices(2, 10);
        assert_eq!(
            (a, b),
            (&b"cdefgh"[..], &b"ij"[..]),
            "two slices around the wrap"
        );
    }

    #[test]
    fn a_write_larger_than_the_ring_keeps_its_end() {
        let mut r = Ring::new(4);
        r.push(b"0123456789");
        assert_eq!(r.total(), 10);
        assert_eq!(text(&r, 0, 10), "6789");
        r.push(b"ab");
        assert_eq!(text(&r, 0, 12), "89ab");
    }

    #[test]
    fn a_reader_behind_the_ring_skips_to_the_oldest_byte() {
        let mut r = Ring::new(4);
        r.push(b"abcd");
        let pos = 1;
        r.push(b"efgh");
        assert_eq!(text(&r, pos, r.total()), "efgh");
        assert_eq!(text(&r, 8, 8), "");
    }

    #[test]
    fn last_bytes_and_last_lines() {
        let mut r = Ring::new(64);
        r.push(b"one\ntwo\nthree\n");
        assert_eq!(text(&r, r.last_bytes(6), u64::MAX), "three\n");
        assert_eq!(text(&r, r.last_bytes(100), u64::MAX), "one\ntwo\nthree\n");
        assert_eq!(text(&r, r.last_lines(1), u64::MAX), "three\n");
        assert_eq!(text(&r, r.last_lines(2), u64::MAX), "two\nthree\n");
        assert_eq!(text(&r, r.last_lines(9), u64::MAX), "one\ntwo\nthree\n");
        assert_eq!(text(&r, r.last_lines(0), u64::MAX), "");
        r.push(b"four");
        assert_eq!(text(&r, r.last_lines(1), u64::MAX), "four");
        assert_eq!(text(&r, r.last_lines(2), u64::MAX), "three\nfour");
    }

    #[test]
    fn a_zero_ring_counts_but_holds_nothing() {
        let mut r = Ring::new(0);
        r.push(b"abc");
        assert_eq!(r.total(), 3);
        assert_eq!(text(&r, 0, 3), "");
        assert_eq!(r.last_lines(3), 3);
    }
}
