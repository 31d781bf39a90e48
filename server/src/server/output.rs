//! Child output: read from the pipes, framed onto the connection's queue,
//! written to the socket in batches; pipes paused while the queue is over
//! its limit (backpressure) and resumed when it drains.

use rexec_proto::OutputStream;

use std::time::Instant;

use super::Server;
use crate::process::{PumpIo, Pumped};
use crate::registry::{ConnId, ProcId};
use crate::splice_in::Os;

impl Server {
    /// Reads a child's pipe and forwards what it produced, until the pipe
    /// would block, ends, or the connection's queue is over its limit. The
    /// command moves each chunk (`Proc::pump`); this routes what it says.
    pub(super) fn pump(&mut self, proc: ProcId, stream: OutputStream) {
        self.pump_from(proc, stream, true);
    }

    /// As [`Server::pump`]; `may_wait`: a streaming command's pipe that
    /// holds little may be left to fill before its first read (not when it
    /// has just been left to fill). After each chunk it may be, in any case
    /// (coalesce.rs).
    fn pump_from(&mut self, proc: ProcId, stream: OutputStream, may_wait: bool) {
        // One clock reading per drain, not per chunk: the budget is
        // recounted at most every 10 ms anyway.
        let now = self.now;
        if may_wait && self.hold_back(proc, stream, now) {
            return;
        }
        loop {
            let over_budget = self.confirm_over_budget(now);
            let Some(p) = self.procs.get_mut(&proc) else {
                return;
            };
            let Some(conn_id) = p.conn() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return;
            };
            let mut io = PumpIo {
                splice: self.cfg.splice,
                queue_limit: self.cfg.queue_limit,
                out_limit: self.cfg.output_limit(),
                over_budget,
                scratch: &mut self.scratch,
                big_pipes: &mut self.budget.big_pipes,
                held: &mut self.budget.held,
                kernel: &mut Os,
            };
            match p.pump(stream, conn, &mut io) {
                Pumped::More => {
                    // A streaming command's small writes: let more gather
                    // rather than read them one by one as they come.
                    if self.hold_back(proc, stream, now) {
                        return;
                    }
                }
                Pumped::Idle => return,
                Pumped::Paused => {
                    // check_budget looks again while memory is short.
                    self.budget.waiting |= over_budget;
                    return conn.pause_pipe(proc, stream);
                }
                Pumped::SocketFull => return conn.pause_pipe(proc, stream),
                Pumped::Ended => {
                    self.close_pipe(proc, stream);
                    return self.maybe_finish(proc);
                }
                Pumped::Cut => {
                    p.stop(&mut self.timers, self.now, self.cfg.kill_grace);
                    self.close_output(proc);
                    self.maybe_finish(proc);
                    return self.check_close(conn_id);
                }
                Pumped::Dead => return self.close_conn(conn_id),
            }
        }
    }

    /// Leaves a streaming command's pipe to fill for a moment when it holds
    /// little: unwatched (so its writes do not wake the loop) until the
    /// coalescing timer fires.
    /// Not while the loop has input deferred to its next turn (a client
    /// floods it): its turns are long then, and a pipe read once a turn
    /// gathers plenty anyway.
    fn hold_back(&mut self, proc: ProcId, stream: OutputStream, now: Instant) -> bool {
        if !self.backlog.is_empty() {
            return false;
        }
        let Some(p) = self.procs.get_mut(&proc) else {
            return false;
        };
        if !p.worth_waiting(stream, now, &mut self.budget.big_pipes) {
            return false;
        }
        let Some((rx, _)) = p.pipe(stream) else {
            return false;
        };
        if self.registry.mute(rx).is_err() {
            return false; // already held: read it now
        }
        if let Err(e) = self.coalesce.hold(proc, stream) {
            log::warn!("cannot arm the coalescing timer: {e}");
            self.waiting_over(proc, stream);
            return false;
        }
        true
    }

    /// The coalescing timer fired: the pipes left to fill are watched and
    /// read again.
    pub(super) fn release_pipes(&mut self) {
        for (proc, stream) in self.coalesce.release() {
            if self.waiting_over(proc, stream) {
                self.pump_from(proc, stream, false);
            }
        }
    }

    /// Watches a held pipe again; whether it is still open.
    fn waiting_over(&mut self, proc: ProcId, stream: OutputStream) -> bool {
        let Some((rx, token)) = self.procs.get_mut(&proc).and_then(|p| p.pipe(stream)) else {
            return false;
        };
        let token = *token;
        if let Err(e) = self.registry.unmute(rx, token, mio::Interest::READABLE) {
            log::warn!("cannot watch a command's output again: {e}");
        }
        true
    }

    /// Resumes pipes paused for backpressure once the queue is under its limit.
    pub(super) fn resume_pipes(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        for (proc, stream) in conn.pipes_to_resume(self.cfg.queue_limit) {
            self.pump(proc, stream);
        }
    }
}
