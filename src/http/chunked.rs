//! Decoder for the chunked transfer coding (RFC 9112 section 7.1): of request bodies, and of
//! upstream response bodies (through `upstream::response_body`, which reads its error as "the
//! upstream broke its framing").
//!
//! Owns the byte-at-a-time framing state of one chunked body, so the body can arrive split at any
//! point across reads. It decodes in place inside the connection's fixed buffer. It is strict
//! where lenient parsers open request-smuggling holes: bare CR or LF, empty or oversized sizes,
//! data not followed by CRLF and obs-fold in trailers are all 400. It must never allocate, never
//! read or write outside the slice it is given, and never produce more bytes than it consumed.

use super::Status;

/// Longest chunk-size line (size plus extensions, without CRLF) we accept.
pub const MAX_SIZE_LINE: usize = 4096;
/// Largest total of trailer-section bytes we read and discard.
pub const MAX_TRAILER_BYTES: usize = 8192;
/// Largest chunk size: 2^60, far beyond any `client_max_body_size`, yet safe from overflow.
const MAX_CHUNK_SIZE: u64 = 1 << 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// Whitespace after the digits: only `;` (an extension) may follow.
    SizeBws,
    /// Inside chunk extensions, ignored up to CR.
    Ext,
    /// CR seen at the end of a size line.
    SizeLf,
    /// `remaining` payload bytes still to come.
    Data,
    /// Payload finished: CR must come.
    DataCr,
    /// Payload finished: LF must come.
    DataLf,
    /// After the last chunk: a trailer field line or the final CRLF.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// CR seen at the end of a trailer field line.
    TrailerLf,
    /// CR seen on the empty line that ends the body.
    FinalLf,
    /// The body is complete.
    Done,
    /// A framing error was reported; the connection must close.
    Failed,
}

/// The outcome of one [`ChunkedDecoder::decode_in_place`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Wire bytes read from the front of the buffer.
    pub consumed: usize,
    /// Payload bytes written to `buf[..produced]`; always `<= consumed`.
    pub produced: usize,
    /// The final CRLF was read; bytes after `consumed` belong to the next request.
    pub done: bool,
}

/// Decoding state of one chunked request body. One per connection slot, reset with `new()` for
/// each request whose head said `Transfer-Encoding: chunked`.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being parsed, then the payload bytes left in the current chunk.
    remaining: u64,
    /// Bytes of the current size line or trailer line so far.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
    /// Payload bytes produced over the whole body.
    total: u64,
}

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in an extension or a field value: HTAB, SP, VCHAR, obs-text.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

