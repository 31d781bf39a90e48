//! The end of things: a connection closes (at once, or after sending its
//! error and lingering), a command's pipes close, and a command whose
//! process was reaped and whose output ended is reported (`Exited`) and
//! forgotten.
//!
//! The bottom room of the router: every other room may call these, and
//! they call no other room (what must happen next, a tutorial connection's
//! next command, is deferred to the loop's backlog).

use std::time::Duration;

use rexec_proto::{ErrorKind, OutputStream, ServerMsg};

use super::Server;
use crate::connection::{Lingered, State};
use crate::process::{self, CommandError};
use crate::registry::{ConnId, ProcId};
use crate::timer::Timer;

/// How long a connection closing after an error may take to flush (and to
/// linger for the client's close).
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// How often the process group a finished command left behind is looked at
/// (once it is empty, its number is never signalled again).
pub(super) const LEFTOVER_CHECK: Duration = Duration::from_secs(1);

impl Server {
    /// Whether a command error should be logged: the first few of each
    /// connection are, then one line says the rest are not.
    pub(super) fn log_error_quota(&mut self, id: ConnId) -> bool {
        self.conns
            .get_mut(&id)
            .is_some_and(|conn| conn.log_error_quota())
    }

    /// Closes the connection if it is dead or has nothing more to do; a
    /// connection that sent its error lingers first.
    pub(super) fn check_close(&mut self, id: ConnId) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.is_dead() {
            return self.close_conn(id);
        }
        if c.finished() {
            if c.state() == State::Closing && !self.stop.begun {
                return self.start_linger(id);
            }
            self.close_conn(id);
        }
    }

    /// The error is sent: shut our side (the client reads it, then end of
    /// stream) and discard what the client still sends until it closes.
    pub(super) fn start_linger(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.start_linger(&mut self.scratch) == Lingered::Done {
            self.close_conn(id);
        }
    }

    pub(super) fn linger(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.linger(&mut self.scratch) == Lingered::Done {
            self.close_conn(id);
        }
    }

    /// Queues a connection-level error; the connection closes once it is sent
    /// (or after a deadline).
    pub(super) fn fail_conn(&mut self, id: ConnId, kind: ErrorKind, message: String) {
        self.left_startup(id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        log::warn!("{}: {kind}: {message}", conn.peer());
        conn.fail(kind, message);
        conn.flush();
        self.timers
            .after(self.now, CLOSE_DEADLINE, Timer::ConnCloseDeadline(id));
        self.check_close(id);
    }

    /// The close deadline passed: close even if the error is not all sent,
    /// or the client has not closed its side.
    pub(super) fn close_if_closing(&mut self, id: ConnId) {
        if self
            .conns
            .get(&id)
            .is_some_and(|c| matches!(c.state(), State::Closing | State::Lingering))
        {
            self.close_conn(id);
        }
    }

    /// Forgets the connection; everything it started stops with it.
    pub(super) fn close_conn(&mut self, id: ConnId) {
        self.left_startup(id);
        self.door.key_waits.forget(id);
        if let Some(logins) = &self.door.logins {
            logins.cancel(id);
        }
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        conn.deregister(&mut self.registry);
        let channels = self.forwards.close_conn(id, &mut self.registry);
        if channels > 0 {
            log::info!("{}: {channels} channels closed with it", conn.peer());
        }
        for proc in conn.take_commands() {
            // A terminal session is hung up first, as sshd does when its
            // client goes: with every master descriptor closed the kernel
            // sends SIGHUP to the session (an interactive shell ignores the
            // SIGTERM below, and passes SIGHUP on to its background jobs,
            // which live in process groups of their own).
            self.close_output(proc);
            self.close_stdin(proc);
            if let Some(p) = self.procs.get_mut(&proc) {
                p.orphan();
                p.stop(&mut self.timers, self.now, self.cfg.kill_grace);
            }
            self.maybe_finish(proc);
        }
        if let Some((all, unlogged)) = conn.errors_not_logged() {
            log::warn!(
                "{}: {all} command errors in all, {unlogged} not logged",
                conn.peer()
            );
        }
        log::debug!("{}: closed", conn.peer());
        self.forget_stale_timers();
    }

    /// Timers are not cancelled when what they are for goes away; once they
    /// far outnumber the live connections and commands, the stale ones are
    /// dropped, so connect/close churn cannot grow the heap.
    pub(super) fn forget_stale_timers(&mut self) {
        let live = 8 * (self.conns.len() + self.procs.len()) + self.forwards.chans.len() + 1024;
        if self.timers.len() <= live {
            return;
        }
        let (conns, procs, chans) = (&self.conns, &self.procs, &self.forwards.chans);
        let pending = self.timers.len();
        self.timers.retain(|t| match t {
            Timer::ConnIdle(c)
            | Timer::Keepalive(c)
            | Timer::Handshake(c)
            | Timer::SendHello(c)
            | Timer::ConnCloseDeadline(c)
            | Timer::FrameDeadline(c)
            | Timer::KeyAnswer(c)
            | Timer::KeyCheck { conn: c, .. } => conns.contains_key(c),
            Timer::ProcTimeout(p) | Timer::PipeGrace(p) => procs.contains_key(p),
            Timer::ChannelConnect(ch) => chans.contains_key(ch),
            Timer::KillGroup(_)
            | Timer::GroupDeadline { .. }
            | Timer::AcceptRetry
            | Timer::ReapSweep
            | Timer::StopGrace
            | Timer::ShutdownDeadline => true,
        });
        log::debug!(
            "{} stale timers dropped, {} left",
            pending - self.timers.len(),
            self.timers.len()
        );
    }

    /// The connection no longer waits to authenticate (it did, or it is
    /// closing): it stops counting against --max-startups.
    pub(super) fn left_startup(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id)
            && c.leave_startup()
        {
            self.door.startups -= 1;
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

    pub(super) fn close_stdin(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let (pipe, was_grown) = p.take_stdin();
        if was_grown {
            self.budget.big_pipes -= 1;
        }
        if let Some((mut tx, t)) = pipe {
            self.registry.remove(&mut tx, t);
        }
    }

    /// Finishes a command whose child was reaped, once its output ended (or
    /// the pipe grace time ran out).
    pub(super) fn maybe_finish(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        if !p.has_exited() {
            return;
        }
        if !p.output_done() {
            // Output still to come: its last bytes (still in the pipes while
            // a slow client catches up), or a grandchild holding the pipes
            // open. The grace period tells the two apart (PipeGrace).
            if p.begin_grace(self.now) {
                self.timers
                    .after(self.now, self.cfg.pipe_grace, Timer::PipeGrace(proc));
            }
            return;
        }
        self.finish(proc);
    }

    pub(super) fn finish(&mut self, proc: ProcId) {
        self.close_stdin(proc);
        let Some(mut p) = self.procs.remove(&proc) else {
            return;
        };
        if let Some((mut fd, t)) = p.take_pidfd() {
            self.registry.remove(&mut fd, t);
        }
        let now = self.now;
        p.audit(now);
        if let Some(at) = p.deadline() {
            // Background jobs of the command are in its process group: the
            // time limit bounds them too, not only the command.
            let pgid = p.pgid();
            if process::group_alive(pgid) {
                log::info!(
                    "{}: command {} left processes in group {pgid}; they end at its time limit",
                    p.peer(),
                    p.id(),
                );
                self.timers.after(
                    now,
                    LEFTOVER_CHECK.min(at.saturating_duration_since(now)),
                    Timer::GroupDeadline { pgid, at },
                );
            }
        }
        let Some(conn_id) = p.conn() else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.remove_command(p.id(), proc);
        if self.stop.stopping && conn.is_native() {
            // Stopped by the shutdown (not ended within its grace): say
            // why the command ended before its Exited: the client
            // reports this, not a bare signal.
            conn.fail(
                ErrorKind::Shutdown,
                format!("rexecd stopped command {} on its way down", p.id()),
            );
        }
        if conn.is_native() {
            conn.queue(&ServerMsg::Exited(p.exited(now)));
        } else {
            let (stdout, stderr) = p.tutorial_reply();
            conn.queue_tutorial_reply(stdout, stderr);
        }
        conn.flush();
        conn.shrink_if_idle();
        if !conn.is_native() {
            // The tutorial server reads its next command only now: the
            // loop serves the connection again (input.rs) this turn.
            self.backlog.push(conn_id);
        }
        self.check_close(conn_id);
    }

    /// A command could not start: the tutorial protocols have no error
    /// message, so the reply carries the error text as output.
    pub(super) fn tutorial_error(&mut self, id: ConnId, e: &CommandError) {
        let text = format!("rexecd: {e}\n");
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.queue_tutorial_reply(b"", text.as_bytes());
        conn.flush();
    }
}
