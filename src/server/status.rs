//! The status page: nginx's stub_status text, byte for byte, so existing monitors parse it; with
//! `?format=json`, uwgate's version, the same counters and every supervised program
//! (`supervisorctl status` as JSON).
//!
//! Owns the two page formats. Never: allocates (pages are written into fixed buffers) or
//! changes what it reports.

use super::Ctx;
use crate::http::response::HeadWriter;

/// Largest status page body.
pub const PAGE_MAX: usize = 8192;

/// Writes the page body into `w`: stub_status text, or JSON when `json`.
pub fn write_page(w: &mut HeadWriter<'_>, ctx: &Ctx<'_>, json: bool) {
    let s = ctx.stats;
    if json {
        return write_json(w, ctx);
    }
    w.put(b"Active connections: ")
        .num(s.active)
        .put(b" \nserver accepts handled requests\n ")
        .num(s.accepts)
        .put(b" ")
        .num(s.handled)
        .put(b" ")
        .num(s.requests)
        .put(b" \nReading: ")
        .num(s.reading)
        .put(b" Writing: ")
        .num(s.writing + s.awaiting_program)
        .put(b" Waiting: ")
        .num(s.waiting)
        .put(b" \n");
}

fn write_json(w: &mut HeadWriter<'_>, ctx: &Ctx<'_>) {
    let s = ctx.stats;
    w.put(b"{\"version\":\"")
        .put(crate::VERSION.as_bytes())
        .put(b"\",\"connections\":{\"active\":")
        .num(s.active)
        .put(b",\"accepts\":")
        .num(s.accepts)
        .put(b",\"handled\":")
        .num(s.handled)
        .put(b",\"requests\":")
        .num(s.requests)
        .put(b",\"reading\":")
        .num(s.reading)
        .put(b",\"writing\":")
        .num(s.writing + s.awaiting_program)
        .put(b",\"awaiting_program\":")
        .num(s.awaiting_program)
        .put(b",\"waiting\":")
        .num(s.waiting)
        .put(b",\"evicted\":")
        .num(s.evicted)
        .put(b"},");
    #[cfg(feature = "count-alloc")]
    w.put(b"\"allocations\":")
        .num(crate::sys::alloc_count::allocations())
        .put(b",");
    w.put(b"\"log_dropped\":")
        .num(crate::logging::dropped())
        .put(b",\"programs\":[");
    for (i, p) in ctx.watchdog.status().enumerate() {
        if i > 0 {
            w.put(b",");
        }
        w.put(b"{\"name\":");
        json_str(w, p.name.as_bytes());
        w.put(b",\"group\":");
        json_str(w, p.group.as_bytes());
        w.put(b",\"state\":\"")
            .put(p.state.as_bytes())
            .put(b"\",\"pid\":");
        match p.pid {
            Some(pid) => w.num(pid as u64),
            None => w.put(b"null"),
        };
        w.put(b",\"uptime\":")
            .num(p.uptime_secs)
            .put(b",\"restarts\":")
            .num(p.restarts as u64)
            .put(b",\"last_exit\":");
        match p.last_exit {
            Some(e) => {
                let mut text = heapless::String::<64>::new();
                use std::fmt::Write as _;
                let _ = write!(text, "{e}");
                json_str(w, text.as_bytes());
            }
            None => {
                w.put(b"null");
            }
        }
        w.put(b"}");
    }
    w.put(b"]}\n");
}

/// A JSON string literal (names are ini words, but escape anyway).
fn json_str(w: &mut HeadWriter<'_>, s: &[u8]) {
    w.put(b"\"");
    for &b in s {
        match b {
            b'"' => w.put(b"\\\""),
            b'\\' => w.put(b"\\\\"),
            0..=0x1f => {
                let pad: &[u8] = if b < 0x10 { b"0" } else { b"" };
                w.put(b"\\u00").put(pad).hex(u64::from(b))
            }
            _ => w.put(&[b]),
        };
    }
    w.put(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut b = [0u8; 64];
        let mut w = HeadWriter::new(&mut b);
        json_str(&mut w, b"a\"b\\c\x01\x1f");
        let n = w.len();
        assert_eq!(&b[..n], br#""a\"b\\c\u0001\u001f""#);
    }
}
