//! Zero-copy input: the data of a large `Stdin` frame moved from the
//! socket into the command's pipe with `splice(2)`, so that an upload's
//! bytes never enter rexecd's memory (splice.rs does the same for output).
//!
//! Read the ordinary way, every byte of an upload was copied four times on
//! its way through rexecd: socket to read buffer, read buffer to decoder,
//! decoder to message, message to the helper's queue, and once more by the
//! kernel into the pipe; that was a second of CPU per GiB. Instead, as
//! soon as the decoder holds the start of a `Stdin` frame, its header and
//! the data that came with it are queued for the command as usual, and the
//! connection remembers that the next `remaining` bytes of its stream are
//! that command's: they go from the socket to the pipe by splice, page by
//! page, and framing resumes after them. The bytes the command reads are
//! exactly those the copying path would have written.
//!
//! Used on plain native connections only (TLS decrypts in user space).

use std::io;
use std::os::fd::BorrowedFd;

use rustix::pipe::SpliceFlags;

/// A chunk whose missing data is at least this large is spliced; a smaller
/// one is read as usual (a splice costs more than copying a few KiB).
pub const SPLICE_IN_MIN: usize = 16 * 1024;

/// How much is read from the socket just after a spliced chunk: enough for
/// the next frame's header, so that what follows can be spliced too rather
/// than read into the buffer.
pub const READ_AFTER_SPLICE: usize = 4 * 1024;

/// The rest of a `Stdin` frame still in the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// The client's id of the command it is for.
    pub id: u32,
    /// Data bytes of the frame not yet moved.
    pub remaining: usize,
}

impl From<&rexec_proto::PartialStdin<'_>> for Inbound {
    /// The part of a chunk that has begun to arrive still to come.
    fn from(p: &rexec_proto::PartialStdin<'_>) -> Inbound {
        Inbound {
            id: p.id,
            remaining: p.remaining,
        }
    }
}

/// How far moving an inbound chunk got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The whole chunk is in the pipe (or discarded): framing resumes.
    Done,
    /// The socket has nothing more for now: wait for it to be readable.
    SocketEmpty,
    /// The pipe is full: wait for the command to read.
    PipeFull,
    /// The command closed its stdin: the rest is to be discarded.
    PipeClosed,
    /// The client ended its stream in the middle of the frame.
    Ended,
}

/// Splices up to `len` bytes from `sock` into `pipe`, without blocking on
/// either: the bytes moved, or what stopped it.
///
/// `EAGAIN` does not say which side would block. The pipe is asked with a
/// zero-timeout poll, which tests exactly what wakes a writer when the
/// reader makes room: so "full" here means an event will come. Otherwise
/// it was the socket; but the socket's own count cannot be trusted to say
/// it was empty (bytes that arrived while splice held the socket's lock
/// are queued only as it lets go), so bytes it claims are tried again, a
/// few times, before waiting for its next event.
pub fn socket_to_pipe(
    sock: BorrowedFd<'_>,
    pipe: BorrowedFd<'_>,
    len: usize,
) -> io::Result<Result<usize, Moved>> {
    let mut tries = 0;
    loop {
        let moved = match rustix::pipe::splice(
            sock,
            None,
            pipe,
            None,
            len,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        ) {
            Ok(0) => Err(Moved::Ended),
            Ok(n) => Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) if pipe_full(pipe)? => Err(Moved::PipeFull),
            Err(rustix::io::Errno::AGAIN) if tries < 4 && crate::splice::pending(sock)? > 0 => {
                tries += 1;
                continue;
            }
            Err(rustix::io::Errno::AGAIN) => Err(Moved::SocketEmpty),
            Err(rustix::io::Errno::PIPE) => Err(Moved::PipeClosed),
            Err(e) => return Err(e.into()),
        };
        return Ok(moved);
    }
}

/// Whether a writer would block on `pipe` (no room: a read will wake it).
fn pipe_full(pipe: BorrowedFd<'_>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&pipe, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    // A pipe with no reader polls as writable (and errors): not "full".
    Ok(!fds[0].revents().intersects(PollFlags::OUT | PollFlags::ERR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn bytes_move_from_a_socket_into_a_pipe_and_each_stop_is_told() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let (mut rx, tx) = std::io::pipe().unwrap();
        rustix::fs::fcntl_setfl(&tx, rustix::fs::OFlags::NONBLOCK).unwrap();

        // Nothing sent yet.
        assert_eq!(
            socket_to_pipe(server.as_fd(), tx.as_fd(), 10).unwrap(),
            Err(Moved::SocketEmpty)
        );
        client.write_all(b"hello world").unwrap();
        let mut moved = 0;
        while moved < 5 {
            match socket_to_pipe(server.as_fd(), tx.as_fd(), 5 - moved).unwrap() {
                Ok(n) => moved += n,
                Err(Moved::SocketEmpty) => std::thread::yield_now(),
                Err(other) => panic!("{other:?}"),
            }
        }
        let mut got = [0u8; 5];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello", "only the bytes asked for");

        // A full pipe, with bytes waiting in the socket.
        let fill = vec![0u8; rustix::pipe::fcntl_getpipe_size(&tx).unwrap()];
        let mut tx_file = &tx;
        let mut filled = 0;
        while filled < fill.len() {
            match tx_file.write(&fill[filled..]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            socket_to_pipe(server.as_fd(), tx.as_fd(), 6).unwrap(),
            Err(Moved::PipeFull)
        );

        // The reader went away.
        drop(rx);
        assert_eq!(
            socket_to_pipe(server.as_fd(), tx.as_fd(), 6).unwrap(),
            Err(Moved::PipeClosed)
        );

        // The client closed: the stream ended.
        let (_rx2, tx2) = std::io::pipe().unwrap();
        let mut rest = [0u8; 6];
        let mut plain = &server;
        loop {
            match plain.read(&mut rest) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        drop(client);
        loop {
            match socket_to_pipe(server.as_fd(), tx2.as_fd(), 6).unwrap() {
                Err(Moved::SocketEmpty) => std::thread::yield_now(),
                other => break assert_eq!(other, Err(Moved::Ended)),
            }
        }
    }
}
