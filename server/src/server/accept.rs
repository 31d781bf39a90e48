//! New connections: accept, admit (or refuse over the limit), and send the
//! server's hello, held back for addresses that failed to authenticate.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::Interest;
use rexec_proto::auth::NONCE_LEN;
use rexec_proto::{ErrorKind, ErrorMsg, ServerMsg, encode_frame};

use super::penalty::HelloDelay;
use super::{FIRST_LISTENER, MAX_LISTENERS, Server};
use crate::config::Protocol;
use crate::connection::{Connection, Deadline, State, Stream, Wire};
use crate::protocol::ConnProtocol;
use crate::registry::Registry;
use crate::registry::{ConnId, Slot};
use crate::timer::Timer;
use mio::Token;
use mio::net::TcpListener;

/// How long to wait before accepting again after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
impl Server {
    /// Accepts every pending connection on every socket.
    pub(super) fn accept_all(&mut self) {
        for i in 0..self.door.listeners.len() {
            self.accept(i);
        }
    }

    /// Accepts every pending connection on listening socket `i`.
    pub(super) fn accept(&mut self, i: usize) {
        loop {
            let Some(listener) = self.door.listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if std::mem::take(&mut self.door.accept_failing) {
                        log::warn!("accepting connections again");
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
                    }
                    self.admit(Stream::Tcp(stream), peer)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) if is_out_of_descriptors(&e) && self.door.spare_fd.is_some() => {
                    // Out of descriptors: the spare one makes room to take
                    // the connection, tell it why, and close it, instead of
                    // leaving it to wait in the backlog for a hello that
                    // never comes.
                    // (accept fails so whether or not a connection waits.)
                    self.door.spare_fd = None;
                    let taken = listener.accept();
                    if let Ok((mut stream, peer)) = taken {
                        if !std::mem::replace(&mut self.door.accept_failing, true) {
                            log::error!(
                                "accept failed: {e}; refusing new connections until descriptors are free"
                            );
                        }
                        log::debug!("{peer}: refused, out of descriptors");
                        refuse(
                            &mut stream,
                            self.cfg.protocol,
                            "rexecd is out of file descriptors; try again shortly".into(),
                        );
                        drop(stream);
                        self.door.spare_fd = spare_descriptor();
                        continue;
                    }
                    self.door.spare_fd = spare_descriptor();
                    match taken {
                        // Nobody else waits: the next connection brings an event.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        _ => {
                            self.timers
                                .after(self.now, ACCEPT_BACKOFF, Timer::AcceptRetry);
                            return;
                        }
                    }
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the pending connections stay
                    // in the backlog and bring no new event, so try again
                    // later instead of spinning.
                    if self.door.accept_failing {
                        log::debug!("accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}");
                    } else {
                        log::error!("accept failed: {e}; retrying every {ACCEPT_BACKOFF:?}");
                        self.door.accept_failing = true;
                    }
                    self.timers
                        .after(self.now, ACCEPT_BACKOFF, Timer::AcceptRetry);
                    return;
                }
            }
        }
    }

    /// Takes a new connection in, or refuses it over `max_conns`.
    pub(super) fn admit(&mut self, mut stream: Stream, peer: SocketAddr) {
        if self.conns.len() >= self.cfg.max_conns {
            log::warn!("{peer}: refused, {} connections already", self.conns.len());
            refuse(
                &mut stream,
                self.cfg.protocol,
                format!(
                    "{} connections at once; try again later",
                    self.cfg.max_conns
                ),
            );
            return;
        }
        let wire = match self.cfg.protocol {
            Protocol::Native => {
                let mut nonce = [0u8; NONCE_LEN];
                if self.door.random.fill(&mut nonce).is_err() {
                    log::error!("{peer}: no random bytes for the auth challenge");
                    return;
                }
                Wire::Native(
                    ConnProtocol::new(self.cfg.token.clone(), nonce)
                        .with_keys(self.cfg.authorized_keys.is_some() || self.cfg.login),
                )
            }
            Protocol::Seed => Wire::Seed,
            Protocol::Raw => Wire::Raw,
        };
        let tls = match &self.cfg.tls {
            Some(t) => match rustls::ServerConnection::new(t.config.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::error!("{peer}: TLS: {e}");
                    return;
                }
            },
            None => None,
        };
        let id = ConnId(self.ids.conn);
        self.ids.conn += 1;
        let token = match self.registry.add(
            &mut stream,
            Interest::READABLE | Interest::WRITABLE,
            Slot::Conn(id),
        ) {
            Ok(t) => t,
            Err(e) => {
                log::error!("{peer}: cannot register connection: {e}");
                return;
            }
        };
        let native = matches!(wire, Wire::Native(_));
        if native && self.door.startups >= self.cfg.max_startups && !self.make_room_for_startup() {
            // Everyone waiting is in the middle of a handshake: the newcomer
            // is the one refused, never a client about to get in.
            let now = self.now;
            let mut conn = Connection::new(stream, token, peer, wire, self.cfg.max_frame, tls, now);
            conn.fail(
                ErrorKind::Limit,
                format!(
                    "{} connections are in the middle of authenticating (--max-startups); try again shortly",
                    self.door.startups
                ),
            );
            conn.flush();
            conn.deregister(&mut self.registry);
            return;
        }
        let now = self.now;
        let mut conn = Connection::new(stream, token, peer, wire, self.cfg.max_frame, tls, now);
        log::debug!("{peer}: connected");
        if native {
            let due = now + self.cfg.handshake_timeout;
            conn.begin_startup(due);
            self.door.startups += 1;
            self.timers.at(due, Timer::Handshake(id));
        }
        if let Some(every) = self.cfg.keepalive {
            if let Some(sock) = conn.socket() {
                tcp_keepalive(sock, every);
            }
            if native {
                self.timers.at(now + every, Timer::Keepalive(id));
            }
        }
        self.conns.insert(id, conn);
        if let Some(idle) = self.cfg.idle_timeout {
            self.timers.after(self.now, idle, Timer::ConnIdle(id));
        }
        self.check_close(id);
    }

    /// Too many connections are waiting to authenticate: close one, so that
    /// one address cannot keep everyone else out by opening connections and
    /// saying nothing (see [`startup_victim`]); a client in the middle of its
    /// handshake is never the one closed. `false` when there is none to
    /// close.
    fn make_room_for_startup(&mut self) -> bool {
        let waiting = self
            .conns
            .iter()
            .filter(|(_, c)| c.in_startup())
            .map(|(id, c)| (*id, c.peer().ip(), c.accepted(), c.state() != State::New));
        let Some(id) = startup_victim(waiting, self.now, STARTUP_GRACE) else {
            return false;
        };
        log::info!(
            "{} connections waiting to authenticate; closing the oldest of the address with the most",
            self.door.startups
        );
        // Closed at once, not lingering: the slot is needed now.
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.fail(
                ErrorKind::Limit,
                format!(
                    "{} connections are waiting to authenticate (--max-startups); \
                     closing the oldest of the address with the most",
                    self.cfg.max_startups
                ),
            );
            conn.flush();
        }
        self.close_conn(id);
        true
    }

    /// The client's hello was accepted: answer now, or later if its address
    /// failed to authenticate before. Guessing gets slow; nobody else waits.
    pub(super) fn hello_accepted(&mut self, id: ConnId, peer: SocketAddr) {
        if !self.cfg.needs_auth() {
            self.left_startup(id); // running from here on
            return self.send_hello(id);
        }
        match self.door.auth_failures.hello_delay(peer.ip(), self.now) {
            HelloDelay::Now => self.send_hello(id),
            HelloDelay::After(d) => {
                log::debug!("{peer}: hello held back {d:?} after failed authentication");
                self.timers.after(self.now, d, Timer::SendHello(id));
            }
            HelloDelay::Refuse(d) => self.fail_conn(
                id,
                ErrorKind::Auth,
                format!(
                    "too many failed authentications from {}; try again in {} s",
                    peer.ip(),
                    d.as_secs() + 1
                ),
            ),
        }
    }

    /// Sends the server's hello (with the challenge). The handshake deadline
    /// counts from now: a hello held back after failures does not eat into
    /// the client's time to answer.
    pub(super) fn send_hello(&mut self, id: ConnId) {
        let timeout = self.cfg.handshake_timeout;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(proto) = conn.protocol() {
            let hello = ServerMsg::Hello(proto.hello());
            let methods = proto.auth_methods();
            conn.queue(&hello);
            if let Some(m) = methods {
                conn.queue(&m);
            }
            conn.flush();
            if let Some(due) = conn.extend_startup(self.now + timeout) {
                self.timers.at(due, Timer::Handshake(id));
            }
        }
        self.check_close(id);
    }

    /// The handshake timer fired: a connection still without a completed
    /// hello (and auth) is closed.
    pub(super) fn check_handshake(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if conn.handshake_deadline(now) != Deadline::Expired {
            return; // done, or a later deadline (the hello was held back)
        }
        // Silence is not a wrong answer: it does not count as a failure.
        let kind = if self.cfg.token.is_some() || self.cfg.authorized_keys.is_some() {
            ErrorKind::Auth
        } else {
            ErrorKind::Protocol
        };
        let secs = self.cfg.handshake_timeout.as_secs();
        let phase = conn.protocol_phase();
        let message = if self.door.key_waits.busy(id) {
            format!("the check of your key was not done within {secs} s of the hello")
        } else if phase == Some(crate::protocol::Phase::Auth) {
            format!("no login (token or key) within {secs} s of the hello")
        } else {
            format!("no hello within {secs} s")
        };
        self.fail_conn(id, kind, message);
    }
}

