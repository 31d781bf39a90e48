//! One client connection: its socket, what it has sent that is not yet
//! decoded, what we have queued that is not yet written, and its commands.
//! The server owns every `Connection` (in `Server::conns`); this file only
//! knows how bytes cross its socket.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Instant;

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

#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    /// The socket's poll registration.
    pub token: Token,
    pub transport: Transport,
    pub peer: SocketAddr,
    pub wire: Wire,
    pub state: State,
    pub decoder: FrameDecoder,
    pub out: OutQueue,
    /// The rest of a frame spliced from a pipe that the socket has not
    /// taken yet: it goes out before anything in `out` (which was empty
    /// when the frame began).
    pub spliced: Option<Owed>,
    /// Running commands: the client's id for each -> the server's.
    pub commands: HashMap<u32, ProcId>,
    /// Pipes not read because `out` is over the queue limit; they get no new
    /// readiness event, so they are resumed by hand when `out` drains.
    pub paused_pipes: Vec<(ProcId, OutputStream)>,
    /// Socket input not read because a command's stdin queue is full.
    pub input_paused: bool,
    /// Socket input not read because our replies to it are not being read
    /// (`out` over the queue limit): TCP pushes back on the sender.
    pub input_waits_for_output: bool,
    /// Command errors logged for this connection (a flood is not logged
    /// line by line).
    pub errors_logged: u32,
    /// Since when a frame has been partly received, if one has.
    pub partial_since: Option<Instant>,
    /// Held back by the server-wide memory budget: its pipes and its input
    /// are not read until it is released.
    pub held_back: bool,
    /// Counted among the connections waiting to authenticate.
    pub preauth: bool,
    /// When the handshake must be complete.
    pub handshake_due: Instant,
    /// Waiting in the server's backlog for its next turn.
    pub in_backlog: bool,
    /// Bytes discarded while lingering.
    pub lingered: usize,
    /// When the client last sent a whole message (bytes of a frame that
    /// never completes do not count: that is not activity).
    pub last_activity: Instant,
    /// When it was accepted.
    pub accepted: Instant,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        token: Token,
        peer: SocketAddr,
        wire: Wire,
        max_frame: usize,
        tls: Option<rustls::ServerConnection>,
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
            input_paused: false,
            input_waits_for_output: false,
            errors_logged: 0,
            partial_since: None,
            held_back: false,
            preauth: false,
            handshake_due: Instant::now(),
            in_backlog: false,
            lingered: 0,
            last_activity: Instant::now(),
            accepted: Instant::now(),
        }
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
    pub fn read_input(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let tls = match &mut self.transport {
            Transport::Plain => {
                let n = self.stream.read(scratch)?;
                self.decoder.feed(&scratch[..n]);
                return Ok(n);
            }
            Transport::Tls { tls, .. } => tls,
        };
        let n = tls.read_tls(&mut self.stream)?;
        if n == 0 {
            return Ok(0);
        }
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
