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
//!
//! The system calls go through [`Kernel`], so that the simulation
//! (sim/inbound.rs) can run this very code against a kernel whose every
//! answer comes from a seed: partial moves, `EAGAIN`, `EINTR`, urgent
//! marks, a pipe that fills, a client that goes.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

/// The system calls zero-copy input makes, on descriptors of type `F`.
pub trait Kernel<F: Copy> {
    /// splice(2) of up to `len` bytes, `SPLICE_F_MOVE | SPLICE_F_NONBLOCK`.
    fn splice(&mut self, from: F, to: F, len: usize) -> Result<usize, Errno>;
    /// read(2).
    fn read(&mut self, fd: F, buf: &mut [u8]) -> Result<usize, Errno>;
    /// poll(2) for `POLLOUT` with a zero timeout: the events returned.
    fn poll_out(&mut self, fd: F) -> Result<PollFlags, Errno>;
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Os;

impl<'a> Kernel<BorrowedFd<'a>> for Os {
    fn splice(
        &mut self,
        from: BorrowedFd<'a>,
        to: BorrowedFd<'a>,
        len: usize,
    ) -> Result<usize, Errno> {
        rustix::pipe::splice(
            from,
            None,
            to,
            None,
            len,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        )
    }

    fn read(&mut self, fd: BorrowedFd<'a>, buf: &mut [u8]) -> Result<usize, Errno> {
        rustix::io::read(fd, buf)
    }

    fn poll_out(&mut self, fd: BorrowedFd<'a>) -> Result<PollFlags, Errno> {
        use rustix::event::{PollFd, Timespec};
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero))?;
        Ok(fds[0].revents())
    }
}

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
    /// splice would not take the bytes the socket holds (it stops at an
    /// urgent mark, for one, where a read steps over it), so this many
    /// were read into the caller's buffer instead: they are the command's
    /// next bytes, to be queued before the rest.
    Read(usize),
}

/// Most bytes read instead of spliced at a time ([`Moved::Read`]): they are
/// copied, so a little, and splicing is tried again right after.
const READ_INSTEAD_MAX: usize = 4 * 1024;

/// Splices up to `len` bytes from `sock` into `pipe`, without blocking on
/// either: the bytes moved, or what stopped it.
///
/// `EAGAIN` does not say which side would block. The pipe is asked with a
/// zero-timeout poll, which tests exactly what wakes a writer when the
/// reader makes room: so "full" here means an event will come. Otherwise
/// it may have been the socket, but neither `EAGAIN` nor the socket's own
/// count (`FIONREAD`) says for certain that it is empty: splice stops at an
/// urgent mark, where `FIONREAD` counts 0 though bytes follow it, and
/// bytes that arrived while splice held the socket's lock are queued only
/// as it lets go. Waiting for an edge-triggered event when bytes are there
/// waits forever (the client's window fills, nothing more arrives, and
/// the frame times out). So a read has the last word: `EAGAIN` from it is
/// an empty socket, 0 the end of the stream, and bytes it returns are left
/// in `scratch` ([`Moved::Read`]) for the caller to queue.
pub fn socket_to_pipe<F: Copy>(
    k: &mut impl Kernel<F>,
    sock: F,
    pipe: F,
    len: usize,
    scratch: &mut [u8],
) -> io::Result<Result<usize, Moved>> {
    let most = len.min(scratch.len()).min(READ_INSTEAD_MAX);
    loop {
        let moved = match k.splice(sock, pipe, len) {
            Ok(n) if n > 0 => Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if pipe_full(k, pipe)? => Err(Moved::PipeFull),
            // 0 (tcp_splice_read's answer at an urgent mark when the socket
            // blocks, as well as at the end) or EAGAIN with room in the pipe;
            // or EINVAL, splice refusing `pipe` (not a pipe: callers do not
            // splice into a terminal, and a read does the same, slower).
            Ok(_) | Err(Errno::AGAIN | Errno::INVAL) => {
                read_instead(k, sock, &mut scratch[..most])?
            }
            Err(Errno::PIPE) => Err(Moved::PipeClosed),
            Err(e) => return Err(e.into()),
        };
        return Ok(moved);
    }
}

/// Moves the rest of `chunk` from `sock` into `pipe` (or, with none, reads
/// and drops it, so that framing can resume), until it is all moved or
/// something stops it; `chunk.remaining` counts down as bytes go. Bytes
/// that could only be read, not spliced, are left in `scratch`
/// ([`Moved::Read`]) for the caller to queue before the rest. Also says
/// whether any byte came from the client (liveness).
pub fn move_chunk<F: Copy>(
    k: &mut impl Kernel<F>,
    chunk: &mut Inbound,
    sock: F,
    pipe: Option<F>,
    scratch: &mut [u8],
) -> io::Result<(Moved, bool)> {
    let mut heard = false;
    while chunk.remaining > 0 {
        let moved = match pipe {
            Some(pipe) => socket_to_pipe(k, sock, pipe, chunk.remaining, scratch)?,
            None => {
                let n = chunk.remaining.min(scratch.len());
                match k.read(sock, &mut scratch[..n]) {
                    Ok(0) => Err(Moved::Ended),
                    Ok(n) => Ok(n),
                    Err(Errno::AGAIN) => Err(Moved::SocketEmpty),
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        match moved {
            Ok(n) => {
                chunk.remaining -= n.min(chunk.remaining);
                heard = true;
            }
            Err(Moved::Read(n)) => {
                // In `scratch`, for the caller to queue.
                chunk.remaining -= n.min(chunk.remaining);
                return Ok((Moved::Read(n), true));
            }
            Err(stop) => return Ok((stop, heard)),
        }
    }
    Ok((Moved::Done, heard))
}

/// Reads into `buf` the bytes a splice would not take: a read tells the
/// end of the stream (0) and an empty socket (`EAGAIN`) for certain, and
/// steps over an urgent mark.
fn read_instead<F: Copy>(
    k: &mut impl Kernel<F>,
    sock: F,
    buf: &mut [u8],
) -> io::Result<Result<usize, Moved>> {
    loop {
        return match k.read(sock, &mut *buf) {
            Ok(0) => Ok(Err(Moved::Ended)),
            Ok(n) => Ok(Err(Moved::Read(n))),
            Err(Errno::AGAIN) => Ok(Err(Moved::SocketEmpty)),
            Err(Errno::INTR) => continue,
            Err(e) => Err(e.into()),
        };
    }
}

/// Whether a writer would block on `pipe` (no room: a read will wake it).
fn pipe_full<F: Copy>(k: &mut impl Kernel<F>, pipe: F) -> io::Result<bool> {
    // poll(2) is never restarted after a signal handler ran, SA_RESTART or
    // not, even with a zero timeout: rexecd catches SIGCHLD, which arrives
    // all the time under load, and an EINTR taken for an error here closed
    // the connection in the middle of an upload.
    let revents = loop {
        match k.poll_out(pipe) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(r) => break r,
        }
    };
    // A pipe with no reader polls as writable (and errors): not "full".
    Ok(!revents.intersects(PollFlags::OUT | PollFlags::ERR))
}

#[cfg(test)]
mod tests;
