//! The uwsgi protocol — what nginx's `ngx_http_uwsgi_module` adds to its upstream core: the
//! request packet (`packet`: nginx's `uwsgi_params` vars, every header as `HTTP_*`, the
//! location's `uwsgi_param` lines), and reading uWSGI's answer, which is an HTTP/1.x response
//! head (`http::response_head`), with uWSGI's best-known failure explained.
//!
//! Pure code, like the codecs it wraps. The proxy core (`upstream`) never names this module:
//! the HTTP layer that forwards a request (`server`) calls it to build the packet and to read
//! the head, and hands the core only bytes and a parser.

pub mod packet;

pub use crate::http::response_head::{parse as parse_response_head, ResponseHead};

/// Why uWSGI closed the connection without a byte of answer, when the packet explains it: its
/// vars were larger than uWSGI's default `buffer-size` (4096), which uWSGI answers by closing
/// ("invalid request block size") — the classic 502 behind nginx. `packet_len` is what
/// [`packet::encode`] returned. `Some(vars_len)` names the size for the log line.
pub fn oversized_vars(packet_len: usize) -> Option<usize> {
    (!packet::fits_uwsgi_buffer(packet_len, packet::UWSGI_DEFAULT_BUFFER_SIZE))
        .then(|| packet_len.saturating_sub(packet::HEADER_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_over_uwsgi_s_default_buffer_size_are_named() {
        assert_eq!(oversized_vars(4 + 4096), None);
        assert_eq!(oversized_vars(4 + 4097), Some(4097));
    }
}
