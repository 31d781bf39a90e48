//! The server-wide memory budget (`--max-buffer`): every byte held in a
//! queue (output not yet sent, stdin not yet taken by a command, a partly
//! received frame, a tutorial reply being built) counts. Over the budget,
//! the connections holding the most are held back first: their commands'
//! output pipes and their socket input stop being read, so their children
//! and their clients wait (TCP and pipe backpressure) while the rest go on.
//! Below three quarters of it, everyone is released.

use std::time::Instant;

use super::Server;
use crate::connection::Hold;
use crate::registry::ConnId;

use super::held::RECOUNT;

impl Server {
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
        let sizes: Vec<(usize, ConnId)> = self
            .conns
            .iter()
            .map(|(id, c)| (self.held_by(*id, c), *id))
            .collect();
        self.budget.held = sizes.iter().map(|(n, _)| n).sum();
        let budget = self.cfg.max_buffer;
        if self.budget.held > budget {
            for (id, n) in to_hold_back(sizes, self.budget.held, budget) {
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
            let release = self.budget.held <= release_level(budget);
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
                    c.release(Hold::Memory, self.now);
                    log::debug!("{}: released", c.peer());
                }
                self.resume_pipes(id);
                if was_held {
                    // Its input is read again this turn (input.rs).
                    self.backlog.push(id);
                }
                self.check_close(id);
            }
        }
        // Connections paused for memory were resumed above; one that still
        // finds none pauses again and sets this again (output.rs).
        self.budget.waiting = self.conns.values().any(|c| c.is_held(Hold::Memory));
    }
}

/// Who is held back when `held` bytes are over `budget`: the largest
/// holders first, until what the others hold is down to the release level.
/// `sizes` is what each connection holds.
fn to_hold_back(
    mut sizes: Vec<(usize, ConnId)>,
    held: usize,
    budget: usize,
) -> Vec<(ConnId, usize)> {
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut rest = held;
    let mut chosen = Vec::new();
    for (n, id) in sizes {
        if rest <= release_level(budget) || n == 0 {
            break;
        }
        rest -= n;
        chosen.push((id, n));
    }
    chosen
}

/// Connections held back are released at or below three quarters of the
/// budget: not at once below it, so that they do not flap.
fn release_level(budget: usize) -> usize {
    budget / 4 * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(sizes: &[(usize, u64)]) -> (Vec<(usize, ConnId)>, usize) {
        let v: Vec<_> = sizes.iter().map(|&(n, id)| (n, ConnId(id))).collect();
        let total = v.iter().map(|(n, _)| n).sum();
        (v, total)
    }

    #[test]
    fn the_largest_holders_are_held_back_until_the_rest_fit() {
        let (sizes, total) = held(&[(10, 1), (100, 2), (50, 3)]);
        // 160 held, budget 100: holding back 2 leaves 60, under 75.
        assert_eq!(to_hold_back(sizes.clone(), total, 100), [(ConnId(2), 100)]);
        // Budget 40: 2 leaves 60, over 30; 3 too leaves 10.
        assert_eq!(
            to_hold_back(sizes, total, 40),
            [(ConnId(2), 100), (ConnId(3), 50)]
        );
    }

    #[test]
    fn a_connection_holding_nothing_is_never_held_back() {
        let (sizes, total) = held(&[(0, 1), (0, 2)]);
        assert!(to_hold_back(sizes, total + 200, 100).is_empty());
    }

    #[test]
    fn release_waits_for_a_quarter_of_the_budget_free() {
        assert_eq!(release_level(1000), 750);
        // 900 held, budget 800: holding back the 700 leaves 200, which is
        // under 600 (and so the other stays).
        let (sizes, total) = held(&[(700, 1), (200, 2)]);
        assert_eq!(to_hold_back(sizes, total, 800), [(ConnId(1), 700)]);
    }
}