impl ChunkedDecoder {
    /// A decoder positioned before the first chunk-size line.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
            total: 0,
        }
    }

    /// Payload bytes decoded so far; the caller compares it with `client_max_body_size` (413).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// `true` once the whole body, trailers included, has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes the raw wire bytes in `buf`, writing the payload contiguously to `buf[..produced]`.
    ///
    /// Contract: pass the bytes received since the last call (after moving away or forwarding the
    /// previous payload). While the body is not done every byte is consumed (`consumed ==
    /// buf.len()`): partial size lines and CRLFs are remembered in `self`, so the input may be
    /// split anywhere, down to one byte per call. Once `done`, `buf[consumed..]` is the start of
    /// the next pipelined request and must be kept. After `done`, further calls consume nothing.
    ///
    /// Errors (400, and every later call fails too): empty or non-hex chunk size, a size above
    /// 2^60, a size line over 4096 bytes, a bare CR or LF, CTLs in extensions or trailers, data not
    /// followed by CRLF, a malformed or folded trailer line, trailers over 8192 bytes.
    pub fn decode_in_place(&mut self, buf: &mut [u8]) -> Result<Decoded, Status> {
        match self.run(buf) {
            Ok(decoded) => Ok(decoded),
            Err(status) => {
                self.state = State::Failed;
                Err(status)
            }
        }
    }

    fn run(&mut self, buf: &mut [u8]) -> Result<Decoded, Status> {
        const BAD: Status = Status::BadRequest;
        let mut read = 0; // next wire byte
        let mut write = 0; // next payload slot; `write <= read` always
        while read < buf.len() {
            match self.state {
                State::Done => break,
                State::Failed => return Err(BAD),
                State::Data => {
                    let avail = buf.len() - read;
                    let n = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                    buf.copy_within(read..read + n, write);
                    read += n;
                    write += n;
                    self.remaining -= n as u64;
                    self.total = self.total.saturating_add(n as u64);
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            let b = buf.get(read).copied().ok_or(BAD)?;
            read += 1;
            self.state = self.step(b)?;
        }
        Ok(Decoded {
            consumed: read,
            produced: write,
            done: self.state == State::Done,
        })
    }

    /// One framing byte: the next state.
    fn step(&mut self, b: u8) -> Result<State, Status> {
        const BAD: Status = Status::BadRequest;
        self.count_line_bytes(b)?;
        Ok(match (self.state, b) {
            // SizeStart -> Size: the first digit; an empty size is not a size.
            (State::SizeStart, _) => {
                self.remaining = hex_value(b).ok_or(BAD)?;
                State::Size
            }
            (State::Size, b'\r') => State::SizeLf,
            (State::Size, b';') => State::Ext,
            (State::Size, b' ' | b'\t') => State::SizeBws,
            (State::Size, _) => {
                let digit = hex_value(b).ok_or(BAD)?;
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|v| v.checked_add(digit))
                    .filter(|&v| v <= MAX_CHUNK_SIZE)
                    .ok_or(BAD)?;
                State::Size
            }
            // BWS before `;` only: "5 \r\n" is not a valid size line.
            (State::SizeBws, b' ' | b'\t') => State::SizeBws,
            (State::SizeBws, b';') => State::Ext,
            (State::SizeBws, _) => return Err(BAD),
            // Extensions are ignored, but a bare LF or a CTL in them is framing trouble.
            (State::Ext, b'\r') => State::SizeLf,
            (State::Ext, _) if is_text(b) => State::Ext,
            (State::Ext, _) => return Err(BAD),
            // SizeLf -> Data, or -> TrailerStart for the last (zero-size) chunk.
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
                if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::SizeLf, _) => return Err(BAD),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataCr, _) => return Err(BAD),
            (State::DataLf, b'\n') => State::SizeStart,
            (State::DataLf, _) => return Err(BAD),
            // TrailerStart: CR ends the body; a field name starts a trailer; SP/HTAB is obs-fold.
            (State::TrailerStart, b'\r') => State::FinalLf,
            (State::TrailerStart, _) if is_tchar(b) => State::TrailerName,
            (State::TrailerStart, _) => return Err(BAD),
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerName, _) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, _) => return Err(BAD),
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, _) if is_text(b) => State::TrailerValue,
            (State::TrailerValue, _) => return Err(BAD),
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::TrailerLf, _) => return Err(BAD),
            (State::FinalLf, b'\n') => State::Done,
            (State::FinalLf, _) => return Err(BAD),
            // Data, Done and Failed are handled by the caller before a byte is read.
            (State::Data | State::Done | State::Failed, _) => return Err(BAD),
        })
    }
}

