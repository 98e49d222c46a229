//! A small JSON reader for `uwgate ctl` (the client): the answers of the control socket.
//!
//! Owns parsing into an owned [`Value`]. Client side only: it allocates, and it is never on the
//! loop's path. Never panics on any input (depth-limited, errors as `None`).

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A number: its value when it is a whole number from 0 to 1.8e19 (the control socket
    /// writes only such counters, pids and times), else `None`. Read without floating point,
    /// whose parser would add 16 KB to the binary for this one field type.
    Num(Option<u64>),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

const NULL: Value = Value::Null;

impl Value {
    /// `obj[key]`, or `null`.
    pub fn get(&self, key: &str) -> &Value {
        match self {
            Value::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string, or "".
    pub fn str(&self) -> &str {
        self.as_str().unwrap_or("")
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Num(n) => *n,
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements of an array (none for anything else).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Arr(items) => items,
            _ => &[],
        }
    }

    pub fn is_null(&self) -> bool {
        *self == Value::Null
    }
}

/// Parses one JSON document (trailing whitespace allowed).
pub fn parse(text: &str) -> Option<Value> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.pos == p.bytes.len()).then_some(v)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.bytes.get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > 32 {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::Str),
            b't' => self.eat(b"true").then_some(Value::Bool(true)),
            b'f' => self.eat(b"false").then_some(Value::Bool(false)),
            b'n' => self.eat(b"null").then_some(Value::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut fields = Vec::new();
        self.ws();
        if self.eat(b"}") {
            return Some(Value::Obj(fields));
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            if !self.eat(b":") {
                return None;
            }
            fields.push((key, self.value(depth + 1)?));
            self.ws();
            if self.eat(b"}") {
                return Some(Value::Obj(fields));
            }
            if !self.eat(b",") {
                return None;
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b"]") {
            return Some(Value::Arr(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat(b"]") {
                return Some(Value::Arr(items));
            }
            if !self.eat(b",") {
                return None;
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b"\"") {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.bytes.get(self.pos..self.pos + 4)?;
                            let code =
                                u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            self.pos += 4;
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(b),
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        number(self.bytes.get(start..self.pos)?).map(Value::Num)
    }
}

/// Below this, a whole number is a `u64` (the bound of the floating-point reader it replaces).
const NUM_LIMIT: u128 = 18_000_000_000_000_000_000;

/// A number in the syntax Rust's float parser takes (`[+-]digits[.digits][(e|E)[+-]digits]`,
/// either side of the point may be empty, not both): `Some(value)` where it is a whole number
/// in 0..1.8e19 (`-0` too), `Some(None)` for any other well-formed number, `None` when
/// malformed.
fn number(text: &[u8]) -> Option<Option<u64>> {
    let (negative, rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (rest.get(..at)?, Some(rest.get(at + 1..)?)),
        None => (rest, None),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (mantissa.get(..at)?, mantissa.get(at + 1..)?),
        None => (mantissa, &[][..]),
    };
    let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let mut scale: i64 = 0;
    if let Some(e) = exponent {
        let (minus, digits) = match e.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, e),
        };
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
        let magnitude = digits.iter().fold(0i64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
        scale = if minus { -magnitude } else { magnitude };
    }
    // value = significant digits × 10^scale, the digits without leading or trailing zeros.
    let all = int.iter().chain(frac.iter());
    let significant: Vec<u8> = all.copied().skip_while(|&d| d == b'0').collect();
    let trimmed = significant
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(0, |p| p + 1);
    let Some(kept) = significant.get(..trimmed).filter(|s| !s.is_empty()) else {
        return Some(Some(0)); // zero, whatever its sign or exponent
    };
    let frac_len = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    let dropped = i64::try_from(significant.len() - trimmed).unwrap_or(0);
    scale = scale.saturating_sub(frac_len).saturating_add(dropped);
    if negative || scale < 0 || kept.len() > 20 {
        return Some(None);
    }
    let mut value = kept
        .iter()
        .fold(0u128, |acc, &d| acc * 10 + u128::from(d - b'0'));
    for _ in 0..scale {
        value = value.saturating_mul(10);
        if value >= NUM_LIMIT {
            break;
        }
    }
    Some(
        (value < NUM_LIMIT)
            .then(|| u64::try_from(value).ok())
            .flatten(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_control_socket_sends() {
        let v = parse(
            r#"{"pid":12,"version":"0.1.0","processes":[{"name":"a\"b","pid":null,"ok":true,"x":[1,2.5,-3]}]}
"#,
        )
        .unwrap();
        assert_eq!(v.get("pid").as_u64(), Some(12));
        assert_eq!(v.get("version").str(), "0.1.0");
        let p = &v.get("processes").items()[0];
        assert_eq!(p.get("name").str(), "a\"b");
        assert!(p.get("pid").is_null());
        assert_eq!(p.get("ok").as_bool(), Some(true));
        assert_eq!(p.get("x").items().len(), 3);
        assert!(v.get("missing").is_null());
        assert_eq!(parse(r#""\u00e9\n""#), Some(Value::Str("é\n".to_string())));
    }

    #[test]
    fn whole_numbers_read_as_the_float_reader_did() {
        // What f64 parsing followed by "whole, non-negative, below 1.8e19" gave.
        for (text, want) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("12", Some(12)),
            ("+7", Some(7)),
            ("2.0", Some(2)),
            ("2.", Some(2)),
            ("1e3", Some(1000)),
            ("1.5E1", Some(15)),
            ("0.0e5", Some(0)),
            ("250e-2", None),
            ("2500e-2", Some(25)),
            ("9007199254740992", Some(9_007_199_254_740_992)),
            ("17999999999999999999", Some(17_999_999_999_999_999_999)),
            ("18000000000000000000", None),
            ("1e19", Some(10_000_000_000_000_000_000)),
            ("1e999999999999999999999", None),
            ("2.5", None),
            ("-3", None),
            ("-0.5", None),
            (".5", None),
        ] {
            assert_eq!(number(text.as_bytes()), Some(want), "{text}");
            if let Some(n) = want {
                // The float reader agrees wherever a double holds the value exactly.
                if n < 1 << 53 {
                    let f: f64 = text.parse().unwrap();
                    assert_eq!(f as u64, n, "{text}");
                }
            }
        }
    }

    #[test]
    fn malformed_numbers_are_rejected_as_the_float_reader_did() {
        for bad in [
            "", "-", "+", ".", "e5", "1e", "1e+", "1-2", "1..2", "1e5e5", "--1", "1.2.3",
        ] {
            assert_eq!(number(bad.as_bytes()), None, "{bad:?}");
            assert!(bad.parse::<f64>().is_err(), "{bad:?}");
        }
        assert_eq!(parse("[1-2]"), None);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "{",
            "[1,",
            "{\"a\" 1}",
            "tru",
            "\"abc",
            "{}x",
            &"[".repeat(100),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
