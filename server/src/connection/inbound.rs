//! A large `Stdin` chunk's data, moved from the socket into its command's
//! pipe instead of read (splice_in.rs): the connection knows that the next
//! bytes of its stream are that chunk's, and reads frames again after them.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use rexec_proto::PartialStdin;

use super::{Connection, State, Transport, Wire};
use crate::protocol::Phase;
use crate::splice_in::{Inbound, Moved, Os, SPLICE_IN_MIN, move_chunk};

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
            || self.stream.fd().is_none()
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
    /// something stops it (splice_in.rs's `move_chunk`). Bytes that could
    /// only be read, not spliced, are left in `scratch` ([`Moved::Read`])
    /// for the caller to queue before the rest.
    pub fn move_inbound(
        &mut self,
        pipe: Option<BorrowedFd<'_>>,
        scratch: &mut [u8],
        now: Instant,
    ) -> io::Result<Moved> {
        let Some(chunk) = self.inbound.as_mut() else {
            return Ok(Moved::Done);
        };
        let Some(sock) = self.stream.fd() else {
            return Err(io::Error::other("no socket to splice from"));
        };
        let (moved, heard) = move_chunk(&mut Os, chunk, sock, pipe, scratch)?;
        if heard {
            self.last_heard = now;
        }
        if moved == Moved::Done {
            // A whole message: activity, and no frame is partly received.
            self.inbound = None;
            self.after_splice = true;
            self.last_activity = now;
            self.partial_since = None;
        }
        Ok(moved)
    }
}