impl ChunkedDecoder {
    /// Counts `b` against the size-line and trailer-section bounds (400 past them).
    fn count_line_bytes(&mut self, b: u8) -> Result<(), Status> {
        let in_size_line = matches!(
            self.state,
            State::SizeStart | State::Size | State::SizeBws | State::Ext
        );
        if in_size_line && b != b'\r' {
            self.line_len += 1;
            if self.line_len > MAX_SIZE_LINE {
                return Err(Status::BadRequest);
            }
        }
        let in_trailer = matches!(
            self.state,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::FinalLf
        );
        if in_trailer {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILER_BYTES {
                return Err(Status::BadRequest);
            }
        }
        Ok(())
    }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` in one call: (payload, consumed).
    fn whole(wire: &[u8]) -> Result<(Vec<u8>, usize, bool), Status> {
        let mut dec = ChunkedDecoder::new();
        let mut buf = wire.to_vec();
        let d = dec.decode_in_place(&mut buf)?;
        assert!(d.produced <= d.consumed);
        assert_eq!(dec.total(), d.produced as u64);
        Ok((buf[..d.produced].to_vec(), d.consumed, d.done))
    }

    /// Decodes `wire` fed in pieces of `step` bytes: (payload, consumed, done).
    fn pieces(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), Status> {
        let mut dec = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut consumed = 0;
        for piece in wire.chunks(step) {
            let mut buf = piece.to_vec();
            let d = dec.decode_in_place(&mut buf)?;
            assert!(d.produced <= d.consumed);
            payload.extend_from_slice(&buf[..d.produced]);
            consumed += d.consumed;
            if d.done {
                return Ok((payload, consumed, true));
            }
            assert_eq!(d.consumed, piece.len(), "not done must consume everything");
        }
        Ok((payload, consumed, false))
    }

    fn decodes_to(wire: &[u8], payload: &[u8]) {
        for step in [1, 2, 3, 5, 7, wire.len().max(1)] {
            let got = pieces(wire, step);
            assert_eq!(
                got,
                Ok((payload.to_vec(), wire.len(), true)),
                "step {step}: {}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    fn rejects(wire: &[u8]) {
        for step in [1, 2, wire.len().max(1)] {
            assert_eq!(
                pieces(wire, step).map(|_| ()),
                Err(Status::BadRequest),
                "step {step}: {:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn decodes_the_rfc_example() {
        decodes_to(
            b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
            b"Wikipedia in\r\n\r\nchunks.",
        );
    }

    #[test]
    fn decodes_an_empty_body() {
        decodes_to(b"0\r\n\r\n", b"");
        decodes_to(b"000\r\n\r\n", b"");
    }

    #[test]
    fn hex_sizes_are_case_insensitive() {
        decodes_to(
            b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n",
            b"01234567890123456789",
        );
        decodes_to(b"0000a\r\n0123456789\r\n0\r\n\r\n", b"0123456789");
    }

    #[test]
    fn chunk_extensions_are_ignored() {
        decodes_to(b"3;name=value\r\nabc\r\n0;last\r\n\r\n", b"abc");
        decodes_to(b"3 ; a=\"q\\\"x\" ;b\r\nabc\r\n0\r\n\r\n", b"abc");
        decodes_to(b"3\t;x\r\nabc\r\n0\r\n\r\n", b"abc");
    }

    #[test]
    fn trailers_are_read_and_discarded() {
        decodes_to(b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: \r\n\r\n", b"abc");
        decodes_to(b"0\r\nEmpty:\r\n\r\n", b"");
    }

    #[test]
    fn payload_bytes_that_look_like_framing_are_data() {
        decodes_to(b"6\r\n0\r\n\r\n\n\r\n0\r\n\r\n", b"0\r\n\r\n\n");
        decodes_to(b"2\r\n\0\xff\r\n0\r\n\r\n", b"\0\xff");
    }

    #[test]
    fn bytes_after_the_body_are_left_for_the_next_request() {
        let wire = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (payload, consumed, done) = whole(wire).unwrap();
        assert_eq!(payload, b"abc");
        assert!(done);
        assert_eq!(&wire[consumed..], b"GET / HTTP/1.1\r\n");
        for step in [1, 4] {
            let (p, c, d) = pieces(wire, step).unwrap();
            assert_eq!((p.as_slice(), c, d), (&b"abc"[..], 13, true));
        }
    }

    #[test]
    fn a_done_decoder_consumes_nothing_more() {
        let mut dec = ChunkedDecoder::new();
        let mut buf = *b"0\r\n\r\n";
        assert!(dec.decode_in_place(&mut buf).unwrap().done);
        assert!(dec.is_done());
        let mut more = *b"1\r\nx\r\n";
        let d = dec.decode_in_place(&mut more).unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 0,
                produced: 0,
                done: true
            }
        );
    }

    #[test]
    fn incomplete_input_is_consumed_and_reported_not_done() {
        let (payload, consumed, done) = whole(b"5\r\nhel").unwrap();
        assert_eq!(
            (payload.as_slice(), consumed, done),
            (&b"hel"[..], 6, false)
        );
        let (_, consumed, done) = whole(b"1a").unwrap();
        assert_eq!((consumed, done), (2, false));
        let (_, consumed, done) = whole(b"").unwrap();
        assert_eq!((consumed, done), (0, false));
    }

    #[test]
    fn total_counts_payload_across_calls() {
        let mut dec = ChunkedDecoder::default();
        let mut a = *b"5\r\nhel";
        dec.decode_in_place(&mut a).unwrap();
        assert_eq!(dec.total(), 3);
        let mut b = *b"lo\r\n3\r\nabc\r\n";
        dec.decode_in_place(&mut b).unwrap();
        assert_eq!(dec.total(), 8);
    }

    #[test]
    fn empty_chunk_size_is_rejected() {
        rejects(b"\r\nabc\r\n0\r\n\r\n");
        rejects(b";ext\r\n");
        rejects(b" 3\r\nabc\r\n0\r\n\r\n");
        rejects(b"3\r\nabc\r\n\r\n");
    }

    #[test]
    fn non_hex_sizes_are_rejected() {
        rejects(b"g\r\n");
        rejects(b"0x3\r\nabc\r\n0\r\n\r\n");
        rejects(b"-1\r\n");
        rejects(b"+3\r\nabc\r\n0\r\n\r\n");
        rejects(b"3z\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn sizes_above_2_pow_60_are_rejected() {
        let (_, consumed, done) = whole(b"1000000000000000\r\n").unwrap();
        assert_eq!((consumed, done), (18, false));
        rejects(b"1000000000000001\r\n");
        rejects(b"ffffffffffffffff\r\n");
        rejects(b"10000000000000000000000000\r\n");
        // Leading zeros do not count towards the value.
        let (_, _, done) = whole(b"00000000000000000000000000000\r\n\r\n").unwrap();
        assert!(done);
    }

    #[test]
    fn bare_lf_or_cr_in_framing_is_rejected() {
        rejects(b"3\nabc\r\n0\r\n\r\n");
        rejects(b"3\rabc\r\n0\r\n\r\n");
        rejects(b"3\r\nabc\n0\r\n\r\n");
        rejects(b"3\r\nabc\r0\r\n\r\n");
        rejects(b"3\r\nabc\r\n0\n\r\n");
        rejects(b"3\r\nabc\r\n0\r\n\n");
        rejects(b"3\r\nabc\r\n0\r\n\r\r\n");
        rejects(b"0\r\nX: 1\nY: 2\r\n\r\n");
        rejects(b"0\r\nX: 1\r\r\n\r\n");
    }

    #[test]
    fn lf_or_ctl_inside_a_chunk_extension_is_rejected() {
        rejects(b"3;a=b\nabc\r\n0\r\n\r\n");
        rejects(b"3;a=\nb\r\nabc\r\n0\r\n\r\n");
        rejects(b"3;a\0\r\nabc\r\n0\r\n\r\n");
        rejects(b"3;a\x7f\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn whitespace_after_the_size_needs_an_extension() {
        rejects(b"3 \r\nabc\r\n0\r\n\r\n");
        rejects(b"3\t\r\nabc\r\n0\r\n\r\n");
        rejects(b"3 4\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn data_not_followed_by_crlf_is_rejected() {
        rejects(b"3\r\nabcd\r\n0\r\n\r\n");
        rejects(b"3\r\nab\r\n0\r\n\r\n");
        rejects(b"3\r\nabc0\r\n\r\n");
        rejects(b"3\r\nabc\n\r0\r\n\r\n");
    }

    #[test]
    fn malformed_or_folded_trailers_are_rejected() {
        rejects(b"0\r\nX: 1\r\n continued\r\n\r\n");
        rejects(b"0\r\n\tX: 1\r\n\r\n");
        rejects(b"0\r\nX : 1\r\n\r\n");
        rejects(b"0\r\nno colon\r\n\r\n");
        rejects(b"0\r\n:empty-name\r\n\r\n");
        rejects(b"0\r\nX: a\0b\r\n\r\n");
    }

    #[test]
    fn size_line_longer_than_4096_bytes_is_rejected() {
        let mut ok = b"3;".to_vec();
        ok.resize(MAX_SIZE_LINE, b'x');
        ok.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
        decodes_to(&ok, b"abc");
        let mut long = b"3;".to_vec();
        long.resize(MAX_SIZE_LINE + 1, b'x');
        long.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
        rejects(&long);
        let mut zeros = vec![b'0'; MAX_SIZE_LINE + 1];
        zeros.extend_from_slice(b"\r\n\r\n");
        rejects(&zeros);
    }

    #[test]
    fn oversized_trailer_section_is_rejected() {
        let mut wire = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILER_BYTES / 10 + 1) {
            wire.extend_from_slice(b"X: 123456\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        rejects(&wire);
    }

    #[test]
    fn a_failed_decoder_keeps_failing() {
        let mut dec = ChunkedDecoder::new();
        let mut bad = *b"x\r\n";
        assert_eq!(dec.decode_in_place(&mut bad), Err(Status::BadRequest));
        let mut good = *b"0\r\n\r\n";
        assert_eq!(dec.decode_in_place(&mut good), Err(Status::BadRequest));
    }

    #[test]
    fn large_chunks_split_across_many_reads_are_copied_in_order() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = format!("{:x}\r\n", 3000).into_bytes();
        wire.extend_from_slice(&body[..3000]);
        wire.extend_from_slice(format!("\r\n{:X};e=1\r\n", 2000).as_bytes());
        wire.extend_from_slice(&body[3000..]);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        decodes_to(&wire, &body);
        for step in [64, 1000, 4096] {
            assert_eq!(pieces(&wire, step), Ok((body.clone(), wire.len(), true)));
        }
    }

    #[test]
    fn never_panics_and_never_produces_more_than_it_consumes() {
        let seed = b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n";
        for i in 0..seed.len() {
            for b in [0u8, b'\r', b'\n', b' ', b';', b'0', b'f', b'g', b':', 0xff] {
                let mut wire = seed.to_vec();
                wire[i] = b;
                for step in [1, 3, wire.len()] {
                    let _ = pieces(&wire, step);
                }
                wire.remove(i);
                let _ = whole(&wire);
            }
        }
    }
}
