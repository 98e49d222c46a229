//! What follows a static response head: nothing, bytes already in the output region, a file
//! range by sendfile, or several ranges as multipart/byteranges.
//!
//! Owns the body descriptions and the multipart framing (part heads and the closing boundary,
//! formatted deterministically so the Content-Length computed up front holds). Never: touches a
//! socket (the connection writes bodies) or allocates beyond what it is given.

use super::cache::SharedFile;
use crate::http::response::HeadWriter;
use std::cell::RefCell;
use std::fs::File;
use std::rc::Rc;

/// A file being sent: owned by this response, or shared with the open-file cache (which does
/// not reuse the entry while this reference lives).
pub enum FileRef {
    Owned(File),
    Shared(Rc<SharedFile>),
}

impl FileRef {
    /// The descriptor (a shared one is always there while referenced).
    pub fn get(&self) -> Option<&File> {
        match self {
            FileRef::Owned(f) => Some(f),
            FileRef::Shared(f) => f.file(),
        }
    }
}

/// What follows the response head.
pub enum Body {
    None,
    /// This many body bytes were written after the head in the output region.
    Inline(usize),
    /// `[pos, end)` of a file, by sendfile.
    File {
        file: FileRef,
        pos: u64,
        end: u64,
    },
    /// Several ranges as multipart/byteranges, in a state of the preallocated store.
    Multipart(MultipartBody),
}

/// A multipart state of the store ([`Multiparts`]), shared with the response using it.
type MultipartState = Rc<RefCell<Option<Multipart>>>;

/// The multipart/byteranges states, made at start: a multi-range response takes a free one
/// (no response holds it) instead of allocating, and serves the whole file when none is free
/// (a server may ignore `Range`, RFC 9110 14.2).
pub struct Multiparts {
    states: Vec<MultipartState>,
}

impl Multiparts {
    /// `count` states (each a few hundred bytes).
    pub fn new(count: usize) -> Multiparts {
        let mut states = Vec::with_capacity(count);
        states.resize_with(count, MultipartState::default);
        Multiparts { states }
    }

    /// A free state (no response holds it), reserved for the caller; `None` when every
    /// state is in use.
    pub fn vacant(&self) -> Option<Vacant> {
        self.states
            .iter()
            .find(|s| Rc::strong_count(s) == 1)
            .map(|s| Vacant(Rc::clone(s)))
    }
}

/// A free multipart state, reserved: [`Vacant::fill`] makes it a response's body.
pub struct Vacant(MultipartState);

impl Vacant {
    /// Puts `mp` in the state.
    pub fn fill(self, mp: Multipart) -> MultipartBody {
        if let Ok(mut state) = self.0.try_borrow_mut() {
            *state = Some(mp);
        }
        MultipartBody(self.0)
    }
}

/// A response's hold on a multipart state; dropping it (the response is done or its
/// connection closed) empties the state, letting go of the file, so it can be reused.
pub struct MultipartBody(MultipartState);

impl MultipartBody {
    /// Runs `f` on the state (`None` if it is already borrowed, which the single-threaded loop
    /// never does).
    pub fn with<R>(&self, f: impl FnOnce(&mut Multipart) -> R) -> Option<R> {
        let mut state = self.0.try_borrow_mut().ok()?;
        state.as_mut().map(f)
    }
}

impl Drop for MultipartBody {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.try_borrow_mut() {
            *state = None;
        }
    }
}

/// A multipart/byteranges body: part heads are formatted into the output region between
/// the file ranges, deterministically, so the Content-Length computed up front holds.
pub struct Multipart {
    file: FileRef,
    ranges: heapless::Vec<(u64, u64), 16>,
    mime: &'static str,
    charset: bool,
    size: u64,
    boundary: u64,
    /// Next range to start; `ranges.len()` means the closing boundary is next.
    next: usize,
    /// The file range being sent, `[pos, end)`.
    pos: u64,
    end: u64,
    finished: bool,
}

