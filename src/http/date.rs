//! HTTP dates (RFC 9110 section 5.6.7) and the access-log timestamp, without libc.
//!
//! Owns conversion between Unix seconds and the three HTTP date formats, plus the per-second cache
//! of the `Date:` header value. Pure arithmetic on caller buffers: it must never call the C library
//! (no `gmtime_r`, no locale), never allocate, and never panic on any input, including absurd
//! timestamps (they are clamped to years 0000..=9999 so the fixed-width formats always fit).

/// 0000-01-01T00:00:00Z, the earliest instant the fixed-width formats can print.
const MIN_UNIX: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z, the latest instant the fixed-width formats can print.
const MAX_UNIX: i64 = 253_402_300_799;
const SECS_PER_DAY: i64 = 86_400;

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const DAY_NAMES_LONG: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];
const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A broken-down UTC time; fields are in range by construction.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    weekday: usize,
}

/// (year, month 1..=12, day 1..=31) for a count of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 for a valid civil date (inverse of `civil_from_days`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn civil(unix: i64) -> Civil {
    let t = unix.clamp(MIN_UNIX, MAX_UNIX);
    let days = t.div_euclid(SECS_PER_DAY);
    let secs = t.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: secs / 3_600,
        minute: secs / 60 % 60,
        second: secs % 60,
        // 1970-01-01 was a Thursday (index 4).
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

/// Writes `value` as exactly `out.len()` decimal digits, zero-padded (higher digits dropped).
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn month_name(month: u32) -> &'static [u8; 3] {
    MONTH_NAMES
        .get((month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or(b"Jan")
}

/// Formats `unix` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for `Date:` and
/// `Last-Modified:`. Called by the response-head writer (through [`DateCache`]) and static files.
/// Out-of-range timestamps are clamped to years 0000..=9999.
pub fn format_http_date(unix: i64, out: &mut [u8; 29]) {
    let c = civil(unix);
    out.copy_from_slice(b"Thu, 01 Jan 1970 00:00:00 GMT");
    out[0..3].copy_from_slice(DAY_NAMES.get(c.weekday).copied().unwrap_or(b"Thu"));
    put_digits(&mut out[5..7], u64::from(c.day));
    out[8..11].copy_from_slice(month_name(c.month));
    put_digits(&mut out[12..16], c.year as u64);
    put_digits(&mut out[17..19], u64::from(c.hour));
    put_digits(&mut out[20..22], u64::from(c.minute));
    put_digits(&mut out[23..25], u64::from(c.second));
}

/// Formats `unix` as nginx's `$time_local` in UTC (`25/Nov/2026:20:20:22 +0000`) for the access
/// log. Out-of-range timestamps are clamped to years 0000..=9999.
pub fn format_access_time(unix: i64, out: &mut [u8; 26]) {
    let c = civil(unix);
    out.copy_from_slice(b"01/Jan/1970:00:00:00 +0000");
    put_digits(&mut out[0..2], u64::from(c.day));
    out[3..6].copy_from_slice(month_name(c.month));
    put_digits(&mut out[7..11], c.year as u64);
    put_digits(&mut out[12..14], u64::from(c.hour));
    put_digits(&mut out[15..17], u64::from(c.minute));
    put_digits(&mut out[18..20], u64::from(c.second));
}

/// Parses exactly `n` ASCII digits.
fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

fn month_from_name(s: &[u8]) -> Option<u32> {
    MONTH_NAMES
        .iter()
        .position(|m| &m[..] == s)
        .map(|i| i as u32 + 1)
}

/// Parses `HH:MM:SS` (a leap second `60` is read as `59`).
fn parse_time(s: &[u8]) -> Option<(u32, u32, u32)> {
    if s.len() != 8 || s.get(2) != Some(&b':') || s.get(5) != Some(&b':') {
        return None;
    }
    let h = digits(s.get(0..2)?)?;
    let m = digits(s.get(3..5)?)?;
    let sec = digits(s.get(6..8)?)?;
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some((h, m, sec.min(59)))
}

fn to_unix(year: i64, month: u32, day: u32, (h, m, s): (u32, u32, u32)) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * SECS_PER_DAY + i64::from(h * 3_600 + m * 60 + s))
}

fn is_day_name(s: &[u8]) -> bool {
    DAY_NAMES.iter().any(|d| &d[..] == s)
}

/// The byte at `i` of `s` (none past its end).
fn at(s: &[u8], i: usize) -> Option<u8> {
    s.get(i).copied()
}

