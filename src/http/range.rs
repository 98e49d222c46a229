//! `Range` and `If-Range` evaluation for static files (RFC 9110 sections 14.2 and 13.1.5).
//!
//! Owns deciding, from the header text and the file size, whether a GET is answered whole (200),
//! in parts (206) or refused (416). Follows nginx's range filter byte for byte: a value that does
//! not start with `bytes=` (any case) is ignored; after it, a range set nginx cannot parse is
//! refused with 416, not ignored; more satisfiable ranges than `max_ranges` (at most 16), or ranges
//! adding up to more than the file (no overlapping-range amplification), serve the whole file.
//! Must never allocate, never panic on overflow, and never return a range that is not inside
//! `0..size`.

use heapless::Vec;

use super::date::parse_http_date;

/// Most ranges served in one multipart response; more → whole file (a location's `max_ranges`
/// can only lower it).
pub const MAX_RANGES: usize = 16;

/// Largest position or length nginx accepts (its `off_t`); beyond it → 416.
const MAX_OFFSET: u64 = i64::MAX as u64;

/// What to do with a `Range` header.
// Built once per range request on the stack; boxing the 16 ranges would allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Not a `bytes=` range, ranges disabled, too many ranges, or ranges larger than the file
    /// together: serve the whole file with 200.
    Ignore,
    /// Not a valid range set, or no range overlaps the file: 416 with
    /// `Content-Range: bytes */size`.
    Unsatisfiable,
    /// Inclusive `(first, last)` byte positions, in request order, each within `0..size`.
    Ranges(Vec<(u64, u64), MAX_RANGES>),
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(a), Some(b)) => s.get(a..=b).unwrap_or(&[]),
        _ => &[],
    }
}

/// A cursor over the range set; `None` past the end (where nginx reads the NUL ending its
/// copy). A NUL byte inside the value is a byte like any other, not the end: nginx never sees
/// one (it refuses the header line), so after `bytes=` it can only be a syntax error.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek();
        self.at += 1;
        b
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// At the end of the value or of one range (`,` or nothing left).
    fn at_separator(&self) -> bool {
        matches!(self.peek(), Some(b',') | None)
    }

    fn digit(&self) -> Option<u8> {
        self.peek().filter(u8::is_ascii_digit)
    }

    /// 1*DIGIT at the cursor, at most [`MAX_OFFSET`]; `None` when absent or too large.
    fn number(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        let mut digits = 0;
        while let Some(d) = self.digit() {
            self.at += 1;
            digits += 1;
            n = n
                .checked_mul(10)?
                .checked_add(u64::from(d - b'0'))
                .filter(|&n| n <= MAX_OFFSET)?;
        }
        (digits > 0).then_some(n)
    }
}

/// Evaluates a `Range` header value against a file of `size` bytes, allowing at most
/// `max_ranges` ranges (a location's `max_ranges`; 0 disables ranges, more than [`MAX_RANGES`]
/// counts as [`MAX_RANGES`]). Called by static files for a GET whose `If-Range` (if any) matched.
///
/// nginx's grammar: `bytes=` (any case, and something after it), then a comma list (no empty
/// elements) of `FIRST-LAST`, `FIRST-` or `-SUFFIX`, spaces (not tabs) allowed around the numbers
/// and the dash. Anything else after `bytes=` → `Unsatisfiable`; so is a set of which no range
/// starts inside the file (`start > end` ranges and `-0` are dropped). A range starting at 0 in
/// an empty file → `Ignore` (nginx serves the empty file).
pub fn parse_range(header: &[u8], size: u64, max_ranges: usize) -> RangeSpec {
    let set = match header.get(..6) {
        Some(unit) if unit.eq_ignore_ascii_case(b"bytes=") && header.len() > 6 => {
            header.get(6..).unwrap_or(&[])
        }
        _ => return RangeSpec::Ignore,
    };
    if max_ranges == 0 {
        return RangeSpec::Ignore;
    }
    let allowed = max_ranges.min(MAX_RANGES);
    let mut ranges: Vec<(u64, u64), MAX_RANGES> = Vec::new();
    let mut covered: u64 = 0;
    let mut c = Cursor { bytes: set, at: 0 };
    loop {
        // 1. One range as [start, end), the end clamped to the file.
        c.skip_spaces();
        let (start, end) = if c.peek() == Some(b'-') {
            c.bump();
            let Some(suffix) = c.number() else {
                return RangeSpec::Unsatisfiable;
            };
            (size.saturating_sub(suffix), size)
        } else {
            let Some(start) = c.number() else {
                return RangeSpec::Unsatisfiable;
            };
            c.skip_spaces();
            if c.bump() != Some(b'-') {
                return RangeSpec::Unsatisfiable;
            }
            c.skip_spaces();
            if c.at_separator() {
                (start, size)
            } else {
                let Some(last) = c.number() else {
                    return RangeSpec::Unsatisfiable;
                };
                (start, last.saturating_add(1).min(size))
            }
        };
        c.skip_spaces();
        if !c.at_separator() {
            return RangeSpec::Unsatisfiable;
        }
        // 2. Keep it if it overlaps the file; a range starting at 0 that cannot (an empty
        //    file) means the whole (empty) file.
        if start < end {
            covered = match covered.checked_add(end - start) {
                Some(total) if total <= MAX_OFFSET => total,
                _ => return RangeSpec::Unsatisfiable,
            };
            if ranges.len() == allowed || ranges.push((start, end - 1)).is_err() {
                return RangeSpec::Ignore;
            }
        } else if start == 0 {
            return RangeSpec::Ignore;
        }
        if c.bump() != Some(b',') {
            break;
        }
    }
    if ranges.is_empty() {
        return RangeSpec::Unsatisfiable;
    }
    if covered > size {
        return RangeSpec::Ignore;
    }
    RangeSpec::Ranges(ranges)
}