/// TCP keepalive as a second line under the protocol's probes: the kernel
/// probes after `every` of silence, three times, `every` apart.
fn tcp_keepalive(sock: std::os::fd::BorrowedFd<'_>, every: Duration) {
    use rustix::net::sockopt;
    let set = sockopt::set_socket_keepalive(sock, true)
        .and_then(|()| sockopt::set_tcp_keepidle(sock, every))
        .and_then(|()| sockopt::set_tcp_keepintvl(sock, every))
        .and_then(|()| sockopt::set_tcp_keepcnt(sock, 3));
    if let Err(e) = set {
        log::debug!("TCP keepalive: {e}");
    }
}

/// Tells a connection that is not taken in why (native protocol only), and
/// drops it.
fn refuse(stream: &mut impl Write, protocol: Protocol, message: String) {
    if protocol != Protocol::Native {
        return;
    }
    let mut frame = Vec::new();
    encode_frame(
        &ServerMsg::Error(ErrorMsg {
            id: None,
            kind: ErrorKind::Limit,
            message,
        }),
        &mut frame,
    );
    // A new socket's send buffer is empty: this does not block, and if it
    // fails there is nothing more to do.
    let _ = stream.write(&frame);
}

/// Whether accept failed for want of descriptors (this process's or the
/// system's).
fn is_out_of_descriptors(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw_os_error);
    matches!(errno, Some(Errno::MFILE | Errno::NFILE))
}

