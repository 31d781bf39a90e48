//! New connections: accept, admit (or refuse over the limit), and send the
//! server's hello, held back for addresses that failed to authenticate.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::TcpStream;
use rexec_proto::auth::NONCE_LEN;
use rexec_proto::{ErrorKind, ErrorMsg, ServerMsg, encode_frame};

use super::Server;
use crate::config::Protocol;
use crate::connection::{Connection, Wire};
use crate::protocol::{ConnProtocol, Phase};
use crate::registry::{ConnId, Slot};
use crate::timer::Timer;

/// How long to wait before accepting again after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
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
pub(super) struct AuthFailures {
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

    pub(super) fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.by_addr.len() >= AUTH_PENALTY_ENTRIES && !self.by_addr.contains_key(&ip) {
            self.by_addr
                .retain(|_, (_, last)| now.duration_since(*last) < AUTH_PENALTY_MEMORY);
            if self.by_addr.len() >= AUTH_PENALTY_ENTRIES {
                let oldest = self
                    .by_addr
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    self.by_addr.remove(&oldest);
                }
            }
        }
        let e = self.by_addr.entry(ip).or_insert((0, now));
        *e = (e.0.saturating_add(1), now);
    }

    pub(super) fn succeeded(&mut self, ip: IpAddr) {
        self.by_addr.remove(&ip);
    }
}

impl Server {
    /// Accepts every pending connection.
    pub(super) fn accept(&mut self) {
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

    /// Takes a new connection in, or refuses it over `max_conns`.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.cfg.max_conns {
            log::warn!("{peer}: refused, {} connections already", self.conns.len());
            if self.cfg.protocol == Protocol::Native {
                let mut frame = Vec::new();
                encode_frame(
                    &ServerMsg::Error(ErrorMsg {
                        id: None,
                        kind: ErrorKind::Limit,
                        message: format!(
                            "{} connections at once; try again later",
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
        let wire = match self.cfg.protocol {
            Protocol::Native => {
                let mut nonce = [0u8; NONCE_LEN];
                if self.random.fill(&mut nonce).is_err() {
                    log::error!("{peer}: no random bytes for the auth challenge");
                    return;
                }
                Wire::Native(ConnProtocol::new(self.cfg.token.clone(), nonce))
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
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
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
        let conn = Connection::new(stream, token, peer, wire, self.cfg.max_frame, tls);
        log::debug!("{peer}: connected");
        self.conns.insert(id, conn);
        if let Some(idle) = self.cfg.idle_timeout {
            self.timers.after(idle, Timer::ConnIdle(id));
        }
        if native {
            self.timers
                .after(self.cfg.handshake_timeout, Timer::Handshake(id));
        }
        self.check_close(id);
    }

    /// The client's hello was accepted: answer now, or later if its address
    /// failed to authenticate before. Guessing gets slow; nobody else waits.
    pub(super) fn hello_accepted(&mut self, id: ConnId, peer: SocketAddr) {
        let penalty = self.auth_failures.penalty(peer.ip(), Instant::now());
        if penalty.is_zero() {
            self.send_hello(id);
        } else {
            log::debug!("{peer}: hello held back {penalty:?} after failed authentication");
            self.timers.after(penalty, Timer::SendHello(id));
        }
    }

    pub(super) fn send_hello(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Wire::Native(proto) = &conn.wire {
            let hello = ServerMsg::Hello(proto.hello());
            conn.queue(&hello);
            conn.flush();
        }
        self.check_close(id);
    }

    /// The handshake timer fired: a connection still without a completed
    /// hello (and auth) is closed.
    pub(super) fn check_handshake(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let waiting =
            conn.is_open() && matches!(&conn.wire, Wire::Native(p) if p.phase() != Phase::Running);
        if !waiting {
            return;
        }
        let kind = if self.cfg.token.is_some() {
            self.auth_failures.failed(conn.peer.ip(), now);
            ErrorKind::Auth
        } else {
            ErrorKind::Protocol
        };
        self.fail_conn(
            id,
            kind,
            format!("no hello within {} s", self.cfg.handshake_timeout.as_secs()),
        );
    }
}
