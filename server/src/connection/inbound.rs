//! A large `Stdin` chunk's data, moved from the socket into its command's
//! pipe instead of read (splice_in.rs): the connection knows that the next
//! bytes of its stream are that chunk's, and reads frames again after them.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use rexec_proto::PartialStdin;

use super::{Connection, State, Transport, Wire};
use crate::protocol::Phase;
use crate::splice_in::{Inbound, Moved, SPLICE_IN_MIN, socket_to_pipe};

impl Connection {
    /// The start of a `Stdin` chunk worth splicing, when the decoder holds
    /// one: a plain native connection that runs commands, and enough of
    /// the chunk still to come.
    pub fn inbound_start(&self) -> Option<PartialStdin<'_>> {
        let running = matches!(&self.wire, Wire::Native(p) if p.phase() == Phase::Running);
        if !running
            || self.state != State::Open
            || !matches!(self.transport, Transport::Plain)
            || self.inbound.is_some()
        {
            return None;
        }
        self.decoder
            .partial_stdin()
            .filter(|p| p.remaining >= SPLICE_IN_MIN)
    }

    /// Takes the chunk [`Connection::inbound_start`] found out of the
    /// decoder (its data so far is the caller's to have queued): the rest
    /// is now moved by [`Connection::move_inbound`].
    pub fn begin_inbound(&mut self, chunk: Inbound) {
        self.decoder.discard_partial();
        self.inbound = Some(chunk);
    }

    /// The chunk whose data is still in the socket, if one is.
    pub fn inbound(&self) -> Option<Inbound> {
        self.inbound
    }

    /// Moves the rest of the chunk into `pipe` (or, with none, reads and
    /// discards it, so that framing can resume), until it is all moved or
    /// something stops it. Bytes that could only be read, not spliced, are
    /// left in `scratch` ([`Moved::Read`]) for the caller to queue before
    /// the rest.
    pub fn move_inbound(
        &mut self,
        pipe: Option<BorrowedFd<'_>>,
        scratch: &mut [u8],
        now: Instant,
    ) -> io::Result<Moved> {
        let Some(inbound) = self.inbound.as_mut() else {
            return Ok(Moved::Done);
        };
        while inbound.remaining > 0 {
            let moved = match pipe {
                Some(pipe) => {
                    socket_to_pipe(self.stream.as_fd(), pipe, inbound.remaining, scratch)?
                }
                None => {
                    let n = inbound.remaining.min(scratch.len());
                    match self.stream.read(&mut scratch[..n]) {
                        Ok(0) => Err(Moved::Ended),
                        Ok(n) => Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Moved::SocketEmpty),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            match moved {
                Ok(n) => {
                    inbound.remaining -= n.min(inbound.remaining);
                    self.last_heard = now;
                }
                Err(Moved::Read(n)) => {
                    // In `scratch`, for the caller to queue.
                    inbound.remaining -= n.min(inbound.remaining);
                    self.last_heard = now;
                    return Ok(Moved::Read(n));
                }
                Err(stop) => return Ok(stop),
            }
        }
        // A whole message: activity, and no frame is partly received.
        self.inbound = None;
        self.after_splice = true;
        self.last_activity = now;
        self.partial_since = None;
        Ok(Moved::Done)
    }
}
