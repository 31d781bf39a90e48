//! One client connection: its socket, what it has sent that is not yet
//! decoded, what we have queued that is not yet written, and its commands.
//! The server owns every `Connection` (in `Server::conns`); this file only
//! knows how bytes cross its socket.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use mio::Token;
use mio::net::TcpStream;
use rexec_proto::{ErrorKind, ErrorMsg, FrameDecoder, OutputStream, ServerMsg, encode_frame};

use crate::out_queue::OutQueue;
use crate::protocol::ConnProtocol;
use crate::registry::ProcId;
use crate::splice::Owed;

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

/// A reason the socket's input is not read for now. Any one holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A command's stdin queue is full (the child is not reading).
    StdinFull,
    /// Our replies are not being read (`out` over the reply limit): TCP
    /// pushes back on the sender.
    RepliesUnread,
    /// The server-wide memory budget: its pipes are not read either.
    Memory,
}

/// The holds on a connection's input, as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds(u8);

impl Holds {
    fn bit(h: Hold) -> u8 {
        1 << h as u8
    }
    /// Adds `h`; false if it was already there.
    pub fn add(&mut self, h: Hold) -> bool {
        let had = self.has(h);
        self.0 |= Self::bit(h);
        !had
    }
    /// Removes `h`; false if it was not there.
    pub fn remove(&mut self, h: Hold) -> bool {
        let had = self.has(h);
        self.0 &= !Self::bit(h);
        had
    }
    pub fn has(self, h: Hold) -> bool {
        self.0 & Self::bit(h) != 0
    }
    pub fn any(self) -> bool {
        self.0 != 0
    }
}

/// What a connection's deadline check decided at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Nothing to watch (any more).
    None,
    /// Look again at this instant.
    At(Instant),
    /// It ran out: close the connection.
    Expired,
}

