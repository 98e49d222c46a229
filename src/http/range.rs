//! `Range` and `If-Range` evaluation for static files (RFC 9110 sections 14.2 and 13.1.5).
//!
//! Owns deciding, from the header text and the file size, whether a GET is answered whole (200),
//! in parts (206) or refused (416). Follows nginx: anything it cannot parse is ignored rather than
//! refused, at most 16 ranges are honoured, and a request whose ranges add up to more than the file
//! is served whole (no overlapping-range amplification). Must never allocate, never panic on
//! overflow, and never return a range that is not inside `0..size`.

use heapless::Vec;

use super::date::parse_http_date;

/// Most ranges served in one multipart response (nginx `max_ranges`); more → whole file.
pub const MAX_RANGES: usize = 16;

/// What to do with a `Range` header.
// Built once per range request on the stack; boxing the 16 ranges would allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Not a valid `bytes=` range set (or too many ranges): serve the whole file with 200.
    Ignore,
    /// Valid, but no range overlaps the file: 416 with `Content-Range: bytes */size`.
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

/// 1*DIGIT as u64; `None` on empty, a non-digit, or overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// One range-spec resolved against `size`: `Err(())` = syntax error, `Ok(None)` = unsatisfiable.
fn resolve(spec: &[u8], size: u64) -> Result<Option<(u64, u64)>, ()> {
    let dash = spec.iter().position(|&b| b == b'-').ok_or(())?;
    let (first, last) = (&spec[..dash], spec.get(dash + 1..).unwrap_or(&[]));
    if first.is_empty() {
        // suffix-range: the last N bytes; `-0` asks for nothing.
        let n = parse_u64(last).ok_or(())?;
        if n == 0 || size == 0 {
            return Ok(None);
        }
        return Ok(Some((size - n.min(size), size - 1)));
    }
    let start = parse_u64(first).ok_or(())?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        let end = parse_u64(last).ok_or(())?;
        if start > end {
            return Err(());
        }
        end
    };
    if start >= size {
        return Ok(None);
    }
    Ok(Some((start, end.min(size - 1))))
}

