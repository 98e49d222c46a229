//! nginx's `open_file_cache`, bounded and preallocated: open descriptors, metadata and
//! (for files of at most `SMALL` bytes) the content of recently served static files, and
//! which paths do not exist. A hit costs no open/fstat/close; a small file's body is copied
//! into the response so head and body leave in one `send`. Entries are revalidated with one
//! `stat(2)` once they are older than `open_file_cache_valid`, so a changed file is seen
//! within that time.
//!
//! Owns: the entries, one descriptor holder per entry ([`SharedFile`], made at start), and the
//! content arena. Never: grows or allocates after start (inserting evicts by a clock hand; a
//! response shares its entry's holder by reference count), caches anything reached with
//! `disable_symlinks = on` (those opens are walks), or closes or replaces a descriptor a
//! response is still sending from (an entry whose holder is shared is not reused).

use std::ffi::CStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Largest file whose content is kept.
pub const SMALL: usize = 4096;
/// Entries per set: a path may live only in the WAYS slots of its set, so a lookup compares
/// at most WAYS paths.
const WAYS: usize = 4;
/// Longest path kept.
const MAX_PATH: usize = 256;

/// The descriptor of one cache entry, shared with the responses sending from it. Each entry's
/// holder is made once, at start; the cache puts a new descriptor in only while it holds the
/// only reference (`Rc::get_mut`), so the file under a response never changes or closes.
#[derive(Debug, Default)]
pub struct SharedFile(Option<File>);

impl SharedFile {
    /// The descriptor (always there while a response holds the reference).
    pub fn file(&self) -> Option<&File> {
        self.0.as_ref()
    }
}

/// What the cache knows about one path.
#[derive(Clone)]
pub enum Cached<'a> {
    /// The path does not exist (ENOENT/ENOTDIR).
    Missing,
    /// A regular file: shared descriptor, metadata, and its bytes when small.
    File {
        file: Rc<SharedFile>,
        size: u64,
        mtime: i64,
        content: Option<&'a [u8]>,
        /// The entry's slot, for `content` later without a second lookup.
        slot: usize,
    },
}

struct Entry {
    path: heapless::Vec<u8, MAX_PATH>,
    checked: Instant,
    /// The path is missing (no descriptor).
    missing: bool,
    ino: u64,
    dev: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    has_content: bool,
    referenced: bool,
}

/// The cache: `capacity` entries with their descriptor holders, and `capacity × SMALL` bytes of
/// content arena (zeroed, so only what is used costs memory).
pub struct FileCache {
    entries: Vec<Option<Entry>>,
    files: Vec<Rc<SharedFile>>,
    arena: Vec<u8>,
    valid: Duration,
    hand: usize,
}

/// `a == b` without branching per byte (the compiler compares 16 bytes at a time); slice
/// `==` calls the C library's `memcmp`, a byte-at-a-time loop in musl, on every hit.
fn same_path(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(true, |same, (x, y)| same & (x == y))
}

impl FileCache {
    pub fn new(capacity: usize, valid: Duration) -> FileCache {
        let capacity = capacity.div_ceil(WAYS) * WAYS;
        let mut entries = Vec::with_capacity(capacity);
        entries.resize_with(capacity, || None);
        let mut files = Vec::with_capacity(capacity);
        files.resize_with(capacity, || Rc::new(SharedFile::default()));
        FileCache {
            entries,
            files,
            arena: vec![0u8; capacity * SMALL],
            valid,
            hand: 0,
        }
    }

    /// The first slot of `path`'s set (FNV-1a hash).
    fn set_of(&self, path: &[u8]) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in path {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let sets = self.entries.len() / WAYS;
        (h % sets.max(1) as u64) as usize * WAYS
    }

