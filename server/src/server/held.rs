//! What is held against the memory budget (`--max-buffer`): the running
//! count, and the recount that confirms it before anyone is held back
//! (queues, partly received frames, stdin waiting for a command, and what
//! channels hold for their far ends).
//! Asked by the rooms that queue bytes (output.rs) and by the budget's
//! enforcement (budget.rs).

use std::time::{Duration, Instant};

use super::Server;
use crate::connection::Connection;
use crate::process::Proc;
use crate::registry::ConnId;

/// How often the total is recounted when nothing forces it.
pub(super) const RECOUNT: Duration = Duration::from_millis(10);

impl Server {
    /// Bytes held on behalf of one connection.
    pub(super) fn held_by(&self, id: ConnId, conn: &Connection) -> usize {
        let commands: usize = conn
            .procs()
            .filter_map(|p| self.procs.get(&p))
            .map(Proc::held_bytes)
            .sum();
        conn.held_bytes() + commands + self.forwards.held_by(id)
    }

    /// Whether the running estimate of held bytes is over the budget.
    pub(super) fn over_budget(&self) -> bool {
        self.budget.held > self.cfg.max_buffer
    }

    /// Recounts what is held, when the running estimate (which counts what
    /// was queued, not what was written since) says the budget is spent:
    /// a connection is only paused for memory that is really in use.
    /// A recount visits every connection, so it happens at most every 10 ms;
    /// in between, the last count (plus what was queued since) stands.
    pub(super) fn confirm_over_budget(&mut self, now: Instant) -> bool {
        if !self.over_budget() {
            return false;
        }
        if now >= self.budget.checked + RECOUNT {
            self.budget.held = self.conns.iter().map(|(id, c)| self.held_by(*id, c)).sum();
            self.budget.checked = now;
        }
        self.over_budget()
    }
}
