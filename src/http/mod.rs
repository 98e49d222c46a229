//! HTTP/1.1 on fixed buffers: request-head parsing (on httparse), framing, path
//! canonicalisation, ranges, dates, and the response-head writer with error pages.
//!
//! Pure code: no sockets, no files, no allocation. Parsers return the HTTP status as their error.

pub mod chunked;
pub mod date;
pub mod path;
pub mod proxy_protocol;
pub mod range;
pub mod realip;
pub mod request;
pub mod response;
pub mod response_body;
pub mod response_head;
pub mod status;

pub use status::Status;
