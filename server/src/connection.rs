//! One client connection: its socket, what it has sent that is not yet
//! decoded, what we have queued that is not yet written, and its commands.
//! The server owns every `Connection` (in `Server::conns`); this file only
//! knows how bytes cross its socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use mio::Token;
use rexec_proto::{ErrorKind, ErrorMsg, FrameDecoder, OutputStream, ServerMsg, encode_frame};

use crate::out_queue::OutQueue;
use crate::protocol::ConnProtocol;
use crate::registry::ProcId;
use crate::splice::Owed;

mod backpressure;
mod deadlines;
mod holds;
mod inbound;
mod ready;
mod sink;
mod socket;
mod stream;
mod tunnels;

pub use deadlines::{Deadline, Keepalive};
pub use holds::{Hold, Holds};
pub use ready::{Heard, Incoming, Ready};
#[cfg(test)]
pub use stream::Played;
pub use stream::Stream;

/// How bytes cross the socket.
#[derive(Debug)]
pub enum Transport {
    Plain,
    /// TLS: frames go into rustls's plaintext side, records onto the socket.
    Tls {
        tls: Box<rustls::ServerConnection>,
        /// The first byte was checked to be a TLS handshake record.
        checked: bool,
    },
}

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// What is spoken on the connection.
#[derive(Debug)]
pub enum Wire {
    /// rexec's framed protocol, with its hello/auth state machine.
    Native(ConnProtocol),
    /// The tutorials' protocol: one read is a command; length-prefixed reply.
    Seed,
    /// The tutorials' first version: the reply with no header.
    Raw,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No frame decoded yet: the first bytes are checked for the wrong
    /// transport (a TLS ClientHello on a plaintext port, or the reverse).
    New,
    Open,
    /// The client closed its side (EOF): no more input. Running commands
    /// get stdin EOF and run to the end; their output is delivered, then
    /// the connection closes.
    InputClosed,
    /// An error was queued; flushing it, then closing. Nothing more is acted
    /// on.
    Closing,
    /// The error was sent and our side shut down; what the client still
    /// sends is read and discarded until it closes too (or a deadline), so
    /// that closing with unread input does not reset the connection and
    /// destroy the error before the client reads it.
    Lingering,
    /// The peer is gone (a read or write failed): close now.
    Dead,
}

/// How a linger ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lingered {
    /// The client has more to say: wait for its next read event.
    Waiting,
    /// The client closed, failed, or sent too much: close now.
    Done,
}

/// Most bytes read and discarded from a client after its error was sent;
/// past that it is closed at once (a reset).
const LINGER_MAX: usize = 8 << 20;
/// Command errors logged per connection; the rest are counted.
const ERRORS_LOGGED: u32 = 10;

/// One client connection. Its fields are its own: the server asks it to
/// read, decode, queue, flush, linger and judge its deadlines, and routes
/// what it returns.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    /// The socket's poll registration.
    token: Token,
    transport: Transport,
    peer: SocketAddr,
    wire: Wire,
    state: State,
    decoder: FrameDecoder,
    out: OutQueue,
    /// The rest of a frame spliced from a pipe that the socket has not
    /// taken yet: it goes out before anything in `out` (which was empty
    /// when the frame began).
    spliced: Option<Owed>,
    /// Running commands: the client's id for each -> the server's.
    commands: HashMap<u32, ProcId>,
    /// Pipes not read because `out` is over the queue limit; they get no new
    /// readiness event, so they are resumed by hand when `out` drains.
    paused_pipes: Vec<(ProcId, OutputStream)>,
    /// Why socket input is not read for now.
    holds: Holds,
    /// Command errors logged for this connection (a flood is not logged
    /// line by line).
    errors_logged: u32,
    /// Since when a frame has been partly received, if one has.
    partial_since: Option<Instant>,
    /// A `Stdin` chunk whose data is being spliced from the socket
    /// (inbound.rs), and whether one just was (the next read is short).
    inbound: Option<crate::splice_in::Inbound>,
    after_splice: bool,
    /// While counted among the connections waiting to authenticate: when
    /// the handshake must be complete.
    startup: Option<Instant>,
    /// Bytes discarded while lingering.
    lingered: usize,
    /// When the client last sent a whole message (bytes of a frame that
    /// never completes do not count: that is not activity).
    last_activity: Instant,
    /// When it was accepted.
    accepted: Instant,
    /// When a byte last arrived from the client (liveness, for keepalive;
    /// unlike `last_activity`, probes and partial frames count).
    last_heard: Instant,
    /// Keepalive probes sent.
    probes: u32,
    /// Who authenticated, and how (the audit line): `token`, or the account and key.
    who: Option<std::sync::Arc<str>>,
    /// What it may do, and as whom: decided when it authenticated.
    grant: std::sync::Arc<crate::auth::grant::Grant>,
    /// Forwarded channels and ports open (server/forward.rs): like a
    /// running command, they keep an idle connection open.
    tunnels: usize,
}

