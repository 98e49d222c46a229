//! A non-blocking stream socket to a TCP address or a unix path: the uwsgi upstream
//! connection and the watchdog's ready probe are both one of these.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    /// Starts a non-blocking connect (completion is reported as writability).
    pub fn connect_tcp(addr: SocketAddr) -> io::Result<Stream> {
        mio::net::TcpStream::connect(addr).map(Stream::Tcp)
    }

    /// Connects to a unix socket (done at once, or refused).
    pub fn connect_unix(path: &Path) -> io::Result<Stream> {
        mio::net::UnixStream::connect(path).map(Stream::Unix)
    }

    /// The socket as a mio event source, to register.
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
}
