//! nginx's `open_file_cache`, bounded and preallocated: open descriptors, metadata and
//! (for files of at most `SMALL` bytes) the content of recently served static files, and
//! which paths do not exist. A hit costs no open/fstat/close; a small file's body is copied
//! into the response so head and body leave in one `send`. Entries are revalidated with one
//! `stat(2)` once they are older than `open_file_cache_valid`, so a changed file is seen
//! within that time.
//!
//! Owns: the entries and the content arena. Never: grows after start (inserting evicts by a
//! clock hand), caches anything reached with `disable_symlinks = on` (those opens are walks),
//! or closes a descriptor still being sent from (responses hold an `Rc`).

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

/// What the cache knows about one path.
#[derive(Clone)]
pub enum Cached<'a> {
    /// The path does not exist (ENOENT/ENOTDIR).
    Missing,
    /// A regular file: shared descriptor, metadata, and its bytes when small.
    File {
        file: Rc<File>,
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
    /// None: the path is missing.
    file: Option<Rc<File>>,
    ino: u64,
    dev: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    has_content: bool,
    referenced: bool,
}

/// The cache: `capacity` entries, and `capacity × SMALL` bytes of content arena (zeroed, so
/// only what is used costs memory).
pub struct FileCache {
    entries: Vec<Option<Entry>>,
    arena: Vec<u8>,
    valid: Duration,
    hand: usize,
}

impl FileCache {
    pub fn new(capacity: usize, valid: Duration) -> FileCache {
        let capacity = capacity.div_ceil(WAYS) * WAYS;
        let mut entries = Vec::with_capacity(capacity);
        entries.resize_with(capacity, || None);
        FileCache {
            entries,
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

    fn find(&self, path: &[u8]) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let set = self.set_of(path);
        (set..set + WAYS).find(|&i| {
            self.entries[i]
                .as_ref()
                .is_some_and(|e| e.path.as_slice() == path)
        })
    }

    /// The cached state of `path`, revalidated with `stat` when older than the validity.
    /// `None`: not cached (the caller opens it and may `insert`).
    pub fn lookup(&mut self, path: &CStr, now: Instant) -> Option<Cached<'_>> {
        let bytes = path.to_bytes();
        let i = self.find(bytes)?;
        let stale = self.entries[i]
            .as_ref()
            .is_some_and(|e| now.duration_since(e.checked) >= self.valid);
        if stale && !self.revalidate(i, path, now) {
            self.entries[i] = None;
            return None;
        }
        let e = self.entries[i].as_mut()?;
        e.referenced = true;
        let Some(file) = &e.file else {
            return Some(Cached::Missing);
        };
        let content = e
            .has_content
            .then(|| &self.arena[i * SMALL..i * SMALL + e.size as usize]);
        Some(Cached::File {
            file: Rc::clone(file),
            size: e.size,
            mtime: e.mtime,
            content,
            slot: i,
        })
    }

    /// The bytes slot `slot` keeps for `file`: `None` once the slot holds something else.
    /// Responses copy from here straight into their output, so no copy of a small file's
    /// bytes travels through the call chain.
    pub fn content(&self, slot: usize, file: &Rc<File>) -> Option<&[u8]> {
        let e = self.entries.get(slot)?.as_ref()?;
        let same = e.file.as_ref().is_some_and(|f| Rc::ptr_eq(f, file));
        (same && e.has_content).then(|| &self.arena[slot * SMALL..slot * SMALL + e.size as usize])
    }

    /// True when the path is still what entry `i` says.
    fn revalidate(&mut self, i: usize, path: &CStr, now: Instant) -> bool {
        let Some(e) = self.entries[i].as_mut() else {
            return false;
        };
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
        let same = match (std::fs::metadata(path), &e.file) {
            (Ok(md), Some(_)) => {
                md.is_file()
                    && md.ino() == e.ino
                    && md.dev() == e.dev
                    && md.size() == e.size
                    && md.mtime() == e.mtime
                    && md.mtime_nsec() == e.mtime_nsec
            }
            (Err(err), None) => {
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
        if let Some(i) = self.slot(path.to_bytes()) {
            self.entries[i] = Some(Entry {
                path: heapless::Vec::from_slice(path.to_bytes()).unwrap_or_default(),
                checked: now,
                file: None,
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

    /// Keeps an opened regular file (and its bytes when small); returns the shared descriptor.
    pub fn insert(
        &mut self,
        path: &CStr,
        file: File,
        md: &std::fs::Metadata,
        now: Instant,
    ) -> Rc<File> {
        let file = Rc::new(file);
        let Some(i) = self.slot(path.to_bytes()) else {
            return file;
        };
        let size = md.size();
        let mut has_content = false;
        if size as usize <= SMALL {
            let dst = &mut self.arena[i * SMALL..i * SMALL + size as usize];
            has_content = file.read_exact_at(dst, 0).is_ok();
        }
        self.entries[i] = Some(Entry {
            path: heapless::Vec::from_slice(path.to_bytes()).unwrap_or_default(),
            checked: now,
            file: Some(Rc::clone(&file)),
            ino: md.ino(),
            dev: md.dev(),
            size,
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            has_content,
            referenced: true,
        });
        file
    }

    /// A slot for `path` in its set: its own, a free one, or a second-chance victim.
    fn slot(&mut self, path: &[u8]) -> Option<usize> {
        if self.entries.is_empty() || path.len() > MAX_PATH {
            return None;
        }
        if let Some(i) = self.find(path) {
            return Some(i);
        }
        let set = self.set_of(path);
        if let Some(i) = (set..set + WAYS).find(|&i| self.entries[i].is_none()) {
            return Some(i);
        }
        for _ in 0..2 * WAYS {
            let i = set + self.hand % WAYS;
            self.hand = self.hand.wrapping_add(1);
            match self.entries[i].as_mut() {
                Some(e) if e.referenced => e.referenced = false,
                _ => return Some(i),
            }
        }
        Some(set)
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
        fc.insert(&c, f, &md, t0);
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
            fc.insert(&c, f, &md, t0);
        }
        // Capacity rounds up to whole sets of WAYS; five files still fit in no more.
        assert_eq!(fc.entries.len(), WAYS);
        assert!(fc.entries.iter().filter(|e| e.is_some()).count() <= WAYS);
        let _ = std::fs::remove_dir_all(&d);
    }
}
