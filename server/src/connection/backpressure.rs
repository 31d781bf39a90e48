//! A connection's output backpressure: what it has queued and holds,
//! and the command pipes left unread until its socket drains.

use rexec_proto::OutputStream;

use super::{Connection, Hold};
use crate::registry::ProcId;

impl Connection {
    /// Bytes queued for the socket.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Bytes this connection holds itself: queued output and a partly
    /// received frame (the memory budget counts them).
    pub fn held_bytes(&self) -> usize {
        self.out.len() + self.decoder.buffered()
    }

    /// The buffer frames are encoded onto; flushed by [`Connection::flush`].
    pub fn frames(&mut self) -> &mut Vec<u8> {
        self.out.tail()
    }

    /// Remembers a pipe left unread until the socket drains.
    pub fn pause_pipe(&mut self, proc: ProcId, stream: OutputStream) {
        if !self.paused_pipes.contains(&(proc, stream)) {
            self.paused_pipes.push((proc, stream));
        }
    }

    pub fn has_paused_pipes(&self) -> bool {
        !self.paused_pipes.is_empty()
    }

    pub fn pauses(&self, proc: ProcId) -> bool {
        self.paused_pipes.iter().any(|(k, _)| *k == proc)
    }

    /// The paused pipes, if the queue has drained enough to read them again.
    pub fn pipes_to_resume(&mut self, queue_limit: usize) -> Vec<(ProcId, OutputStream)> {
        if self.holds.has(Hold::Memory) || self.spliced.is_some() || self.out.len() >= queue_limit {
            return Vec::new();
        }
        std::mem::take(&mut self.paused_pipes)
    }

    /// Whether output must wait before more is read from a pipe: the queue
    /// is over its limit, a spliced frame is owed, what was copied must go
    /// out first (zero-copy), or memory is short.
    pub fn output_blocked(&self, queue_limit: usize, zero_copy: bool, over_budget: bool) -> bool {
        self.is_native()
            && (self.out.len() >= queue_limit
                || self.spliced.is_some()
                || (zero_copy && !self.out.is_empty())
                || self.holds.has(Hold::Memory)
                || (over_budget && !self.out.is_empty()))
    }
}
