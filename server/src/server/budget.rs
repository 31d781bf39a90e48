//! The server-wide memory budget (`--max-buffer`): every byte held in a
//! queue (output not yet sent, stdin not yet taken by a command, a partly
//! received frame, a tutorial reply being built) counts. Over the budget,
//! the connections holding the most are held back first: their commands'
//! output pipes and their socket input stop being read, so their children
//! and their clients wait (TCP and pipe backpressure) while the rest go on.
//! Below three quarters of it, everyone is released.

use std::time::{Duration, Instant};

use super::Server;
use crate::connection::{Connection, Hold};
use crate::registry::ConnId;

/// How often the total is recounted when nothing forces it.
const RECOUNT: Duration = Duration::from_millis(10);

impl Server {
    /// Bytes held on behalf of one connection.
    fn held_by(&self, conn: &Connection) -> usize {
        let commands: usize = conn
            .procs()
            .filter_map(|p| self.procs.get(&p))
            .map(|p| p.stdin_queue.len() + p.tutorial_out.len() + p.tutorial_err.len())
            .sum();
        conn.held_bytes() + commands
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
    pub(super) fn confirm_over_budget(&mut self) -> bool {
        if !self.over_budget() {
            return false;
        }
        let now = Instant::now();
        if now >= self.budget.checked + RECOUNT {
            self.budget.held = self.conns.values().map(|c| self.held_by(c)).sum();
            self.budget.checked = now;
        }
        self.over_budget()
    }

    /// Recounts what is held and holds back or releases connections: when
    /// the running estimate says the budget is spent, and every 10 ms while
    /// a connection waits for memory. Otherwise nothing is done: a recount
    /// visits every connection, and with 20,000 of them open, recounting
    /// every 10 ms regardless cost a new client milliseconds.
    pub(super) fn check_budget(&mut self, now: Instant) {
        if !self.over_budget() && (!self.budget.waiting || now < self.budget.checked + RECOUNT) {
            return;
        }
        self.budget.checked = now;
        let mut sizes: Vec<(usize, ConnId)> = self
            .conns
            .iter()
            .map(|(id, c)| (self.held_by(c), *id))
            .collect();
        self.budget.held = sizes.iter().map(|(n, _)| n).sum();
        let budget = self.cfg.max_buffer;
        if self.budget.held > budget {
            // Largest first, until what the others hold fits again.
            sizes.sort_unstable_by(|a, b| b.cmp(a));
            let mut rest = self.budget.held;
            for (n, id) in sizes {
                if rest <= budget / 4 * 3 || n == 0 {
                    break;
                }
                rest -= n;
                if let Some(c) = self.conns.get_mut(&id)
                    && c.hold(Hold::Memory)
                {
                    log::info!(
                        "{}: held back: {n} bytes queued, {} in all (--max-buffer {budget})",
                        c.peer(),
                        self.budget.held
                    );
                }
            }
        } else {
            // Under the budget: connections that paused a pipe because the
            // running estimate said memory was short (output.rs) read again;
            // nothing else would wake them, their socket having no more to
            // report. Those held back are released once well under it.
            let release = self.budget.held <= budget / 4 * 3;
            let waiting: Vec<(ConnId, bool)> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    let held = c.is_held(Hold::Memory);
                    (held && release) || (!held && c.has_paused_pipes())
                })
                .map(|(id, c)| (*id, c.is_held(Hold::Memory)))
                .collect();
            for (id, was_held) in waiting {
                if was_held && let Some(c) = self.conns.get_mut(&id) {
                    c.release(Hold::Memory);
                    log::debug!("{}: released", c.peer());
                }
                self.resume_pipes(id);
                if was_held {
                    self.service_input(id);
                }
                self.check_close(id);
            }
        }
        // Connections paused for memory were resumed above; one that still
        // finds none pauses again and sets this again (output.rs).
        self.budget.waiting = self.conns.values().any(|c| c.is_held(Hold::Memory));
    }
}