impl Multipart {
    pub fn new(
        file: FileRef,
        ranges: heapless::Vec<(u64, u64), 16>,
        mime: &'static str,
        charset: bool,
        size: u64,
        seed: u64,
    ) -> Multipart {
        Multipart {
            file,
            ranges,
            mime,
            charset,
            size,
            boundary: seed.wrapping_mul(6364136223846793005) % 100_000_000_000,
            next: 0,
            pos: 0,
            end: 0,
            finished: false,
        }
    }

    /// The boundary string (a zero-padded number, as nginx uses).
    pub fn write_boundary(&self, w: &mut HeadWriter<'_>) {
        let mut digits = [b'0'; 11];
        let mut n = self.boundary;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        w.put(&digits);
    }

    fn part_head(&self, i: usize, w: &mut HeadWriter<'_>) {
        let Some(&(first, last)) = self.ranges.get(i) else {
            return;
        };
        w.put(b"\r\n--");
        self.write_boundary(w);
        w.put(b"\r\n");
        super::content_type(w, self.mime, self.charset);
        w.put(b"Content-Range: bytes ")
            .num(first)
            .put(b"-")
            .num(last)
            .put(b"/")
            .num(self.size)
            .put(b"\r\n\r\n");
    }

    fn closing(&self, w: &mut HeadWriter<'_>) {
        w.put(b"\r\n--");
        self.write_boundary(w);
        w.put(b"--\r\n");
    }

    /// The rest of the range being sent, `(file, pos, end)`; the caller advances `pos` as it
    /// sends.
    pub fn range_mut(&mut self) -> (Option<&File>, &mut u64, u64) {
        (self.file.get(), &mut self.pos, self.end)
    }

    /// `true` once the closing boundary has been formatted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Formats the next part head (or, after the last range, the closing boundary) into `w`
    /// and makes its range the one to send. Called when the current range is out.
    pub fn advance(&mut self, w: &mut HeadWriter<'_>) {
        match self.ranges.get(self.next).copied() {
            Some((first, last)) => {
                self.part_head(self.next, w);
                self.pos = first;
                self.end = last + 1;
                self.next += 1;
            }
            None => {
                self.closing(w);
                self.finished = true;
            }
        }
    }

    /// File bytes of every range (an upper bound of what sendfile still has to send).
    pub fn file_bytes(&self) -> u64 {
        self.size
    }

    /// Total body length: every part head, every range, the closing boundary.
    pub fn content_length(&self) -> u64 {
        let mut scratch = [0u8; 512];
        let mut total = 0u64;
        for (i, (first, last)) in self.ranges.iter().enumerate() {
            let mut w = HeadWriter::new(&mut scratch);
            self.part_head(i, &mut w);
            total += w.len() as u64 + (last - first + 1);
        }
        let mut w = HeadWriter::new(&mut scratch);
        self.closing(&mut w);
        total + w.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileRef {
        FileRef::Owned(File::open("/dev/null").unwrap())
    }

    fn ranges() -> heapless::Vec<(u64, u64), 16> {
        heapless::Vec::from_slice(&[(0, 0), (2, 3)]).unwrap()
    }

    #[test]
    fn a_multipart_state_is_reused_once_its_response_lets_go() {
        let store = Multiparts::new(1);
        let body = store.vacant().unwrap().fill(Multipart::new(
            file(),
            ranges(),
            "text/plain",
            true,
            10,
            7,
        ));
        assert!(store.vacant().is_none(), "the only state is held");
        assert!(body.with(|m| !m.is_finished()).unwrap());
        drop(body);
        let again = store.vacant().expect("released on drop");
        let body = again.fill(Multipart::new(file(), ranges(), "text/plain", true, 10, 7));
        assert_eq!(body.with(|m| m.file_bytes()), Some(10));
    }

    #[test]
    fn part_heads_and_the_closing_boundary_add_up_to_the_content_length() {
        let mut mp = Multipart::new(file(), ranges(), "text/plain", true, 10, 7);
        let total = mp.content_length();
        let mut out = [0u8; 512];
        let mut sent = 0u64;
        loop {
            let (_, pos, end) = mp.range_mut();
            sent += end - *pos;
            *pos = end;
            if mp.is_finished() {
                break;
            }
            let mut w = HeadWriter::new(&mut out);
            mp.advance(&mut w);
            sent += w.len() as u64;
        }
        assert_eq!(sent, total);
    }
}
