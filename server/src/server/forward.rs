//! Port forwarding's room (protocol 8): a client's `Open`, `Listen` and
//! channel messages, the events of the sockets at the channels' far ends
//! and of the ports listened on, and the names looked up for them. The
//! channels themselves are forward/channel.rs; who may forward what is
//! forward/permit.rs.
//!
//! Every channel reads its far end only while the client has room for it
//! (its window) and the connection's queue is under its limit, so a
//! channel whose local end stalls stops alone: other channels and the
//! connection's commands go on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mio::Interest;
use mio::net::TcpStream;
use rexec_proto::{ErrorKind, SERVER_CHANNEL, ServerMsg, encode_channel_data_frame};

use super::Server;
use super::listen::who;
use crate::forward::channel::{Channel, Got, Phase};
use crate::forward::permit::check_host;
use crate::forward::{MAX_CHANNELS, Request};
use crate::registry::{ChanId, ConnId, Slot};
use crate::timer::Timer;

/// How long a connection to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// A forwarding message from connection `id`.
    pub(super) fn forward(&mut self, id: ConnId, req: Request) {
        let find = |s: &Self, wire| s.forwards.find(id, wire);
        match req {
            Request::Open {
                id: wire,
                host,
                port,
            } => self.open_channel(id, wire, host, port),
            Request::Listen {
                id: wire,
                bind,
                port,
            } => self.listen_for(id, wire, bind, port),
            Request::Data { id: wire, data } => {
                let Some(ch) = find(self, wire) else {
                    return; // closed while this was on its way
                };
                let (took, before, after) = match self.forwards.chans.get_mut(&ch) {
                    Some(chan) => {
                        let before = chan.pending();
                        (chan.take_from_client(data), before, chan.pending())
                    }
                    None => return,
                };
                self.forwards.count_held(id, before, after);
                // The running estimate of the memory budget (held.rs).
                self.budget.held += after.saturating_sub(before);
                match took {
                    Ok(()) => self.channel_write(ch),
                    Err(e) => self.fail_conn(id, ErrorKind::Protocol, e),
                }
            }
            Request::Ack { id: wire, bytes } => {
                if let Some(ch) = find(self, wire) {
                    if let Some(chan) = self.forwards.chans.get_mut(&ch) {
                        chan.acked(bytes);
                    }
                    self.channel_read(ch);
                }
            }
            Request::Eof { id: wire } => {
                if let Some(ch) = find(self, wire) {
                    if let Some(chan) = self.forwards.chans.get_mut(&ch) {
                        chan.client_ended();
                    }
                    self.channel_write(ch);
                }
            }
            Request::Close { id: wire, .. } => {
                if let Some(ch) = find(self, wire) {
                    self.drop_channel(ch, None, false);
                }
            }
            Request::Opened { id: wire } => {
                let Some(ch) = find(self, wire) else {
                    return;
                };
                if let Some(chan) = self.forwards.chans.get_mut(&ch)
                    && chan.phase() == Phase::Waiting
                {
                    chan.set_phase(Phase::Open);
                }
                self.channel_write(ch);
                self.channel_read(ch);
            }
        }
    }

    /// A `ChannelData` next in connection `id`'s decoder: written on to its
    /// channel's far end from where it is when nothing waits before it
    /// (the common case: no copy). `false`: it was not, and is the
    /// caller's to take out as a message.
    pub(super) fn channel_data_in_place(&mut self, id: ConnId, wire: u32) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return true;
        };
        let Some(ch) = self.forwards.find(id, wire) else {
            return false;
        };
        let Some(chan) = self
            .forwards
            .chans
            .get_mut(&ch)
            .filter(|c| c.writes_through())
        else {
            return false;
        };
        let wrote = chan
            .write_through(conn.front_channel_data())
            .map_err(|(lied, why)| (lied, format!("{}: {why}", chan.target)));
        conn.skip_channel_data(self.now);
        let after = chan.pending();
        self.forwards.count_held(id, 0, after);
        self.budget.held += after;
        match wrote {
            Err((true, why)) => self.fail_conn(id, ErrorKind::Protocol, why),
            Err((false, why)) => self.drop_channel(ch, Some(why), true),
            // The ack, if one is due (and the rest, as channel_write does).
            Ok(()) => self.channel_write(ch),
        }
        true
    }

    /// `Open`: connect to `host:port` for the client, if it may.
    fn open_channel(&mut self, id: ConnId, wire: u32, host: String, port: u16) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if wire & SERVER_CHANNEL != 0 || self.forwards.find(id, wire).is_some() {
            let message = format!("channel id {wire} is in use or not the client's to choose");
            return self.fail_conn(id, ErrorKind::Protocol, message);
        }
        let host = host.trim_matches(['[', ']']).to_string();
        let grant = conn.grant();
        let refused = check_host(&host)
            .and_then(|()| self.cfg.forwarding.check_open())
            .and_then(|()| grant.forwarding.may_open(&host, port))
            .and_then(|()| match self.forwards.count(id) >= MAX_CHANNELS {
                true => Err(format!(
                    "{MAX_CHANNELS} channels are open on this connection already"
                )),
                false => Ok(()),
            });
        // (Shown escaped: a refused host may hold anything.)
        let shown = rexec_proto::text::clean(&host, 80);
        let target = match shown.contains(':') {
            true => format!("[{shown}]:{port}"),
            false => format!("{shown}:{port}"),
        };
        let who = who(conn.who());
        if let Err(why) = refused {
            log::info!(
                "{}{who}: channel {wire} to {target} refused: {why}",
                conn.peer()
            );
            conn.queue(&ServerMsg::ChannelClose {
                id: wire,
                error: Some(why),
            });
            conn.flush();
            return;
        }
        log::info!(
            event = "channel",
            peer:% = conn.peer(),
            account = conn.who().as_deref().unwrap_or_default(),
            target = target.as_str();
            "{}{who}: channel {wire} to {target}",
            conn.peer()
        );
        conn.tunnel_opened();
        let mut chan = Channel::new(id, wire, target, Phase::Resolving);
        chan.owner = grant.account.as_ref().map(|a| (a.uid, a.gid));
        let ch = self.forwards.add(chan);
        match host.parse::<IpAddr>() {
            Ok(ip) => self.connect_channel(ch, vec![SocketAddr::new(ip, port)]),
            Err(_) => {
                if let Err(e) = self.resolver.ask(ch, host, port) {
                    self.drop_channel(ch, Some(e), true);
                }
            }
        }
    }

    /// Names looked up (the loop was woken): connect the channels that
    /// waited for them.
    pub(super) fn take_resolved(&mut self) {
        for (ch, found) in self.resolver.answers() {
            let waiting = self
                .forwards
                .chans
                .get(&ch)
                .is_some_and(|c| c.phase() == Phase::Resolving);
            match (waiting, found) {
                (false, _) => {}
                (true, Ok(addrs)) if !addrs.is_empty() => self.connect_channel(ch, addrs),
                (true, Ok(_)) => self.drop_channel(ch, Some("no address".into()), true),
                (true, Err(e)) => self.drop_channel(ch, Some(e), true),
            }
        }
    }

    /// Starts connecting to the first of `addrs`; the others are tried in
    /// turn if it fails.
    fn connect_channel(&mut self, ch: ChanId, mut addrs: Vec<SocketAddr>) {
        let mut last = String::from("no address");
        while !addrs.is_empty() {
            let addr = addrs.remove(0);
            let Some(chan) = self.forwards.chans.get_mut(&ch) else {
                return;
            };
            // Under --login the account's socket, not root's.
            let connect = || TcpStream::connect(addr);
            let made = match chan.owner {
                Some((uid, gid)) => crate::sys::as_account(uid, gid, connect),
                None => connect(),
            };
            let mut sock = match made {
                Ok(s) => s,
                Err(e) => {
                    last = format!("connect to {}: {e}", chan.target);
                    continue;
                }
            };
            if let Some((old, token)) = chan.socket() {
                self.registry.remove(old, token);
            }
            let interest = Interest::READABLE | Interest::WRITABLE;
            match self.registry.add(&mut sock, interest, Slot::Channel(ch)) {
                Ok(token) => {
                    chan.set_socket(sock, token);
                    chan.set_phase(Phase::Connecting);
                    chan.set_addrs(addrs);
                    self.timers
                        .after(self.now, CONNECT_TIMEOUT, Timer::ChannelConnect(ch));
                    return;
                }
                Err(e) => last = format!("cannot watch a socket: {e}"),
            }
        }
        self.drop_channel(ch, Some(last), true);
    }

    /// The connect timer fired: a channel still connecting gives up.
    pub(super) fn channel_connect_due(&mut self, ch: ChanId) {
        let Some(chan) = self.forwards.chans.get_mut(&ch) else {
            return;
        };
        if chan.phase() != Phase::Connecting {
            return;
        }
        let why = format!(
            "connect to {}: no answer in {} s",
            chan.target,
            CONNECT_TIMEOUT.as_secs()
        );
        match chan.take_addrs() {
            rest if rest.is_empty() => self.drop_channel(ch, Some(why), true),
            rest => self.connect_channel(ch, rest),
        }
    }

    /// What the poll said of a channel's socket.
    pub(super) fn on_channel_event(&mut self, ch: ChanId) {
        let Some(chan) = self.forwards.chans.get_mut(&ch) else {
            return;
        };
        if chan.phase() == Phase::Connecting {
            match chan.connected() {
                None => return,
                Some(Err(e)) => {
                    let why = format!("connect to {}: {e}", chan.target);
                    return match chan.take_addrs() {
                        rest if rest.is_empty() => self.drop_channel(ch, Some(why), true),
                        rest => self.connect_channel(ch, rest),
                    };
                }
                Some(Ok(peer)) => {
                    chan.set_phase(Phase::Open);
                    let msg = ServerMsg::Opened {
                        id: chan.wire,
                        peer,
                    };
                    if let Some(conn) = self.conns.get_mut(&chan.conn) {
                        conn.queue(&msg);
                    }
                }
            }
        }
        self.channel_write(ch);
        self.channel_read(ch);
    }

    /// Writes what the client sent to the far end, acknowledges what it
    /// took, and forgets a channel that is done.
    fn channel_write(&mut self, ch: ChanId) {
        let Some(chan) = self.forwards.chans.get_mut(&ch) else {
            return;
        };
        let before = chan.pending();
        let wrote = chan
            .write_out()
            .map_err(|e| format!("{}: {e}", chan.target));
        let (conn_id, after) = (chan.conn, chan.pending());
        self.forwards.count_held(conn_id, before, after);
        if let Err(why) = wrote {
            return self.drop_channel(ch, Some(why), true);
        }
        let Some(chan) = self.forwards.chans.get_mut(&ch) else {
            return;
        };
        let ack = chan.take_ack().map(|bytes| ServerMsg::ChannelAck {
            id: chan.wire,
            bytes,
        });
        let (conn_id, finished) = (chan.conn, chan.finished());
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            if let Some(ack) = ack {
                conn.queue(&ack);
            }
            conn.flush();
        }
        if finished {
            self.drop_channel(ch, None, false);
        }
    }

    /// Reads the far end while the client has room and the connection's
    /// queue is under its limit; a channel stopped by the queue is read
    /// again when it drains ([`Server::resume_channels`]).
    fn channel_read(&mut self, ch: ChanId) {
        let over_budget = self.over_budget();
        let Some(chan) = self.forwards.chans.get_mut(&ch) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&chan.conn) else {
            return;
        };
        let mut paused = false;
        let failed = loop {
            if conn.output_blocked(self.cfg.queue_limit, false, over_budget) {
                paused = true;
                break None;
            }
            match chan.read_in(&mut self.forwards.buf) {
                Got::Data(n) => {
                    encode_channel_data_frame(
                        true,
                        chan.wire,
                        &self.forwards.buf[..n],
                        conn.frames(),
                    );
                }
                Got::Nothing => break None,
                Got::Eof => {
                    conn.queue(&ServerMsg::ChannelEof { id: chan.wire });
                    break None;
                }
                Got::Failed(e) => break Some(format!("{}: {e}", chan.target)),
            }
        };
        conn.flush();
        let (finished, conn_id) = (chan.finished(), chan.conn);
        if paused {
            self.forwards.pause(conn_id, ch);
        }
        if failed.is_some() || finished {
            let tell = failed.is_some();
            self.drop_channel(ch, failed, tell);
        }
    }

    /// The connection's queue drained: its paused channels read again.
    pub(super) fn resume_channels(&mut self, id: ConnId) {
        for ch in self.forwards.take_paused(id) {
            self.channel_read(ch);
        }
    }

    /// Forgets a channel and closes its socket; with `tell`, the client
    /// hears `ChannelClose` with `error`.
    fn drop_channel(&mut self, ch: ChanId, error: Option<String>, tell: bool) {
        let Some(chan) = self.forwards.remove(ch, &mut self.registry) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&chan.conn) else {
            return;
        };
        conn.tunnel_closed();
        if let Some(e) = &error {
            log::info!("{}: channel {}: {e}", conn.peer(), chan.wire);
        }
        if tell {
            conn.queue(&ServerMsg::ChannelClose {
                id: chan.wire,
                error,
            });
            conn.flush();
        }
    }
}

#[cfg(test)]
mod tests;
