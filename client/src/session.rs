//! A connection to rexecd: connect, exchange hellos, send and receive frames.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rexec_proto::{
    ADDRESS_BINDING_PROTOCOL, AUTH_METHODS_PROTOCOL, ClientHello, ClientMsg, FrameDecoder,
    FrameError, KEEPALIVE_PROTOCOL, OLDEST_PROTOCOL, OUTPUT_HEADER_MAX, OutputStream,
    PROTOCOL_VERSION, SOFTWARE_VERSION, ServerEvent, ServerHello, ServerMsg, encode_frame,
};

use rexec_proto::auth::Token;
use rexec_proto::{ErrorKind, ErrorMsg};

use crate::addr::{hostport, parse_host};
use crate::error::ClientError;
use crate::splice::{SPLICE_MIN, Splicer};
use crate::tls::TlsOptions;
use crate::trace;

/// Bytes the client asks the socket for in one read.
const RECV_BUFFER: usize = 1 << 20;
/// What is read after a spliced frame: the next frame's header and a little
/// data, so that a large frame's data is left in the socket for splicing.
const SMALL_READ: usize = 256;

/// How long to wait for the server's hello when no connect timeout is given.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How to connect and log in.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Limit on the TCP connect and the server's hello.
    pub connect_timeout: Option<Duration>,
    /// Probe the server after this long without sending it anything; give
    /// up after three times as long without a byte from it.
    pub keepalive: Option<Duration>,
    /// Print every frame on stderr.
    pub trace: bool,
    /// The shared secret, for servers that ask for it.
    pub token: Option<Token>,
    /// The token came from the config file, not from the command line or
    /// `REXEC_TOKEN`: with an account named, keys go first where the
    /// server takes both (way_in.rs).
    pub token_from_config: bool,
    /// Key files given with `-i`, offered after the agent's keys and before
    /// the default ones.
    pub identities: Vec<std::path::PathBuf>,
    /// The account asked for (`-l`, `user@host`); `None`: the local user
    /// name, which a server running as one account does not insist on.
    pub user: Option<String>,
    /// Speak TLS, trusting as these say.
    pub tls: Option<TlsOptions>,
    /// Reach the server through this gateway rexecd (`-J`, `jump =`).
    pub jump: Option<Jump>,
}

/// A gateway to go through (`-J`): its address and how to log in there.
#[derive(Debug, Clone)]
pub struct Jump {
    /// The gateway, `HOST[:PORT]`.
    pub address: String,
    /// How to connect and log in there.
    pub opts: Box<ConnectOptions>,
}

/// The sending half, shared with the stdin-forwarding thread and the Ctrl-C
/// handler. Each frame is written whole under the lock, so frames from
/// several threads never interleave; with TLS, records are made and written
/// under the same lock, so they reach the socket in the order they were made.
#[derive(Debug)]
pub struct Writer {
    stream: Mutex<TcpStream>,
    tls: Option<Arc<Mutex<rustls::ClientConnection>>>,
    trace: bool,
    /// When a frame was last written whole (keepalive: probe after a while).
    last_sent: Mutex<Instant>,
}

impl Writer {
    pub fn send(&self, msg: &ClientMsg) -> io::Result<()> {
        self.send_glued(std::slice::from_ref(msg)).map(|_| ())
    }

