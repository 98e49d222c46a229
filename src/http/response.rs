//! Writes response heads and small bodies into a caller's fixed buffer.
//!
//! `HeadWriter` appends bytes and numbers into a `&mut [u8]`; on overflow it records the
//! fact instead of panicking, and the caller answers 500. Error pages are nginx-shaped.

use super::Status;

/// Appends into a fixed slice; never allocates, never panics.
pub struct HeadWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> HeadWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> HeadWriter<'a> {
        HeadWriter {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.len)
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
        self
    }

    /// Appends a decimal number.
    pub fn num(&mut self, n: u64) -> &mut Self {
        self.digits::<10>(n)
    }

    /// Appends a lowercase hexadecimal number.
    pub fn hex(&mut self, n: u64) -> &mut Self {
        self.digits::<16>(n)
    }

    /// Appends `n` in `BASE` (10 or 16), lowercase. The base is a constant so the division
    /// compiles to a multiply (10) or a shift (16), not a `div` per digit.
    fn digits<const BASE: u64>(&mut self, mut n: u64) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        for slot in tmp.iter_mut().rev() {
            *slot = DIGITS.get((n % BASE) as usize).copied().unwrap_or(b'0');
            i -= 1;
            n /= BASE;
            if n == 0 {
                break;
            }
        }
        self.put(tmp.get(i..).unwrap_or(&[]))
    }

    /// Appends `Name: value\r\n`.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        self.put(name).put(b": ").put(value).put(b"\r\n")
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when something did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }
}

/// The common first lines of every response: status line, Server, Date.
pub fn start(w: &mut HeadWriter<'_>, status: Status, server_tokens: bool, date: &[u8]) {
    w.put(b"HTTP/1.1 ")
        .num(status.code() as u64)
        .put(b" ")
        .put(status.reason().as_bytes())
        .put(b"\r\n");
    w.put(b"Server: ")
        .put(server_name(server_tokens))
        .put(b"\r\n");
    w.header(b"Date", date);
}

/// `uwgate/VERSION`, or `uwgate` with `server_tokens = off`.
pub fn server_name(server_tokens: bool) -> &'static [u8] {
    if server_tokens {
        concat!("uwgate/", crate::version!()).as_bytes()
    } else {
        b"uwgate"
    }
}

/// Length of the small HTML page sent with an error status.
pub fn error_page_len(status: Status, server_tokens: bool) -> usize {
    let mut scratch = [0u8; 512];
    let mut w = HeadWriter::new(&mut scratch);
    error_page(&mut w, status, server_tokens);
    w.len()
}

/// The small HTML page nginx sends with an error status.
pub fn error_page(w: &mut HeadWriter<'_>, status: Status, server_tokens: bool) {
    let code = status.code() as u64;
    let reason = status.reason().as_bytes();
    w.put(b"<html>\r\n<head><title>")
        .num(code)
        .put(b" ")
        .put(reason)
        .put(b"</title></head>\r\n<body>\r\n<center><h1>")
        .num(code)
        .put(b" ")
        .put(reason)
        .put(b"</h1></center>\r\n<hr><center>")
        .put(server_name(server_tokens))
        .put(b"</center>\r\n</body>\r\n</html>\r\n");
}

/// True when a response with this status carries no body by definition (RFC 9110 6.4.1).
pub fn bodiless(status: Status) -> bool {
    matches!(status.code(), 100..=199 | 204 | 304)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal_and_hex() {
        let mut b = [0u8; 64];
        let mut w = HeadWriter::new(&mut b);
        w.num(0)
            .put(b" ")
            .num(18446744073709551615)
            .put(b" ")
            .hex(0x5f3a);
        let n = w.len();
        assert_eq!(&b[..n], b"0 18446744073709551615 5f3a");
    }

    #[test]
    fn overflow_is_recorded_not_panicked() {
        let mut b = [0u8; 4];
        let mut w = HeadWriter::new(&mut b);
        w.put(b"abc").put(b"def");
        assert!(w.overflowed());
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn error_page_length_matches_the_page() {
        let mut b = [0u8; 512];
        let mut w = HeadWriter::new(&mut b);
        error_page(&mut w, Status::NotFound, true);
        let n = w.len();
        assert_eq!(n, error_page_len(Status::NotFound, true));
        let s = std::str::from_utf8(&b[..n]).unwrap();
        assert!(s.contains("<title>404 Not Found</title>"));
    }
}