impl Connection {
    pub fn new(
        stream: Stream,
        token: Token,
        peer: SocketAddr,
        wire: Wire,
        max_frame: usize,
        tls: Option<rustls::ServerConnection>,
        now: Instant,
    ) -> Self {
        Connection {
            stream,
            token,
            transport: match tls {
                Some(t) => Transport::Tls {
                    tls: Box::new(t),
                    checked: false,
                },
                None => Transport::Plain,
            },
            peer,
            state: match wire {
                Wire::Native(_) => State::New,
                Wire::Seed | Wire::Raw => State::Open,
            },
            wire,
            decoder: FrameDecoder::with_max_frame(max_frame),
            out: OutQueue::default(),
            spliced: None,
            commands: HashMap::new(),
            paused_pipes: Vec::new(),
            holds: Holds::default(),
            errors_logged: 0,
            partial_since: None,
            inbound: None,
            after_splice: false,
            startup: None,
            lingered: 0,
            last_activity: now,
            accepted: now,
            last_heard: now,
            probes: 0,
            who: None,
            grant: std::sync::Arc::default(),
            tunnels: 0,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Records who authenticated, and how.
    pub fn set_who(&mut self, who: String) {
        self.who = Some(who.into());
    }

    /// Who authenticated, if anyone had to.
    pub fn who(&self) -> Option<std::sync::Arc<str>> {
        self.who.clone()
    }

    /// Records what its key's line (and its account) allows.
    pub fn set_grant(&mut self, grant: crate::auth::grant::Grant) {
        self.grant = std::sync::Arc::new(grant);
    }

    /// What this connection may do, and as whom.
    pub fn grant(&self) -> std::sync::Arc<crate::auth::grant::Grant> {
        self.grant.clone()
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// The socket, for socket options (none for a played client).
    pub fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.stream.fd()
    }

    /// Takes the socket out of the poll.
    pub fn deregister(&mut self, registry: &mut crate::registry::Registry) {
        registry.remove(&mut self.stream, self.token);
    }

    /// The peer is gone (a read or write failed): close without flushing.
    pub fn set_dead(&mut self) {
        self.state = State::Dead;
    }

    /// The client is done sending (end of stream).
    pub fn set_input_closed(&mut self) {
        self.state = State::InputClosed;
    }

    /// The rexec protocol's state machine, on a native connection.
    /// The protocol version both ends speak (a tutorial connection: the
    /// oldest).
    pub fn version(&self) -> u16 {
        match &self.wire {
            Wire::Native(p) => p.version(),
            Wire::Seed | Wire::Raw => rexec_proto::OLDEST_PROTOCOL,
        }
    }

    pub fn protocol(&mut self) -> Option<&mut ConnProtocol> {
        match &mut self.wire {
            Wire::Native(p) => Some(p),
            Wire::Seed | Wire::Raw => None,
        }
    }

    /// Where the native protocol's handshake is, if it is the native one.
    pub fn protocol_phase(&self) -> Option<crate::protocol::Phase> {
        match &self.wire {
            Wire::Native(p) => Some(p.phase()),
            Wire::Seed | Wire::Raw => None,
        }
    }

    /// Whether the hello (and auth, if required) is still to be completed.
    pub fn in_handshake(&self) -> bool {
        self.is_open()
            && matches!(&self.wire, Wire::Native(p) if p.phase() != crate::protocol::Phase::Running)
    }

    // --- commands ---

    pub fn command(&self, id: u32) -> Option<ProcId> {
        self.commands.get(&id).copied()
    }

    pub fn add_command(&mut self, id: u32, proc: ProcId) {
        self.commands.insert(id, proc);
    }

    /// The command ended: forget it, and any of its pipes paused here.
    pub fn remove_command(&mut self, id: u32, proc: ProcId) {
        self.commands.remove(&id);
        self.paused_pipes.retain(|(k, _)| *k != proc);
    }

    /// After a quiet period: a large decode buffer is let go, and with no
    /// command running, the output queue's memory too.
    pub fn shrink_if_idle(&mut self) {
        self.decoder.shrink_if_idle();
        if self.commands.is_empty() {
            self.out.shrink();
        }
    }

    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    /// The client's ids of its running commands.
    pub fn command_ids(&self) -> Vec<u32> {
        self.commands.keys().copied().collect()
    }

    pub fn procs(&self) -> impl Iterator<Item = ProcId> + '_ {
        self.commands.values().copied()
    }

    // --- decoding ---

    /// The next whole message from what was read, if any. The first one
    /// opens the connection (and fixes the TLS channel binding).
    fn next_message(
        &mut self,
        now: Instant,
    ) -> Result<Option<rexec_proto::ClientMsg>, rexec_proto::FrameError> {
        let Some(msg) = self.decoder.next_message()? else {
            return Ok(None);
        };
        if !matches!(
            msg,
            rexec_proto::ClientMsg::Ping { .. } | rexec_proto::ClientMsg::Pong { .. }
        ) {
            // Probes keep a connection alive, not busy: --idle-timeout
            // still closes one that only answers them.
            self.last_activity = now;
        }
        if self.state == State::New {
            self.state = State::Open;
            let binding = self.channel_binding();
            if let Wire::Native(proto) = &mut self.wire {
                proto.set_binding(binding);
            }
        }
        Ok(Some(msg))
    }

    /// The client's stream ended: whether it ended between frames.
    fn finish_input(&mut self) -> Result<(), rexec_proto::FrameError> {
        self.decoder.finish()
    }

    /// Nothing more to read for now: a large decode buffer is let go,
    /// unless a command or a tunnel is open. A stream of large frames
    /// (forwarded data) would otherwise free, allocate and zero a buffer
    /// for every frame, which cost more than the copy it holds; a busy
    /// connection's buffer (at most a frame and a read) is let go at the
    /// keepalive probe after a quiet period ([`Connection::shrink_if_idle`]).
    fn input_drained(&mut self) {
        if self.commands.is_empty() && self.tunnels == 0 {
            self.decoder.shrink_if_idle();
        }
    }

    /// Queues a tutorial protocol's whole reply. The output limit keeps a
    /// seed reply far below its header's 2 GiB.
    pub fn queue_tutorial_reply(&mut self, stdout: &[u8], stderr: &[u8]) {
        use rexec_proto::tutorial::{encode_raw_reply, encode_seed_reply};
        match self.wire {
            Wire::Seed => {
                if let Err(e) = encode_seed_reply(stdout, stderr, self.out.tail()) {
                    log::error!("{}: {e}", self.peer);
                    self.state = State::Dead;
                }
            }
            Wire::Raw => encode_raw_reply(stdout, stderr, self.out.tail()),
            Wire::Native(_) => {}
        }
    }

    // --- closing ---

    /// Whether a command error should be logged: the first few of each
    /// connection are, then one line says the rest are not.
    pub fn log_error_quota(&mut self) -> bool {
        self.errors_logged = self.errors_logged.saturating_add(1);
        if self.errors_logged == ERRORS_LOGGED + 1 {
            log::warn!(
                "{}: more than {ERRORS_LOGGED} command errors; the rest are counted at close",
                self.peer
            );
        }
        self.errors_logged <= ERRORS_LOGGED
    }

    /// At close: how many command errors were not logged, if any.
    pub fn errors_not_logged(&self) -> Option<(u32, u32)> {
        (self.errors_logged > ERRORS_LOGGED)
            .then(|| (self.errors_logged, self.errors_logged - ERRORS_LOGGED))
    }

    /// Takes the running commands away as the connection closes.
    pub fn take_commands(&mut self) -> Vec<ProcId> {
        self.commands.drain().map(|(_, p)| p).collect()
    }

    /// Whether this connection speaks rexec's framed protocol.
    pub fn is_native(&self) -> bool {
        matches!(self.wire, Wire::Native(_))
    }

    /// The peer is gone: close without flushing.
    pub fn is_dead(&self) -> bool {
        self.state == State::Dead
    }

    /// Whether what the client sends is still acted on.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::New | State::Open)
    }

    /// Queues a message. Call [`Connection::flush`] to send it.
    pub fn queue(&mut self, msg: &ServerMsg) {
        encode_frame(msg, self.out.tail());
    }

    /// Queues a connection-level error; the connection closes once it is sent.
    pub fn fail(&mut self, kind: ErrorKind, message: String) {
        if !matches!(self.state, State::New | State::Open | State::InputClosed) {
            return;
        }
        if self.is_native() {
            self.queue(&ServerMsg::Error(ErrorMsg {
                id: None,
                kind,
                message,
            }));
        }
        self.state = State::Closing;
    }

    /// Whether the connection has nothing more to do: closing and flushed,
    /// or the client is done sending and everything it started has finished
    /// and been sent.
    pub fn finished(&self) -> bool {
        self.out.is_empty()
            && self.spliced.is_none()
            && match self.state {
                State::Closing => true,
                State::InputClosed => self.commands.is_empty(),
                _ => false,
            }
    }
}

#[cfg(test)]
mod tests;
