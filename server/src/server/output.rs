//! Child output: read from the pipes, framed onto the connection's queue,
//! written to the socket in batches; pipes paused while the queue is over
//! its limit (backpressure) and resumed when it drains.

use rexec_proto::OutputStream;

use std::time::Instant;

use super::Server;
use crate::process::{PumpIo, Pumped};
use crate::registry::{ConnId, ProcId};

impl Server {
    /// Reads a child's pipe and forwards what it produced, until the pipe
    /// would block, ends, or the connection's queue is over its limit. The
    /// command moves each chunk (`Proc::pump`); this routes what it says.
    pub(super) fn pump(&mut self, proc: ProcId, stream: OutputStream) {
        // One clock reading per drain, not per chunk: the budget is
        // recounted at most every 10 ms anyway.
        let now = Instant::now();
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
            };
            match p.pump(stream, conn, &mut io) {
                Pumped::More => {}
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
                    p.stop(&mut self.timers, Instant::now(), self.cfg.kill_grace);
                    self.close_output(proc);
                    self.maybe_finish(proc);
                    return self.check_close(conn_id);
                }
                Pumped::Dead => return self.close_conn(conn_id),
            }
        }
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

    pub(super) fn close_pipe(&mut self, proc: ProcId, stream: OutputStream) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let (pipe, was_grown) = p.take_pipe(stream);
        if was_grown {
            self.budget.big_pipes -= 1;
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
