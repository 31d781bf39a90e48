//! Child exits: reap the process (pidfd event, SIGCHLD or a sweep), wait
//! for its output to end, then report `Exited` and write the audit line.

use std::time::Instant;

use rexec_proto::OutputStream;

use super::Server;
use super::command::REAP_SWEEP;
use super::ending::LEFTOVER_CHECK;
use crate::process::{self, GraceVerdict, Proc};
use crate::registry::ProcId;
use crate::timer::Timer;

impl Server {
    /// A finished command's process group at its time limit: gone, or killed.
    pub(super) fn check_leftovers(&mut self, pgid: i32, at: Instant, now: Instant) {
        if !process::group_alive(pgid) {
            return;
        }
        if now < at {
            let next = LEFTOVER_CHECK.min(at - now);
            self.timers
                .after(self.now, next, Timer::GroupDeadline { pgid, at });
            return;
        }
        log::info!("process group {pgid}: time limit reached; stopping what is left");
        process::kill_group(pgid, crate::process::Signal::TERM);
        self.timers
            .after(self.now, self.cfg.kill_grace, Timer::KillGroup(pgid));
    }

    /// A stopped group's grace is over: SIGKILL. The group's leader may
    /// lead a terminal session whose jobs need hanging up first
    /// ([`process::kill_after_grace`]); that is asked only of a command
    /// rexecd has not reaped, whose pid therefore cannot have been reused.
    pub(super) fn kill_after_grace(&mut self, pgid: i32) {
        let ours = self
            .procs
            .values()
            .any(|p| p.pgid() == pgid && p.is_spawned() && !p.has_exited());
        process::kill_after_grace(pgid, ours);
    }

    /// The pidfd says the child exited: reap it.
    pub(super) fn reap(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        if !p.try_reap() {
            return; // still running, or still being started
        }
        if let Some((mut fd, t)) = p.take_pidfd() {
            self.registry.remove(&mut fd, t);
        }
        self.maybe_finish(proc);
    }

    /// Reaps every child that exited (SIGCHLD, or no pidfd support).
    pub(super) fn sweep_children(&mut self) {
        let waiting: Vec<ProcId> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.has_exited())
            .map(|(k, _)| *k)
            .collect();
        for proc in waiting {
            self.reap(proc);
        }
    }

    /// The sweep timer, for children without a pidfd: sweep, and again
    /// later while any such child runs.
    pub(super) fn reap_sweep(&mut self) {
        self.sweep_children();
        if self.procs.values().any(Proc::needs_sweep) {
            self.timers.after(self.now, REAP_SWEEP, Timer::ReapSweep);
        }
    }

    /// The pipe grace timer: stop reading the pipes of a command whose
    /// process exited only if they stayed empty for the whole grace period
    /// (a grandchild holds them); output still waiting in them is the
    /// command's own and is always delivered.
    pub(super) fn check_pipe_grace(&mut self, proc: ProcId) {
        // Take what the pipes hold now (this finishes the command if they
        // ended), so that the decision below sees only what is left.
        self.pump(proc, OutputStream::Stdout);
        self.pump(proc, OutputStream::Stderr);
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let Some(conn) = p.conn() else {
            // Nobody to deliver to: the pipes were closed with the connection.
            return self.maybe_finish(proc);
        };
        let paused = self.conns.get(&conn).is_some_and(|c| c.pauses(proc));
        match p.check_grace(self.now, paused, self.cfg.pipe_grace) {
            None => {}
            Some(GraceVerdict::Wait(d)) => {
                self.timers.after(self.now, d, Timer::PipeGrace(proc));
            }
            Some(GraceVerdict::Cut) => {
                log::debug!(
                    "{}: command {} exited; its pipes stayed open and empty for {} ms \
                     (a background process holds them): not waiting for them",
                    p.peer(),
                    p.id(),
                    self.cfg.pipe_grace.as_millis()
                );
                self.close_output(proc);
                self.maybe_finish(proc);
            }
        }
    }
}
