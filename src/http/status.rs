//! HTTP status codes uwgate can send, with their RFC 9110 reason phrases.
//!
//! Owns the `Status` enum that every parser returns as its error (lwan style: the parse error *is*
//! the response status). Must never grow a catch-all variant: a status we do not know how to send
//! is a bug, and `from_code` answers `None` for it.

/// A response status uwgate produces itself or passes through from an upstream it recognises.
///
/// Parsers return `Err(Status::...)`; the connection code turns it into an error page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 100: sent before reading a body when the client asked `Expect: 100-continue`.
    Continue,
    /// 200.
    Ok,
    /// 204.
    NoContent,
    /// 206: a satisfiable `Range` request.
    PartialContent,
    /// 301: directory without trailing slash.
    MovedPermanently,
    /// 302.
    Found,
    /// 304: conditional GET that matched.
    NotModified,
    /// 400: malformed request; framing may be lost, the connection is closed.
    BadRequest,
    /// 403: permission denied, `deny` rule, or a directory without index.
    Forbidden,
    /// 404.
    NotFound,
    /// 405: method not allowed for this location (or CONNECT).
    MethodNotAllowed,
    /// 408: client header/body timeout.
    RequestTimeout,
    /// 411: a body-carrying request without framing where one is required.
    LengthRequired,
    /// 412: a static file's `If-Match` or `If-Unmodified-Since` failed.
    PreconditionFailed,
    /// 413: body larger than `client_max_body_size`.
    ContentTooLarge,
    /// 414: request line longer than `client_header_buffer_size`, or a path that overflows.
    UriTooLong,
    /// 416: no requested range overlaps the file.
    RangeNotSatisfiable,
    /// 417: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// 431: request head larger than `client_header_buffer_size`, or too many fields.
    RequestHeaderFieldsTooLarge,
    /// 500.
    InternalServerError,
    /// 501: an unsupported transfer coding.
    NotImplemented,
    /// 502: upstream refused, reset, or answered garbage.
    BadGateway,
    /// 503: no capacity (EMFILE, pool empty for too long) or upstream program down.
    ServiceUnavailable,
    /// 504: upstream timed out.
    GatewayTimeout,
    /// 505: a well-formed HTTP version other than 1.0 and 1.1.
    HttpVersionNotSupported,
}

impl Status {
    /// Every variant, in code order; handy for tables and tests.
    pub const ALL: [Status; 25] = [
        Status::Continue,
        Status::Ok,
        Status::NoContent,
        Status::PartialContent,
        Status::MovedPermanently,
        Status::Found,
        Status::NotModified,
        Status::BadRequest,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::LengthRequired,
        Status::PreconditionFailed,
        Status::ContentTooLarge,
        Status::UriTooLong,
        Status::RangeNotSatisfiable,
        Status::ExpectationFailed,
        Status::RequestHeaderFieldsTooLarge,
        Status::InternalServerError,
        Status::NotImplemented,
        Status::BadGateway,
        Status::ServiceUnavailable,
        Status::GatewayTimeout,
        Status::HttpVersionNotSupported,
    ];

    /// The three-digit code, for the status line and the access log.
    pub fn code(self) -> u16 {
        match self {
            Status::Continue => 100,
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::PartialContent => 206,
            Status::MovedPermanently => 301,
            Status::Found => 302,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::PreconditionFailed => 412,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::ExpectationFailed => 417,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::BadGateway => 502,
            Status::ServiceUnavailable => 503,
            Status::GatewayTimeout => 504,
            Status::HttpVersionNotSupported => 505,
        }
    }

    /// The RFC 9110 reason phrase, for the status line and error pages.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Continue => "Continue",
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::PartialContent => "Partial Content",
            Status::MovedPermanently => "Moved Permanently",
            Status::Found => "Found",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::LengthRequired => "Length Required",
            Status::PreconditionFailed => "Precondition Failed",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::ExpectationFailed => "Expectation Failed",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::BadGateway => "Bad Gateway",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::GatewayTimeout => "Gateway Timeout",
            Status::HttpVersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// The variant for a numeric code, or `None` for a code uwgate does not produce.
    pub fn from_code(code: u16) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| s.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_code() {
        for s in Status::ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
    }

    #[test]
    fn codes_are_listed_in_ascending_order_without_duplicates() {
        for pair in Status::ALL.windows(2) {
            assert!(pair[0].code() < pair[1].code(), "{:?}", pair);
        }
    }

    #[test]
    fn unknown_codes_have_no_variant() {
        for code in [0, 99, 101, 201, 299, 418, 499, 506, 599, 999, u16::MAX] {
            assert_eq!(Status::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn reasons_follow_rfc_9110() {
        assert_eq!(Status::Ok.reason(), "OK");
        assert_eq!(Status::BadRequest.reason(), "Bad Request");
        assert_eq!(Status::ContentTooLarge.reason(), "Content Too Large");
        assert_eq!(Status::UriTooLong.reason(), "URI Too Long");
        assert_eq!(
            Status::RequestHeaderFieldsTooLarge.reason(),
            "Request Header Fields Too Large"
        );
        assert_eq!(Status::HttpVersionNotSupported.code(), 505);
    }

    #[test]
    fn reasons_are_printable_ascii_for_the_status_line() {
        for s in Status::ALL {
            let r = s.reason();
            assert!(!r.is_empty());
            assert!(r.bytes().all(|b| (b' '..=b'~').contains(&b)), "{r}");
        }
    }
}
