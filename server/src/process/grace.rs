//! The pipe grace of a command whose process exited while its pipes are
//! still open (a decision of its own, simulated in tests/sim/grace.rs).

use std::time::{Duration, Instant};

/// The wait for the pipes of a command whose process has exited while
/// they are still open.
///
/// Usually they are open because their last bytes have not been read yet:
/// a slow client holds them back (backpressure), and they are the
/// command's own output, which is always delivered, however long that
/// takes. Only a pipe that stays *empty* for the whole grace period is held
/// by someone else: a background grandchild that inherited it and may
/// never close it. So the period counts only while no output is waiting
/// and none arrives; any byte restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeGrace {
    /// When the pipes were last seen quiet.
    since: Instant,
    /// The command's output count then: a change means bytes arrived.
    bytes_out: u64,
}

/// Why an exited command's output may still be to come: each restarts its
/// pipe grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Waiting {
    /// Its pipes are not read for now: their client's queue is full.
    pub paused: bool,
    /// Bytes wait in a pipe.
    pub in_pipes: bool,
}

impl Waiting {
    fn any(self) -> bool {
        self.paused || self.in_pipes
    }
}

/// What [`PipeGrace::check`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraceVerdict {
    /// Look again after this long.
    Wait(Duration),
    /// The pipes were empty and quiet for the whole grace period: stop
    /// reading them (what a grandchild writes from now on is not waited for).
    Cut,
}

impl PipeGrace {
    /// The grace period begins: the process exited at `now`.
    pub fn begin(now: Instant, bytes_out: u64) -> PipeGrace {
        PipeGrace {
            since: now,
            bytes_out,
        }
    }

    /// Decides at `now`, given the command's output count so far and
    /// what may hold output back.
    pub fn check(
        &mut self,
        now: Instant,
        bytes_out: u64,
        waiting: Waiting,
        grace: Duration,
    ) -> GraceVerdict {
        if waiting.any() || bytes_out != self.bytes_out {
            *self = PipeGrace::begin(now, bytes_out);
            return GraceVerdict::Wait(grace);
        }
        let quiet = now.saturating_duration_since(self.since);
        if quiet >= grace {
            GraceVerdict::Cut
        } else {
            GraceVerdict::Wait(grace - quiet)
        }
    }
}