/// A descriptor held in reserve, given up to take in (and refuse) a
/// connection when the process runs out.
pub(super) fn spare_descriptor() -> Option<std::os::fd::OwnedFd> {
    rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
}

/// A connection that has said its hello is not closed for another before
/// it has had this long to authenticate: a real client does it within
/// milliseconds, so whatever still waits after this is not in the middle
/// of a login.
pub(super) const STARTUP_GRACE: Duration = Duration::from_millis(500);

/// Which waiting connection to close for a new one, given each one's id,
/// address, acceptance time and whether it has said its hello: one that has
/// waited at least `grace`, else one that has not said a word; of those,
/// the oldest of the address with the most of them. A young connection
/// that said its hello (a login in progress) is never chosen.
fn startup_victim(
    waiting: impl Iterator<Item = (ConnId, IpAddr, Instant, bool)>,
    now: Instant,
    grace: Duration,
) -> Option<ConnId> {
    let (mut old, mut silent) = (Vec::new(), Vec::new());
    for (id, ip, since, spoke) in waiting {
        if now.saturating_duration_since(since) >= grace {
            old.push((id, ip, since));
        } else if !spoke {
            silent.push((id, ip, since));
        }
    }
    oldest_of_busiest(if old.is_empty() { silent } else { old })
}

/// The oldest connection of the address that has the most.
fn oldest_of_busiest(conns: Vec<(ConnId, IpAddr, Instant)>) -> Option<ConnId> {
    let mut per_addr: HashMap<IpAddr, (usize, Instant, ConnId)> = HashMap::new();
    for (id, ip, since) in conns {
        let e = per_addr.entry(ip).or_insert((0, since, id));
        e.0 += 1;
        if since < e.1 {
            (e.1, e.2) = (since, id);
        }
    }
    per_addr
        .into_values()
        .max_by_key(|(n, since, _)| (*n, std::cmp::Reverse(*since)))
        .map(|(_, _, id)| id)
}

/// Registers each listening socket with its token; returns their
/// addresses (`listen` for a server with none, played in tests).
pub(super) fn watch_listeners(
    registry: &Registry,
    listeners: &mut [TcpListener],
    listen: SocketAddr,
) -> io::Result<Vec<SocketAddr>> {
    if listeners.len() > MAX_LISTENERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} sockets to listen on; at most {MAX_LISTENERS}",
                listeners.len()
            ),
        ));
    }
    for (i, l) in listeners.iter_mut().enumerate() {
        registry
            .mio()
            .register(l, Token(FIRST_LISTENER + i), Interest::READABLE)?;
    }
    match listeners.is_empty() {
        true => Ok(vec![listen]),
        false => listeners.iter().map(TcpListener::local_addr).collect(),
    }
}

#[cfg(test)]
mod tests;
