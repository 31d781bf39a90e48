//! What the client's bytes come to, decided by the connection on its own
//! state, as rustls's `conn.ready()` answers: the router asks, then acts on
//! the answer (server/input.rs). The connection decides whether it may
//! read, whether the client is reading our replies, which transport the
//! client speaks, and where a frame is bad; the router decides what a
//! message does.

use std::io;
use std::time::Instant;

use rexec_proto::{ClientMsg, ErrorKind, FrameError};

use super::{Connection, Hold, State};

/// What the poll said of a connection's socket: the loop's one use of a
/// mio event, so that everything after it can be driven without one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The client shut down its sending side (or is gone).
    pub read_closed: bool,
    pub error: bool,
}

#[cfg(test)]
impl Ready {
    pub const READABLE: Ready = Ready {
        readable: true,
        writable: false,
        read_closed: false,
        error: false,
    };
    pub const WRITABLE: Ready = Ready {
        readable: false,
        writable: true,
        read_closed: false,
        error: false,
    };
}

impl From<&mio::event::Event> for Ready {
    fn from(ev: &mio::event::Event) -> Ready {
        Ready {
            readable: ev.is_readable(),
            writable: ev.is_writable(),
            read_closed: ev.is_read_closed(),
            error: ev.is_error(),
        }
    }
}

/// What the input already buffered comes to.
#[derive(Debug)]
pub enum Incoming {
    /// A whole message: act on it, then ask again.
    Message(ClientMsg),
    /// No whole message is buffered: read (or splice) more.
    NeedBytes,
    /// Nothing is to be read now: a hold (stdin full, memory short, our
    /// replies unread) or the connection is no longer open. A hold's end
    /// brings the router back.
    Wait,
    /// This connection had its share of the loop turn: come back next turn.
    Defer,
    /// A whole `ChannelData` for this channel, left where it is in the
    /// decoder: the router writes it on from there
    /// ([`Connection::front_channel_data`]) and then drops it
    /// ([`Connection::skip_channel_data`]), or takes it as a message.
    ChannelData(u32),
    /// The client broke the protocol: tell it why and close.
    Fail(ErrorKind, String),
}

/// What one read from the socket came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Bytes, or a read a signal interrupted: decode, then read again.
    Bytes,
    /// Nothing more until the socket's next readable event.
    Drained,
    /// The client finished sending (EOF).
    Ended,
    /// The read failed: the connection is dead.
    Dead,
}

impl Connection {
    /// The next thing the buffered input comes to. `reply_limit`: queued
    /// bytes at which a client that does not read our replies stops being
    /// read; `share_left`: this connection may have another message this
    /// loop turn.
    pub fn next_input(&mut self, now: Instant, reply_limit: usize, share_left: bool) -> Incoming {
        if !self.may_read() {
            return Incoming::Wait;
        }
        if self.queued() >= reply_limit {
            // The client is not reading our replies: stop reading its
            // requests until it does. (Command output alone stays under
            // the queue limit, which is half of this, so streaming output
            // never holds up a Cancel.)
            self.hold(Hold::RepliesUnread);
            return Incoming::Wait;
        }
        if !share_left {
            return Incoming::Defer;
        }
        if self.state == State::New
            && let Some(reason) = self.wrong_transport()
        {
            return Incoming::Fail(ErrorKind::Protocol, reason);
        }
        // Forwarded data, once running: passed on from where it is.
        if self.state != State::New
            && self.protocol_phase() == Some(crate::protocol::Phase::Running)
            && let Some((id, _)) = self.decoder.front_channel_data()
        {
            return Incoming::ChannelData(id);
        }
        match self.next_message(now) {
            Ok(Some(msg)) => {
                // Heard now, as far as keepalive goes: a message that waited
                // in our decoder (a turn's share used, the loop stalled) is
                // not the client's silence.
                self.last_heard = now;
                Incoming::Message(msg)
            }
            Ok(None) => Incoming::NeedBytes,
            Err(e) => {
                let kind = match e {
                    FrameError::TooLarge { .. } => ErrorKind::Limit,
                    _ => ErrorKind::Protocol,
                };
                Incoming::Fail(kind, e.to_string())
            }
        }
    }

    /// Reads once from the socket into the decoder (`scratch` is where the
    /// bytes pass), at `now`.
    pub fn hear(&mut self, scratch: &mut [u8], now: Instant) -> Heard {
        match self.read_input(scratch, now) {
            Ok(0) => {
                match self.finish_input() {
                    Ok(()) => log::debug!("{}: client finished sending", self.peer),
                    // A frame cut short by the end: said, then the end.
                    Err(e) => log::warn!("{}: {e}", self.peer),
                }
                Heard::Ended
            }
            Ok(_) => Heard::Bytes,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.input_drained();
                Heard::Drained
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Heard::Bytes,
            Err(e) => {
                log::debug!("{}: read failed: {e}", self.peer);
                self.set_dead();
                Heard::Dead
            }
        }
    }
}
