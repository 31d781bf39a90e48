//! What a client sends: socket events, reads into the frame decoder,
//! messages through the connection's state machine into actions, and the
//! ways a connection ends (an error sent, the client done, the peer gone,
//! idleness, a stalled frame).

use rexec_proto::{ClientMsg, ErrorKind, OutputStream, ServerMsg, encode_output_frame};

use super::Server;
use super::stdin_splice::Flow;
use crate::connection::{Heard, Hold, Incoming, Ready, State};
use crate::protocol::Action;
use crate::registry::ConnId;
use crate::timer::Timer;

/// Most messages handled for one connection before the others get a turn;
/// the rest wait for the next loop turn.
const MESSAGES_PER_TURN: usize = 64;

impl Server {
    pub(super) fn on_conn_event(&mut self, id: ConnId, ev: Ready) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if ev.error {
            conn.set_dead();
        }
        if ev.writable {
            conn.flush();
            self.resume_input(id);
            self.resume_pipes(id);
            self.resume_channels(id);
        }
        if ev.readable || ev.read_closed {
            match self
                .conns
                .get(&id)
                .map(|c| (c.state(), c.is_held(Hold::StdinFull)))
            {
                Some((State::Lingering, _)) => self.linger(id),
                Some((_, true)) if ev.read_closed => {
                    // Input is paused (stdin backpressure), so the end of
                    // stream will not be read for now: ask whether the
                    // client is still there at all.
                    self.probe(id);
                }
                _ => self.service_input(id),
            }
        }
        self.check_close(id);
    }

    /// Reads and handles what the client sent, until the socket would block,
    /// the connection is paused, it closes, or it had its share of this
    /// loop turn.
    pub(super) fn service_input(&mut self, id: ConnId) {
        if self.conns.get(&id).is_some_and(|c| !c.is_native()) {
            return self.tutorial_input(id);
        }
        let mut budget = MESSAGES_PER_TURN;
        let reply_limit = self.reply_limit();
        loop {
            // Frames already buffered first: an edge-triggered socket will not
            // report them again.
            let mut decoded = false;
            loop {
                if self.over_budget() {
                    // Memory is short: the largest holders, this one
                    // perhaps, are held back before anything more is read.
                    self.check_budget(self.now);
                }
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                match conn.next_input(self.now, reply_limit, budget > 0) {
                    Incoming::Message(msg) => {
                        budget -= 1;
                        decoded = true;
                        self.on_message(id, msg)
                    }
                    Incoming::ChannelData(wire) => {
                        budget -= 1;
                        decoded = true;
                        if !self.channel_data_in_place(id, wire) {
                            // Not in place: as any other message.
                            let now = self.now;
                            if let Some(msg) =
                                self.conns.get_mut(&id).and_then(|c| c.take_message(now))
                            {
                                self.on_message(id, msg);
                            }
                        }
                    }
                    Incoming::NeedBytes => break,
                    Incoming::Wait => return,
                    Incoming::Defer => return self.defer(id),
                    Incoming::Fail(kind, reason) => return self.fail_conn(id, kind, reason),
                }
            }
            self.track_partial_frame(id, decoded);
            match self.splice_stdin(id) {
                Flow::Read => {}
                Flow::Again => {
                    // A chunk moved counts as a message handled.
                    budget = budget.saturating_sub(1);
                    continue;
                }
                Flow::Stop => return,
                Flow::Ended => return self.input_ended(id),
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            match conn.hear(&mut self.scratch, self.now) {
                Heard::Bytes => {}
                Heard::Drained | Heard::Dead => return,
                Heard::Ended => return self.input_ended(id),
            }
        }
    }

    /// Queued bytes at which a connection's input stops being read.
    fn reply_limit(&self) -> usize {
        self.cfg.queue_limit.saturating_mul(2)
    }

    /// Comes back to a connection that used its share of a loop turn.
    fn defer(&mut self, id: ConnId) {
        self.backlog.push(id);
    }

    /// Serves the connections deferred in the last turn, once each.
    pub(super) fn run_backlog(&mut self) {
        for id in self.backlog.take() {
            if self.conns.contains_key(&id) {
                self.service_input(id);
                self.check_close(id);
            }
        }
    }

    /// Reading was stopped while our replies piled up; resume once the
    /// client has read them.
    fn resume_input(&mut self, id: ConnId) {
        let (reply_limit, now) = (self.reply_limit(), self.now);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.queued() < reply_limit && conn.release(Hold::RepliesUnread, now) {
            self.service_input(id);
        }
    }

    /// Keeps the clock of a partly received frame (connection.rs), with a
    /// deadline armed when one begins.
    fn track_partial_frame(&mut self, id: ConnId, decoded: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.track_partial_frame(decoded, self.now) {
            self.timers
                .after(self.now, self.cfg.frame_timeout, Timer::FrameDeadline(id));
        }
    }

    /// The client closed its sending side: its commands get stdin EOF and
    /// run to the end; the connection closes when they are done and their
    /// output is sent.
    pub(super) fn input_ended(&mut self, id: ConnId) {
        self.left_startup(id);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.set_input_closed();
        let ids = conn.command_ids();
        for cmd in &ids {
            self.stdin(id, *cmd, &[], true);
        }
        if !ids.is_empty() {
            // A client that closed its socket altogether looks the same as
            // one that only finished sending; writing to the first makes its
            // kernel answer with a reset, which ends the connection.
            self.probe(id);
        }
    }

    /// Sends an empty output frame for a running command: harmless to a
    /// client that is there, a reset from one that is gone.
    fn probe(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let (true, Some(&cmd)) = (conn.is_native(), conn.command_ids().first()) {
            encode_output_frame(OutputStream::Stdout, cmd, &[], conn.frames());
            conn.flush();
        }
    }

    /// Runs one message through the connection's state machine and does
    /// what it says.
    fn on_message(&mut self, id: ConnId, msg: ClientMsg) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let peer = conn.peer();
        if self.door.key_waits.busy(id) {
            // Its key is being decided or its refusal waits for its time:
            // the client must wait for the answer.
            let message = format!("got {} before the answer to its key", msg.kind_name());
            self.fail_conn(id, ErrorKind::Protocol, message);
            return;
        }
        if matches!(msg, ClientMsg::AuthKey { .. }) {
            self.key_arrived(id, self.now);
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(proto) = conn.protocol() else {
            return;
        };
        match proto.on_message(msg) {
            Action::SendHello { open } => {
                if open {
                    log::debug!("{peer}: hello accepted");
                }
                self.hello_accepted(id, peer);
            }
            Action::Authenticated => {
                log::debug!("{peer}: authenticated");
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.set_who("token".into());
                }
                self.door.auth_failures.succeeded(peer.ip());
                self.left_startup(id);
            }
            Action::CheckKey {
                user,
                explicit,
                key,
            } => self.check_key(id, peer, user, explicit, *key),
            refusal @ Action::KeyRefused { .. } => {
                log::info!("{peer}: key refused (the signature is not good)");
                self.refuse_key(id, refusal);
            }
            // Only from `key_checked`, in keys.rs.
            Action::KeyAccepted => {}
            // The last of the tries was a bad signature: answered as every
            // refused key is.
            refusal @ Action::Fail { .. } if self.door.key_waits.busy(id) => {
                log::info!("{peer}: key refused (the signature is not good)");
                self.refuse_key(id, refusal);
            }
            Action::Fail { kind, message } => {
                if kind == ErrorKind::Auth {
                    self.door.auth_failures.failed(peer.ip(), self.now);
                }
                self.fail_conn(id, kind, message);
            }
            Action::Ping { seq } => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.queue(&ServerMsg::Pong { seq });
                    conn.flush();
                }
            }
            Action::Pong => {}
            Action::Reject {
                id: cmd,
                kind,
                message,
            } => self.command_error(id, cmd, kind, message),
            Action::Exec(exec) => self.exec(id, exec),
            Action::Job { exec, verb } => self.job(id, exec, verb),
            Action::Stdin { id: cmd, data } => self.stdin(id, cmd, &data, false),
            Action::StdinEof { id: cmd } => self.stdin(id, cmd, &[], true),
            Action::Cancel { id: cmd } => self.cancel(id, cmd),
            Action::Resize {
                id: cmd,
                rows,
                cols,
            } => self.resize(id, cmd, rows, cols),
            Action::Put(put) => self.put(id, put),
            Action::PutEnd { id: cmd, digest } => self.put_end(id, cmd, &digest),
            Action::Get { id: cmd, path } => self.get(id, cmd, path),
            Action::List { id: cmd, path } => self.list(id, cmd, path),
            Action::Tree { id: cmd, path, op } => self.tree(id, cmd, path, op),
            Action::Forward(req) => self.forward(id, req),
        }
    }
}
