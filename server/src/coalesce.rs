//! Batching a fast command's small writes.
//!
//! Most programs write their output a few KiB at a time (`head`, `cat` of
//! a pipe, anything using stdio). Read as it comes, each write costs rexecd
//! a wake-up and a few system calls for a small frame, and at a gigabyte a
//! second that is most of its work. So when a command has been streaming
//! (it sent a lot lately) and its pipe holds only a little, the pipe is
//! left to fill for [`WAIT`]: it is taken out of the poll set (else every
//! write would still wake the loop) and a timer brings it back, when what
//! gathered meanwhile goes out in one large, spliced frame. A quiet or
//! interactive command never streams, so its output is never held back;
//! a streaming one's is held a tenth of a millisecond at most.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rexec_proto::OutputStream;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

use crate::registry::ProcId;

/// How long a streaming command's pipe is left to fill.
pub const WAIT: Duration = Duration::from_micros(100);
/// A pipe holding less than this is worth leaving to fill.
pub const BATCH: usize = 64 * 1024;
/// A command that sent this much within one [`WINDOW`] is streaming...
const HOT_BYTES: u64 = 128 * 1024;
const WINDOW: Duration = Duration::from_millis(10);
/// ...and is taken to be for this long after.
const STAYS_HOT: Duration = Duration::from_millis(50);

/// The pipes left to fill, and the timer that brings them back.
#[derive(Debug)]
pub struct Coalesce {
    timer: OwnedFd,
    armed: bool,
    waiting: Vec<(ProcId, OutputStream)>,
}

impl Coalesce {
    pub fn new() -> io::Result<Coalesce> {
        let timer = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Coalesce {
            timer,
            armed: false,
            waiting: Vec::new(),
        })
    }

    /// The timer, for the poll set.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.timer.as_fd()
    }

    /// Leaves `stream` of `proc` to fill until the timer fires.
    pub fn hold(&mut self, proc: ProcId, stream: OutputStream) -> io::Result<()> {
        self.waiting.push((proc, stream));
        if !self.armed {
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let when = Itimerspec {
                it_interval: zero,
                it_value: Timespec {
                    tv_sec: 0,
                    tv_nsec: WAIT.as_nanos() as _,
                },
            };
            rustix::time::timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &when)?;
            self.armed = true;
        }
        Ok(())
    }

    /// The timer fired: the pipes held until now.
    pub fn release(&mut self) -> Vec<(ProcId, OutputStream)> {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.timer, &mut buf);
        self.armed = false;
        std::mem::take(&mut self.waiting)
    }
}

/// How fast a command has been sending, roughly: enough to tell streaming
/// from interactive.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    since: Instant,
    from: u64,
    hot_until: Option<Instant>,
}

impl Rate {
    pub fn new(now: Instant) -> Rate {
        Rate {
            since: now,
            from: 0,
            hot_until: None,
        }
    }

    /// Whether the command, having sent `bytes_out` in all, is streaming.
    pub fn hot(&mut self, now: Instant, bytes_out: u64) -> bool {
        let sent = bytes_out.saturating_sub(self.from);
        if sent >= HOT_BYTES {
            self.hot_until = Some(now + STAYS_HOT);
        }
        if now.duration_since(self.since) >= WINDOW {
            self.since = now;
            self.from = bytes_out;
        }
        self.hot_until.is_some_and(|t| now < t)
    }
}

#[cfg(test)]
mod tests;
