//! The event loop: accepts connections, turns client messages into actions on
//! child processes, and turns child output into frames.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rexec_proto::tutorial::{SEED_READ_SIZE, encode_raw_reply, encode_seed_reply, seed_command};
use rexec_proto::{
    ClientMsg, ErrorKind, ErrorMsg, Exec, ExitStatus, Exited, FrameError, OutputStream, ServerMsg,
    encode_frame, encode_output_frame,
};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Config, Protocol};
use crate::connection::{Connection, OutQueue, State, TLS_HANDSHAKE, Transport};
use crate::process::{self, Proc};
use crate::protocol::{Action, ConnProtocol, Phase};
use crate::timer::{Timer, Timers};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_DYNAMIC: usize = 3;

/// Largest chunk read from a child pipe, and so the largest output frame.
const PIPE_CHUNK: usize = 64 * 1024;
/// Queued output is written to the socket once it reaches this much (or
/// when the pipe has nothing more for now).
const FLUSH_BATCH: usize = 256 * 1024;
/// How long to wait before accepting again after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often to look for exited children when there is no pidfd.
const REAP_SWEEP: Duration = Duration::from_millis(100);
/// How long a connection closing after an error may take to flush.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued output to be flushed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);
/// The delay before the hello for an address after its first failed
/// authentication; it doubles with every further failure.
const AUTH_PENALTY_BASE: Duration = Duration::from_millis(250);
const AUTH_PENALTY_MAX: Duration = Duration::from_secs(10);
/// Failures are forgotten this long after the last one.
const AUTH_PENALTY_MEMORY: Duration = Duration::from_secs(600);
/// Most addresses remembered for failed authentication.
const AUTH_PENALTY_ENTRIES: usize = 4096;

/// Failed authentications per address, to slow down guessing.
#[derive(Debug, Default)]
struct AuthFailures {
    by_addr: HashMap<IpAddr, (u32, Instant)>,
}

impl AuthFailures {
    /// How long to hold back the hello for a new connection from `ip`.
    fn penalty(&mut self, ip: IpAddr, now: Instant) -> Duration {
        match self.by_addr.get(&ip) {
            Some(&(n, last)) if now.duration_since(last) < AUTH_PENALTY_MEMORY => {
                let d = AUTH_PENALTY_BASE.saturating_mul(1 << (n.min(16) - 1));
                d.min(AUTH_PENALTY_MAX)
            }
            Some(_) => {
                self.by_addr.remove(&ip);
                Duration::ZERO
            }
            None => Duration::ZERO,
        }
    }

    fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.by_addr.len() >= AUTH_PENALTY_ENTRIES && !self.by_addr.contains_key(&ip) {
            self.by_addr
                .retain(|_, (_, last)| now.duration_since(*last) < AUTH_PENALTY_MEMORY);
            if self.by_addr.len() >= AUTH_PENALTY_ENTRIES {
                let oldest = self
                    .by_addr
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(ip, _)| *ip);
                oldest.map(|o| self.by_addr.remove(&o));
            }
        }
        let e = self.by_addr.entry(ip).or_insert((0, now));
        *e = (e.0.saturating_add(1), now);
    }

    fn succeeded(&mut self, ip: IpAddr) {
        self.by_addr.remove(&ip);
    }
}