/// What the keepalive check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// Not for this connection (a tutorial protocol, a version-3 client,
    /// or one that is closing).
    Off,
    /// Heard from lately: look again then.
    Later(Instant),
    /// Silent for a period: send probe `seq`, look again at `next`.
    Probe { seq: u32, next: Instant },
    /// Silent for three periods: the client is gone.
    Gone(Duration),
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
    stream: TcpStream,
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
    /// Who authenticated, and how (for the audit line): `token`, or the
    /// account and the key's fingerprint.
    who: Option<std::sync::Arc<str>>,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
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
            startup: None,
            lingered: 0,
            last_activity: now,
            accepted: now,
            last_heard: now,
            probes: 0,
            who: None,
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

    pub fn state(&self) -> State {
        self.state
    }

    pub fn accepted(&self) -> Instant {
        self.accepted
    }

    /// The socket, for socket options.
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
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
    pub fn protocol(&mut self) -> Option<&mut ConnProtocol> {
        match &mut self.wire {
            Wire::Native(p) => Some(p),
            Wire::Seed | Wire::Raw => None,
        }
    }

    /// Whether the hello (and auth, if required) is still to be completed.
    pub fn in_handshake(&self) -> bool {
        self.is_open()
            && matches!(&self.wire, Wire::Native(p) if p.phase() != crate::protocol::Phase::Running)
    }

    // --- startup (--max-startups) ---

    /// Counts it among the connections waiting to authenticate, with its
    /// handshake due at `due`.
    pub fn begin_startup(&mut self, due: Instant) {
        self.startup = Some(due);
    }

    /// Whether it is counted among the connections waiting to authenticate.
    pub fn in_startup(&self) -> bool {
        self.startup.is_some()
    }

    /// Moves the handshake deadline (the hello was held back) if it is still
    /// counted; returns the new one.
    pub fn extend_startup(&mut self, due: Instant) -> Option<Instant> {
        let s = self.startup.as_mut()?;
        *s = due;
        Some(due)
    }

    /// Stops counting it; true if it was counted.
    pub fn leave_startup(&mut self) -> bool {
        self.startup.take().is_some()
    }

    /// The handshake timer fired at `now`.
    pub fn handshake_deadline(&self, now: Instant) -> Deadline {
        match self.startup {
            _ if !self.in_handshake() => Deadline::None,
            Some(due) if now < due => Deadline::At(due),
            // Moved past the startup count (no token) yet not running: the
            // deadline stands as it was.
            _ => Deadline::Expired,
        }
    }

    // --- input holds ---

    pub fn hold(&mut self, h: Hold) -> bool {
        self.holds.add(h)
    }

    pub fn release(&mut self, h: Hold) -> bool {
        self.holds.remove(h)
    }

    pub fn is_held(&self, h: Hold) -> bool {
        self.holds.has(h)
    }

    /// Whether input may be read and acted on now.
    pub fn may_read(&self) -> bool {
        self.is_open() && !self.holds.any()
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

    /// With no command running, the output queue lets its memory go.
    pub fn shrink_if_idle(&mut self) {
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

    // --- output backpressure ---

    /// Bytes queued for the socket.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Bytes this connection holds itself: queued output and a partly
    /// received frame (the memory budget counts them).
    pub fn held_bytes(&self) -> usize {
        self.out.len() + self.decoder.buffered()
    }

    /// The buffer frames are encoded onto; flushed by [`Connection::flush`].
    pub fn frames(&mut self) -> &mut Vec<u8> {
        self.out.tail()
    }

    /// Remembers a pipe left unread until the socket drains.
    pub fn pause_pipe(&mut self, proc: ProcId, stream: OutputStream) {
        if !self.paused_pipes.contains(&(proc, stream)) {
            self.paused_pipes.push((proc, stream));
        }
    }

    pub fn has_paused_pipes(&self) -> bool {
        !self.paused_pipes.is_empty()
    }

    pub fn pauses(&self, proc: ProcId) -> bool {
        self.paused_pipes.iter().any(|(k, _)| *k == proc)
    }

    /// The paused pipes, if the queue has drained enough to read them again.
    pub fn pipes_to_resume(&mut self, queue_limit: usize) -> Vec<(ProcId, OutputStream)> {
        if self.holds.has(Hold::Memory) || self.spliced.is_some() || self.out.len() >= queue_limit {
            return Vec::new();
        }
        std::mem::take(&mut self.paused_pipes)
    }

    /// Whether output must wait before more is read from a pipe: the queue
    /// is over its limit, a spliced frame is owed, what was copied must go
    /// out first (zero-copy), or memory is short.
    pub fn output_blocked(&self, queue_limit: usize, zero_copy: bool, over_budget: bool) -> bool {
        self.is_native()
            && (self.out.len() >= queue_limit
                || self.spliced.is_some()
                || (zero_copy && !self.out.is_empty())
                || self.holds.has(Hold::Memory)
                || (over_budget && !self.out.is_empty()))
    }

    /// Splices `len` bytes of output from `pipe` onto the socket as one
    /// frame (splice.rs); what the socket did not take is owed.
    pub fn splice_from(
        &mut self,
        pipe: std::os::fd::BorrowedFd<'_>,
        stream: OutputStream,
        id: u32,
        len: usize,
    ) -> io::Result<crate::splice::Sent> {
        let sent = crate::splice::send_chunk(pipe, self.stream.as_fd(), stream, id, len)?;
        if let crate::splice::Sent::Owed(owed) = sent {
            self.spliced = Some(owed);
            return Ok(crate::splice::Sent::All);
        }
        Ok(sent)
    }

    // --- decoding ---

    /// The next whole message from what was read, if any. The first one
    /// opens the connection (and fixes the TLS channel binding).
    pub fn next_message(
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
    pub fn finish_input(&mut self) -> Result<(), rexec_proto::FrameError> {
        self.decoder.finish()
    }

    /// Nothing more to read for now: a large decode buffer is let go.
    pub fn input_drained(&mut self) {
        self.decoder.shrink_if_idle();
    }

    /// Keeps the clock of a partly received frame: started when one begins,
    /// restarted when a message completed and another began. True when a
    /// frame began just now (a deadline is to be armed).
    pub fn track_partial_frame(&mut self, decoded: bool, now: Instant) -> bool {
        if self.decoder.buffered() == 0 {
            self.partial_since = None;
            return false;
        }
        let began = self.partial_since.is_none();
        if decoded || began {
            self.partial_since = Some(now);
        }
        began
    }

    /// The frame timer fired at `now`: a frame incomplete for `timeout`
    /// ends the connection.
    pub fn frame_deadline(&self, now: Instant, timeout: Duration) -> Deadline {
        let Some(since) = self.partial_since.filter(|_| self.is_open()) else {
            return Deadline::None;
        };
        let due = since + timeout;
        if now < due {
            Deadline::At(due)
        } else {
            Deadline::Expired
        }
    }

    /// The keepalive timer fired at `now`, with probes every `every` of
    /// silence.
    pub fn keepalive(&mut self, now: Instant, every: Duration) -> Keepalive {
        let speaks_it = match &self.wire {
            Wire::Native(p) => p.phase() != crate::protocol::Phase::Running || p.has_keepalive(),
            Wire::Seed | Wire::Raw => false,
        };
        if !speaks_it || !matches!(self.state, State::New | State::Open | State::InputClosed) {
            return Keepalive::Off;
        }
        if self.holds.any() {
            // We are not reading what it sends (its command's stdin is
            // full, its replies unread, memory short): its silence is ours,
            // and its probes wait unread. A probe from us tells it we are
            // still here.
            self.last_heard = now;
            self.probes = self.probes.wrapping_add(1);
            return Keepalive::Probe {
                seq: self.probes,
                next: now + every,
            };
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= 3 * every {
            return Keepalive::Gone(silent);
        }
        let in_handshake =
            matches!(&self.wire, Wire::Native(p) if p.phase() != crate::protocol::Phase::Running);
        if silent < every || in_handshake {
            // (A handshake has its own deadline; probes start once running.)
            return Keepalive::Later((self.last_heard + every).max(now + Duration::from_millis(1)));
        }
        self.probes = self.probes.wrapping_add(1);
        Keepalive::Probe {
            seq: self.probes,
            next: now + every,
        }
    }

    /// The idle timer fired at `now`: with no command running and no
    /// message for `idle`, the connection is idle; otherwise the next look.
    pub fn idle_deadline(&self, now: Instant, idle: Duration) -> Deadline {
        let quiet = now.saturating_duration_since(self.last_activity);
        if self.commands.is_empty() && quiet >= idle {
            Deadline::Expired
        } else if self.commands.is_empty() {
            Deadline::At(now + (idle - quiet))
        } else {
            Deadline::At(now + idle)
        }
    }

    /// Reads one tutorial command (up to `buf.len()` bytes): `Some(n)` with
    /// the command in `buf[..n]`, `None` for nothing now (or the end, or an
    /// error, which change the state).
    pub fn read_tutorial(&mut self, buf: &mut [u8], now: Instant) -> Option<usize> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    // Done sending; closes once the last reply is flushed.
                    self.state = State::InputClosed;
                    return None;
                }
                Ok(n) => {
                    self.last_activity = now;
                    return Some(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("{}: read failed: {e}", self.peer);
                    self.state = State::Dead;
                    return None;
                }
            }
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

    /// The error is sent: shut our side (the client reads it, then end of
    /// stream) and discard what the client still sends until it closes.
    pub fn start_linger(&mut self, scratch: &mut [u8]) -> Lingered {
        if let Err(e) = self.stream.shutdown(std::net::Shutdown::Write) {
            log::debug!("{}: shutdown: {e}", self.peer);
            return Lingered::Done;
        }
        self.state = State::Lingering;
        self.lingered = 0;
        self.linger(scratch)
    }

    /// Reads and discards what the client sends while lingering.
    pub fn linger(&mut self, scratch: &mut [u8]) -> Lingered {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Lingered::Done,
                Ok(n) => {
                    self.lingered += n;
                    if self.lingered > LINGER_MAX {
                        return Lingered::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Lingered::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Lingered::Done,
            }
        }
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

    /// Whether the client's first bytes show it expects the other transport:
    /// a TLS ClientHello on a plaintext port, or plaintext on a TLS port.
    /// Either way the client gets a plain `Error` frame it can read and show.
    pub fn wrong_transport(&mut self) -> Option<String> {
        match &mut self.transport {
            Transport::Plain => {
                let b = self.decoder.buffered_bytes();
                (b.len() >= 2 && b[0] == TLS_HANDSHAKE && b[1] == 3).then(|| {
                    "this server speaks plaintext, and the client started TLS: connect without \
                     --tls (or run rexecd with --tls)"
                        .to_string()
                })
            }
            Transport::Tls { checked: true, .. } => None,
            Transport::Tls { checked, .. } => {
                let mut first = [0u8; 1];
                match self.stream.peek(&mut first) {
                    Ok(1) if first[0] != TLS_HANDSHAKE => {
                        // Answer in the client's language.
                        self.transport = Transport::Plain;
                        Some(
                            "this server speaks TLS, and the client sent plaintext: connect with \
                             --tls (first time: --accept-new, or --fingerprint SHA256:... as \
                             printed by rexecd)"
                                .to_string(),
                        )
                    }
                    Ok(_) => {
                        *checked = true;
                        None
                    }
                    Err(_) => None, // nothing yet; read_input reports errors
                }
            }
        }
    }

    /// Reads what the socket has into the decoder (through TLS if in use).
    /// `Ok(0)` is the end of the stream; `WouldBlock` means nothing more now.
    ///
    /// The bytes land in `scratch` (the server's, shared) and only what
    /// arrived is copied into the decoder: a connection that said a few
    /// bytes holds a few bytes, not a 64 KiB read buffer (20,000 idle
    /// connections were 229 MiB that way, 19 MiB this way).
    pub fn read_input(&mut self, scratch: &mut [u8], now: Instant) -> io::Result<usize> {
        let tls = match &mut self.transport {
            Transport::Plain => {
                let n = self.stream.read(scratch)?;
                self.decoder.feed(&scratch[..n]);
                if n > 0 {
                    self.last_heard = now;
                }
                return Ok(n);
            }
            Transport::Tls { tls, .. } => tls,
        };
        let n = tls.read_tls(&mut self.stream)?;
        if n == 0 {
            return Ok(0);
        }
        self.last_heard = now;
        if let Err(e) = tls.process_new_packets() {
            // Tell the peer (an alert), then give up on it.
            let _ = tls.write_tls(&mut self.stream);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: {e}"),
            ));
        }
        loop {
            match tls.reader().read(scratch) {
                Ok(0) => return Ok(0), // close_notify
                Ok(got) => self.decoder.feed(&scratch[..got]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if tls.wants_write() {
            self.flush(); // handshake messages
        }
        Ok(n)
    }

    /// The TLS channel binding for authentication, once the handshake is done.
    pub fn channel_binding(&self) -> Vec<u8> {
        match &self.transport {
            Transport::Plain => Vec::new(),
            Transport::Tls { tls, .. } => {
                let mut out = vec![0u8; 32];
                match tls.export_keying_material(
                    &mut out[..],
                    rexec_proto::auth::TLS_EXPORTER_LABEL,
                    None,
                ) {
                    Ok(_) => out,
                    // Not possible after the handshake; an empty binding then
                    // fails every answer a TLS client computes.
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// Whether output may be spliced onto the socket now: a plain native
    /// connection that is still delivering, with nothing queued or owed
    /// before it (frames must not interleave).
    pub fn can_splice(&self) -> bool {
        self.zero_copy() && self.out.is_empty() && self.spliced.is_none()
    }

    /// A plain native connection that is still delivering: output goes to
    /// it by splice, and at most one read's worth waits in `out`.
    pub fn zero_copy(&self) -> bool {
        matches!(self.transport, Transport::Plain)
            && self.is_native()
            && matches!(self.state, State::Open | State::InputClosed)
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

    /// Writes what is queued, as far as the socket takes it. A write error
    /// marks the connection dead.
    pub fn flush(&mut self) {
        if self.is_dead() {
            return;
        }
        let res = match &mut self.transport {
            Transport::Plain => match &mut self.spliced {
                Some(owed) => match owed.resume(self.stream.as_fd()) {
                    Ok(true) => {
                        self.spliced = None;
                        self.out.write_to(&mut self.stream)
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                },
                None => self.out.write_to(&mut self.stream),
            },
            Transport::Tls { tls, .. } => flush_tls(tls, &mut self.out, &mut self.stream),
        };
        if let Err(e) = res {
            log::debug!("{}: write failed: {e}", self.peer);
            self.state = State::Dead;
        }
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

/// Moves queued plaintext into rustls while it has room (its buffer is
/// bounded, so unsent bytes stay in `out`, where backpressure counts them),
/// and TLS records onto the socket, until the socket would block or all is
/// sent.
fn flush_tls<W: Write>(
    tls: &mut rustls::ServerConnection,
    out: &mut OutQueue,
    sock: &mut W,
) -> io::Result<()> {
    loop {
        while !out.is_empty() {
            let n = tls.writer().write(out.front())?;
            if n == 0 {
                break;
            }
            out.consume(n);
        }
        if !tls.wants_write() {
            return Ok(());
        }
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The connection's decisions on plain state, with time passed in: no
    //! sleeps. A loopback socket pair stands in for the client.
    use super::*;
    use rexec_proto::auth::NONCE_LEN;

    const IDLE: Duration = Duration::from_secs(60);

    /// A native connection accepted at `now`, and the client's end.
    fn pair(now: Instant) -> (Connection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let wire = Wire::Native(ConnProtocol::new(None, [0; NONCE_LEN]));
        let stream = TcpStream::from_std(server);
        let conn = Connection::new(stream, Token(9), peer, wire, 1 << 20, None, now);
        (conn, client)
    }

    /// Reads what the client sent into the decoder.
    fn read_all(conn: &mut Connection, want: usize) {
        let mut scratch = vec![0; 1024];
        let mut got = 0;
        let mut tries = 0;
        while got < want {
            match conn.read_input(&mut scratch, Instant::now()) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Loopback: the bytes are on their way; wait for them
                    // with a poll, not a guess.
                    tries += 1;
                    assert!(tries < 1000, "the client's bytes never arrived");
                    let fd = conn.stream.as_fd();
                    let mut pfd = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::IN,
                    )];
                    let _ = rustix::event::poll(&mut pfd, None);
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn an_idle_connection_is_closed_after_the_idle_time_and_not_before() {
        let t0 = Instant::now();
        let (conn, _client) = pair(t0);
        assert_eq!(
            conn.idle_deadline(t0 + IDLE / 2, IDLE),
            Deadline::At(t0 + IDLE)
        );
        assert_eq!(conn.idle_deadline(t0 + IDLE, IDLE), Deadline::Expired);
    }

    #[test]
    fn a_connection_running_a_command_is_never_idle() {
        let t0 = Instant::now();
        let (mut conn, _client) = pair(t0);
        conn.add_command(1, ProcId(1));
        let late = t0 + 10 * IDLE;
        assert_eq!(conn.idle_deadline(late, IDLE), Deadline::At(late + IDLE));
        conn.remove_command(1, ProcId(1));
        assert_eq!(conn.idle_deadline(late, IDLE), Deadline::Expired);
    }

    #[test]
    fn a_frame_that_never_completes_runs_out_its_deadline() {
        let t0 = Instant::now();
        let (mut conn, mut client) = pair(t0);
        let limit = Duration::from_secs(5);
        assert_eq!(conn.frame_deadline(t0, limit), Deadline::None);
        // Three bytes of a four-byte length header: a frame has begun.
        client.write_all(&[0, 0, 0]).unwrap();
        read_all(&mut conn, 3);
        assert!(conn.track_partial_frame(false, t0), "a frame began");
        assert!(
            !conn.track_partial_frame(false, t0 + limit / 2),
            "the same one"
        );
        assert_eq!(
            conn.frame_deadline(t0 + limit / 2, limit),
            Deadline::At(t0 + limit)
        );
        assert_eq!(conn.frame_deadline(t0 + limit, limit), Deadline::Expired);
    }

    #[test]
    fn the_handshake_deadline_moves_with_a_held_back_hello() {
        let t0 = Instant::now();
        let (mut conn, _client) = pair(t0);
        let due = t0 + Duration::from_secs(10);
        conn.begin_startup(due);
        assert!(conn.in_startup());
        assert_eq!(conn.handshake_deadline(t0), Deadline::At(due));
        let later = due + Duration::from_secs(3);
        assert_eq!(conn.extend_startup(later), Some(later));
        assert_eq!(conn.handshake_deadline(due), Deadline::At(later));
        assert_eq!(conn.handshake_deadline(later), Deadline::Expired);
        assert!(conn.leave_startup());
        assert!(!conn.leave_startup(), "counted once");
        assert_eq!(conn.extend_startup(later), None);
    }

    #[test]
    fn any_hold_stops_input_until_every_hold_is_released() {
        let (mut conn, _client) = pair(Instant::now());
        assert!(conn.may_read());
        assert!(conn.hold(Hold::StdinFull));
        assert!(!conn.hold(Hold::StdinFull), "already held");
        assert!(conn.hold(Hold::Memory));
        assert!(!conn.may_read());
        assert!(conn.release(Hold::StdinFull));
        assert!(!conn.may_read(), "still held for memory");
        assert!(conn.release(Hold::Memory));
        assert!(!conn.release(Hold::Memory));
        assert!(conn.may_read());
    }

    #[test]
    fn output_waits_over_the_queue_limit_or_for_memory() {
        let (mut conn, _client) = pair(Instant::now());
        let limit = 1024;
        assert!(!conn.output_blocked(limit, false, false));
        conn.frames().extend_from_slice(&[0; 1024]);
        assert!(
            conn.output_blocked(limit, false, false),
            "queue at its limit"
        );
        conn.pause_pipe(ProcId(1), OutputStream::Stdout);
        conn.pause_pipe(ProcId(1), OutputStream::Stdout);
        assert!(
            conn.pipes_to_resume(limit).is_empty(),
            "nothing resumes while the queue is full"
        );
        conn.flush(); // the client's socket takes 1 KiB at once
        assert!(!conn.output_blocked(limit, false, false));
        conn.hold(Hold::Memory);
        assert!(conn.output_blocked(limit, false, false), "held for memory");
        assert!(conn.pipes_to_resume(limit).is_empty());
        conn.release(Hold::Memory);
        assert_eq!(
            conn.pipes_to_resume(limit),
            [(ProcId(1), OutputStream::Stdout)],
            "paused once, resumed once"
        );
    }

    #[test]
    fn lingering_shuts_our_side_and_reads_until_the_client_closes() {
        let (mut conn, mut client) = pair(Instant::now());
        client.write_all(b"late bytes").unwrap();
        let mut scratch = vec![0; 1024];
        let mut step = conn.start_linger(&mut scratch);
        assert_eq!(conn.state(), State::Lingering);
        // The client sees the end of our stream (after the error it got).
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        drop(client);
        let fd = conn.stream.as_fd().try_clone_to_owned().unwrap();
        while step == Lingered::Waiting {
            let mut pfd = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let _ = rustix::event::poll(&mut pfd, None);
            step = conn.linger(&mut scratch);
        }
        assert_eq!(step, Lingered::Done);
    }

    fn say_hello(conn: &mut Connection, version: u16) {
        let hello = rexec_proto::ClientMsg::Hello(rexec_proto::ClientHello {
            protocol: version,
            software: "t".into(),
        });
        let proto = conn.protocol().expect("native");
        assert!(matches!(
            proto.on_message(hello),
            crate::protocol::Action::SendHello { .. }
        ));
    }

    #[test]
    fn a_silent_client_is_probed_then_given_up_after_three_periods() {
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        let (mut conn, mut client) = pair(t0);
        // During the handshake: no probes (it has its own deadline).
        assert!(matches!(
            conn.keepalive(t0 + every, every),
            Keepalive::Later(_)
        ));
        say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
        assert_eq!(
            conn.keepalive(t0 + every / 2, every),
            Keepalive::Later(t0 + every)
        );
        assert_eq!(
            conn.keepalive(t0 + every, every),
            Keepalive::Probe {
                seq: 1,
                next: t0 + 2 * every
            }
        );
        assert_eq!(
            conn.keepalive(t0 + 2 * every, every),
            Keepalive::Probe {
                seq: 2,
                next: t0 + 3 * every
            }
        );
        assert_eq!(
            conn.keepalive(t0 + 3 * every, every),
            Keepalive::Gone(3 * every)
        );
        // A byte from the client (a probe's answer, say) starts over.
        client.write_all(&[0]).unwrap();
        let t1 = t0 + 3 * every;
        let mut scratch = [0u8; 16];
        loop {
            match conn.read_input(&mut scratch, t1) {
                Ok(n) if n > 0 => break,
                _ => {
                    let fd = conn.stream.as_fd();
                    let mut pfd = [rustix::event::PollFd::new(
                        &fd,
                        rustix::event::PollFlags::IN,
                    )];
                    let _ = rustix::event::poll(&mut pfd, None);
                }
            }
        }
        assert_eq!(
            conn.keepalive(t1 + every / 2, every),
            Keepalive::Later(t1 + every)
        );
    }

    #[test]
    fn a_client_whose_input_we_hold_is_not_silent() {
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        let (mut conn, _client) = pair(t0);
        say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
        conn.hold(Hold::StdinFull);
        let late = t0 + 10 * every;
        assert_eq!(
            conn.keepalive(late, every),
            Keepalive::Probe {
                seq: 1,
                next: late + every
            },
            "probed (so that it hears from us), never given up"
        );
        conn.release(Hold::StdinFull);
        assert_eq!(
            conn.keepalive(late + 3 * every, every),
            Keepalive::Gone(3 * every),
            "counted from when we last held it"
        );
    }

    #[test]
    fn a_version_3_client_is_never_probed() {
        let t0 = Instant::now();
        let (mut conn, _client) = pair(t0);
        say_hello(&mut conn, rexec_proto::OLDEST_PROTOCOL);
        let every = Duration::from_secs(30);
        assert_eq!(conn.keepalive(t0 + 10 * every, every), Keepalive::Off);
    }
}
