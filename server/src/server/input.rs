//! What a client sends: socket events, reads into the frame decoder,
//! messages through the connection's state machine into actions, and the
//! ways a connection ends (an error sent, the peer gone, idleness).

use std::io;
use std::time::Instant;

use mio::event::Event;
use rexec_proto::{ClientMsg, ErrorKind, FrameError};

use super::Server;
use crate::connection::{State, Wire};
use crate::protocol::Action;
use crate::registry::ConnId;
use crate::timer::Timer;

/// How long a connection closing after an error may take to flush.
const CLOSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

impl Server {
    pub(super) fn on_conn_event(&mut self, id: ConnId, ev: &Event) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if ev.is_error() {
            conn.state = State::Dead;
        } else if ev.is_read_closed() && conn.input_paused {
            // We are not reading (stdin backpressure), so we would never see
            // the end of stream: the client is gone.
            conn.state = State::Dead;
        }
        if ev.is_writable() {
            conn.flush();
            self.resume_pipes(id);
        }
        if ev.is_readable() || ev.is_read_closed() {
            self.service_input(id);
        }
        self.check_close(id);
    }

    /// Reads and handles what the client sent, until the socket would block,
    /// the connection is paused, or it closes.
    pub(super) fn service_input(&mut self, id: ConnId) {
        if self.conns.get(&id).is_some_and(|c| !c.is_native()) {
            return self.tutorial_input(id);
        }
        loop {
            // Frames already buffered first: an edge-triggered socket will not
            // report them again.
            loop {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                if !conn.is_open() || conn.input_paused {
                    return;
                }
                if conn.state == State::New {
                    if let Some(reason) = conn.wrong_transport() {
                        return self.fail_conn(id, ErrorKind::Protocol, reason);
                    }
                }
                match conn.decoder.next_message::<ClientMsg>() {
                    Ok(Some(msg)) => {
                        if conn.state == State::New {
                            conn.state = State::Open;
                            let binding = conn.channel_binding();
                            if let Wire::Native(proto) = &mut conn.wire {
                                proto.set_binding(binding);
                            }
                        }
                        self.on_message(id, msg)
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let kind = match e {
                            FrameError::TooLarge { .. } => ErrorKind::Limit,
                            _ => ErrorKind::Protocol,
                        };
                        return self.fail_conn(id, kind, e.to_string());
                    }
                }
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            match conn.read_input() {
                Ok(0) => {
                    match conn.decoder.finish() {
                        Ok(()) => log::debug!("{}: client closed the connection", conn.peer),
                        Err(e) => log::warn!("{}: {e}", conn.peer),
                    }
                    conn.state = State::Dead;
                    return;
                }
                Ok(_) => conn.last_activity = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.decoder.shrink_if_idle();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("{}: read failed: {e}", conn.peer);
                    conn.state = State::Dead;
                    return;
                }
            }
        }
    }

    /// Runs one message through the connection's state machine and does
    /// what it says.
    fn on_message(&mut self, id: ConnId, msg: ClientMsg) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Wire::Native(proto) = &mut conn.wire else {
            return;
        };
        let peer = conn.peer;
        match proto.on_message(msg) {
            Action::SendHello { open } => {
                if open {
                    log::debug!("{peer}: hello accepted");
                }
                self.hello_accepted(id, peer);
            }
            Action::Authenticated => {
                log::debug!("{peer}: authenticated");
                self.auth_failures.succeeded(peer.ip());
            }
            Action::Fail { kind, message } => {
                if kind == ErrorKind::Auth {
                    self.auth_failures.failed(peer.ip(), Instant::now());
                }
                self.fail_conn(id, kind, message);
            }
            Action::Reject {
                id: cmd,
                kind,
                message,
            } => self.command_error(id, cmd, kind, message),
            Action::Exec(exec) => self.exec(id, exec),
            Action::Stdin { id: cmd, data } => self.stdin(id, cmd, &data, false),
            Action::StdinEof { id: cmd } => self.stdin(id, cmd, &[], true),
            Action::Cancel { id: cmd } => self.cancel(id, cmd),
        }
    }

    /// Closes the connection if it is dead, or closing and flushed.
    pub(super) fn check_close(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get(&id) {
            if c.is_dead() || c.finished_closing() {
                self.close_conn(id);
            }
        }
    }

    /// Queues a connection-level error; the connection closes once it is sent
    /// (or after a deadline).
    pub(super) fn fail_conn(&mut self, id: ConnId, kind: ErrorKind, message: String) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        log::warn!("{}: {kind}: {message}", conn.peer);
        conn.fail(kind, message);
        conn.flush();
        self.timers
            .after(CLOSE_DEADLINE, Timer::ConnCloseDeadline(id));
        self.check_close(id);
    }

    /// The close deadline passed: close even if the error is not all sent.
    pub(super) fn close_if_closing(&mut self, id: ConnId) {
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.state == State::Closing)
        {
            self.close_conn(id);
        }
    }

    /// Forgets the connection; everything it started stops with it.
    pub(super) fn close_conn(&mut self, id: ConnId) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        self.registry.remove(&mut conn.stream, conn.token);
        for (_, proc) in conn.commands {
            if let Some(p) = self.procs.get_mut(&proc) {
                p.conn = None;
                p.stop(&mut self.timers, self.cfg.kill_grace);
            }
            self.close_output(proc);
            self.close_stdin(proc);
            self.maybe_finish(proc);
        }
        log::debug!("{}: closed", conn.peer);
    }

    /// The idle timer fired: close a connection that sent nothing and ran
    /// nothing for the idle timeout, or look again later.
    pub(super) fn check_idle(&mut self, id: ConnId, now: Instant) {
        let Some(idle) = self.cfg.idle_timeout else {
            return;
        };
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let quiet = now.saturating_duration_since(conn.last_activity);
        if conn.commands.is_empty() && quiet >= idle {
            self.fail_conn(
                id,
                ErrorKind::Idle,
                format!(
                    "closing the connection after {} s without a command",
                    idle.as_secs()
                ),
            );
        } else {
            let next = if conn.commands.is_empty() {
                idle - quiet
            } else {
                idle
            };
            self.timers.after(next, Timer::ConnIdle(id));
        }
    }
}