/// True when `s` has `b` at each index of `at_each`.
fn has_at(s: &[u8], b: u8, at_each: &[usize]) -> bool {
    at_each.iter().all(|&i| at(s, i) == Some(b))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(s: &[u8]) -> Option<i64> {
    if s.len() != 29 || !is_day_name(s.get(0..3)?) {
        return None;
    }
    if s.get(3..5)? != b", " || !has_at(s, b' ', &[7, 11, 16]) {
        return None;
    }
    if s.get(25..29)? != b" GMT" {
        return None;
    }
    let day = digits(s.get(5..7)?)?;
    let month = month_from_name(s.get(8..11)?)?;
    let year = i64::from(digits(s.get(12..16)?)?);
    to_unix(year, month, day, parse_time(s.get(17..25)?)?)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`; two-digit years 70..=99 are 19xx, 00..=69 are 20xx.
fn parse_rfc850(s: &[u8]) -> Option<i64> {
    let comma = s.iter().position(|&b| b == b',')?;
    let name = s.get(..comma)?;
    if !DAY_NAMES_LONG.contains(&name) {
        return None;
    }
    let rest = s.get(comma + 1..)?;
    // " 06-Nov-94 08:49:37 GMT"
    if rest.len() != 23 || at(rest, 0) != Some(b' ') || !has_at(rest, b'-', &[3, 7]) {
        return None;
    }
    if at(rest, 10) != Some(b' ') || rest.get(19..23)? != b" GMT" {
        return None;
    }
    let day = digits(rest.get(1..3)?)?;
    let month = month_from_name(rest.get(4..7)?)?;
    let yy = i64::from(digits(rest.get(8..10)?)?);
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    to_unix(year, month, day, parse_time(rest.get(11..19)?)?)
}

/// `Sun Nov  6 08:49:37 1994` (the day is space- or zero-padded).
fn parse_asctime(s: &[u8]) -> Option<i64> {
    if s.len() != 24 || !is_day_name(s.get(0..3)?) {
        return None;
    }
    if !has_at(s, b' ', &[3, 7, 10, 19]) {
        return None;
    }
    let month = month_from_name(s.get(4..7)?)?;
    let day = match (at(s, 8)?, at(s, 9)?) {
        (b' ', d) => digits(&[d])?,
        (a, b) => digits(&[a, b])?,
    };
    let year = i64::from(digits(s.get(20..24)?)?);
    to_unix(year, month, day, parse_time(s.get(11..19)?)?)
}

/// Parses an HTTP-date in any of the three RFC 9110 formats (IMF-fixdate, RFC 850, asctime) into
/// Unix seconds. Called for `If-Modified-Since` and `If-Range`. `None` for anything else, including
/// impossible dates (Feb 30), surrounding whitespace, or lowercase names. The day name is checked
/// for spelling, not against the date.
pub fn parse_http_date(s: &[u8]) -> Option<i64> {
    match s.get(3) {
        Some(b',') => parse_imf_fixdate(s),
        Some(b' ') => parse_asctime(s),
        Some(_) => parse_rfc850(s),
        None => None,
    }
}

/// The `Date:` header value, re-formatted only when the second changes.
///
/// One per event loop; the response-head writer calls [`DateCache::get`] with the loop's clock.
#[derive(Clone, Debug)]
pub struct DateCache {
    unix: i64,
    text: [u8; 29],
}

impl DateCache {
    /// An empty cache; the first `get` formats.
    pub fn new() -> Self {
        DateCache {
            unix: i64::MIN,
            text: [0; 29],
        }
    }

    /// The IMF-fixdate for `unix`, formatting only if it differs from the last call's second.
    pub fn get(&mut self, unix: i64) -> &[u8; 29] {
        if unix != self.unix || self.unix == i64::MIN {
            format_http_date(unix, &mut self.text);
            self.unix = unix;
        }
        &self.text
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(unix: i64) -> String {
        let mut out = [0u8; 29];
        format_http_date(unix, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn access(unix: i64) -> String {
        let mut out = [0u8; 26];
        format_access_time(unix, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn formats_the_rfc_example() {
        assert_eq!(http(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn formats_the_epoch_and_the_second_before_it() {
        assert_eq!(http(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
    }

    #[test]
    fn formats_leap_days_and_century_rules() {
        assert_eq!(http(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(http(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(http(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
    }

    #[test]
    fn absurd_timestamps_are_clamped_not_panicking() {
        assert_eq!(http(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(http(i64::MIN), "Sat, 01 Jan 0000 00:00:00 GMT");
        assert_eq!(access(i64::MAX), "31/Dec/9999:23:59:59 +0000");
        assert_eq!(access(i64::MIN), "01/Jan/0000:00:00:00 +0000");
    }

    #[test]
    fn formats_the_access_log_time_like_nginx() {
        assert_eq!(access(1_795_638_022), "25/Nov/2026:20:20:22 +0000");
        assert_eq!(access(0), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn parses_all_three_formats_to_the_same_instant() {
        let t = Some(784_111_777);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), t);
        assert_eq!(parse_http_date(b"Sun Nov 06 08:49:37 1994"), t);
    }

    #[test]
    fn rfc850_two_digit_years_pivot_at_70() {
        assert_eq!(
            parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT"),
            Some(0)
        );
        assert_eq!(
            parse_http_date(b"Tuesday, 29-Feb-00 00:00:00 GMT"),
            Some(951_782_400)
        );
        assert_eq!(
            parse_http_date(b"Wednesday, 31-Dec-69 23:59:59 GMT"),
            Some(3_155_759_999)
        );
    }

    #[test]
    fn format_then_parse_round_trips() {
        let mut t: i64 = -2_000_000_000;
        while t < 8_000_000_000 {
            let mut out = [0u8; 29];
            format_http_date(t, &mut out);
            assert_eq!(parse_http_date(&out), Some(t), "{}", http(t));
            t += 7_777_777 + 13;
        }
    }

    #[test]
    fn civil_conversion_is_consistent_for_every_day_of_four_centuries() {
        for days in -146_097 * 2..146_097 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rejects_impossible_dates_and_times() {
        for s in [
            &b"Sun, 30 Feb 1994 08:49:37 GMT"[..],
            b"Sun, 29 Feb 1900 08:49:37 GMT",
            b"Sun, 00 Nov 1994 08:49:37 GMT",
            b"Sun, 31 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:00:00 GMT",
            b"Sun, 06 Nov 1994 08:60:00 GMT",
            b"Sun, 06 Nov 1994 08:49:61 GMT",
            b"Sun, 06 Xyz 1994 08:49:37 GMT",
            b"Sun Nov 32 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(s), None, "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn accepts_a_leap_second_as_the_59th() {
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:60 GMT"),
            Some(784_111_799)
        );
    }

    #[test]
    fn rejects_malformed_dates() {
        for s in [
            &b""[..],
            b"Sun",
            b"Sun,",
            b"sun, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Nov 1994 08:49:37 GMT ",
            b" Sun, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 94 08:49:37 GMT",
            b"Sun, 06 Nov 1994 8:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37GMT",
            b"Sun, +6 Nov 1994 08:49:37 GMT",
            b"Xyz, 06 Nov 1994 08:49:37 GMT",
            b"Sunday, 06-Nov-1994 08:49:37 GMT",
            b"Sunday, 06 Nov 94 08:49:37 GMT",
            b"Funday, 06-Nov-94 08:49:37 GMT",
            b"Sunday 06-Nov-94 08:49:37 GMT",
            b",",
            b"Sun Nov  6 08:49:37 94",
            b"Sun Nov  6 08:49:37 1994 ",
            b"Sun Nov 6  08:49:37 1994",
            b"Sun Nov  x 08:49:37 1994",
            b"1994-11-06T08:49:37Z",
            b"784111777",
        ] {
            assert_eq!(parse_http_date(s), None, "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_bytes() {
        let base = b"Sunday, 06-Nov-94 08:49:37 GMT";
        for len in 0..=base.len() {
            let _ = parse_http_date(&base[..len]);
        }
        let mut s = *b"Sun, 06 Nov 1994 08:49:37 GMT";
        for i in 0..s.len() {
            for b in [0u8, b' ', b',', b'9', 0xff, b':'] {
                let old = s[i];
                s[i] = b;
                let _ = parse_http_date(&s);
                s[i] = old;
            }
        }
    }

    #[test]
    fn date_cache_reformats_only_when_the_second_changes() {
        let mut cache = DateCache::new();
        assert_eq!(cache.get(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(cache.get(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(cache.get(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(cache.get(784_111_778), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(cache.get(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn date_cache_handles_the_sentinel_second() {
        let mut cache = DateCache::default();
        assert_eq!(cache.get(i64::MIN), b"Sat, 01 Jan 0000 00:00:00 GMT");
    }
}
