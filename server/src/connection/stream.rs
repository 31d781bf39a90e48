//! The client's end of a connection: a TCP socket, or, in the router's unit
//! tests, a client played in memory (played.rs) with no socket at all, so
//! that the router can be driven message by message at a chosen time.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

#[cfg(test)]
pub use played::Played;

/// Where a connection's bytes come from and go to.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    /// A client a test plays: what it sends is read, what is written it
    /// receives; never registered with the poll (the test says when the
    /// connection is readable).
    #[cfg(test)]
    Played(Played),
}

impl Stream {
    /// The socket, where there is one: splicing and socket options need it.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Stream::Tcp(s) => Some(s.as_fd()),
            #[cfg(test)]
            Stream::Played(_) => None,
        }
    }

    /// Reads without consuming (the first byte, to tell TLS from plain).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.peek(buf),
            #[cfg(test)]
            Stream::Played(p) => p.peek(buf),
        }
    }

    /// Ends our sending side: the client reads the end of the stream.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            #[cfg(test)]
            Stream::Played(p) => {
                p.server_finished();
                Ok(())
            }
        }
    }

    /// The address the client reached.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr(),
            #[cfg(test)]
            Stream::Played(p) => Ok(p.local_addr()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(test)]
            Stream::Played(p) => p.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(test)]
            Stream::Played(p) => p.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(test)]
            Stream::Played(_) => Ok(()),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, token, interest),
            #[cfg(test)]
            Stream::Played(_) => Ok(()),
        }
    }

    fn reregister(&mut self, r: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, token, interest),
            #[cfg(test)]
            Stream::Played(_) => Ok(()),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            #[cfg(test)]
            Stream::Played(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod played;