    /// Sends several frames with a single write: they leave glued together,
    /// as sticky as TCP can make them. Returns the frames' bytes.
    pub fn send_glued(&self, msgs: &[ClientMsg]) -> io::Result<Vec<u8>> {
        let mut frames = Vec::new();
        for msg in msgs {
            let len = encode_frame(msg, &mut frames);
            if self.trace {
                trace::emit(&trace::sent(msg, len));
            }
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        self.write_locked(&mut s, &frames)?;
        Ok(frames)
    }

    /// Sends `data` as a `Stdin` chunk for command `id` from where it is:
    /// the frame's header, then the data (one vectored write), with no
    /// message built around a copy of it. The bytes are those of
    /// [`Writer::send`] with the same `ClientMsg::Stdin`.
    pub fn send_stdin(&self, id: u32, data: &[u8]) -> io::Result<()> {
        let mut head = Vec::with_capacity(rexec_proto::OUTPUT_HEADER_MAX);
        let len = rexec_proto::encode_stdin_header(id, data.len(), &mut head);
        if self.trace {
            // (A copy for the trace only: it describes the message.)
            let msg = ClientMsg::Stdin {
                id,
                data: data.to_vec(),
            };
            trace::emit(&trace::sent(&msg, len));
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        self.write_parts_locked(&mut s, &[&head, data])
    }

    /// Sends `data` as a `ChannelData` for channel `id` from where it is:
    /// the frame's header, then the data (one vectored write), as
    /// [`Writer::send_stdin`] does.
    pub fn send_channel_data(&self, id: u32, data: &[u8]) -> io::Result<()> {
        let mut head = Vec::with_capacity(rexec_proto::OUTPUT_HEADER_MAX);
        let len = rexec_proto::encode_channel_data_header(false, id, data.len(), &mut head);
        if self.trace {
            let msg = ClientMsg::ChannelData {
                id,
                data: data.to_vec(),
            };
            trace::emit(&trace::sent(&msg, len));
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        self.write_parts_locked(&mut s, &[&head, data])
    }

    /// Whether [`Writer::send_channel_data_from_pipe`] may be used: plain
    /// TCP, and no `--trace` (which shows every frame's bytes).
    pub fn can_splice(&self) -> bool {
        self.tls.is_none() && !self.trace
    }

    /// Sends the `n` bytes waiting in the pipe `from` as a `ChannelData`
    /// for channel `id`: the frame's header, then the bytes spliced from
    /// the pipe into the socket, never through this process's memory.
    /// Only where [`Writer::can_splice`] says so. An error leaves the
    /// connection mid-frame: it is broken.
    pub fn send_channel_data_from_pipe(
        &self,
        id: u32,
        from: std::os::fd::BorrowedFd<'_>,
        n: usize,
    ) -> io::Result<()> {
        let mut head = Vec::with_capacity(rexec_proto::OUTPUT_HEADER_MAX);
        rexec_proto::encode_channel_data_header(false, id, n, &mut head);
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(&head)?;
        let mut left = n;
        while left > 0 {
            let flags = rustix::pipe::SpliceFlags::MOVE;
            match rustix::pipe::splice(from, None, &*s, None, left, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => left -= k.min(left),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// Writes frames on the locked socket (through TLS if in use).
    fn write_locked(&self, s: &mut TcpStream, frames: &[u8]) -> io::Result<()> {
        self.write_parts_locked(s, &[frames])
    }

    /// Writes the bytes of `parts`, in order, on the locked socket (through
    /// TLS if in use): a header and data that are not in one buffer.
    fn write_parts_locked(&self, s: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
        match &self.tls {
            None => write_all_vectored(s, parts)?,
            Some(tls) => {
                let mut t = tls.lock().unwrap_or_else(|p| p.into_inner());
                for part in parts {
                    t.writer().write_all(part)?;
                }
                let records = drain_tls(&mut t)?;
                drop(t);
                s.write_all(&records)?;
            }
        }
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    /// Sends `msg` unless another thread is writing (which then is the
    /// sign of life): a probe must never wait behind a blocked write.
    fn try_send(&self, msg: &ClientMsg) -> io::Result<()> {
        let Ok(mut s) = self.stream.try_lock() else {
            return Ok(());
        };
        let mut frame = Vec::new();
        let len = encode_frame(msg, &mut frame);
        if self.trace {
            trace::emit(&trace::sent(msg, len));
        }
        self.write_locked(&mut s, &frame)
    }

    /// How long since a frame was last written.
    fn quiet_for(&self) -> Duration {
        self.last_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Sends whatever TLS wants to send (after reading, e.g. a key update).
    fn flush_tls(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let records = drain_tls(&mut tls.lock().unwrap_or_else(|p| p.into_inner()))?;
        s.write_all(&records)
    }
}

/// Writes every byte of `parts` with as few system calls as the socket
/// allows (`write_all_vectored` is not stable yet).
fn write_all_vectored(s: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut bufs = &mut slices[..];
    // Advancing by 0 drops the leading empty parts: a write of only empty
    // slices returns 0, which would read as WriteZero. (All empty: nothing
    // to write, and the loop does not run.)
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match s.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn drain_tls(t: &mut rustls::ClientConnection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while t.wants_write() {
        t.write_tls(&mut out)?;
    }
    Ok(out)
}

/// What takes a session's channel messages (port forwarding): it must
/// never block, as the session's reader calls it.
pub trait Channels: Send + Sync + std::fmt::Debug {
    fn on_message(&self, msg: ServerMsg);
}

/// A connection to a server, after the hellos and the login: frames in
/// ([`Session::next_event`]), frames out ([`Session::writer`]).
#[derive(Debug)]
pub struct Session {
    reader: TcpStream,
    /// Raw TLS records read from the socket (TLS only).
    raw: Vec<u8>,
    /// The server closed the TLS session (close_notify); report the end of
    /// the stream once the frames before it are taken out.
    tls_closed: bool,
    decoder: FrameDecoder,
    writer: Arc<Writer>,
    /// What the server said of itself.
    pub server: ServerHello,
    /// Where it is.
    pub addr: SocketAddr,
    trace: bool,
    /// The last frame was spliced: read only a little next.
    small_reads: bool,
    /// Reads have come back full: the receive buffer may grow to
    /// [`RECV_BUFFER`].
    streaming: bool,
    /// Keepalive probes, when the server speaks them (protocol 4).
    keepalive: Option<Duration>,
    /// When a byte last arrived from the server.
    last_heard: Instant,
    /// Probes sent.
    probes: u32,
    /// Where channel messages go (port forwarding), once there is one.
    forwarder: Option<Arc<dyn Channels>>,
    /// The answer to [`Session::confirm`]'s probe came.
    confirmed: bool,
}

/// The sequence number of [`Session::confirm`]'s probe (keepalive probes
/// count up from 1).
const CONFIRM_SEQ: u32 = u32::MAX;

impl Session {
    /// Connects to `HOST[:PORT]` and exchanges hellos, directly
    /// (`opts.jump` is forward/jump.rs's to follow).
    pub fn connect(spec: &str, opts: &ConnectOptions) -> Result<Session, ClientError> {
        let (host, port) = parse_host(spec).map_err(ClientError::Usage)?;
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| ClientError::Resolve(format!("{host}: {e}")))?
            .collect();
        let mut last = ClientError::Resolve(format!("{host}: no addresses"));
        let hostport = hostport(&host, port);
        for addr in addrs {
            match Self::connect_named(addr, &host, &hostport, opts) {
                Ok(s) => return Ok(s),
                // The server answered: another address of the same name is
                // the same server, and would ask the same trust question
                // again (the prompt shown twice) or refuse the same token.
                Err(e) if !e.worth_another_address() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to one address and exchanges hellos.
    pub fn connect_addr(addr: SocketAddr, opts: &ConnectOptions) -> Result<Session, ClientError> {
        Self::connect_named(addr, &addr.ip().to_string(), &addr.to_string(), opts)
    }

    /// Connects to `addr`, known to the user as `host` and, in the
    /// known-hosts file, as `hostport`.
    fn connect_named(
        addr: SocketAddr,
        host: &str,
        hostport: &str,
        opts: &ConnectOptions,
    ) -> Result<Session, ClientError> {
        let stream = open_socket(addr, opts)?;
        Self::over(stream, addr, host, hostport, opts)
    }

    /// Speaks rexec over `stream`, which reaches the server at `addr`
    /// (what a login over plain TCP names): a socket connected there, or
    /// one end of a channel through a gateway (`-J`).
    pub(crate) fn over(
        mut stream: TcpStream,
        addr: SocketAddr,
        host: &str,
        hostport: &str,
        opts: &ConnectOptions,
    ) -> Result<Session, ClientError> {
        stream.set_nodelay(true)?;
        let tls = match &opts.tls {
            None => None,
            Some(t) => {
                stream.set_read_timeout(Some(opts.connect_timeout.unwrap_or(HELLO_TIMEOUT)))?;
                let conn = crate::tls::connect(&mut stream, host, hostport, t)?;
                Some(Arc::new(Mutex::new(conn)))
            }
        };
        let binding = channel_binding(tls.as_deref(), addr)?;
        let writer = Arc::new(Writer {
            stream: Mutex::new(stream.try_clone()?),
            tls,
            trace: opts.trace,
            last_sent: Mutex::new(Instant::now()),
        });
        // The receive buffer starts at the decoder's 64 KiB and grows to
        // RECV_BUFFER once reads come back full (see read_more): with -w on
        // hundreds of hosts, a megabyte each up front was most of rexec's
        // memory.
        let decoder = FrameDecoder::new();
        let mut session = Session {
            reader: stream,
            raw: Vec::new(),
            tls_closed: false,
            decoder,
            writer,
            server: ServerHello {
                protocol: 0,
                software: String::new(),
                challenge: None,
            },
            addr,
            trace: opts.trace,
            small_reads: false,
            streaming: false,
            keepalive: None,
            last_heard: Instant::now(),
            probes: 0,
            forwarder: None,
            confirmed: false,
        };
        session.handshake(opts, &binding)?;
        Ok(session)
    }

    /// Exchanges hellos and, when the server asks, proves the token.
    fn handshake(&mut self, opts: &ConnectOptions, binding: &[u8]) -> Result<(), ClientError> {
        let addr = self.addr;
        self.send(&ClientMsg::Hello(ClientHello {
            protocol: PROTOCOL_VERSION,
            software: SOFTWARE_VERSION.to_string(),
        }))?;
        self.reader
            .set_read_timeout(Some(opts.connect_timeout.unwrap_or(HELLO_TIMEOUT)))?;
        let first = self.next_event().map_err(|e| match e {
            ClientError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                ClientError::Protocol(format!(
                    "{addr} took the connection but said nothing within {} s: the machine may \
                     be hung or overloaded, or what listens there is not rexecd (rexecd answers \
                     at once, unless started with --protocol seed or raw)",
                    opts.connect_timeout.unwrap_or(HELLO_TIMEOUT).as_secs()
                ))
            }
            ClientError::Protocol(m) => {
                ClientError::Protocol(format!("{addr} does not speak the rexec protocol ({m})"))
            }
            other => other,
        })?;
        let hello = match first {
            ServerEvent::Msg(ServerMsg::Hello(h)) => h,
            ServerEvent::Msg(ServerMsg::Error(e)) => return Err(ClientError::Server(e)),
            _ => {
                return Err(ClientError::Protocol(format!(
                    "{addr} did not answer with a hello"
                )));
            }
        };
        self.server = hello;
        if self.server.protocol >= KEEPALIVE_PROTOCOL {
            self.keepalive = opts.keepalive;
            if let Some(every) = self.keepalive {
                spawn_prober(Arc::downgrade(&self.writer), every);
            }
        }
        // Reads wake up every keepalive period to probe and to notice a
        // server that went silent; without keepalive they wait as long as
        // it takes.
        self.reader.set_read_timeout(self.keepalive)?;
        if let Some(every) = opts.keepalive {
            tcp_keepalive(&self.reader, every);
        }
        if !(OLDEST_PROTOCOL..=PROTOCOL_VERSION).contains(&self.server.protocol) {
            return Err(ClientError::Protocol(format!(
                "version mismatch: server {addr} speaks protocol {} (rexecd {}), this client speaks {} (rexec {})",
                self.server.protocol, self.server.software, PROTOCOL_VERSION, SOFTWARE_VERSION
            )));
        }
        self.log_in(opts, binding)
    }

    /// Answers the server's challenge, if its hello had one: with the
    /// token or keys, whichever the server takes and the user meant.
    fn log_in(&mut self, opts: &ConnectOptions, binding: &[u8]) -> Result<(), ClientError> {
        let addr = self.addr;
        if self.server.challenge.is_some()
            && opts.tls.is_none()
            && self.server.protocol < ADDRESS_BINDING_PROTOCOL
        {
            return Err(ClientError::Server(ErrorMsg {
                id: None,
                kind: ErrorKind::Version,
                message: format!(
                    "{addr} (rexecd {}) speaks protocol {}, whose logins over plain TCP do not \
                     name the server and could be relayed to another; not logging in: update \
                     rexecd there, or use --tls",
                    rexec_proto::text::clean(&self.server.software, 40),
                    self.server.protocol
                ),
            }));
        }
        let Some(nonce) = self.server.challenge.as_ref().map(|c| c.to_vec()) else {
            not_used(
                opts,
                addr,
                "asks for no key: it runs commands as its own account",
            );
            return Ok(());
        };
        let methods = self.auth_methods()?;
        let given = crate::way_in::Given {
            token: opts.token.as_ref(),
            token_from_config: opts.token_from_config,
            account_named: opts.user.is_some(),
        };
        match crate::way_in::way_in(methods, given, self.server.protocol) {
            crate::way_in::WayIn::Token(token) => {
                not_used(
                    opts,
                    addr,
                    "takes the token, which runs commands as rexecd's own account",
                );
                let answer = token.answer(binding, &nonce).to_vec();
                self.send(&ClientMsg::Auth { answer })?;
            }
            crate::way_in::WayIn::Keys => self.authenticate_with_keys(opts, binding, &nonce)?,
            crate::way_in::WayIn::NeedsToken => {
                return Err(ClientError::Server(ErrorMsg {
                    id: None,
                    kind: ErrorKind::Auth,
                    message: format!(
                        "{addr} requires a token: give --token-file FILE or set REXEC_TOKEN"
                    ),
                }));
            }
        }
        Ok(())
    }

    /// What a server of protocol 7 or later says it takes, right after its
    /// hello with a challenge: (token, keys); `None` from an older one.
    fn auth_methods(&mut self) -> Result<crate::way_in::Methods, ClientError> {
        if self.server.protocol < AUTH_METHODS_PROTOCOL {
            return Ok(None);
        }
        let addr = self.addr;
        match self.next_event()? {
            ServerEvent::Msg(ServerMsg::AuthMethods { token, keys }) => Ok(Some((token, keys))),
            ServerEvent::Msg(ServerMsg::Error(e)) => Err(ClientError::Server(e)),
            _ => Err(ClientError::Protocol(format!(
                "{addr} did not say how to log in after its hello"
            ))),
        }
    }

    /// Offers our keys one at a time, as ssh does, until the server takes
    /// one or no tries are left.
    fn authenticate_with_keys(
        &mut self,
        opts: &ConnectOptions,
        binding: &[u8],
        nonce: &[u8],
    ) -> Result<(), ClientError> {
        let addr = self.addr;
        let denied = |message: String| {
            ClientError::Server(ErrorMsg {
                id: None,
                kind: ErrorKind::Auth,
                message,
            })
        };
        let mut found = crate::keys::find(&opts.identities);
        if found.keys.is_empty() {
            let mut why = format!(
                "{addr} requires a key or a token: no ssh-agent keys ($SSH_AUTH_SOCK) and no key \
                 in ~/.ssh (id_ed25519, id_ecdsa, id_rsa); give -i FILE or --token-file FILE"
            );
            for n in &found.notes {
                why.push_str(&format!("\n  {n}"));
            }
            return Err(denied(why));
        }
        if opts.tls.is_none() {
            found.notes.push(format!(
                "over plain TCP a key signs the address it reached ({addr}): a server that is not \
                 at that address (behind NAT, a port forward or a relay) refuses it; use --tls there"
            ));
        }
        let explicit = opts.user.is_some();
        let user = opts.user.clone().unwrap_or_else(crate::keys::local_user);
        let data = rexec_proto::keyauth::signed_data(&user, explicit, binding, nonce);
        let mut offered = Vec::new();
        for key in &found.keys {
            let agent = found.agent.as_mut().map(|a| &mut a.0);
            let signature = match key.sign(agent, &data) {
                Ok(s) => rexec_proto::keyauth::encode_signature(s),
                Err(e) => {
                    found.notes.push(format!("{}: {e}", key.describe()));
                    continue;
                }
            };
            self.send(&ClientMsg::AuthKey {
                user: user.clone(),
                explicit,
                public_key: key.public_bytes(),
                signature,
            })?;
            offered.push(key.describe());
            match self.next_event()? {
                ServerEvent::Msg(ServerMsg::KeyAccepted) => return Ok(()),
                ServerEvent::Msg(ServerMsg::KeyRefused { tries_left: 0 }) => break,
                ServerEvent::Msg(ServerMsg::KeyRefused { .. }) => {}
                ServerEvent::Msg(ServerMsg::Error(e)) => {
                    let mut why = format!(
                        "{}: {addr} accepts none of your {} keys ({})",
                        e.message,
                        offered.len(),
                        offered.join(", ")
                    );
                    for n in &found.notes {
                        why.push_str(&format!("\n  {n}"));
                    }
                    return Err(denied(why));
                }
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "{addr} answered a key with something else"
                    )));
                }
            }
        }
        let mut why = match offered.len() {
            0 => format!("Permission denied (publickey): no key could be offered to {addr}"),
            n => format!(
                "Permission denied (publickey): {addr} accepts none of your {n} keys ({})",
                offered.join(", ")
            ),
        };
        for n in &found.notes {
            why.push_str(&format!("\n  {n}"));
        }
        Err(denied(why))
    }

    /// From now on channel messages go to `f` (forward.rs), never to the
    /// caller.
    pub fn set_forwarder(&mut self, f: Arc<dyn Channels>) {
        self.forwarder = Some(f);
    }

    /// The sending half, for other threads.
    /// Another handle on the connection's socket: shutting it down ends
    /// the session (the library's client, when it goes).
    pub fn socket(&self) -> io::Result<TcpStream> {
        self.reader.try_clone()
    }

    /// The sending half, to share with other threads.
    pub fn writer(&self) -> Arc<Writer> {
        self.writer.clone()
    }

    /// Sends one message as one frame.
    pub fn send(&self, msg: &ClientMsg) -> Result<(), ClientError> {
        Ok(self.writer.send(msg)?)
    }

    /// Sends `data` as a `Stdin` chunk for command `id` without copying it
    /// (`Writer::send_stdin`).
    pub fn send_stdin(&self, id: u32, data: &[u8]) -> Result<(), ClientError> {
        Ok(self.writer.send_stdin(id, data)?)
    }

    /// Blocks until the next frame arrives. Output data is borrowed from the
    /// receive buffer, so it is not copied on the way to stdout.
    pub fn next_event(&mut self) -> Result<ServerEvent<'_>, ClientError> {
        self.next_frame().map(|(_, ev)| ev)
    }

    /// Like [`Session::next_event`], with the frame's payload length.
    pub fn next_frame(&mut self) -> Result<(usize, ServerEvent<'_>), ClientError> {
        self.next_frame_unless(false)?
            .ok_or_else(|| ClientError::Protocol("no frame".into()))
    }

    /// Makes sure the server let us in: a probe, and its answer, with
    /// nothing before it (a wrong token is only said when the server
    /// reads what follows the hello). One round trip; for servers that
    /// probe (protocol 4), a no-op for older ones. A server that does not
    /// answer within `limit` is given up on.
    pub fn confirm(&mut self, limit: Duration) -> Result<(), ClientError> {
        if self.server.protocol < 4 {
            return Ok(());
        }
        self.send(&ClientMsg::Ping { seq: CONFIRM_SEQ })?;
        // A read that waits past `limit` is an error (no keepalive meanwhile).
        let keepalive = self.keepalive.take();
        self.reader.set_read_timeout(Some(limit))?;
        let answer = match self.next_frame_unless(true) {
            Ok(None) => Ok(()),
            Ok(Some((_, ServerEvent::Msg(ServerMsg::Error(e))))) => Err(ClientError::Server(e)),
            Ok(Some(_)) => Err(ClientError::Protocol(
                "the server sent a frame before answering the first probe".into(),
            )),
            Err(ClientError::Io(e)) if timed_out(&e) => {
                Err(ClientError::Timeout(self.addr.to_string()))
            }
            Err(e) => Err(e),
        };
        self.keepalive = keepalive;
        self.reader.set_read_timeout(self.keepalive)?;
        answer
    }

    /// The next frame; with `until_pong`, `None` once the answer to
    /// [`Session::confirm`]'s probe has come.
    fn next_frame_unless(
        &mut self,
        until_pong: bool,
    ) -> Result<Option<(usize, ServerEvent<'_>)>, ClientError> {
        let proto = |e: FrameError| ClientError::Protocol(e.to_string());
        loop {
            if until_pong && self.confirmed {
                return Ok(None);
            }
            if let Some(len) = self.decoder.frame_ready().map_err(proto)? {
                // Probes are the session's business, never a caller's.
                if let Some(probe) = self.decoder.next_probe().map_err(proto)? {
                    if self.trace {
                        trace::emit(&trace::received(&ServerEvent::Msg(probe.clone()), len));
                    }
                    match probe {
                        // Never waits behind a blocked write (stdin the
                        // server is not reading): then it is not needed.
                        ServerMsg::Ping { seq } => {
                            self.writer.try_send(&ClientMsg::Pong { seq })?
                        }
                        ServerMsg::Pong { seq: CONFIRM_SEQ } => self.confirmed = true,
                        _ => {}
                    }
                    continue;
                }
                // Channels are the forwarder's business, never a
                // caller's (and a server's without one are ignored).
                if let Some(msg) = self.decoder.next_channel_msg().map_err(proto)? {
                    if self.trace {
                        trace::emit(&trace::received(&ServerEvent::Msg(msg.clone()), len));
                    }
                    if let Some(f) = &self.forwarder {
                        f.on_message(msg);
                    }
                    continue;
                }
                let ev = self.decoder.next_server_event().map_err(proto)?;
                let ev = ev.ok_or_else(|| ClientError::Protocol("frame vanished".into()))?;
                let ev = made_safe(ev);
                if self.trace {
                    trace::emit(&trace::received(&ev, len));
                }
                return Ok(Some((len, ev)));
            }
            match self.read_more() {
                Ok(0) => {
                    return Err(match self.decoder.finish() {
                        Ok(()) => ClientError::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        )),
                        Err(e) => ClientError::Protocol(e.to_string()),
                    });
                }
                Ok(_) => self.last_heard = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => self.keep_alive()?,
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    /// A read timed out (one keepalive period without a byte): probe the
    /// server if we have not sent it anything for a period, and give up on
    /// it after three periods of silence.
    fn keep_alive(&mut self) -> Result<(), ClientError> {
        let Some(every) = self.keepalive else {
            // No keepalive, yet a timeout: report it as the error it is.
            return Err(ClientError::Io(io::ErrorKind::TimedOut.into()));
        };
        let silent = self.last_heard.elapsed();
        if silent >= 3 * every {
            return Err(ClientError::NoAnswer(self.addr.to_string(), silent));
        }
        if self.writer.quiet_for() >= every {
            self.probes = self.probes.wrapping_add(1);
            self.writer
                .try_send(&ClientMsg::Ping { seq: self.probes })?;
        }
        Ok(())
    }

    /// When the next frame is stdout for command `id` with at least
    /// `SPLICE_MIN` bytes of data still to come, moves its data to `out`
    /// (zero-copy, see splice.rs) and returns `true`; otherwise leaves it to
    /// [`Session::next_event`] and returns `false`. Plain connections only:
    /// TLS data must be decrypted here, and `--trace` shows every frame.
    pub fn splice_output(&mut self, id: u32, out: &mut Splicer) -> Result<bool, ClientError> {
        if self.writer.tls.is_some() || self.trace {
            return Ok(false);
        }
        loop {
            if self
                .decoder
                .frame_ready()
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .is_some()
            {
                self.small_reads = false;
                return Ok(false);
            }
            if let Some(p) = self.decoder.partial_output() {
                if p.stream != OutputStream::Stdout || p.id != id || p.remaining < SPLICE_MIN {
                    self.small_reads = false;
                    return Ok(false);
                }
                let mut remaining = p.remaining;
                out.write(p.data);
                self.decoder.discard_partial();
                loop {
                    let before = remaining;
                    match out.transfer(self.reader.as_fd(), &mut remaining) {
                        Ok(()) => break,
                        Err(e) if timed_out(&e) => {
                            if remaining < before {
                                self.last_heard = Instant::now();
                            }
                            self.keep_alive()?;
                        }
                        Err(e) => return Err(ClientError::Io(e)),
                    }
                }
                self.last_heard = Instant::now();
                self.small_reads = true;
                return Ok(true);
            }
            if self.decoder.buffered() >= OUTPUT_HEADER_MAX {
                return Ok(false); // a frame of another kind
            }
            let max = if self.small_reads {
                SMALL_READ
            } else {
                RECV_BUFFER
            };
            match self.decoder.read_from_at_most(&mut self.reader, max) {
                Ok(0) => return Ok(false), // the end: next_event reports it
                Ok(_) => self.last_heard = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => self.keep_alive()?,
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }

    /// Reads from the socket into the decoder, through TLS if in use.
    /// `Ok(0)` is the end of the stream.
    fn read_more(&mut self) -> io::Result<usize> {
        let Some(tls) = self.writer.tls.clone() else {
            if self.streaming {
                // Large reads: a 64 KiB output frame plus its header would
                // otherwise straddle two reads.
                self.decoder.reserve(RECV_BUFFER);
            }
            let n = self.decoder.read_from(&mut self.reader as &mut dyn Read)?;
            self.streaming |= n >= rexec_proto::frame::READ_CHUNK;
            return Ok(n);
        };
        if self.tls_closed {
            return Ok(0);
        }
        if self.raw.is_empty() {
            self.raw = vec![0u8; 64 * 1024];
        }
        let n = self.reader.read(&mut self.raw)?;
        if n == 0 {
            return Ok(0);
        }
        let mut t = tls.lock().unwrap_or_else(|p| p.into_inner());
        let mut rest = &self.raw[..n];
        while !rest.is_empty() {
            t.read_tls(&mut rest)?;
            t.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
            loop {
                match self.decoder.read_from(&mut t.reader()) {
                    Ok(0) => {
                        self.tls_closed = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let wants_write = t.wants_write();
        drop(t);
        if wants_write {
            self.writer.flush_tls()?;
        }
        Ok(n)
    }
}

/// The text a server sends for people to read (its software name, its
/// error messages) with control characters escaped, before anything shows
/// or logs it: a server may be hostile, and an escape sequence in an error
/// could rewrite the screen or set the terminal's title.
fn made_safe(ev: ServerEvent<'_>) -> ServerEvent<'_> {
    use rexec_proto::text::clean;
    match ev {
        ServerEvent::Msg(ServerMsg::Error(mut e)) => {
            e.message = clean(&e.message, SERVER_TEXT_MAX);
            ServerEvent::Msg(ServerMsg::Error(e))
        }
        ServerEvent::Msg(ServerMsg::Hello(mut h)) => {
            h.software = clean(&h.software, SERVER_TEXT_MAX);
            ServerEvent::Msg(ServerMsg::Hello(h))
        }
        other => other,
    }
}

/// Sends a probe whenever nothing was sent for `every`, so that the server
/// hears from us even while we only receive (a long, slow download sends
/// nothing else). Ends with the session's writer.
fn spawn_prober(writer: std::sync::Weak<Writer>, every: Duration) {
    let tick = every / 2;
    let spawned = std::thread::Builder::new()
        .name("rexec-keepalive".into())
        .spawn(move || {
            let mut seq = 0u32;
            loop {
                std::thread::sleep(tick);
                let Some(w) = writer.upgrade() else {
                    return;
                };
                if w.quiet_for() >= every {
                    seq = seq.wrapping_add(1);
                    if w.try_send(&ClientMsg::Ping { seq }).is_err() {
                        return; // the connection is gone; the reader says so
                    }
                }
            }
        });
    // Without the thread (no resources for one), quiet periods are still
    // probed from the reader's timeouts.
    drop(spawned);
}

/// Whether a read gave up for its timeout (no byte for a keepalive period).
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// TCP keepalive as a second line under the protocol's probes: the kernel
/// probes after `every` of silence, three times, `every` apart.
fn tcp_keepalive(sock: &TcpStream, every: Duration) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(sock, true)
        .and_then(|()| sockopt::set_tcp_keepidle(sock, every))
        .and_then(|()| sockopt::set_tcp_keepintvl(sock, every))
        .and_then(|()| sockopt::set_tcp_keepcnt(sock, 3));
}

/// The most characters of a server's message shown.
const SERVER_TEXT_MAX: usize = 1000;

/// Opens the TCP connection, with the connect timeout if one is set.
fn open_socket(addr: SocketAddr, opts: &ConnectOptions) -> Result<TcpStream, ClientError> {
    match opts.connect_timeout {
        Some(t) => TcpStream::connect_timeout(&addr, t),
        None => TcpStream::connect(addr),
    }
    .map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => ClientError::Refused(addr.to_string()),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            ClientError::Timeout(addr.to_string())
        }
        _ => ClientError::Unreachable(addr.to_string(), e),
    })
}

/// What binds the login to this connection: the TLS exporter value, or
/// on plain TCP the server's address as we reached it (protocol 7; see
/// `rexec_proto::auth::address_binding`): the socket's peer, or through a
/// gateway the address the gateway connected to.
fn channel_binding(
    tls: Option<&Mutex<rustls::ClientConnection>>,
    addr: SocketAddr,
) -> Result<Vec<u8>, ClientError> {
    Ok(match tls {
        None => rexec_proto::auth::address_binding(addr),
        Some(t) => {
            let mut out = vec![0u8; 32];
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .export_keying_material(&mut out[..], rexec_proto::auth::TLS_EXPORTER_LABEL, None)
                .map_err(|e| ClientError::Protocol(format!("TLS exporter: {e}")))?;
            out
        }
    })
}

/// Says so when an account was named (`-l`, `user@`) and the way in has no
/// account to pick: commands run as rexecd's own, whoever that is. Not an
/// error: it may well be the account named.
fn not_used(opts: &ConnectOptions, addr: std::net::SocketAddr, how: &str) {
    if let Some(user) = &opts.user {
        eprintln!(
            "rexec: warning: {addr} {how}; the user {} is not used (keys log in as an \
             account: rexecd --login)",
            rexec_proto::text::clean(user, 40)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdin_chunk_sent_from_where_it_is_is_the_frame_of_its_message() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let writer = Writer {
            stream: Mutex::new(stream),
            tls: None,
            trace: false,
            last_sent: Mutex::new(Instant::now()),
        };
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut expected = Vec::new();
        for (id, chunk) in [(7u32, &data[..]), (70_000, &data[..5]), (1, &[][..])] {
            writer.send_stdin(id, chunk).unwrap();
            let msg = ClientMsg::Stdin {
                id,
                data: chunk.to_vec(),
            };
            encode_frame(&msg, &mut expected);
        }
        drop(writer);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert!(
            got == expected,
            "{} bytes, {} expected",
            got.len(),
            expected.len()
        );
    }
}