/// Evaluates a `Range` header value against a file of `size` bytes. Called by static files for a
/// GET whose `If-Range` (if any) matched.
///
/// Accepts `bytes=0-499`, `bytes=500-`, `bytes=-500` and comma lists of them (OWS around commas,
/// empty list elements skipped, unit case-insensitive). `start > end`, a non-`bytes` unit or any
/// other syntax error → `Ignore`; more than 16 ranges, or ranges summing to more than `size` →
/// `Ignore`; no satisfiable range → `Unsatisfiable` (always so for `size == 0`).
pub fn parse_range(header: &[u8], size: u64) -> RangeSpec {
    let set = match header.get(..6) {
        Some(unit) if unit.eq_ignore_ascii_case(b"bytes=") => &header[6..],
        _ => return RangeSpec::Ignore,
    };
    let mut ranges: Vec<(u64, u64), MAX_RANGES> = Vec::new();
    let mut specs = 0usize;
    let mut covered: u64 = 0;
    for element in set.split(|&b| b == b',') {
        let spec = trim_ows(element);
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        if specs > MAX_RANGES {
            return RangeSpec::Ignore;
        }
        match resolve(spec, size) {
            Err(()) => return RangeSpec::Ignore,
            Ok(None) => {}
            Ok(Some((first, last))) => {
                covered = match covered.checked_add(last - first + 1) {
                    Some(total) => total,
                    None => return RangeSpec::Ignore,
                };
                if ranges.push((first, last)).is_err() {
                    return RangeSpec::Ignore;
                }
            }
        }
    }
    if specs == 0 {
        return RangeSpec::Ignore;
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

    #[test]
    fn first_last_range_is_inclusive() {
        assert_eq!(parse_range(b"bytes=0-499", 1000), ranges(&[(0, 499)]));
        assert_eq!(parse_range(b"bytes=0-0", 1000), ranges(&[(0, 0)]));
        assert_eq!(parse_range(b"bytes=999-999", 1000), ranges(&[(999, 999)]));
    }

    #[test]
    fn open_ended_range_runs_to_the_end() {
        assert_eq!(parse_range(b"bytes=500-", 1000), ranges(&[(500, 999)]));
        assert_eq!(parse_range(b"bytes=0-", 1), ranges(&[(0, 0)]));
    }

    #[test]
    fn last_position_is_clamped_to_the_file() {
        assert_eq!(parse_range(b"bytes=900-5000", 1000), ranges(&[(900, 999)]));
        assert_eq!(
            parse_range(b"bytes=0-18446744073709551615", 10),
            ranges(&[(0, 9)])
        );
    }

    #[test]
    fn suffix_range_takes_the_last_bytes() {
        assert_eq!(parse_range(b"bytes=-500", 1000), ranges(&[(500, 999)]));
        assert_eq!(parse_range(b"bytes=-5000", 1000), ranges(&[(0, 999)]));
        assert_eq!(parse_range(b"bytes=-1", 1000), ranges(&[(999, 999)]));
    }

    #[test]
    fn suffix_of_zero_is_unsatisfiable() {
        assert_eq!(parse_range(b"bytes=-0", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0,0-1", 1000), ranges(&[(0, 1)]));
    }

    #[test]
    fn lists_keep_request_order_and_allow_whitespace() {
        assert_eq!(
            parse_range(b"bytes=0-0,-1", 1000),
            ranges(&[(0, 0), (999, 999)])
        );
        assert_eq!(
            parse_range(b"bytes=10-19 ,\t0-9 , 20-", 30),
            ranges(&[(10, 19), (0, 9), (20, 29)])
        );
        assert_eq!(parse_range(b"bytes=,0-1,,", 30), ranges(&[(0, 1)]));
    }

    #[test]
    fn unit_is_case_insensitive() {
        assert_eq!(parse_range(b"BYTES=0-1", 10), ranges(&[(0, 1)]));
        assert_eq!(parse_range(b"Bytes=0-1", 10), ranges(&[(0, 1)]));
    }

    #[test]
    fn start_after_end_is_ignored() {
        assert_eq!(parse_range(b"bytes=500-499", 1000), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=0-1,5-4", 1000), RangeSpec::Ignore);
    }

    #[test]
    fn syntax_errors_are_ignored_not_refused() {
        for h in [
            &b""[..],
            b"bytes",
            b"bytes=",
            b"bytes= ",
            b"bytes=,",
            b"bytes=-",
            b"bytes=abc",
            b"bytes=1",
            b"bytes=0-1-2",
            b"bytes=--1",
            b"bytes=+1-2",
            b"bytes=0x1-2",
            b"bytes=1 -2",
            b"bytes=1- 2",
            b"bytes =0-1",
            b"bytes= 0-1;x",
            b"items=0-1",
            b"bits=0-1",
            b"0-1",
            b"bytes=99999999999999999999-",
            b"bytes=-99999999999999999999",
        ] {
            assert_eq!(
                parse_range(h, 1000),
                RangeSpec::Ignore,
                "{}",
                String::from_utf8_lossy(h)
            );
        }
    }

    #[test]
    fn ranges_starting_past_the_end_are_dropped() {
        assert_eq!(parse_range(b"bytes=1000-", 1000), RangeSpec::Unsatisfiable);
        assert_eq!(
            parse_range(b"bytes=1000-2000", 1000),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(parse_range(b"bytes=2000-3000,0-1", 1000), ranges(&[(0, 1)]));
        assert_eq!(
            parse_range(b"bytes=1000-,5000-", 1000),
            RangeSpec::Unsatisfiable
        );
    }

    #[test]
    fn empty_file_satisfies_no_range() {
        for h in [&b"bytes=0-"[..], b"bytes=0-0", b"bytes=-1", b"bytes=-0"] {
            assert_eq!(parse_range(h, 0), RangeSpec::Unsatisfiable);
        }
        assert_eq!(parse_range(b"bytes=x", 0), RangeSpec::Ignore);
    }

    #[test]
    fn more_than_sixteen_ranges_serve_the_whole_file() {
        let sixteen =
            b"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15";
        match parse_range(sixteen, 100) {
            RangeSpec::Ranges(r) => assert_eq!(r.len(), 16),
            other => panic!("{other:?}"),
        }
        let seventeen = b"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,16-16";
        assert_eq!(parse_range(seventeen, 100), RangeSpec::Ignore);
        let unsatisfiable_count_too = b"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15,900-";
        assert_eq!(parse_range(unsatisfiable_count_too, 100), RangeSpec::Ignore);
    }

    #[test]
    fn overlapping_ranges_larger_than_the_file_are_ignored() {
        assert_eq!(parse_range(b"bytes=0-,0-", 100), RangeSpec::Ignore);
        assert_eq!(parse_range(b"bytes=0-60,40-99", 100), RangeSpec::Ignore);
        assert_eq!(
            parse_range(b"bytes=0-49,40-79", 100),
            ranges(&[(0, 49), (40, 79)])
        );
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        assert_eq!(
            parse_range(b"bytes=-1", u64::MAX),
            ranges(&[(u64::MAX - 1, u64::MAX - 1)])
        );
        assert_eq!(
            parse_range(b"bytes=0-", u64::MAX),
            ranges(&[(0, u64::MAX - 1)])
        );
        assert_eq!(parse_range(b"bytes=0-,1-", u64::MAX), RangeSpec::Ignore);
    }

    #[test]
    fn returned_ranges_are_always_inside_the_file() {
        let specs = ["0-0", "5-", "-3", "9-20", "-0", "10-", "3-4", "-20", "0-"];
        for size in 0..12u64 {
            for a in specs {
                for b in specs {
                    let header = format!("bytes={a},{b}");
                    if let RangeSpec::Ranges(r) = parse_range(header.as_bytes(), size) {
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
