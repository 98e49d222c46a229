//! The framing of the upstream's response body: which bytes of a read from the upstream belong
//! to the body, where the body ends, and whether the upstream broke its own framing.
//!
//! Owns one response's [`BodyFramer`], chosen from the parsed head: a known length
//! (`Content-Length`, or none at all for 204/304), the chunked coding (decoded in place, so only
//! payload reaches the caller, which frames it afresh for the client), or "until the upstream
//! closes". The caller feeds it every read and obeys what [`Fed`] says:
//!
//! 1. `payload` bytes at the front of the read are body; nothing else of the read is.
//! 2. `done`: the framed end is reached. Nothing more is read from that upstream connection;
//!    `dropped` bytes of the read came past the end and are discarded (logged once, naming the
//!    upstream) — they are never queued for the client, or they would answer its next request
//!    (issue 11: response desync).
//! 3. `Err(Broken)`: the chunked framing is invalid (bare LF, a size that is not hex or over
//!    2^60, data not followed by CRLF, a bad or oversized trailer, ...). The response cannot be
//!    finished: 502 if the client has nothing of it yet, else the client's connection closes
//!    without a last chunk, so it sees the truncation.
//! 4. At the upstream's EOF, [`BodyFramer::complete_at_eof`] says whether the body was whole;
//!    if not, the same rule as 3.
//!
//! Pure code: no I/O, no allocation, no panic on any input; it never counts a byte as payload
//! that the framing did not promise, and never reports more payload than it was given.

use crate::http::chunked::ChunkedDecoder;

use super::response_head::ResponseHead;

/// The upstream broke the chunked framing of its response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

/// What one read's bytes were; see the module header for what the caller does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fed {
    /// Body payload bytes, now at the front of the slice given to [`BodyFramer::feed`].
    pub payload: usize,
    /// Bytes of the slice past the body's end: to discard.
    pub dropped: usize,
    /// The body's framed end is reached: read nothing more from this upstream connection.
    pub done: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    /// `left` more payload bytes, then the end (0 for 204/304 or `Content-Length: 0`).
    Length { left: u64 },
    /// The chunked coding: the end is the last chunk and the trailer section.
    Chunked(ChunkedDecoder),
    /// No framing: the body ends when the upstream closes.
    UntilClose,
}

/// One upstream response body's framing state; one per proxied request, made by
/// [`BodyFramer::for_head`] once the head is parsed.
#[derive(Clone, Debug)]
pub struct BodyFramer {
    kind: Kind,
    /// Payload bytes so far.
    received: u64,
}

impl Default for BodyFramer {
    /// Before a head is parsed: an empty body, already at its end (nothing counts as body).
    fn default() -> Self {
        BodyFramer {
            kind: Kind::Length { left: 0 },
            received: 0,
        }
    }
}

impl BodyFramer {
    /// The framing the upstream's head announces. As RFC 9112 section 6.3 for a response: 204
    /// and 304 have no body whatever the fields say; `Transfer-Encoding: chunked`; else
    /// `Content-Length`; else the body runs to the close. A HEAD request's response is framed
    /// the same (uWSGI sends the body anyway; the caller discards it).
    pub fn for_head(head: &ResponseHead) -> BodyFramer {
        let kind = if matches!(head.status, 100..=199 | 204 | 304) {
            Kind::Length { left: 0 }
        } else if head.chunked {
            Kind::Chunked(ChunkedDecoder::new())
        } else if let Some(n) = head.content_length {
            Kind::Length { left: n }
        } else {
            Kind::UntilClose
        };
        BodyFramer { kind, received: 0 }
    }

    /// Frames the bytes just read from the upstream (`buf`, changed in place: a chunked body's
    /// payload is moved to the front). Call it for every read, the bytes that came with the head
    /// included (an empty `buf` is fine: a bodiless response is `done` at once).
    pub fn feed(&mut self, buf: &mut [u8]) -> Result<Fed, Broken> {
        let (payload, dropped, done) = match &mut self.kind {
            Kind::Length { left } => {
                let payload = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                *left -= payload as u64;
                (payload, buf.len() - payload, *left == 0)
            }
            Kind::Chunked(decoder) => {
                let d = decoder.decode_in_place(buf).map_err(|_| Broken)?;
                // Not done: every byte was consumed. Done: the rest is past the end.
                (d.produced, buf.len() - d.consumed, d.done)
            }
            Kind::UntilClose => (buf.len(), 0, false),
        };
        self.received = self.received.saturating_add(payload as u64);
        Ok(Fed {
            payload,
            dropped,
            done,
        })
    }

