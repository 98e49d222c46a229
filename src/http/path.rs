//! Request-path canonicalisation, after OpenBSD httpd's `canonicalize_path`.
//!
//! Owns turning the raw origin-form path of a request (no query) into the one canonical,
//! percent-decoded path that routing and static files see. It is the traversal guard of the
//! server: its output never contains a `.` or `..` segment, an empty segment, or a NUL, and always
//! starts with `/`. It must never touch the file system, allocate, or write outside `out`.

use super::Status;

/// Value of an ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical path being built in the caller's buffer.
struct Builder<'a> {
    out: &'a mut [u8],
    /// Bytes of `out` in use; `out[..len]` always starts with `/`.
    len: usize,
    /// Start of the segment being written (just after its leading `/`).
    segment: usize,
}

impl Builder<'_> {
    fn push(&mut self, b: u8) -> Result<(), Status> {
        let slot = self.out.get_mut(self.len).ok_or(Status::UriTooLong)?;
        *slot = b;
        self.len += 1;
        Ok(())
    }

    fn current_segment(&self) -> &[u8] {
        self.out.get(self.segment..self.len).unwrap_or(&[])
    }

    /// Ends the current segment (at a `/` or at the end of input); `true` if the path now ends
    /// with a directory separator.
    fn close_segment(&mut self) -> Result<bool, Status> {
        match self.current_segment() {
            // 2. an empty segment (`//`) is merged into the slash before it.
            b"" => Ok(true),
            // 3. `.` is dropped.
            b"." => {
                self.len = self.segment;
                Ok(true)
            }
            // 3. `..` removes itself and the segment before it; above the root is an attack.
            b".." => {
                if self.segment <= 1 {
                    return Err(Status::BadRequest);
                }
                let parent_end = self.segment - 1; // the '/' that ends the parent segment
                let parent_start = self
                    .out
                    .get(..parent_end)
                    .and_then(|s| s.iter().rposition(|&b| b == b'/'))
                    .ok_or(Status::BadRequest)?
                    + 1;
                self.len = parent_start;
                self.segment = parent_start;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Canonicalises `raw_path` (the origin-form path of the request target, without `?query`) into
/// `out` and returns the length written. Called once per request, before routing.
///
/// Errors: 400 for a path that does not start with `/`, a malformed `%`-escape, an encoded or raw
/// NUL, or a `..` that would climb above the root; 414 when `out` is too small. Segments are
/// written before a later `..` removes them, so size `out` by the raw path: an `out` at least
/// `raw_path.len()` long never gives 414 (decoding only shrinks).
///
/// The output starts with `/`, holds no empty, `.` or `..` segment, and ends with `/` exactly
/// when the decoded input ended with `/`, `/.` or `/..`.
pub fn canonicalize(raw_path: &[u8], out: &mut [u8]) -> Result<usize, Status> {
    if raw_path.first() != Some(&b'/') {
        return Err(Status::BadRequest);
    }
    let mut path = Builder {
        out,
        len: 0,
        segment: 1,
    };
    path.push(b'/')?;

    let mut i = 1;
    while let Some(&raw) = raw_path.get(i) {
        // 1. percent-decode exactly once: `%2e` is '.', `%2f` is '/', `%252e` stays "%2e".
        let b = if raw == b'%' {
            let hi = raw_path.get(i + 1).and_then(|&h| hex_value(h));
            let lo = raw_path.get(i + 2).and_then(|&l| hex_value(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    hi << 4 | lo
                }
                _ => return Err(Status::BadRequest),
            }
        } else {
            i += 1;
            raw
        };
        match b {
            0 => return Err(Status::BadRequest),
            b'/' => {
                // 2 and 3: close the segment; unless it vanished, write the separator.
                if !path.close_segment()? {
                    path.push(b'/')?;
                }
                path.segment = path.len;
            }
            // Anything else, including `\` and bytes >= 0x80 (`%c0%ae`), is an ordinary byte.
            _ => path.push(b)?,
        }
    }
    // 4. the last segment: `/a/.` and `/a/b/..` end in a slash like `/a/` does.
    path.close_segment()?;
    Ok(path.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &[u8]) -> Result<Vec<u8>, Status> {
        let mut out = [0u8; 256];
        let n = canonicalize(raw, &mut out)?;
        Ok(out[..n].to_vec())
    }

    fn ok(raw: &str, want: &[u8]) {
        assert_eq!(
            canon(raw.as_bytes()),
            Ok(want.to_vec()),
            "{raw} -> {}",
            String::from_utf8_lossy(want)
        );
    }

    fn bad(raw: &str) {
        assert_eq!(canon(raw.as_bytes()), Err(Status::BadRequest), "{raw}");
    }

    #[test]
    fn plain_paths_pass_unchanged() {
        ok("/", b"/");
        ok("/index.html", b"/index.html");
        ok("/static/css/base.css", b"/static/css/base.css");
        ok("/static/", b"/static/");
        ok("/a-b_c~d!$&'()*+,;=:@", b"/a-b_c~d!$&'()*+,;=:@");
    }

    #[test]
    fn input_not_starting_with_slash_is_rejected() {
        bad("");
        bad("index.html");
        bad("*");
        bad("http://example.com/");
        bad("%2findex.html");
    }

    #[test]
    fn percent_escapes_are_decoded_once() {
        ok("/a%20b", b"/a b");
        ok("/%41%42%43", b"/ABC");
        ok("/%e2%82%ac", "/€".as_bytes());
        ok("/%E2%82%AC", "/€".as_bytes());
        ok("/a+b", b"/a+b");
        ok("/%25", b"/%");
        ok("/%3F", b"/?");
    }

    #[test]
    fn invalid_percent_escapes_are_rejected() {
        bad("/%");
        bad("/%2");
        bad("/a%zz");
        bad("/%g0");
        bad("/%0g");
        bad("/%%41");
        bad("/%-1");
        bad("/% 1");
    }

    #[test]
    fn encoded_or_raw_nul_is_rejected() {
        bad("/%00");
        bad("/index.html%00.jpg");
        assert_eq!(canon(b"/a\0b"), Err(Status::BadRequest));
    }

    #[test]
    fn duplicate_slashes_are_merged() {
        ok("//etc//passwd", b"/etc/passwd");
        ok("///", b"/");
        ok("/a///b////", b"/a/b/");
    }

    #[test]
    fn dot_segments_are_removed() {
        ok("/./././", b"/");
        ok("/a/./b", b"/a/b");
        ok("/a/.", b"/a/");
        ok("/.", b"/");
        ok("/a/b/../c", b"/a/c");
        ok("/a/b/..", b"/a/");
        ok("/a/b/../", b"/a/");
        ok("/a/b/../../", b"/");
        ok("/a/b/c/../../d/./e/../f", b"/a/d/f");
        ok("/a//..//b", b"/b");
    }

    #[test]
    fn dot_dot_above_root_is_rejected() {
        bad("/..");
        bad("/../");
        bad("/../etc/passwd");
        bad("/static/../../etc/passwd");
        bad("/a/b/../../..");
        bad("/a/../../");
        bad("/./../");
        bad("//..//");
    }

    #[test]
    fn encoded_dot_dot_is_still_dot_dot() {
        bad("/%2e%2e/");
        bad("/%2E%2E/");
        bad("/%2e%2e%2f");
        bad("/%2e%2e%2fetc%2fpasswd");
        bad("/.%2e/");
        bad("/%2e./");
        bad("/..%2f");
        bad("/static/%2e%2e/%2e%2e/etc/passwd");
        ok("/static/%2e%2e/x", b"/x");
        ok("/a/%2e/b", b"/a/b");
    }

    #[test]
    fn encoded_slash_acts_as_a_separator() {
        ok("/a%2fb", b"/a/b");
        ok("/a%2F%2Fb", b"/a/b");
        ok("/a/b%2f..%2f..%2fc", b"/c");
    }

    #[test]
    fn double_encoding_is_decoded_only_once() {
        ok("/%252e%252e/", b"/%2e%2e/");
        ok("/%252e%252e%252f", b"/%2e%2e%2f");
        ok("/%2525", b"/%25");
    }

    #[test]
    fn backslash_is_an_ordinary_byte() {
        ok("/..\\", b"/..\\");
        ok("/..\\..\\etc\\passwd", b"/..\\..\\etc\\passwd");
        ok("/%5c..%5c", b"/\\..\\");
    }

    #[test]
    fn overlong_utf8_dots_are_ordinary_bytes() {
        ok("/static/%c0%ae%c0%ae/", b"/static/\xc0\xae\xc0\xae/");
        ok("/%c0%af", b"/\xc0\xaf");
        ok("/%e0%80%ae%e0%80%ae/", b"/\xe0\x80\xae\xe0\x80\xae/");
    }

    #[test]
    fn segments_that_merely_contain_dots_are_kept() {
        ok("/...", b"/...");
        ok("/.../", b"/.../");
        ok("/.hidden", b"/.hidden");
        ok("/..hidden", b"/..hidden");
        ok("/a..", b"/a..");
        ok("/a/.b/..c/", b"/a/.b/..c/");
    }

    #[test]
    fn trailing_slash_follows_the_decoded_input() {
        ok("/dir", b"/dir");
        ok("/dir/", b"/dir/");
        ok("/dir%2f", b"/dir/");
        ok("/dir/.", b"/dir/");
        ok("/dir/sub/..", b"/dir/");
        ok("/dir/%2e", b"/dir/");
    }

    #[test]
    fn output_overflow_is_uri_too_long() {
        let mut out = [0u8; 4];
        assert_eq!(canonicalize(b"/abc", &mut out), Ok(4));
        assert_eq!(canonicalize(b"/abcd", &mut out), Err(Status::UriTooLong));
        assert_eq!(canonicalize(b"/", &mut []), Err(Status::UriTooLong));
        // Decoding shrinks, so an escaped path fits when its decoded form does.
        assert_eq!(canonicalize(b"/%41%42%43", &mut out), Ok(4));
        assert_eq!(&out, b"/ABC");
        // Segments are written before `..` removes them: the peak length must fit.
        assert_eq!(
            canonicalize(b"/a/b/../c", &mut out),
            Err(Status::UriTooLong)
        );
        let mut raw_sized = [0u8; 9];
        assert_eq!(canonicalize(b"/a/b/../c", &mut raw_sized), Ok(4));
    }

    #[test]
    fn output_never_contains_dot_segments_for_any_short_input() {
        // Exhaustive over every path of up to 6 tokens drawn from a hostile alphabet.
        let alphabet: &[&[u8]] = &[b"/", b".", b"%2e", b"%2f", b"a", b"%00", b"%", b"\\"];
        let mut stack: Vec<(Vec<u8>, usize)> = vec![(b"/".to_vec(), 0)];
        while let Some((p, depth)) = stack.pop() {
            let mut out = [0u8; 64];
            if let Ok(n) = canonicalize(&p, &mut out) {
                let c = &out[..n];
                assert_eq!(c.first(), Some(&b'/'));
                assert!(!c.contains(&0));
                for seg in c[1..].split(|&b| b == b'/') {
                    assert!(
                        seg != b"." && seg != b"..",
                        "{:?}",
                        String::from_utf8_lossy(&p)
                    );
                }
                assert!(!c.windows(2).any(|w| w == b"//"));
                assert!(n <= p.len());
            }
            if depth < 6 {
                for a in alphabet {
                    let mut q = p.clone();
                    q.extend_from_slice(a);
                    stack.push((q, depth + 1));
                }
            }
        }
    }
}
