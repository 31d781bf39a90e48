//! The server's part in zero-copy input (splice_in.rs): a large `Stdin`
//! chunk's start is queued for its command as usual, then the rest of it
//! goes from the socket into the command's pipe once that queue is
//! written (bytes must reach the pipe in order). A full pipe holds the
//! connection's input as a full stdin queue does, and is resumed the same
//! way (`write_stdin`); a command that closed its stdin gets nothing, and
//! the chunk's bytes are read and dropped so that framing resumes.

use super::Server;
use crate::connection::Hold;
use crate::process::StdinStep;
use crate::registry::ConnId;
use crate::splice_in::{Inbound, Moved};

/// What the input loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// No chunk is being spliced: read the socket as usual.
    Read,
    /// A chunk was moved (or its command closed stdin): go on.
    Again,
    /// Wait for an event (the socket, or the pipe), or the connection died.
    Stop,
    /// The client ended its stream (in the middle of the chunk).
    Ended,
}

impl Server {
    /// Begins or continues splicing a `Stdin` chunk on connection `id`.
    pub(super) fn splice_stdin(&mut self, id: ConnId) -> Flow {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Flow::Stop;
        };
        if conn.inbound().is_none() {
            let Some(start) = conn.inbound_start() else {
                return Flow::Read;
            };
            let Some(proc) = conn.command(start.id) else {
                return Flow::Read; // read as usual, and dropped
            };
            let chunk = Inbound::from(&start);
            let total = start.data.len() + start.remaining;
            let Some(added) = self
                .procs
                .get_mut(&proc)
                .and_then(|p| p.begin_stdin_splice(start.data, total))
            else {
                return Flow::Read;
            };
            self.budget.held += added;
            conn.begin_inbound(chunk);
        }
        let Some(cmd) = conn.inbound().map(|i| i.id) else {
            return Flow::Read;
        };
        let proc = conn.command(cmd);
        // What is queued goes first.
        if let Some(k) = proc
            && self.procs.get_mut(&k).map(|p| p.write_stdin()) == Some(StdinStep::Close)
        {
            self.close_stdin(k);
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return Flow::Stop;
        };
        let (pipe, queued) = proc
            .and_then(|k| self.procs.get(&k))
            .map_or((None, 0), |p| (p.stdin_pipe(), p.stdin_queued()));
        if pipe.is_some() && queued > 0 {
            conn.hold(Hold::StdinFull);
            return Flow::Stop;
        }
        match conn.move_inbound(pipe, &mut self.scratch, self.now) {
            Ok(Moved::Done) => Flow::Again,
            Ok(Moved::SocketEmpty) => Flow::Stop,
            Ok(Moved::PipeFull) => {
                conn.hold(Hold::StdinFull);
                Flow::Stop
            }
            Ok(Moved::PipeClosed) => {
                if let Some(k) = proc {
                    self.close_stdin(k);
                }
                Flow::Again
            }
            Ok(Moved::Read(n)) => {
                // Queued like the chunk's start, to be written before the
                // rest; as they are (`as_is`): for a transfer helper they
                // are the next bytes of the data frame whose header is
                // already queued.
                if let Some(p) = proc.and_then(|k| self.procs.get_mut(&k)) {
                    self.budget.held += p.queue_stdin(&self.scratch[..n], false, true).unwrap_or(0);
                }
                Flow::Again
            }
            Ok(Moved::Ended) => {
                log::warn!(
                    "{}: connection closed in the middle of a frame",
                    conn.peer()
                );
                Flow::Ended
            }
            Err(e) => {
                log::debug!("{}: splicing stdin failed: {e}", conn.peer());
                conn.set_dead();
                Flow::Stop
            }
        }
    }
}
