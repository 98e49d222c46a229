//! A spool: an unlinked temporary file under `temp_path` (O_TMPFILE where the kernel has it)
//! that takes bytes at its end and gives them back from its front, for bodies larger than a
//! buffer (a request body on its way to the upstream, a response on its way to the client).
//!
//! Owns the file and its two cursors. Never: allocates (the directory name is the caller's,
//! prepared once), or rewrites bytes a socket may still be sending: once everything written has
//! been read, the file is truncated before it is reused, because sendfile(2) queues the file's
//! page-cache pages on the socket without copying them.

use crate::sys;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The spool of one body; the file is created on the first `append`.
#[derive(Default)]
pub struct Spool {
    file: Option<File>,
    /// Bytes handed out so far (the next one to read is at this offset).
    read: u64,
    /// Bytes written so far (the next one goes at this offset).
    write: u64,
}

impl Spool {
    /// Appends `bytes`, creating the file under `dir` on first use. A spool whose bytes were
    /// all read starts over at offset 0, truncated first (see the module header).
    pub fn append(&mut self, bytes: &[u8], dir: &CStr) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(sys::tmpfile(dir)?);
        }
        let Some(file) = &self.file else {
            return Err(io::Error::other("spool lost"));
        };
        if self.read == self.write && self.write > 0 {
            file.set_len(0)?;
            self.read = 0;
            self.write = 0;
        }
        file.write_all_at(bytes, self.write)?;
        self.write += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written and not yet read.
    pub fn pending(&self) -> u64 {
        self.write - self.read
    }

    /// Bytes written in all (since the last start-over).
    pub fn len(&self) -> u64 {
        self.write
    }

    /// `true` when nothing was ever written (or everything was read and the spool restarted).
    pub fn is_empty(&self) -> bool {
        self.write == 0
    }

    /// The file and the offset of the next unread byte, when there is one.
    pub fn unread(&self) -> Option<(&File, u64)> {
        match &self.file {
            Some(f) if self.read < self.write => Some((f, self.read)),
            _ => None,
        }
    }

    /// The file, for reading at any offset (a request body is re-sent to another peer).
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// `n` bytes from the front were sent on.
    pub fn consume(&mut self, n: u64) {
        self.read = (self.read + n).min(self.write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::ffi::CString {
        std::ffi::CString::new(std::env::temp_dir().as_os_str().as_encoded_bytes()).unwrap()
    }

    #[test]
    fn bytes_come_back_in_order_and_a_drained_spool_starts_over() {
        let mut s = Spool::default();
        assert!(s.unread().is_none() && s.is_empty());
        s.append(b"hello ", &dir()).unwrap();
        s.append(b"world", &dir()).unwrap();
        assert_eq!(s.pending(), 11);
        let (f, off) = s.unread().unwrap();
        let mut got = [0u8; 11];
        f.read_exact_at(&mut got, off).unwrap();
        assert_eq!(&got, b"hello world");
        s.consume(11);
        assert!(s.unread().is_none());
        s.append(b"again", &dir()).unwrap();
        assert_eq!((s.len(), s.pending()), (5, 5));
        assert_eq!(s.file().unwrap().metadata().unwrap().len(), 5);
    }
}
