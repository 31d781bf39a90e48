//! A connection's timers: a frame that never completes, idleness, and
//! keepalive. The connection decides (connection/deadlines.rs); this acts.

use std::time::Instant;

use rexec_proto::{ErrorKind, ServerMsg};

use super::Server;
use crate::connection::{Deadline, Keepalive};
use crate::registry::ConnId;
use crate::timer::Timer;

impl Server {
    /// The frame deadline timer fired: close a connection whose frame has
    /// been incomplete for too long, or look again when it could be.
    pub(super) fn check_frame(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.frame_deadline(now, self.cfg.frame_timeout) {
            Deadline::None => {}
            Deadline::At(due) => self.timers.at(due, Timer::FrameDeadline(id)),
            Deadline::Expired => {
                let secs = self.cfg.frame_timeout.as_secs();
                self.fail_conn(
                    id,
                    ErrorKind::Idle,
                    format!("a frame was not complete {secs} s after it began"),
                );
            }
        }
    }

    /// The idle timer fired: close a connection that sent no message and ran
    /// nothing for the idle timeout, or look again later.
    pub(super) fn check_idle(&mut self, id: ConnId, now: Instant) {
        let Some(idle) = self.cfg.idle_timeout else {
            return;
        };
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.idle_deadline(now, idle) {
            Deadline::Expired => self.fail_conn(
                id,
                ErrorKind::Idle,
                format!(
                    "closing the connection after {} s without a command",
                    idle.as_secs()
                ),
            ),
            Deadline::At(next) => self.timers.at(next, Timer::ConnIdle(id)),
            Deadline::None => {}
        }
    }

    /// The keepalive timer fired: probe a client that has been silent, and
    /// treat one silent for three periods as gone, exactly as if it had
    /// disconnected (its commands are stopped, a pty hung up).
    pub(super) fn check_keepalive(&mut self, id: ConnId, now: Instant) {
        let Some(every) = self.cfg.keepalive else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.keepalive(now, every) {
            Keepalive::Off => {}
            Keepalive::Later(at) => self.timers.at(at, Timer::Keepalive(id)),
            Keepalive::Probe { seq, next } => {
                conn.queue(&ServerMsg::Ping { seq });
                conn.flush();
                // An idle connection keeps no buffer for its probes: 20,000
                // of them would otherwise hold 20,000 buffers.
                conn.shrink_if_idle();
                self.timers.at(next, Timer::Keepalive(id));
            }
            Keepalive::Gone(silent) => {
                log::info!(
                    "{}: no answer for {} s (keepalive): treating the client as gone",
                    conn.peer(),
                    silent.as_secs()
                );
                conn.set_dead();
                self.close_conn(id);
            }
        }
    }
}
