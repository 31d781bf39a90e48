//! A command's output, one chunk at a time: read from its pipe (or spliced
//! from it) and framed onto a [`Sink`] it does not own (its connection).
//! The command owns its pipes and its counts; it answers what happened,
//! and the server routes that (server/output.rs).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rexec_proto::{OutputStream, encode_output_frame};

use super::Proc;
use super::sink::Sink;
use crate::splice::{self, Sent};
use crate::splice_in::Kernel;

/// Queued output is written to the socket once it reaches this much (or
/// when the pipe has nothing more for now).
pub(crate) const FLUSH_BATCH: usize = 256 * 1024;
/// A pipe's default capacity: finding this much waiting means the command
/// writes faster than it is read, and its pipe is worth growing.
const PIPE_DEFAULT: usize = 64 * 1024;
/// Smaller chunks are copied: for a few bytes, one `read` costs less than
/// a header write and a splice.
const SPLICE_MIN: usize = 16 * 1024;
/// Most pipes grown to `splice::BIG_PIPE` at once: up to 64 MiB of kernel
/// memory, which commands with a slow reader could otherwise multiply.
pub(crate) const MAX_BIG_PIPES: usize = 64;

/// What a pump needs from the server besides the command and its
/// connection: limits, the memory budget's word, shared counters, and the
/// kernel its pipes are read through.
pub(crate) struct PumpIo<'a> {
    /// Splice busy pipes into plain sockets (`--no-splice` turns it off).
    pub splice: bool,
    /// Unsent bytes a connection may queue before its pipes wait.
    pub queue_limit: usize,
    /// Most output bytes per command.
    pub out_limit: Option<u64>,
    /// The server-wide memory budget is spent.
    pub over_budget: bool,
    /// Where a copied chunk is read into.
    pub scratch: &'a mut [u8],
    /// Pipes grown to `splice::BIG_PIPE`, all commands together.
    pub big_pipes: &'a mut usize,
    /// Bytes held in queues, all connections together (an estimate).
    pub held: &'a mut usize,
    /// What reads a pipe: the real kernel (`splice_in::Os`), or a
    /// simulated one that interrupts and shortens reads
    /// (tests/sim/output.rs).
    pub kernel: &'a mut dyn for<'f> Kernel<BorrowedFd<'f>>,
}

/// What one step of [`Proc::pump`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// A chunk was sent or queued: read again.
    More,
    /// Nothing to read now (the pipe would block, is closed, or the command
    /// has not started).
    Idle,
    /// Output waits for the socket to drain or for memory: the pipe stays
    /// unread (the child blocks when it fills) until resumed.
    Paused,
    /// The socket is full mid-splice: the same, without the memory budget
    /// playing any part.
    SocketFull,
    /// The pipe ended: close it.
    Ended,
    /// The output limit was reached (or, for a tutorial reply, the memory
    /// budget): stop the command.
    Cut,
    /// The socket failed: the connection is dead.
    Dead,
}

impl Proc {
    /// Moves one chunk of `stream`'s output towards `conn`.
    pub(crate) fn pump(
        &mut self,
        stream: OutputStream,
        conn: &mut impl Sink,
        io: &mut PumpIo<'_>,
    ) -> Pumped {
        if self.child.is_none() {
            // Not started yet: nothing is read before `Started` is sent
            // (on_spawned() pumps both pipes then).
            return Pumped::Idle;
        }
        if conn.is_dead() {
            return Pumped::Dead;
        }
        // Where output is spliced, what a copying read queued is written
        // before more is read: the pipe, not rexecd, holds the rest.
        let zero_copy = io.splice && conn.zero_copy() && self.pty.is_none();
        let flushed = conn.queued() >= FLUSH_BATCH || (zero_copy && conn.queued() > 0);
        if flushed {
            conn.flush();
        }
        let mut blocked = conn.output_blocked(io.queue_limit, zero_copy, io.over_budget);
        if blocked && !flushed {
            // What is queued is written before the pipe waits, batch or
            // not: the socket tells when it drains only after a write it
            // could not take all of, so a queue never written would hold
            // the pipe for ever; and if the socket took it all, there is
            // nothing to wait for (found by the output simulation under a
            // queue limit below a batch; over the memory budget it would
            // wait for the recount).
            conn.flush();
            blocked = conn.output_blocked(io.queue_limit, zero_copy, io.over_budget);
        }
        if blocked {
            // Backpressure: leave the bytes in the pipe and come back when
            // the socket drains, or when the server has memory again.
            return Pumped::Paused;
        }
        if io.splice
            && conn.can_splice()
            && self.pty.is_none()
            && let Some(step) = self.splice_chunk(stream, conn, io)
        {
            return step;
        }
        self.copy_chunk(stream, conn, io)
    }

