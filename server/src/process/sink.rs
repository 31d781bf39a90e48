//! What a command's output is written to, seen from the command: a queue
//! of frames with a socket behind it. The connection implements it
//! (connection.rs); the command never owns it, never learns what else the
//! connection does, and the pump can be driven against a stand-in
//! (process/tests.rs) with no socket at all.

use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rexec_proto::OutputStream;

use crate::splice::Sent;

/// Where [`Proc::pump`](super::Proc::pump) puts what it reads.
pub(crate) trait Sink {
    /// Who is reading (for the log).
    fn peer(&self) -> SocketAddr;
    /// The peer is gone: nothing more is worth reading for it.
    fn is_dead(&self) -> bool;
    /// Says the peer is gone (a splice onto its socket failed).
    fn set_dead(&mut self);
    /// Frames go out as rexec frames; otherwise output is gathered into a
    /// tutorial protocol's whole reply.
    fn is_native(&self) -> bool;
    /// Bytes queued and not yet written.
    fn queued(&self) -> usize;
    /// The buffer a frame is encoded onto.
    fn frames(&mut self) -> &mut Vec<u8>;
    /// Writes what is queued, as far as the peer takes it.
    fn flush(&mut self);
    /// Output must wait before more is read (the queue is full, a spliced
    /// frame is owed, or memory is short).
    fn output_blocked(&self, queue_limit: usize, zero_copy: bool, over_budget: bool) -> bool;
    /// The server's memory budget holds this peer's output back.
    fn memory_held(&self) -> bool;
    /// Output may go pipe to socket now, nothing queued before it.
    fn can_splice(&self) -> bool;
    /// Output goes by splice here (a plain native socket still delivering).
    fn zero_copy(&self) -> bool;
    /// Splices `len` bytes from `pipe` as one frame of `stream` for `id`.
    fn splice_from(
        &mut self,
        pipe: BorrowedFd<'_>,
        stream: OutputStream,
        id: u32,
        len: usize,
    ) -> io::Result<Sent>;
}
