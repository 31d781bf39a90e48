//! `rexec -R`: ports rexecd listens on for a client (`Listen`), and the
//! connections they accept, each a channel back to the client
//! (`Accepted`). The channels themselves are forward.rs's.

use mio::Interest;
use mio::net::TcpListener;
use std::net::SocketAddr;

use rexec_proto::ServerMsg;

use super::Server;
use crate::forward::channel::{Channel, Phase};
use crate::forward::permit::listen_address;
use crate::forward::{Listener, MAX_CHANNELS, MAX_LISTENERS};
use crate::registry::{ConnId, ListenId, Slot};

impl Server {
    /// `Listen`: a port on this side whose connections come to the client.
    pub(super) fn listen_for(&mut self, id: ConnId, wire: u32, bind: String, port: u16) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let (grant, peer, who) = (conn.grant(), conn.peer(), who(conn.who()));
        let privileged = |port: u16| {
            let account = grant.account.as_ref().filter(|a| a.uid != 0);
            match account {
                Some(a) if (1..1024).contains(&port) => Err(format!(
                    "port {port} is privileged: account {} may not listen on it",
                    a.name
                )),
                _ => Ok(()),
            }
        };
        let addr = self
            .cfg
            .forwarding
            .check_listen()
            .and_then(|()| grant.forwarding.may_listen(&bind, port))
            .and_then(|()| privileged(port))
            .and_then(|()| match self.forwards.listening(id) >= MAX_LISTENERS {
                true => Err(format!(
                    "{MAX_LISTENERS} ports are listened on for this connection"
                )),
                false => Ok(()),
            })
            .and_then(|()| listen_address(&bind, self.cfg.gateway_ports))
            .map(|ip| SocketAddr::new(ip, port));
        let lid = self.forwards.listener_id();
        let owner = grant.account.as_ref().map(|a| (a.uid, a.gid));
        let bound = addr.and_then(|addr| {
            // Under --login the account's port, not root's.
            let bind = || TcpListener::bind(addr);
            let made = match owner {
                Some((uid, gid)) => crate::sys::as_account(uid, gid, bind),
                None => bind(),
            };
            let mut sock = made.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = sock.local_addr().map_err(|e| e.to_string())?;
            let token = self
                .registry
                .add(&mut sock, Interest::READABLE, Slot::Listener(lid))
                .map_err(|e| format!("cannot watch {addr}: {e}"))?;
            Ok((sock, token, local))
        });
        let result = match bound {
            Ok((sock, token, local)) => {
                log::info!(
                    event = "listen",
                    peer:% = peer,
                    account = who.trim_start_matches(" (").trim_end_matches(')'),
                    address:% = local;
                    "{peer}{who}: listening on {local} for the client (-R {wire})"
                );
                self.forwards.listeners.insert(
                    lid,
                    Listener {
                        conn: id,
                        wire,
                        sock,
                        token,
                    },
                );
                Ok(local.port())
            }
            Err(why) => {
                log::info!("{peer}{who}: -R {bind}:{port} refused: {why}");
                Err(why)
            }
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            if result.is_ok() {
                conn.tunnel_opened();
            }
            conn.queue(&ServerMsg::Listening { id: wire, result });
            conn.flush();
        }
    }

    /// Connections came to a port listened on for a client: each becomes
    /// a channel, which the client opens at its end (`Accepted`).
    pub(super) fn accept_forwarded(&mut self, lid: ListenId) {
        loop {
            let Some(l) = self.forwards.listeners.get_mut(&lid) else {
                return;
            };
            let (conn_id, listen_wire) = (l.conn, l.wire);
            let (mut sock, from) = match l.sock.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("accept on a forwarded port: {e}");
                    return;
                }
            };
            let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
            if self.forwards.count(conn_id) >= MAX_CHANNELS {
                log::warn!("{from} to {local}: {MAX_CHANNELS} channels open; refused");
                continue; // dropped: closed
            }
            let wire = self.forwards.server_wire();
            let target = format!("{local} from {from}");
            let ch = self
                .forwards
                .add(Channel::new(conn_id, wire, target, Phase::Waiting));
            let interest = Interest::READABLE | Interest::WRITABLE;
            let token = match self.registry.add(&mut sock, interest, Slot::Channel(ch)) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("cannot watch a forwarded connection: {e}");
                    self.forwards.remove(ch, &mut self.registry);
                    continue;
                }
            };
            if let Some(chan) = self.forwards.chans.get_mut(&ch) {
                chan.set_socket(sock, token);
            }
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return;
            };
            log::info!(
                "{}{}: channel {wire} from {from} on {local} (-R {listen_wire})",
                conn.peer(),
                who(conn.who())
            );
            conn.tunnel_opened();
            conn.queue(&ServerMsg::Accepted {
                listen: listen_wire,
                id: wire,
                from: from.to_string(),
            });
            conn.flush();
        }
    }
}

/// ` (who)` for the audit line, or nothing.
pub(super) fn who(w: Option<std::sync::Arc<str>>) -> String {
    w.map(|w| format!(" ({w})")).unwrap_or_default()
}
