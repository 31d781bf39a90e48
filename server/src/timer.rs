//! Deadlines for the event loop: a min-heap of (when, what).
//!
//! Timers are never cancelled. When one fires, its handler checks whether it
//! still applies (the command may have finished, the connection may be gone),
//! which keeps the bookkeeping in one place.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::registry::{ConnId, ProcId};

/// What to do when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A command's time limit.
    ProcTimeout(ProcId),
    /// SIGKILL for a process group that was sent SIGTERM.
    KillGroup(i32),
    /// What is left of a finished command's process group must be gone by
    /// `at` (its time limit); looked at every second until then.
    GroupDeadline { pgid: i32, at: Instant },
    /// Stop waiting for the pipes of a command whose process exited.
    PipeGrace(ProcId),
    /// Check a connection for idleness.
    ConnIdle(ConnId),
    /// Check that a connection's client is still there (keepalive).
    Keepalive(ConnId),
    /// A connection must have completed its hello by now.
    Handshake(ConnId),
    /// Send a delayed hello (the peer's address failed to authenticate before).
    SendHello(ConnId),
    /// A key check (`seq`, the connection's count) must be decided by now.
    KeyCheck { conn: ConnId, seq: u64 },
    /// A refused key's answer is due (keys.rs: refusals take the same time).
    KeyAnswer(ConnId),
    /// A connection that is closing after an error gets this long to flush.
    ConnCloseDeadline(ConnId),
    /// A frame that began to arrive must be complete by now.
    FrameDeadline(ConnId),
    /// Try accepting again after running out of file descriptors.
    AcceptRetry,
    /// Look for exited children that have no pidfd.
    ReapSweep,
    /// Shutdown's grace for running commands (--stop-grace) is over.
    StopGrace,
    /// Give up flushing at shutdown.
    ShutdownDeadline,
    /// A channel's connection to its target must be made by now.
    ChannelConnect(crate::registry::ChanId),
}

/// The wall clock as known at one instant: a later instant's wall time
/// is derived from it, so the loop reads the wall clock once, at start.
#[derive(Debug, Clone, Copy)]
pub struct Wall {
    at: Instant,
    time: std::time::SystemTime,
}

impl Wall {
    /// The wall clock read at `at`.
    pub fn new(at: Instant, time: std::time::SystemTime) -> Wall {
        Wall { at, time }
    }

    /// The wall time at `then`.
    pub fn at(&self, then: Instant) -> std::time::SystemTime {
        self.time + then.saturating_duration_since(self.at)
    }
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
}

impl Timers {
    pub fn at(&mut self, when: Instant, what: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((when, self.seq, what)));
    }

    /// At `delay` from `now` (the caller's clock: nothing here reads one).
    pub fn after(&mut self, now: Instant, delay: Duration, what: Timer) {
        self.at(now + delay, what);
    }

    /// How long the loop may sleep before the next deadline.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((when, _, _))| when.saturating_duration_since(now))
    }

    /// Timers pending, fired or not yet.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the timers for which `keep` is false (those whose connection
    /// or command is gone), so that churn cannot grow the heap.
    pub fn retain(&mut self, mut keep: impl FnMut(&Timer) -> bool) {
        self.heap.retain(|Reverse((_, _, t))| keep(t));
    }

    /// Takes out the next timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => {
                self.heap.pop().map(|Reverse((_, _, t))| t)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