/// `true` if an `If-Range` value still describes the file, so `Range` applies; `false` → 200.
///
/// An entity-tag must equal `etag` byte for byte under strong comparison (a weak tag on either
/// side never matches); otherwise the value must be an HTTP-date equal to `last_modified`.
pub fn if_range_matches(if_range: &[u8], etag: &[u8], last_modified: i64) -> bool {
    let value = trim_ows(if_range);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let strong = |tag: &[u8]| tag.len() >= 2 && tag.starts_with(b"\"") && tag.ends_with(b"\"");
        return strong(value) && strong(etag) && value == etag;
    }
    parse_http_date(value) == Some(last_modified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[(u64, u64)]) -> RangeSpec {
        RangeSpec::Ranges(Vec::from_slice(list).unwrap())
    }

    fn parse(header: &[u8], size: u64) -> RangeSpec {
        parse_range(header, size, MAX_RANGES)
    }

    #[test]
    fn first_last_range_is_inclusive() {
        assert_eq!(parse(b"bytes=0-499", 1000), ranges(&[(0, 499)]));
        assert_eq!(parse(b"bytes=0-0", 1000), ranges(&[(0, 0)]));
        assert_eq!(parse(b"bytes=999-999", 1000), ranges(&[(999, 999)]));
    }

    #[test]
    fn open_ended_range_runs_to_the_end() {
        assert_eq!(parse(b"bytes=500-", 1000), ranges(&[(500, 999)]));
        assert_eq!(parse(b"bytes=0-", 1), ranges(&[(0, 0)]));
    }

    #[test]
    fn last_position_is_clamped_to_the_file() {
        assert_eq!(parse(b"bytes=900-5000", 1000), ranges(&[(900, 999)]));
        assert_eq!(parse(b"bytes=0-9223372036854775807", 10), ranges(&[(0, 9)]));
    }

    #[test]
    fn suffix_range_takes_the_last_bytes() {
        assert_eq!(parse(b"bytes=-500", 1000), ranges(&[(500, 999)]));
        assert_eq!(parse(b"bytes=-5000", 1000), ranges(&[(0, 999)]));
        assert_eq!(parse(b"bytes=-1", 1000), ranges(&[(999, 999)]));
    }

    #[test]
    fn suffix_of_zero_is_unsatisfiable() {
        assert_eq!(parse(b"bytes=-0", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse(b"bytes=-0,0-1", 1000), ranges(&[(0, 1)]));
        assert_eq!(parse(b"bytes=0-0,-0", 20), ranges(&[(0, 0)]));
    }

    #[test]
    fn lists_keep_request_order_and_allow_spaces() {
        assert_eq!(parse(b"bytes=0-0,-1", 1000), ranges(&[(0, 0), (999, 999)]));
        assert_eq!(
            parse(b"bytes=10-19 , 0 - 9 ,  20-", 30),
            ranges(&[(10, 19), (0, 9), (20, 29)])
        );
        assert_eq!(parse(b"bytes=  0-1", 30), ranges(&[(0, 1)]));
        assert_eq!(parse(b"bytes=0-1, 2-3", 30), ranges(&[(0, 1), (2, 3)]));
    }

    #[test]
    fn unit_is_case_insensitive() {
        assert_eq!(parse(b"BYTES=0-1", 10), ranges(&[(0, 1)]));
        assert_eq!(parse(b"Bytes=0-1", 10), ranges(&[(0, 1)]));
    }

    #[test]
    fn other_units_and_an_empty_set_are_ignored() {
        for h in [
            &b""[..],
            b"bytes",
            b"bytes=",
            b"bytes =0-1",
            b"items=0-1",
            b"bits=0-1",
            b"0-1",
        ] {
            assert_eq!(
                parse(h, 1000),
                RangeSpec::Ignore,
                "{}",
                String::from_utf8_lossy(h)
            );
        }
    }

    #[test]
    fn syntax_errors_after_bytes_are_416() {
        for h in [
            &b"bytes=a-10"[..],
            b"bytes=0-a",
            b"bytes=10",
            b"bytes=0-1 2-3",
            b"bytes= ",
            b"bytes=,",
            b"bytes=,0-1",
            b"bytes=0-1,",
            b"bytes=0-1,,2-3",
            b"bytes=0-1,\t2-3",
            b"bytes=-",
            b"bytes=- 5",
            b"bytes=abc",
            b"bytes=0-1-2",
            b"bytes=--1",
            b"bytes=+1-2",
            b"bytes=0x1-2",
            b"bytes= 0-1;x",
            b"bytes=99999999999999999999-",
            b"bytes=-99999999999999999999",
            b"bytes=9223372036854775808-",
        ] {
            assert_eq!(
                parse(h, 1000),
                RangeSpec::Unsatisfiable,
                "{}",
                String::from_utf8_lossy(h)
            );
        }
    }

    #[test]
    fn a_nul_byte_is_not_the_end_of_the_range_set() {
        // Found by fuzzing: the cursor read a NUL as the end of the value, so the bytes after it
        // were never looked at and `bytes=-2\0...` served the last 2 bytes instead of 416.
        for h in [
            &b"bytes=-2\0\0x"[..],
            b"bytes=0-\0",
            b"bytes=0-1\0,2-3",
            b"bytes=0-1,\0",
            b"bytes=\0",
            b"bytes=0\0-1",
        ] {
            assert_eq!(
                parse(h, 1000),
                RangeSpec::Unsatisfiable,
                "{:?}",
                String::from_utf8_lossy(h)
            );
        }
        assert_eq!(parse(b"bytes=0-", 1000), ranges(&[(0, 999)]));
    }

    #[test]
    fn start_after_end_is_dropped() {
        assert_eq!(parse(b"bytes=500-499", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse(b"bytes=0-1,5-4", 1000), ranges(&[(0, 1)]));
    }

    #[test]
    fn ranges_starting_past_the_end_are_dropped() {
        assert_eq!(parse(b"bytes=1000-", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse(b"bytes=1000-2000", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse(b"bytes=2000-3000,0-1", 1000), ranges(&[(0, 1)]));
        assert_eq!(parse(b"bytes=1000-,5000-", 1000), RangeSpec::Unsatisfiable);
    }

    #[test]
    fn empty_file_is_served_whole_for_a_range_from_zero() {
        for h in [
            &b"bytes=0-"[..],
            b"bytes=0-0",
            b"bytes=-1",
            b"bytes=0-1,2-3",
        ] {
            assert_eq!(
                parse(h, 0),
                RangeSpec::Ignore,
                "{}",
                String::from_utf8_lossy(h)
            );
        }
        assert_eq!(parse(b"bytes=1-2", 0), RangeSpec::Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 0), RangeSpec::Ignore);
        assert_eq!(parse(b"bytes=x", 0), RangeSpec::Unsatisfiable);
    }

    #[test]
    fn more_ranges_than_allowed_serve_the_whole_file() {
        let sixteen =
            b"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15";
        match parse(sixteen, 100) {
            RangeSpec::Ranges(r) => assert_eq!(r.len(), 16),
            other => panic!("{other:?}"),
        }
        let seventeen = b"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,16-16";
        assert_eq!(parse(seventeen, 100), RangeSpec::Ignore);
        assert_eq!(parse_range(seventeen, 100, usize::MAX), RangeSpec::Ignore);
        // Unsatisfiable ranges do not count (nginx counts the ranges it keeps).
        let with_unsatisfiable = b"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,900-";
        assert!(matches!(parse(with_unsatisfiable, 100), RangeSpec::Ranges(r) if r.len() == 16));
    }

    #[test]
    fn max_ranges_lowers_the_limit_and_zero_disables_ranges() {
        assert_eq!(parse_range(b"bytes=0-1", 100, 1), ranges(&[(0, 1)]));
        assert_eq!(parse_range(b"bytes=0-1,3-4", 100, 1), RangeSpec::Ignore);
        assert_eq!(
            parse_range(b"bytes=0-1,3-4", 100, 2),
            ranges(&[(0, 1), (3, 4)])
        );
        assert_eq!(parse_range(b"bytes=0-1", 100, 0), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=a", 100, 0), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=a", 100, 1), RangeSpec::Unsatisfiable);
    }

    #[test]
    fn overlapping_ranges_larger_than_the_file_are_ignored() {
        assert_eq!(parse(b"bytes=0-,0-", 100), RangeSpec::Ignore);
        assert_eq!(parse(b"bytes=0-60,40-99", 100), RangeSpec::Ignore);
        assert_eq!(
            parse(b"bytes=0-49,40-79", 100),
            ranges(&[(0, 49), (40, 79)])
        );
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let max = i64::MAX as u64;
        assert_eq!(parse(b"bytes=-1", max), ranges(&[(max - 1, max - 1)]));
        assert_eq!(parse(b"bytes=0-", max), ranges(&[(0, max - 1)]));
        assert_eq!(parse(b"bytes=0-,1-", max), RangeSpec::Unsatisfiable);
        assert_eq!(
            parse(b"bytes=-1", u64::MAX),
            ranges(&[(u64::MAX - 1, u64::MAX - 1)])
        );
    }

    #[test]
    fn returned_ranges_are_always_inside_the_file() {
        let specs = [
            "0-0", "5-", "-3", "9-20", "-0", "10-", "3-4", "-20", "0-", " 1 - 2 ",
        ];
        for size in 0..12u64 {
            for a in specs {
                for b in specs {
                    let header = format!("bytes={a},{b}");
                    if let RangeSpec::Ranges(r) = parse(header.as_bytes(), size) {
                        assert!(!r.is_empty());
                        for (first, last) in r {
                            assert!(first <= last && last < size, "{header} {size}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn never_panics_on_mutated_values() {
        let seed = b"bytes=0-1, 5 - 9,-3,10-";
        for i in 0..seed.len() {
            for b in [0u8, b' ', b'\t', b',', b'-', b'9', b'a', 0xff] {
                let mut h = seed.to_vec();
                h[i] = b;
                for size in [0, 1, 10, u64::MAX] {
                    let _ = parse(&h, size);
                    let _ = parse(&h[..i], size);
                }
            }
        }
    }

    #[test]
    fn if_range_etag_needs_a_strong_exact_match() {
        assert!(if_range_matches(b"\"abc-123\"", b"\"abc-123\"", 0));
        assert!(if_range_matches(b" \"abc-123\" ", b"\"abc-123\"", 0));
        assert!(!if_range_matches(b"\"abc-124\"", b"\"abc-123\"", 0));
        assert!(!if_range_matches(b"W/\"abc-123\"", b"W/\"abc-123\"", 0));
        assert!(!if_range_matches(b"W/\"abc-123\"", b"\"abc-123\"", 0));
        assert!(!if_range_matches(b"\"abc-123\"", b"W/\"abc-123\"", 0));
        assert!(!if_range_matches(b"\"", b"\"", 0));
        assert!(!if_range_matches(b"\"abc", b"\"abc", 0));
    }

    #[test]
    fn if_range_date_must_equal_last_modified() {
        let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(if_range_matches(date, b"\"x\"", 784_111_777));
        assert!(!if_range_matches(date, b"\"x\"", 784_111_778));
        assert!(!if_range_matches(date, b"\"x\"", 784_111_776));
        assert!(if_range_matches(
            b"Sun Nov  6 08:49:37 1994",
            b"\"x\"",
            784_111_777
        ));
    }

    #[test]
    fn if_range_garbage_never_matches() {
        assert!(!if_range_matches(b"", b"\"x\"", 0));
        assert!(!if_range_matches(b"yesterday", b"\"x\"", 0));
        assert!(!if_range_matches(b"*", b"\"x\"", 0));
    }
}