    /// Zero-copy: as much as the pipe holds goes into one frame, pipe to
    /// socket (splice.rs). `None` when the chunk is better copied: an empty
    /// or ended pipe, a few bytes, or a chunk the output limit cuts.
    fn splice_chunk(
        &mut self,
        stream: OutputStream,
        conn: &mut impl Sink,
        io: &mut PumpIo<'_>,
    ) -> Option<Pumped> {
        let slot = stream as usize;
        let pipe = match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        };
        let rx = pipe.as_ref()?.0.as_fd();
        let waiting = splice::pending(rx).unwrap_or(0);
        if waiting >= PIPE_DEFAULT
            && !self.grown[slot]
            && *io.big_pipes < MAX_BIG_PIPES
            && splice::grow(rx)
        {
            self.grown[slot] = true;
            *io.big_pipes += 1;
        }
        let len = waiting.min(splice::SPLICE_MAX);
        let fits = io
            .out_limit
            .is_none_or(|l| self.bytes_out + len as u64 <= l);
        if len < SPLICE_MIN || !fits {
            return None;
        }
        match conn.splice_from(rx, stream, self.id, len) {
            Ok(Sent::Blocked) => return Some(Pumped::SocketFull),
            Ok(_) => {}
            Err(e) => {
                log::debug!("{}: splice failed: {e}", conn.peer());
                conn.set_dead();
                return Some(Pumped::Dead);
            }
        }
        self.bytes_out += len as u64;
        Some(Pumped::More)
    }

    /// Reads up to a chunk into `io.scratch` and frames it (or, for the
    /// tutorial protocols, adds it to the reply being built).
    fn copy_chunk(
        &mut self,
        stream: OutputStream,
        conn: &mut impl Sink,
        io: &mut PumpIo<'_>,
    ) -> Pumped {
        let tutorial_held = self.tutorial_out.len() + self.tutorial_err.len();
        // The tutorial protocols cannot send a reply before it is whole, so
        // holding their pipes back would never free anything: over the
        // budget, a large reply is cut instead.
        let cut_tutorial = !conn.is_native()
            && (conn.memory_held() || io.over_budget)
            && tutorial_held >= FLUSH_BATCH;
        let is_pty = self.pty.is_some();
        let Some((rx, _)) = self.pipe(stream) else {
            return Pumped::Idle;
        };
        let n = match io
            .kernel
            .read(rx.as_fd(), io.scratch)
            .map_err(io::Error::from)
        {
            Ok(n) if n > 0 => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Pumped::More,
            end => {
                // Nothing more for now: send what was batched up.
                conn.flush();
                return match end {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pumped::Idle,
                    // A pty's master reads EIO once every holder of the
                    // terminal is gone: its end of output.
                    Err(e)
                        if is_pty
                            && e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) =>
                    {
                        Pumped::Ended
                    }
                    Err(e) => {
                        log::warn!("reading output of pid {}: {e}", self.pgid);
                        Pumped::Ended
                    }
                    _ => Pumped::Ended,
                };
            }
        };
        let room = match io.out_limit {
            _ if cut_tutorial => 0,
            Some(l) => l.saturating_sub(self.bytes_out),
            None => u64::MAX,
        };
        let take = n.min(usize::try_from(room).unwrap_or(usize::MAX));
        let data = &io.scratch[..take];
        self.bytes_out += take as u64;
        *io.held += take;
        if conn.is_native() {
            if take > 0 {
                // Flushed in batches (above, and when the pipe runs dry):
                // fewer, larger writes to the socket.
                encode_output_frame(stream, self.id, data, conn.frames());
            }
        } else {
            match stream {
                OutputStream::Stdout => self.tutorial_out.extend_from_slice(data),
                OutputStream::Stderr => self.tutorial_err.extend_from_slice(data),
            }
        }
        if take == n {
            return Pumped::More;
        }
        if !conn.is_native() {
            // No truncation flag in the tutorial replies: say it in the
            // reply itself.
            let why = if cut_tutorial {
                "the server's memory budget (--max-buffer) is in use"
            } else {
                "the server's output limit (--max-output)"
            };
            let note = format!("\nrexecd: output cut at {} bytes: {why}\n", self.bytes_out);
            self.tutorial_err.extend_from_slice(note.as_bytes());
        }
        self.truncated = true;
        log::info!(
            "{}: command {} truncated at {} bytes",
            self.peer,
            self.id,
            self.bytes_out
        );
        conn.flush(); // the last, cut chunk goes out now, not at the reap
        Pumped::Cut
    }

    /// Whether `stream`'s pipe is better left to fill a little before it
    /// is read: the command has been streaming and the pipe holds little
    /// (coalesce.rs). Only a grown pipe (grown here if need be) has room to
    /// gather much meanwhile: a default one holds 64 KiB, and waiting on it
    /// would only slow the writer down. Never for a pty (a terminal is
    /// interactive).
    pub(crate) fn worth_waiting(
        &mut self,
        stream: OutputStream,
        now: std::time::Instant,
        big_pipes: &mut usize,
    ) -> bool {
        if self.pty.is_some() || self.child.is_none() || !self.rate.hot(now, self.bytes_out) {
            return false;
        }
        let slot = stream as usize;
        let pipe = match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        };
        let Some((rx, _)) = pipe else {
            return false;
        };
        let rx = rx.as_fd();
        if !self.grown[slot] {
            if *big_pipes >= MAX_BIG_PIPES || !splice::grow(rx) {
                return false;
            }
            self.grown[slot] = true;
            *big_pipes += 1;
        }
        splice::pending(rx).is_ok_and(|n| n < crate::coalesce::BATCH)
    }

    /// One of its output pipes, while open.
    pub(crate) fn pipe(
        &mut self,
        stream: OutputStream,
    ) -> Option<&mut (mio::unix::pipe::Receiver, mio::Token)> {
        match stream {
            OutputStream::Stdout => self.stdout.as_mut(),
            OutputStream::Stderr => self.stderr.as_mut(),
        }
    }
}

#[cfg(test)]
mod tests;