    pub fn enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    fn entry(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i)?.as_ref()
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let set = self.set_of(path);
        (set..set + WAYS).find(|&i| self.entry(i).is_some_and(|e| same_path(&e.path, path)))
    }

    /// The arena bytes of slot `i`'s small file.
    fn bytes(&self, i: usize, size: u64) -> Option<&[u8]> {
        self.arena.get(i * SMALL..i * SMALL + size as usize)
    }

    /// Forgets entry `i`, closing its descriptor unless a response still sends from it.
    fn forget(&mut self, i: usize) {
        if let Some(e) = self.entries.get_mut(i) {
            *e = None;
        }
        if let Some(holder) = self.files.get_mut(i).and_then(Rc::get_mut) {
            holder.0 = None;
        }
    }

    /// The cached state of `path`, revalidated with `stat` when older than the validity.
    /// `None`: not cached (the caller opens it and may `insert`).
    pub fn lookup(&mut self, path: &CStr, now: Instant) -> Option<Cached<'_>> {
        let bytes = path.to_bytes();
        let i = self.find(bytes)?;
        let stale = self
            .entry(i)
            .is_some_and(|e| now.duration_since(e.checked) >= self.valid);
        if stale && !self.revalidate(i, path, now) {
            self.forget(i);
            return None;
        }
        if let Some(e) = self.entries.get_mut(i).and_then(Option::as_mut) {
            e.referenced = true;
        }
        let e = self.entry(i)?;
        if e.missing {
            return Some(Cached::Missing);
        }
        let file = Rc::clone(self.files.get(i)?);
        let content = if e.has_content {
            self.bytes(i, e.size)
        } else {
            None
        };
        Some(Cached::File {
            file,
            size: e.size,
            mtime: e.mtime,
            content,
            slot: i,
        })
    }

    /// The bytes slot `slot` keeps for `file`: `None` once the slot holds something else.
    /// Responses copy from here straight into their output, so no copy of a small file's
    /// bytes travels through the call chain.
    pub fn content(&self, slot: usize, file: &Rc<SharedFile>) -> Option<&[u8]> {
        let e = self.entry(slot)?;
        let same = self.files.get(slot).is_some_and(|f| Rc::ptr_eq(f, file));
        if same && e.has_content && !e.missing {
            self.bytes(slot, e.size)
        } else {
            None
        }
    }

    /// True when the path is still what entry `i` says.
    fn revalidate(&mut self, i: usize, path: &CStr, now: Instant) -> bool {
        let Some(e) = self.entries.get_mut(i).and_then(Option::as_mut) else {
            return false;
        };
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
        let same = match (std::fs::metadata(path), e.missing) {
            (Ok(md), false) => {
                md.is_file()
                    && md.ino() == e.ino
                    && md.dev() == e.dev
                    && md.size() == e.size
                    && md.mtime() == e.mtime
                    && md.mtime_nsec() == e.mtime_nsec
            }
            (Err(err), true) => {
                matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
            }
            _ => false,
        };
        if same {
            e.checked = now;
        }
        same
    }

    /// Remembers that `path` does not exist.
    pub fn insert_missing(&mut self, path: &CStr, now: Instant) {
        let Some(i) = self.slot(path.to_bytes()) else {
            return;
        };
        self.forget(i);
        if let Some(e) = self.entries.get_mut(i) {
            *e = Some(Entry {
                path: heapless::Vec::from_slice(path.to_bytes()).unwrap_or_default(),
                checked: now,
                missing: true,
                ino: 0,
                dev: 0,
                size: 0,
                mtime: 0,
                mtime_nsec: 0,
                has_content: false,
                referenced: true,
            });
        }
    }

    /// Keeps an opened regular file (and its bytes when small) and returns its shared holder;
    /// `Err(file)` gives the file back when no entry of its set is free to take it (each is
    /// in use by a response): the caller sends from it uncached.
    pub fn insert(
        &mut self,
        path: &CStr,
        file: File,
        md: &std::fs::Metadata,
        now: Instant,
    ) -> Result<Rc<SharedFile>, File> {
        let Some(i) = self.slot(path.to_bytes()) else {
            return Err(file);
        };
        let size = md.size();
        let mut has_content = false;
        if size as usize <= SMALL {
            if let Some(dst) = self.arena.get_mut(i * SMALL..i * SMALL + size as usize) {
                has_content = file.read_exact_at(dst, 0).is_ok();
            }
        }
        let Some(slot) = self.files.get_mut(i) else {
            return Err(file);
        };
        let Some(holder) = Rc::get_mut(slot) else {
            return Err(file);
        };
        holder.0 = Some(file);
        let shared = Rc::clone(slot);
        if let Some(e) = self.entries.get_mut(i) {
            *e = Some(Entry {
                path: heapless::Vec::from_slice(path.to_bytes()).unwrap_or_default(),
                checked: now,
                missing: false,
                ino: md.ino(),
                dev: md.dev(),
                size,
                mtime: md.mtime(),
                mtime_nsec: md.mtime_nsec(),
                has_content,
                referenced: true,
            });
        }
        Ok(shared)
    }

    /// A response still sends from entry `i`'s descriptor.
    fn in_use(&self, i: usize) -> bool {
        self.files.get(i).is_some_and(|f| Rc::strong_count(f) > 1)
    }

    /// A slot for `path` in its set: its own, a free one, or a second-chance victim — never
    /// one a response still sends from.
    fn slot(&mut self, path: &[u8]) -> Option<usize> {
        if self.entries.is_empty() || path.len() > MAX_PATH {
            return None;
        }
        if let Some(i) = self.find(path) {
            return Some(i);
        }
        let set = self.set_of(path);
        if let Some(i) = (set..set + WAYS).find(|&i| self.entry(i).is_none() && !self.in_use(i)) {
            return Some(i);
        }
        for _ in 0..2 * WAYS {
            let i = set + self.hand % WAYS;
            self.hand = self.hand.wrapping_add(1);
            if self.in_use(i) {
                continue;
            }
            match self.entries.get_mut(i).and_then(Option::as_mut) {
                Some(e) if e.referenced => e.referenced = false,
                _ => return Some(i),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("uwgate-fc-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn a_small_file_is_served_from_memory_until_it_changes() {
        let d = tmp("small");
        let p = d.join("a.txt");
        std::fs::write(&p, "hello").unwrap();
        let c = CString::new(p.to_str().unwrap()).unwrap();
        let mut fc = FileCache::new(4, Duration::ZERO);
        let t0 = Instant::now();
        assert!(fc.lookup(&c, t0).is_none());
        let f = File::open(&p).unwrap();
        let md = f.metadata().unwrap();
        assert!(fc.insert(&c, f, &md, t0).is_ok());
        match fc.lookup(&c, t0) {
            Some(Cached::File { content, size, .. }) => {
                assert_eq!(size, 5);
                assert_eq!(content, Some(&b"hello"[..]));
            }
            _ => panic!("expected a cached file"),
        }
        // valid = 0: every lookup revalidates; a rewrite with another size is noticed.
        std::fs::write(&p, "hello, world").unwrap();
        assert!(fc.lookup(&c, t0 + Duration::from_millis(1)).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_path_is_remembered_until_it_appears() {
        let d = tmp("missing");
        let p = d.join("a.css.gz");
        let c = CString::new(p.to_str().unwrap()).unwrap();
        let mut fc = FileCache::new(2, Duration::ZERO);
        let t0 = Instant::now();
        fc.insert_missing(&c, t0);
        assert!(matches!(fc.lookup(&c, t0), Some(Cached::Missing)));
        std::fs::write(&p, "x").unwrap();
        assert!(fc.lookup(&c, t0).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_cache_evicts_instead_of_growing() {
        let d = tmp("evict");
        let mut fc = FileCache::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for k in 0..5 {
            let p = d.join(format!("f{k}"));
            std::fs::write(&p, "x").unwrap();
            let c = CString::new(p.to_str().unwrap()).unwrap();
            let f = File::open(&p).unwrap();
            let md = f.metadata().unwrap();
            let _ = fc.insert(&c, f, &md, t0);
        }
        // Capacity rounds up to whole sets of WAYS; five files still fit in no more.
        assert_eq!(fc.entries.len(), WAYS);
        assert!(fc.entries.iter().filter(|e| e.is_some()).count() <= WAYS);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_entry_a_response_sends_from_is_not_reused() {
        let d = tmp("pinned");
        let mut fc = FileCache::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        let mut held = Vec::new();
        for k in 0..WAYS + 1 {
            let p = d.join(format!("f{k}"));
            std::fs::write(&p, format!("file {k}")).unwrap();
            let c = CString::new(p.to_str().unwrap()).unwrap();
            let f = File::open(&p).unwrap();
            let md = f.metadata().unwrap();
            match fc.insert(&c, f, &md, t0) {
                // Every entry of the set is held by a response: the last file stays uncached.
                Ok(shared) => held.push(shared),
                Err(f) => {
                    assert_eq!(k, WAYS);
                    let mut text = String::new();
                    use std::io::Read;
                    (&f).read_to_string(&mut text).unwrap();
                    assert_eq!(text, format!("file {k}"));
                }
            }
        }
        // Each held descriptor is still its own file.
        for (k, shared) in held.iter().enumerate() {
            let mut buf = [0u8; 16];
            let n = shared.file().unwrap().read_at(&mut buf, 0).unwrap();
            assert_eq!(&buf[..n], format!("file {k}").as_bytes());
        }
        drop(held);
        let p = d.join("after");
        std::fs::write(&p, "x").unwrap();
        let c = CString::new(p.to_str().unwrap()).unwrap();
        let f = File::open(&p).unwrap();
        let md = f.metadata().unwrap();
        assert!(
            fc.insert(&c, f, &md, t0).is_ok(),
            "released entries are reused"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
