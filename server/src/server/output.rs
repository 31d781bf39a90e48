//! Child output: read from the pipes, framed onto the connection's queue,
//! written to the socket in batches; pipes paused while the queue is over
//! its limit (backpressure) and resumed when it drains.

use std::io::{self, Read};
use std::os::fd::AsFd;

use rexec_proto::{OutputStream, encode_output_frame};

use super::Server;
use crate::registry::{ConnId, ProcId};
use crate::splice::{self, Sent};

/// Queued output is written to the socket once it reaches this much (or
/// when the pipe has nothing more for now).
const FLUSH_BATCH: usize = 256 * 1024;
/// A pipe's default capacity: finding this much waiting means the command
/// writes faster than it is read, and its pipe is worth growing.
const PIPE_DEFAULT: usize = 64 * 1024;
/// Smaller chunks are copied: for a few bytes, one `read` costs less than
/// a header write and a splice.
const SPLICE_MIN: usize = 16 * 1024;
/// Most pipes grown to `splice::BIG_PIPE` at once: up to 64 MiB of kernel
/// memory, which commands with a slow reader could otherwise multiply.
const MAX_BIG_PIPES: usize = 64;

impl Server {
    /// Reads a child's pipe and forwards what it produced, until the pipe
    /// would block, ends, or the connection's queue is over its limit.
    pub(super) fn pump(&mut self, proc: ProcId, stream: OutputStream) {
        let queue_limit = self.cfg.queue_limit;
        let out_limit = self.cfg.output_limit();
        loop {
            let over_budget = self.confirm_over_budget();
            let Some(p) = self.procs.get_mut(&proc) else {
                return;
            };
            if p.child.is_none() {
                // Not started yet: nothing is read before `Started` is sent
                // (started() pumps both pipes then).
                return;
            }
            let Some(conn_id) = p.conn else {
                return;
            };
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return;
            };
            if conn.is_dead() {
                return self.close_conn(conn_id);
            }
            // Where output is spliced, what a copying read queued is written
            // before more is read: the pipe, not rexecd, holds the rest.
            let zero_copy = self.cfg.splice && conn.zero_copy() && p.pty.is_none();
            if conn.out.len() >= FLUSH_BATCH || (zero_copy && !conn.out.is_empty()) {
                conn.flush();
            }
            let tutorial_held = p.tutorial_out.len() + p.tutorial_err.len();
            // The tutorial protocols cannot send a reply before it is whole,
            // so holding their pipes back would never free anything: over
            // the budget, a large reply is cut instead (below).
            let cut_tutorial = !conn.is_native()
                && (conn.held_back || over_budget)
                && tutorial_held >= FLUSH_BATCH;
            if conn.is_native()
                && (conn.out.len() >= queue_limit
                    || conn.spliced.is_some()
                    || (zero_copy && !conn.out.is_empty())
                    || conn.held_back
                    || (over_budget && !conn.out.is_empty()))
            {
                // Backpressure: leave the bytes in the pipe (the child blocks
                // when it fills) and come back when the socket drains, or
                // when the server has memory again (check_budget looks).
                self.budget_waiting |= over_budget;
                if !conn.paused_pipes.contains(&(proc, stream)) {
                    conn.paused_pipes.push((proc, stream));
                }
                return;
            }
            let pipe = match stream {
                OutputStream::Stdout => p.stdout.as_mut(),
                OutputStream::Stderr => p.stderr.as_mut(),
            };
            let Some((rx, _)) = pipe else {
                return;
            };
            if self.cfg.splice && conn.can_splice() && p.pty.is_none() {
                // Zero-copy: as much as the pipe holds goes into one frame,
                // pipe to socket (splice.rs). An empty or ended pipe, or a
                // chunk the output limit cuts, takes the copying path below.
                let waiting = splice::pending(rx.as_fd()).unwrap_or(0);
                let slot = stream as usize;
                if waiting >= PIPE_DEFAULT
                    && !p.grown[slot]
                    && self.big_pipes < MAX_BIG_PIPES
                    && splice::grow(rx.as_fd())
                {
                    p.grown[slot] = true;
                    self.big_pipes += 1;
                }
                let len = waiting.min(splice::SPLICE_MAX);
                let fits = out_limit.is_none_or(|l| p.bytes_out + len as u64 <= l);
                if len >= SPLICE_MIN && fits {
                    match splice::send_chunk(rx.as_fd(), conn.stream.as_fd(), stream, p.id, len) {
                        Ok(Sent::All) => {}
                        Ok(Sent::Owed(owed)) => conn.spliced = Some(owed),
                        Ok(Sent::Blocked) => {
                            // The socket is full: wait for it like above.
                            if !conn.paused_pipes.contains(&(proc, stream)) {
                                conn.paused_pipes.push((proc, stream));
                            }
                            return;
                        }
                        Err(e) => {
                            log::debug!("{}: splice failed: {e}", conn.peer);
                            conn.state = crate::connection::State::Dead;
                            return self.close_conn(conn_id);
                        }
                    }
                    p.bytes_out += len as u64;
                    continue;
                }
            }
            let n = match rx.read(&mut self.scratch) {
                Ok(n) if n > 0 => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                end => {
                    // Nothing more for now: send what was batched up.
                    conn.flush();
                    match end {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        // A pty's master reads EIO once every holder of the
                        // terminal is gone: its end of output.
                        Err(e)
                            if p.pty.is_some()
                                && e.raw_os_error()
                                    == Some(rustix::io::Errno::IO.raw_os_error()) => {}
                        Err(e) => log::warn!("reading output of pid {}: {e}", p.pgid),
                        _ => {}
                    }
                    self.close_pipe(proc, stream);
                    return self.maybe_finish(proc);
                }
            };
            let room = match out_limit {
                _ if cut_tutorial => 0,
                Some(l) => l.saturating_sub(p.bytes_out),
                None => u64::MAX,
            };
            let take = n.min(usize::try_from(room).unwrap_or(usize::MAX));
            let data = &self.scratch[..take];
            p.bytes_out += take as u64;
            self.held += take;
            if conn.is_native() {
                if take > 0 {
                    // Flushed in batches (above, and when the pipe runs dry):
                    // fewer, larger writes to the socket.
                    encode_output_frame(stream, p.id, data, conn.out.tail());
                }
            } else {
                match stream {
                    OutputStream::Stdout => p.tutorial_out.extend_from_slice(data),
                    OutputStream::Stderr => p.tutorial_err.extend_from_slice(data),
                }
            }
            if take < n {
                if !conn.is_native() {
                    // No truncation flag in the tutorial replies: say it in
                    // the reply itself.
                    let why = if cut_tutorial {
                        "the server's memory budget (--max-buffer) is in use"
                    } else {
                        "the server's output limit (--max-output)"
                    };
                    let note = format!("\nrexecd: output cut at {} bytes: {why}\n", p.bytes_out);
                    p.tutorial_err.extend_from_slice(note.as_bytes());
                }
                p.truncated = true;
                log::info!(
                    "{}: command {} truncated at {} bytes",
                    p.peer,
                    p.id,
                    p.bytes_out
                );
                conn.flush(); // the last, cut chunk goes out now, not at the reap
                p.stop(&mut self.timers, self.cfg.kill_grace);
                self.close_output(proc);
                self.maybe_finish(proc);
                return self.check_close(conn_id);
            }
        }
    }

    /// Resumes pipes paused for backpressure once the queue is under its limit.
    pub(super) fn resume_pipes(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.paused_pipes.is_empty()
            || conn.held_back
            || conn.spliced.is_some()
            || conn.out.len() >= self.cfg.queue_limit
        {
            return;
        }
        for (proc, stream) in std::mem::take(&mut conn.paused_pipes) {
            self.pump(proc, stream);
        }
    }

    pub(super) fn close_pipe(&mut self, proc: ProcId, stream: OutputStream) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let pipe = match stream {
            OutputStream::Stdout => p.stdout.take(),
            OutputStream::Stderr => p.stderr.take(),
        };
        if std::mem::take(&mut p.grown[stream as usize]) {
            self.big_pipes -= 1;
        }
        if let Some((mut rx, t)) = pipe {
            self.registry.remove(&mut rx, t);
        }
    }

    /// Stops reading both of a command's output pipes.
    pub(super) fn close_output(&mut self, proc: ProcId) {
        self.close_pipe(proc, OutputStream::Stdout);
        self.close_pipe(proc, OutputStream::Stderr);
    }
}