/// Whether the client's first bytes show it expects the other transport:
/// a TLS ClientHello on a plaintext port, or plaintext on a TLS port. Either
/// way the client gets a plain `Error` frame it can read and show.
fn wrong_transport(conn: &mut Connection) -> Option<String> {
    match &mut conn.transport {
        Transport::Plain => {
            let b = conn.decoder.buffered_bytes();
            (b.len() >= 2 && b[0] == TLS_HANDSHAKE && b[1] == 3).then(|| {
                "this server speaks plaintext, and the client started TLS: connect without --tls \
                 (or run rexecd with --tls)"
                    .to_string()
            })
        }
        Transport::Tls { checked: true, .. } => None,
        Transport::Tls { checked, .. } => {
            let mut first = [0u8; 1];
            match conn.stream.peek(&mut first) {
                Ok(1) if first[0] != TLS_HANDSHAKE => {
                    // Answer in the client's language.
                    conn.transport = Transport::Plain;
                    Some(
                        "this server speaks TLS, and the client sent plaintext: connect with --tls \
                         (first time: --accept-new, or --fingerprint SHA256:... as printed by rexecd)"
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

/// Fresh random bytes for an auth challenge, from the kernel.
fn random_nonce() -> io::Result<[u8; rexec_proto::auth::NONCE_LEN]> {
    let mut buf = [0u8; rexec_proto::auth::NONCE_LEN];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(buf)
}

/// What a registered token stands for. Tokens are never reused, so an event
/// for a source that is gone finds nothing here and is ignored.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Conn(u64),
    Pipe(u64, OutputStream),
    Stdin(u64),
    Pidfd(u64),
}

/// Stops a running [`Server`] from another thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Asks the server to shut down as on SIGTERM: stop accepting, stop the
    /// running commands, flush, return from [`Server::run`].
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the server for shutdown: {e}");
        }
    }
}

/// The rexecd server. [`Server::bind`], then [`Server::run`].
pub struct Server {
    cfg: Config,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Option<Signals>,
    handle: ServerHandle,
    next_token: usize,
    next_proc: u64,
    slots: HashMap<Token, Slot>,
    conns: HashMap<u64, Connection>,
    procs: HashMap<u64, Proc>,
    timers: Timers,
    scratch: Box<[u8]>,
    shutting_down: bool,
    shutdown_deadline: Option<Instant>,
    tutorial_seq: u32,
    auth_failures: AuthFailures,
    /// accept() is failing (out of descriptors); logged once per episode.
    accept_failing: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.conns.len())
            .field("commands", &self.procs.len())
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listening socket. Nothing is accepted until [`Server::run`].
    pub fn bind(cfg: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let signals = if cfg.handle_signals {
            let mut s = Signals::new([SIGINT, SIGTERM, SIGCHLD])?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        Ok(Server {
            cfg,
            poll,
            listener: Some(listener),
            local_addr,
            signals,
            handle: ServerHandle {
                waker,
                stop: Arc::new(AtomicBool::new(false)),
            },
            next_token: FIRST_DYNAMIC,
            next_proc: 1,
            slots: HashMap::new(),
            conns: HashMap::new(),
            procs: HashMap::new(),
            timers: Timers::default(),
            scratch: vec![0; PIPE_CHUNK].into_boxed_slice(),
            shutting_down: false,
            shutdown_deadline: None,
            tutorial_seq: 0,
            auth_failures: AuthFailures::default(),
            accept_failing: false,
        })
    }

    /// The address actually bound (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until shut down (SIGINT, SIGTERM or [`ServerHandle::shutdown`]).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timers.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                self.on_event(ev);
            }
            self.fire_timers();
            if self.shutting_down && self.shutdown_done() {
                log::info!("shut down");
                return Ok(());
            }
        }
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn on_event(&mut self, ev: &Event) {
        match ev.token() {
            LISTENER => self.accept(),
            SIGNALS => self.on_signals(),
            WAKER => {
                if self.handle.stop.load(Ordering::SeqCst) {
                    self.begin_shutdown();
                }
            }
            t => match self.slots.get(&t).copied() {
                Some(Slot::Conn(cid)) => self.on_conn_event(cid, ev),
                Some(Slot::Pipe(pk, stream)) => self.pump(pk, stream),
                Some(Slot::Stdin(pk)) => self.write_stdin(pk),
                Some(Slot::Pidfd(pk)) => self.reap(pk),
                None => {} // a source closed since this event was queued
            },
        }
    }

    fn on_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let pending: Vec<i32> = signals.pending().collect();
        for sig in pending {
            match sig {
                SIGCHLD => self.sweep_children(),
                _ => {
                    log::info!("signal {sig}: shutting down");
                    self.begin_shutdown();
                }
            }
        }
    }

    // ----- connections -------------------------------------------------

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if std::mem::take(&mut self.accept_failing) {
                        log::warn!("accepting connections again");
                    }
                    self.admit(stream, peer)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the pending connections stay
                    // in the backlog and bring no new event, so try again
                    // later instead of spinning.
                    if self.accept_failing {
                        log::debug!("accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}");
                    } else {
                        log::error!("accept failed: {e}; retrying every {ACCEPT_BACKOFF:?}");
                        self.accept_failing = true;
                    }
                    self.timers.after(ACCEPT_BACKOFF, Timer::AcceptRetry);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.cfg.max_conns {
            log::warn!("{peer}: refused, {} connections already", self.conns.len());
            if self.cfg.protocol == Protocol::Native {
                let mut frame = Vec::new();
                encode_frame(
                    &ServerMsg::Error(ErrorMsg {
                        id: None,
                        kind: ErrorKind::Limit,
                        message: format!(
                            "server limit: {} connections at once; try again later",
                            self.cfg.max_conns
                        ),
                    }),
                    &mut frame,
                );
                // A new socket's send buffer is empty: this does not block,
                // and if it fails there is nothing more to do.
                let _ = stream.write(&frame);
            }
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let token = self.token();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("{peer}: cannot register connection: {e}");
            return;
        }
        let cid = token.0 as u64;
        let proto = match self.cfg.protocol {
            Protocol::Native => match random_nonce() {
                Ok(nonce) => Some(ConnProtocol::new(self.cfg.token.clone(), nonce)),
                Err(e) => {
                    log::error!("{peer}: no random bytes for the auth challenge: {e}");
                    let _ = self.poll.registry().deregister(&mut stream);
                    return;
                }
            },
            _ => None,
        };
        let tls = match &self.cfg.tls {
            Some(t) => match rustls::ServerConnection::new(t.config.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::error!("{peer}: TLS: {e}");
                    let _ = self.poll.registry().deregister(&mut stream);
                    return;
                }
            },
            None => None,
        };
        let conn = Connection::new(
            stream,
            peer,
            self.cfg.protocol,
            proto,
            self.cfg.max_frame,
            tls,
        );
        log::debug!("{peer}: connected");
        self.conns.insert(cid, conn);
        self.slots.insert(token, Slot::Conn(cid));
        if let Some(idle) = self.cfg.idle_timeout {
            self.timers.after(idle, Timer::ConnIdle(cid));
        }
        if self.cfg.protocol == Protocol::Native {
            self.timers
                .after(self.cfg.handshake_timeout, Timer::Handshake(cid));
        }
        self.check_close(cid);
    }

    fn send_hello(&mut self, cid: u64) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        if let Some(hello) = conn.proto.as_ref().map(ConnProtocol::hello) {
            conn.queue(&ServerMsg::Hello(hello));
            conn.flush();
        }
        self.check_close(cid);
    }

    fn on_conn_event(&mut self, cid: u64, ev: &Event) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        if ev.is_error() {
            conn.dead = true;
        } else if ev.is_read_closed() && conn.input_paused {
            // We are not reading (stdin backpressure), so we would never see
            // the end of stream: the client is gone.
            conn.dead = true;
        }
        if ev.is_writable() {
            conn.flush();
            self.resume_pipes(cid);
        }
        if ev.is_readable() || ev.is_read_closed() {
            self.service_input(cid);
        }
        self.check_close(cid);
    }

    /// Closes the connection if it is dead, or closing and flushed.
    fn check_close(&mut self, cid: u64) {
        if let Some(c) = self.conns.get(&cid) {
            if c.dead || c.finished_closing() {
                self.close_conn(cid);
            }
        }
    }

    /// Queues a connection-level error; the connection closes once it is sent
    /// (or after a deadline).
    fn fail_conn(&mut self, cid: u64, kind: ErrorKind, message: String) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        log::warn!("{}: {kind}: {message}", conn.peer);
        conn.fail(kind, message);
        conn.flush();
        self.timers
            .after(CLOSE_DEADLINE, Timer::ConnCloseDeadline(cid));
        self.check_close(cid);
    }

    fn close_conn(&mut self, cid: u64) {
        let Some(mut conn) = self.conns.remove(&cid) else {
            return;
        };
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            log::debug!("{}: deregister: {e}", conn.peer);
        }
        self.slots.remove(&Token(cid as usize));
        // Everything it started stops with it.
        for (_, pk) in conn.commands {
            if let Some(p) = self.procs.get_mut(&pk) {
                p.conn = None;
                p.stop(&mut self.timers, self.cfg.kill_grace);
            }
            self.close_pipe(pk, OutputStream::Stdout);
            self.close_pipe(pk, OutputStream::Stderr);
            self.close_stdin(pk);
            self.maybe_finish(pk);
        }
        log::debug!("{}: closed", conn.peer);
    }

    /// Reads and handles what the client sent, until the socket would block,
    /// the connection is paused, or it closes.
    fn service_input(&mut self, cid: u64) {
        if self
            .conns
            .get(&cid)
            .is_some_and(|c| c.protocol != Protocol::Native)
        {
            return self.tutorial_input(cid);
        }
        loop {
            // Frames already buffered first: an edge-triggered socket will not
            // report them again.
            loop {
                let Some(conn) = self.conns.get_mut(&cid) else {
                    return;
                };
                if conn.state == State::Closing || conn.input_paused || conn.dead {
                    return;
                }
                if !conn.seen_frame {
                    if let Some(reason) = wrong_transport(conn) {
                        return self.fail_conn(cid, ErrorKind::Protocol, reason);
                    }
                }
                match conn.decoder.next_message::<ClientMsg>() {
                    Ok(Some(msg)) => {
                        if !std::mem::replace(&mut conn.seen_frame, true) {
                            let binding = conn.channel_binding();
                            if let Some(p) = conn.proto.as_mut() {
                                p.set_binding(binding);
                            }
                        }
                        self.on_message(cid, msg)
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let kind = match e {
                            FrameError::TooLarge { .. } => ErrorKind::Limit,
                            _ => ErrorKind::Protocol,
                        };
                        return self.fail_conn(cid, kind, e.to_string());
                    }
                }
            }
            let Some(conn) = self.conns.get_mut(&cid) else {
                return;
            };
            match conn.read_input() {
                Ok(0) => {
                    match conn.decoder.finish() {
                        Ok(()) => log::debug!("{}: client closed the connection", conn.peer),
                        Err(e) => log::warn!("{}: {e}", conn.peer),
                    }
                    conn.dead = true;
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
                    conn.dead = true;
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, cid: u64, msg: ClientMsg) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        let Some(proto) = conn.proto.as_mut() else {
            return;
        };
        match proto.on_message(msg) {
            Action::SendHello { open } => {
                if open {
                    log::debug!("{}: hello accepted", conn.peer);
                }
                // An address that failed to authenticate waits for its
                // challenge, longer with every failure: guessing gets slow,
                // nobody else waits.
                let peer = conn.peer;
                let penalty = self.auth_failures.penalty(peer.ip(), Instant::now());
                if penalty.is_zero() {
                    self.send_hello(cid);
                } else {
                    log::debug!("{peer}: hello held back {penalty:?} after failed authentication");
                    self.timers.after(penalty, Timer::SendHello(cid));
                }
            }
            Action::Authenticated => {
                log::debug!("{}: authenticated", conn.peer);
                self.auth_failures.succeeded(conn.peer.ip());
            }
            Action::Fail { kind, message } => {
                if kind == ErrorKind::Auth {
                    self.auth_failures.failed(conn.peer.ip(), Instant::now());
                }
                self.fail_conn(cid, kind, message);
            }
            Action::Reject { id, kind, message } => self.command_error(cid, id, kind, message),
            Action::Exec(exec) => self.exec(cid, exec),
            Action::Stdin { id, data } => {
                if let Some(&pk) = conn.commands.get(&id) {
                    self.queue_stdin(cid, pk, &data, false);
                }
            }
            Action::StdinEof { id } => {
                if let Some(&pk) = conn.commands.get(&id) {
                    self.queue_stdin(cid, pk, &[], true);
                }
            }
            Action::Cancel { id } => {
                if let Some(p) = conn.commands.get(&id).and_then(|pk| self.procs.get_mut(pk)) {
                    log::debug!("{}: cancel {id}", p.peer);
                    p.stop(&mut self.timers, self.cfg.kill_grace);
                }
            }
        }
    }

    /// Sends an `Error` about one command; the connection stays usable.
    fn command_error(&mut self, cid: u64, id: u32, kind: ErrorKind, message: String) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        log::info!("{}: command {id}: {kind}: {message}", conn.peer);
        conn.queue(&ServerMsg::Error(ErrorMsg {
            id: Some(id),
            kind,
            message,
        }));
        conn.flush();
    }

    // ----- commands ----------------------------------------------------

    fn exec(&mut self, cid: u64, exec: Exec) {
        let id = exec.id;
        let Some(conn) = self.conns.get(&cid) else {
            return;
        };
        if self.shutting_down {
            return self.command_error(
                cid,
                id,
                ErrorKind::Shutdown,
                "server is shutting down".into(),
            );
        }
        if conn.commands.contains_key(&id) {
            return self.command_error(
                cid,
                id,
                ErrorKind::BadRequest,
                format!("command id {id} is already running on this connection"),
            );
        }
        if let Err((kind, message)) = self.start(cid, exec) {
            self.command_error(cid, id, kind, message);
        }
    }

    /// Spawns a command for connection `cid` and registers its pipes.
    fn start(&mut self, cid: u64, exec: Exec) -> Result<u64, (ErrorKind, String)> {
        if self.procs.len() >= self.cfg.max_procs {
            return Err((
                ErrorKind::Limit,
                format!(
                    "server limit: {} commands running at once; try again later",
                    self.cfg.max_procs
                ),
            ));
        }
        let Some(conn) = self.conns.get_mut(&cid) else {
            return Err((ErrorKind::Protocol, "connection gone".into()));
        };
        let program = match exec.mode {
            rexec_proto::ExecMode::Shell => "/bin/sh",
            rexec_proto::ExecMode::Argv => exec.command.split_whitespace().next().unwrap_or(""),
        };
        let cmd = process::command_for(&exec, &self.cfg).map_err(|e| {
            if e.kind == ErrorKind::Forbidden {
                log::warn!("{}: refused {:?}: {}", conn.peer, exec.command, e.message);
            }
            (e.kind, e.message)
        })?;
        let spawned = process::spawn(cmd, exec.stdin, program).map_err(|e| (e.kind, e.message))?;

        let pk = self.next_proc;
        self.next_proc += 1;
        let pid = spawned.child.id();
        let registry = self.poll.registry();
        let mut reg = |src: &mut dyn mio::event::Source, interest, slot, next: &mut usize| {
            let t = Token(*next);
            *next += 1;
            match registry.register(src, t, interest) {
                Ok(()) => {
                    self.slots.insert(t, slot);
                    Some(t)
                }
                Err(e) => {
                    log::error!("cannot register a pipe of pid {pid}: {e}");
                    None
                }
            }
        };
        let mut stdout = spawned.stdout;
        let mut stderr = spawned.stderr;
        let t_out = reg(
            &mut stdout,
            Interest::READABLE,
            Slot::Pipe(pk, OutputStream::Stdout),
            &mut self.next_token,
        );
        let t_err = reg(
            &mut stderr,
            Interest::READABLE,
            Slot::Pipe(pk, OutputStream::Stderr),
            &mut self.next_token,
        );
        let stdin = spawned.stdin.and_then(|mut s| {
            reg(
                &mut s,
                Interest::WRITABLE,
                Slot::Stdin(pk),
                &mut self.next_token,
            )
            .map(|t| (s, t))
        });
        let pidfd = spawned.pidfd.and_then(|fd| {
            let raw = process::raw(&fd);
            reg(
                &mut SourceFd(&raw),
                Interest::READABLE,
                Slot::Pidfd(pk),
                &mut self.next_token,
            )
            .map(|t| (fd, t))
        });
        if pidfd.is_none() {
            self.timers.after(REAP_SWEEP, Timer::ReapSweep);
        }
        let now = Instant::now();
        let limit = match (self.cfg.timeout, exec.timeout_ms.map(Duration::from_millis)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit {
            self.timers.at(now + limit, Timer::ProcTimeout(pk));
        }
        let proc = Proc {
            conn: Some(cid),
            id: exec.id,
            command: exec.command,
            peer: conn.peer,
            child: spawned.child,
            pgid: pid as i32,
            stdout: t_out.map(|t| (stdout, t)),
            stderr: t_err.map(|t| (stderr, t)),
            stdin,
            stdin_queue: OutQueue::default(),
            stdin_eof: false,
            pidfd,
            status: None,
            started: now,
            bytes_out: 0,
            timed_out: false,
            truncated: false,
            stopping: false,
            grace_armed: false,
            tutorial_out: Vec::new(),
            tutorial_err: Vec::new(),
        };
        conn.commands.insert(exec.id, pk);
        if conn.protocol == Protocol::Native {
            conn.queue(&ServerMsg::Started { id: exec.id, pid });
            conn.flush();
        }
        self.procs.insert(pk, proc);
        Ok(pk)
    }

    /// Reads a child's pipe and forwards what it produced, until the pipe
    /// would block, ends, or the connection's queue is over its limit.
    fn pump(&mut self, pk: u64, stream: OutputStream) {
        let queue_limit = self.cfg.queue_limit;
        let out_limit = self.cfg.output_limit();
        loop {
            let Some(p) = self.procs.get_mut(&pk) else {
                return;
            };
            let Some(cid) = p.conn else {
                return;
            };
            let Some(conn) = self.conns.get_mut(&cid) else {
                return;
            };
            if conn.dead {
                return self.close_conn(cid);
            }
            if conn.out.len() >= FLUSH_BATCH {
                conn.flush();
            }
            if conn.out.len() >= queue_limit {
                // Backpressure: leave the bytes in the pipe (the child blocks
                // when it fills) and come back when the socket drains.
                if !conn.paused_pipes.contains(&(pk, stream)) {
                    conn.paused_pipes.push((pk, stream));
                }
                return;
            }
            let pipe = match stream {
                OutputStream::Stdout => p.stdout.as_mut(),
                OutputStream::Stderr => p.stderr.as_mut(),
            };
            let Some((rx, _)) = pipe else {
                return;
            };
            let n = match rx.read(&mut self.scratch) {
                Ok(n) if n > 0 => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                end => {
                    // Nothing more for now: send what was batched up.
                    conn.flush();
                    match end {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) => log::warn!("reading output of pid {}: {e}", p.pgid),
                        _ => {}
                    }
                    self.close_pipe(pk, stream);
                    return self.maybe_finish(pk);
                }
            };
            let room = out_limit.map_or(u64::MAX, |l| l.saturating_sub(p.bytes_out));
            let take = n.min(usize::try_from(room).unwrap_or(usize::MAX));
            let data = &self.scratch[..take];
            p.bytes_out += take as u64;
            if conn.protocol == Protocol::Native {
                if take > 0 {
                    // Flushed in batches (above, and when the pipe runs dry):
                    // fewer, larger writes to the socket.
                    encode_output_frame(stream, p.id, data, conn.out.tail());
                }
            } else {
                match stream {
                    OutputStream::Stdout => p.tutorial_out.extend_from_slice(data),
                    OutputStream::Stderr => p.tutorial_err.extend_from_slice(data),
                }
            }
            if take < n {
                p.truncated = true;
                log::info!(
                    "{}: command {} truncated at {} bytes",
                    p.peer,
                    p.id,
                    p.bytes_out
                );
                conn.flush(); // the last, cut chunk goes out now, not at the reap
                p.stop(&mut self.timers, self.cfg.kill_grace);
                self.close_pipe(pk, OutputStream::Stdout);
                self.close_pipe(pk, OutputStream::Stderr);
                self.maybe_finish(pk);
                return self.check_close(cid);
            }
        }
    }

    /// Resumes pipes paused for backpressure once the queue is under its limit.
    fn resume_pipes(&mut self, cid: u64) {
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        if conn.paused_pipes.is_empty() || conn.out.len() >= self.cfg.queue_limit {
            return;
        }
        for (pk, stream) in std::mem::take(&mut conn.paused_pipes) {
            self.pump(pk, stream);
        }
    }

    fn close_pipe(&mut self, pk: u64, stream: OutputStream) {
        let Some(p) = self.procs.get_mut(&pk) else {
            return;
        };
        let pipe = match stream {
            OutputStream::Stdout => p.stdout.take(),
            OutputStream::Stderr => p.stderr.take(),
        };
        if let Some((mut rx, t)) = pipe {
            let _ = self.poll.registry().deregister(&mut rx);
            self.slots.remove(&t);
        }
    }

    fn close_stdin(&mut self, pk: u64) {
        let Some(p) = self.procs.get_mut(&pk) else {
            return;
        };
        if let Some((mut tx, t)) = p.stdin.take() {
            let _ = self.poll.registry().deregister(&mut tx);
            self.slots.remove(&t);
        }
        p.stdin_queue = OutQueue::default();
    }

    fn queue_stdin(&mut self, cid: u64, pk: u64, data: &[u8], eof: bool) {
        let Some(p) = self.procs.get_mut(&pk) else {
            return;
        };
        if p.stdin.is_none() {
            return; // not asked for, or the child closed it: drop the bytes
        }
        p.stdin_queue.tail().extend_from_slice(data);
        p.stdin_eof |= eof;
        self.write_stdin(pk);
        if let (Some(p), Some(conn)) = (self.procs.get(&pk), self.conns.get_mut(&cid)) {
            if p.stdin_queue.len() > self.cfg.queue_limit {
                // Stop reading the socket: TCP flow control pushes back on
                // the client until the child reads.
                conn.input_paused = true;
            }
        }
    }

    /// Writes queued stdin to the child, closing the pipe after EOF.
    fn write_stdin(&mut self, pk: u64) {
        let Some(p) = self.procs.get_mut(&pk) else {
            return;
        };
        let Some((tx, _)) = p.stdin.as_mut() else {
            return;
        };
        match p.stdin_queue.write_to(tx) {
            Ok(()) => {
                if p.stdin_queue.is_empty() && p.stdin_eof {
                    self.close_stdin(pk);
                }
            }
            Err(e) => {
                // EPIPE: the child closed its stdin; the rest is discarded.
                log::debug!("stdin of pid {}: {e}", p.pgid);
                self.close_stdin(pk);
            }
        }
        // Resume reading the client once every stdin queue has room again.
        let Some(cid) = self.procs.get(&pk).and_then(|p| p.conn) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        if conn.input_paused
            && conn.commands.values().all(|k| {
                self.procs
                    .get(k)
                    .is_none_or(|p| p.stdin_queue.len() <= self.cfg.queue_limit)
            })
        {
            conn.input_paused = false;
            self.service_input(cid);
            self.check_close(cid);
        }
    }

    /// The pidfd says the child exited: reap it.
    fn reap(&mut self, pk: u64) {
        let Some(p) = self.procs.get_mut(&pk) else {
            return;
        };
        match p.child.try_wait() {
            Ok(Some(st)) => p.status = Some(process::exit_status(st)),
            Ok(None) => return,
            Err(e) => {
                log::error!("waiting for pid {}: {e}", p.pgid);
                p.status = Some(ExitStatus::Code(-1));
            }
        }
        if let Some((fd, t)) = p.pidfd.take() {
            let raw = process::raw(&fd);
            let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
            self.slots.remove(&t);
        }
        self.maybe_finish(pk);
    }

    /// Reaps every child that exited (SIGCHLD, or no pidfd support).
    fn sweep_children(&mut self) {
        let waiting: Vec<u64> = self
            .procs
            .iter()
            .filter(|(_, p)| p.status.is_none())
            .map(|(k, _)| *k)
            .collect();
        for pk in waiting {
            self.reap(pk);
        }
    }

    /// Finishes a command whose child was reaped, once its output ended (or
    /// the pipe grace time ran out).
    fn maybe_finish(&mut self, pk: u64) {
        let Some(p) = self.procs.get_mut(&pk) else {
            return;
        };
        if p.status.is_none() {
            return;
        }
        if !p.output_done() {
            // A grandchild may hold the pipes open forever.
            if !p.grace_armed {
                p.grace_armed = true;
                self.timers.after(self.cfg.pipe_grace, Timer::PipeGrace(pk));
            }
            return;
        }
        self.finish(pk);
    }

    fn finish(&mut self, pk: u64) {
        self.close_stdin(pk);
        let Some(p) = self.procs.remove(&pk) else {
            return;
        };
        if let Some((fd, t)) = &p.pidfd {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&process::raw(fd)));
            self.slots.remove(t);
        }
        let status = p.status.unwrap_or(ExitStatus::Code(-1));
        let duration = p.started.elapsed();
        let flags = match (p.timed_out, p.truncated, p.conn.is_none()) {
            (true, _, _) => ", timed out",
            (_, true, _) => ", truncated",
            (_, _, true) => ", client gone",
            _ => "",
        };
        log::info!(
            "{} ran {:?}: {} in {} ms, {} bytes out{flags}",
            p.peer,
            p.command,
            match status {
                ExitStatus::Code(c) => format!("exit {c}"),
                ExitStatus::Signal(s) => format!("signal {s}"),
            },
            duration.as_millis(),
            p.bytes_out,
        );
        let Some(cid) = p.conn else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&cid) else {
            return;
        };
        conn.commands.remove(&p.id);
        conn.paused_pipes.retain(|(k, _)| *k != pk);
        match conn.protocol {
            Protocol::Native => conn.queue(&ServerMsg::Exited(Exited {
                id: p.id,
                status,
                timed_out: p.timed_out,
                truncated: p.truncated,
                duration_ms: duration.as_millis().try_into().unwrap_or(u64::MAX),
                bytes_out: p.bytes_out,
            })),
            Protocol::Seed => {
                // The output limit keeps this far below the header's 2 GiB.
                if let Err(e) = encode_seed_reply(&p.tutorial_out, &p.tutorial_err, conn.out.tail())
                {
                    log::error!("{}: {e}", conn.peer);
                    conn.dead = true;
                }
            }
            Protocol::Raw => encode_raw_reply(&p.tutorial_out, &p.tutorial_err, conn.out.tail()),
        }
        conn.flush();
        if conn.commands.is_empty() {
            conn.out.shrink();
        }
        if conn.protocol != Protocol::Native {
            // The tutorial server reads its next command only now.
            self.tutorial_input(cid);
        }
        self.check_close(cid);
    }

    // ----- the tutorial protocols --------------------------------------

    /// One read of up to 1024 bytes is one command, run one at a time, as the
    /// tutorials' server does. While a command runs the socket is not read,
    /// so commands sent meanwhile pile up in the kernel and are read together.
    fn tutorial_input(&mut self, cid: u64) {
        let mut buf = [0u8; SEED_READ_SIZE];
        loop {
            let Some(conn) = self.conns.get_mut(&cid) else {
                return;
            };
            if !conn.commands.is_empty() || conn.dead || conn.state == State::Closing {
                return;
            }
            let n = match conn.stream.read(&mut buf) {
                Ok(0) => {
                    conn.dead = true;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("{}: read failed: {e}", conn.peer);
                    conn.dead = true;
                    return;
                }
            };
            conn.last_activity = Instant::now();
            self.tutorial_seq = self.tutorial_seq.wrapping_add(1);
            let exec = Exec {
                id: self.tutorial_seq,
                command: seed_command(&buf[..n]),
                ..Exec::default()
            };
            if let Err((kind, message)) = self.start(cid, exec) {
                // The tutorial protocols have no error message: the reply
                // carries the error text as output.
                let text = format!("rexecd: {kind}: {message}\n");
                let Some(conn) = self.conns.get_mut(&cid) else {
                    return;
                };
                match conn.protocol {
                    Protocol::Seed => {
                        let _ = encode_seed_reply(b"", text.as_bytes(), conn.out.tail());
                    }
                    _ => encode_raw_reply(b"", text.as_bytes(), conn.out.tail()),
                }
                conn.flush();
            }
        }
    }

    // ----- timers and shutdown -----------------------------------------

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::ProcTimeout(pk) => {
                    if let Some(p) = self.procs.get_mut(&pk) {
                        if p.status.is_none() && !p.stopping {
                            log::info!("{}: command {} timed out", p.peer, p.id);
                            p.timed_out = true;
                            p.stop(&mut self.timers, self.cfg.kill_grace);
                        }
                    }
                }
                Timer::KillGroup(pgid) => process::kill_group(pgid, libc::SIGKILL),
                Timer::PipeGrace(pk) => {
                    self.close_pipe(pk, OutputStream::Stdout);
                    self.close_pipe(pk, OutputStream::Stderr);
                    self.maybe_finish(pk);
                }
                Timer::ConnIdle(cid) => self.check_idle(cid, now),
                Timer::SendHello(cid) => self.send_hello(cid),
                Timer::Handshake(cid) => {
                    let waiting = self.conns.get(&cid).is_some_and(|c| {
                        c.state == State::Open
                            && c.proto
                                .as_ref()
                                .is_some_and(|p| p.phase() != Phase::Running)
                    });
                    if waiting {
                        if self.cfg.token.is_some() {
                            if let Some(c) = self.conns.get(&cid) {
                                self.auth_failures.failed(c.peer.ip(), now);
                            }
                        }
                        let kind = if self.cfg.token.is_some() {
                            ErrorKind::Auth
                        } else {
                            ErrorKind::Protocol
                        };
                        self.fail_conn(
                            cid,
                            kind,
                            format!("no hello within {} s", self.cfg.handshake_timeout.as_secs()),
                        );
                    }
                }
                Timer::ConnCloseDeadline(cid) => {
                    if self
                        .conns
                        .get(&cid)
                        .is_some_and(|c| c.state == State::Closing)
                    {
                        self.close_conn(cid);
                    }
                }
                Timer::AcceptRetry => self.accept(),
                Timer::ReapSweep => {
                    self.sweep_children();
                    if self
                        .procs
                        .values()
                        .any(|p| p.pidfd.is_none() && p.status.is_none())
                    {
                        self.timers.after(REAP_SWEEP, Timer::ReapSweep);
                    }
                }
                Timer::ShutdownDeadline => {
                    self.shutdown_deadline = Some(now);
                }
            }
        }
    }

    fn check_idle(&mut self, cid: u64, now: Instant) {
        let Some(idle) = self.cfg.idle_timeout else {
            return;
        };
        let Some(conn) = self.conns.get(&cid) else {
            return;
        };
        let quiet = now.saturating_duration_since(conn.last_activity);
        if conn.commands.is_empty() && quiet >= idle {
            self.fail_conn(
                cid,
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
            self.timers.after(next, Timer::ConnIdle(cid));
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for p in self.procs.values_mut() {
            p.stop(&mut self.timers, self.cfg.kill_grace);
        }
        self.timers.after(
            self.cfg.kill_grace + SHUTDOWN_FLUSH,
            Timer::ShutdownDeadline,
        );
    }

    /// During shutdown: once every command has finished, tell the clients and
    /// close their connections when their output is flushed.
    fn shutdown_done(&mut self) -> bool {
        if self.shutdown_deadline.is_some() {
            if !self.procs.is_empty() || !self.conns.is_empty() {
                log::warn!(
                    "shutdown deadline passed with {} commands and {} connections left",
                    self.procs.len(),
                    self.conns.len()
                );
                for p in self.procs.values() {
                    process::kill_group(p.pgid, libc::SIGKILL);
                }
                for p in self.procs.values_mut() {
                    let _ = p.child.wait(); // SIGKILLed: returns at once
                }
            }
            return true;
        }
        if !self.procs.is_empty() {
            return false;
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for cid in ids {
            if let Some(conn) = self.conns.get_mut(&cid) {
                conn.fail(ErrorKind::Shutdown, "server is shutting down".into());
                conn.flush();
            }
            self.check_close(cid);
        }
        self.conns.is_empty()
    }
}