    /// True once the framed end is reached.
    pub fn is_done(&self) -> bool {
        match &self.kind {
            Kind::Length { left } => *left == 0,
            Kind::Chunked(decoder) => decoder.is_done(),
            Kind::UntilClose => false,
        }
    }

    /// Whether the body is whole if the upstream closes now: its end was reached, or it has no
    /// framing and the close is its end.
    pub fn complete_at_eof(&self) -> bool {
        matches!(self.kind, Kind::UntilClose) || self.is_done()
    }

    /// True for a chunked body (for log lines).
    pub fn is_chunked(&self) -> bool {
        matches!(self.kind, Kind::Chunked(_))
    }

    /// Payload bytes received so far (for log lines).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The whole body's length when the head announced one (for log lines).
    pub fn expected(&self) -> Option<u64> {
        match self.kind {
            Kind::Length { left } => Some(self.received.saturating_add(left)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response_head::parse;

    fn framer(head: &[u8]) -> BodyFramer {
        BodyFramer::for_head(&parse(head).unwrap().unwrap())
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// Feeds all of `wire` in pieces of `step` bytes: (payload, dropped, done) or the error.
    fn run(f: &mut BodyFramer, wire: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), Broken> {
        let mut payload = Vec::new();
        let mut dropped = 0;
        let mut done = f.is_done();
        for piece in wire.chunks(step.max(1)) {
            let mut buf = piece.to_vec();
            let fed = f.feed(&mut buf)?;
            assert!(fed.payload + fed.dropped <= piece.len());
            if done {
                assert_eq!(
                    (fed.payload, fed.dropped),
                    (0, piece.len()),
                    "after the end"
                );
            }
            if !fed.done {
                assert_eq!(fed.dropped, 0, "bytes dropped before the end");
            }
            payload.extend_from_slice(&buf[..fed.payload]);
            dropped += fed.dropped;
            done = fed.done;
            assert_eq!(done, f.is_done());
        }
        Ok((payload, dropped, done))
    }

    /// Every split of `wire` gives the same answer.
    fn frames(head: &[u8], wire: &[u8]) -> Result<(Vec<u8>, usize, bool), Broken> {
        let whole = run(&mut framer(head), wire, wire.len());
        for step in [1, 2, 3, 7] {
            let mut f = framer(head);
            let got = run(&mut f, wire, step);
            assert_eq!(
                got,
                whole,
                "step {step}: {:?}",
                String::from_utf8_lossy(wire)
            );
            if let Ok((payload, _, _)) = &got {
                assert_eq!(f.received(), payload.len() as u64);
            }
        }
        whole
    }

    #[test]
    fn a_content_length_body_ends_at_its_length_and_drops_the_rest() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            frames(head, b"helloHTTP/1.1 299 Smuggled\r\n\r\n"),
            Ok((b"hello".to_vec(), 25, true))
        );
        assert_eq!(frames(head, b"hello"), Ok((b"hello".to_vec(), 0, true)));
        assert_eq!(frames(head, b"hel"), Ok((b"hel".to_vec(), 0, false)));
        let mut f = framer(head);
        assert_eq!(f.expected(), Some(5));
        run(&mut f, b"hel", 3).unwrap();
        assert!(!f.complete_at_eof(), "3 of 5 bytes is a truncated body");
        assert_eq!((f.received(), f.expected()), (3, Some(5)));
        run(&mut f, b"lo", 2).unwrap();
        assert!(f.is_done() && f.complete_at_eof());
    }

    #[test]
    fn a_bodiless_response_is_done_before_any_byte_and_drops_all_that_come() {
        for head in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut f = framer(head);
            assert!(f.is_done(), "{:?}", String::from_utf8_lossy(head));
            let fed = f.feed(&mut []).unwrap();
            assert_eq!(
                fed,
                Fed {
                    payload: 0,
                    dropped: 0,
                    done: true
                }
            );
            let mut extra = *b"HTTP/1.1 299 Smuggled\r\n\r\n";
            assert_eq!(f.feed(&mut extra).unwrap().dropped, extra.len());
        }
    }

    #[test]
    fn a_body_without_framing_runs_to_the_close() {
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(
            frames(head, b"anything, HTTP/1.1 200 OK\r\n\r\n too"),
            Ok((b"anything, HTTP/1.1 200 OK\r\n\r\n too".to_vec(), 0, false))
        );
        let f = framer(head);
        assert!(f.complete_at_eof() && !f.is_done());
        assert_eq!(f.expected(), None);
    }

    #[test]
    fn a_chunked_body_is_decoded_to_its_payload() {
        assert_eq!(
            frames(
                CHUNKED,
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"
            ),
            Ok((b"hello world".to_vec(), 0, true))
        );
        let mut f = framer(CHUNKED);
        assert!(f.is_chunked() && !f.complete_at_eof());
        run(&mut f, b"0\r\n\r\n", 5).unwrap();
        assert!(f.complete_at_eof());
    }

    #[test]
    fn bytes_after_the_last_chunk_and_trailers_are_dropped() {
        assert_eq!(
            frames(
                CHUNKED,
                b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 299 Smuggled\r\n\r\n"
            ),
            Ok((b"hello".to_vec(), 25, true))
        );
        assert_eq!(
            frames(CHUNKED, b"0\r\nT: 1\r\n\r\nX"),
            Ok((Vec::new(), 1, true))
        );
    }

    #[test]
    fn broken_chunked_framing_is_refused() {
        for wire in [
            &b"5\nhello\n0\n\n"[..],                // LF-only lines
            b"ffffffffffffffff\r\nhello",           // 2^64 - 1
            b"10000000000000000\r\nhello",          // past 64 bits
            b"1000000000000001\r\n",                // past 2^60
            b"hello world\r\n\r\n",                 // garbage for a size
            b"\r\n",                                // an empty size
            b"5\r\nhelloXX0\r\n\r\n",               // data not followed by CRLF
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n", // a malformed trailer
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",       // a bare LF in the trailers
            b"5 \r\nhello\r\n0\r\n\r\n",            // whitespace without an extension
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",       // a CTL in an extension
        ] {
            assert_eq!(
                frames(CHUNKED, wire),
                Err(Broken),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_chunked_body_cut_short_is_not_complete_at_eof() {
        for wire in [
            &b""[..],
            b"100\r\nhello",                    // a chunk larger than what came
            b"5\r\nhello\r\n",                  // no last chunk
            b"5\r\nhello\r\n0\r\n",             // no end of the trailer section
            b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n", // a close inside the trailers
        ] {
            let mut f = framer(CHUNKED);
            let (_, dropped, done) = run(&mut f, wire, wire.len().max(1)).unwrap();
            assert!(!done && dropped == 0, "{:?}", String::from_utf8_lossy(wire));
            assert!(!f.complete_at_eof(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn a_broken_framer_stays_broken() {
        let mut f = framer(CHUNKED);
        assert_eq!(f.feed(&mut b"zz\r\n".to_owned()), Err(Broken));
        assert_eq!(f.feed(&mut b"0\r\n\r\n".to_owned()), Err(Broken));
        assert!(!f.complete_at_eof());
    }

    #[test]
    fn the_default_takes_no_byte_as_body() {
        let mut f = BodyFramer::default();
        assert!(f.is_done());
        assert_eq!(f.feed(&mut [1u8, 2, 3]).unwrap().dropped, 3);
    }

    #[test]
    fn a_length_beyond_usize_never_overflows() {
        let mut f = framer(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        let fed = f.feed(&mut [0u8; 64]).unwrap();
        assert_eq!((fed.payload, fed.dropped, fed.done), (64, 0, false));
        assert_eq!(f.expected(), Some(u64::MAX));
    }

    #[test]
    fn never_panics_and_never_reports_more_than_it_was_given() {
        let seed = b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\nHTTP/1.1 299 X\r\n\r\n";
        for i in 0..seed.len() {
            for b in [0u8, b'\r', b'\n', b' ', b';', b'0', b'f', b'g', b':', 0xff] {
                let mut wire = seed.to_vec();
                wire[i] = b;
                for step in [1, 4, wire.len()] {
                    let _ = run(&mut framer(CHUNKED), &wire, step);
                }
            }
        }
    }
}
