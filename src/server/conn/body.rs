//! The request body as it arrives: a `Content-Length` count or the chunked coding, decoded in
//! place in the connection's buffer. One reader serves both bodies uwgate discards (a static
//! answer to a request with a body) and bodies it forwards (collected for the upstream).
//!
//! Owns the body's framing state and its arrival accounting (for `client_body_min_rate`).
//! Never: reads a socket (the connection does) or lets a body past `client_max_body_size`.

use crate::http::chunked::{ChunkedDecoder, Decoded};
use crate::http::request::Head;
use crate::http::Status;
use std::time::{Duration, Instant};

/// How the body is delimited.
#[derive(Clone, Debug)]
enum Framing {
    /// This many payload bytes still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// One request body being read.
#[derive(Clone, Debug)]
pub struct BodyReader {
    framing: Framing,
    /// Payload bytes decoded so far.
    payload: u64,
    /// `client_max_body_size` (0: unlimited).
    max: u64,
    /// When the body began, and wire bytes read since (for the minimum rate).
    started: Instant,
    seen: u64,
}

impl BodyReader {
    /// The reader for `head`'s body (an empty one for a head without a body).
    pub fn new(head: &Head, max: u64, now: Instant) -> BodyReader {
        let framing = if head.chunked {
            Framing::Chunked(ChunkedDecoder::new())
        } else {
            Framing::Length(head.content_length.unwrap_or(0))
        };
        BodyReader {
            framing,
            payload: 0,
            max,
            started: now,
            seen: 0,
        }
    }

    /// Decodes the wire bytes in `wire` (everything read since the last call): payload goes to
    /// `wire[..produced]`; once `done`, `wire[consumed..]` is the next request's. 413 past
    /// `client_max_body_size`, 400 on broken chunked framing.
    pub fn decode(&mut self, wire: &mut [u8]) -> Result<Decoded, Status> {
        let d = match &mut self.framing {
            Framing::Length(left) => {
                let take = (wire.len() as u64).min(*left);
                *left -= take;
                Decoded {
                    consumed: take as usize,
                    produced: take as usize,
                    done: *left == 0,
                }
            }
            Framing::Chunked(dec) => dec.decode_in_place(wire)?,
        };
        self.payload += d.produced as u64;
        if self.max > 0 && self.payload > self.max {
            return Err(Status::ContentTooLarge);
        }
        Ok(d)
    }

    /// `true` when no payload byte is still expected (`Content-Length` fully read, or the
    /// chunked body's end seen).
    pub fn is_done(&self) -> bool {
        match &self.framing {
            Framing::Length(left) => *left == 0,
            Framing::Chunked(dec) => dec.is_done(),
        }
    }

    /// Payload bytes decoded so far.
    pub fn payload(&self) -> u64 {
        self.payload
    }

    /// Payload bytes still to come when the length is known (a bound for the next read).
    pub fn known_left(&self) -> Option<u64> {
        match &self.framing {
            Framing::Length(left) => Some(*left),
            Framing::Chunked(_) => None,
        }
    }

    /// `n` wire bytes arrived.
    pub fn arrived(&mut self, n: usize) {
        self.seen += n as u64;
    }

    /// Body deadline: `timeout` between reads, and overall a minimum average rate
    /// (`min_rate` bytes/s after a grace of `timeout`), so a client that trickles a byte per
    /// timeout period is still cut off.
    pub fn deadline(&self, now: Instant, timeout: Duration, min_rate: u64) -> Instant {
        let per_read = now + timeout;
        if min_rate == 0 {
            return per_read;
        }
        let earned = Duration::from_secs_f64(self.seen as f64 / min_rate as f64);
        per_read.min(self.started + timeout + earned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_head;

    fn reader(head: &[u8], max: u64) -> BodyReader {
        let h = parse_head(head).unwrap().unwrap();
        BodyReader::new(&h, max, Instant::now())
    }

    #[test]
    fn a_length_body_ends_after_its_bytes_and_leaves_the_next_request() {
        let mut r = reader(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
            0,
        );
        let mut wire = *b"abGET";
        let d = r.decode(&mut wire[..2]).unwrap();
        assert_eq!((d.consumed, d.produced, d.done), (2, 2, false));
        let d = r.decode(&mut wire[2..]).unwrap();
        assert_eq!((d.consumed, d.produced, d.done), (1, 1, true));
        assert!(r.is_done() && r.payload() == 3);
    }

    #[test]
    fn a_chunked_body_is_decoded_in_place() {
        let mut r = reader(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            0,
        );
        let mut wire = *b"3\r\nabc\r\n0\r\n\r\nNEXT";
        let d = r.decode(&mut wire).unwrap();
        assert!(d.done);
        assert_eq!(&wire[..d.produced], b"abc");
        assert_eq!(&wire[d.consumed..], b"NEXT");
    }

    #[test]
    fn a_chunked_body_over_the_limit_is_413() {
        let mut r = reader(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            2,
        );
        let mut wire = *b"3\r\nabc\r\n";
        assert_eq!(r.decode(&mut wire), Err(Status::ContentTooLarge));
    }

    #[test]
    fn a_trickle_below_the_minimum_rate_meets_its_deadline_early() {
        let mut r = reader(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n",
            0,
        );
        let t = Duration::from_secs(10);
        let now = r.started + Duration::from_secs(15);
        r.arrived(1000);
        // 1000 bytes at 1000 B/s earned one second beyond the 10 s grace.
        assert_eq!(
            r.deadline(now, t, 1000),
            r.started + Duration::from_secs(11)
        );
        assert_eq!(r.deadline(now, t, 0), now + t);
    }
}
