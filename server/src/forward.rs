//! Port forwarding (protocol 8): the channels and listening ports of every
//! connection, owned here, and what the client asked for them.
//!
//! A channel is one forwarded TCP connection carried over the client's
//! rexec connection: `rexec -L` asks rexecd to connect to a target
//! (`Open`), `rexec -R` asks it to listen (`Listen`) and each connection
//! to that port becomes a channel the other way (`Accepted`). Channels
//! live in the event loop like everything else (a socket, two small
//! buffers, two windows; no thread, no process), so a thousand idle ones
//! cost a thousand sockets. The router's room for them is
//! server/server/forward.rs; who may forward what is permit.rs.

pub mod channel;
pub mod permit;
pub mod resolve;

use std::collections::HashMap;

use mio::Token;
use mio::net::TcpListener;

use crate::registry::{ChanId, ConnId, ListenId, Registry};
use channel::Channel;

/// Most channels open on one connection at once.
pub const MAX_CHANNELS: usize = 4096;
/// Most ports one connection listens on.
pub const MAX_LISTENERS: usize = 64;

/// A forwarding request, as the protocol state machine passes it on.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Open {
        id: u32,
        host: String,
        port: u16,
    },
    Listen {
        id: u32,
        bind: String,
        port: u16,
    },
    Data {
        id: u32,
        data: Vec<u8>,
    },
    Ack {
        id: u32,
        bytes: u32,
    },
    Eof {
        id: u32,
    },
    Close {
        id: u32,
        error: Option<String>,
    },
    /// The client reached the target of a channel we accepted.
    Opened {
        id: u32,
    },
}

/// A port listened on for a client.
#[derive(Debug)]
pub struct Listener {
    pub conn: ConnId,
    /// The client's id for it.
    pub wire: u32,
    pub sock: TcpListener,
    pub token: Token,
}

/// Every channel and listening port, and which connection's id names each.
#[derive(Debug)]
pub struct Forwards {
    /// Where a far end's bytes are read into (one chunk), before they are
    /// framed onto the connection's queue.
    pub buf: Box<[u8]>,
    pub chans: HashMap<ChanId, Channel>,
    wires: HashMap<(ConnId, u32), ChanId>,
    pub listeners: HashMap<ListenId, Listener>,
    next: u64,
    /// Channels that stopped reading because their connection's queue was
    /// full: read again when it drains (no new event would come).
    paused: HashMap<ConnId, Vec<ChanId>>,
    /// Bytes each connection's channels hold for their far ends (the
    /// memory budget counts them: a client that fills many windows toward
    /// targets that do not read is held back like any other big holder).
    held: HashMap<ConnId, usize>,
    /// Channels open on each connection (its limit is checked at every
    /// `Open`: counted here, not by walking every channel).
    open: HashMap<ConnId, usize>,
}

impl Forwards {
    pub fn new() -> Forwards {
        Forwards {
            // Zeroed pages: not resident until a channel carries data.
            buf: vec![0; rexec_proto::CHANNEL_CHUNK].into_boxed_slice(),
            chans: HashMap::new(),
            wires: HashMap::new(),
            listeners: HashMap::new(),
            next: 0,
            paused: HashMap::new(),
            held: HashMap::new(),
            open: HashMap::new(),
        }
    }

    /// Bytes `conn`'s channels hold.
    pub fn held_by(&self, conn: ConnId) -> usize {
        self.held.get(&conn).copied().unwrap_or(0)
    }

    /// A channel of `conn` went from holding `before` bytes to `after`.
    pub fn count_held(&mut self, conn: ConnId, before: usize, after: usize) {
        let n = self.held.entry(conn).or_default();
        *n = (*n + after).saturating_sub(before);
        if *n == 0 {
            self.held.remove(&conn);
        }
    }

    /// The channel a connection's id names.
    pub fn find(&self, conn: ConnId, wire: u32) -> Option<ChanId> {
        self.wires.get(&(conn, wire)).copied()
    }

    /// Channels open on `conn`.
    pub fn count(&self, conn: ConnId) -> usize {
        self.open.get(&conn).copied().unwrap_or(0)
    }

    /// Adds a channel; its id is the caller's to register its socket under.
    pub fn add(&mut self, chan: Channel) -> ChanId {
        self.next += 1;
        let id = ChanId(self.next);
        self.wires.insert((chan.conn, chan.wire), id);
        *self.open.entry(chan.conn).or_default() += 1;
        self.chans.insert(id, chan);
        id
    }

    /// A new id for a listening port.
    pub fn listener_id(&mut self) -> ListenId {
        self.next += 1;
        ListenId(self.next)
    }

    /// The id the server gives a channel it opens on `conn`: the high bit
    /// set (never one of the client's), unique while the connection lives.
    pub fn server_wire(&self) -> u32 {
        rexec_proto::SERVER_CHANNEL | (self.next as u32 & !rexec_proto::SERVER_CHANNEL)
    }

    /// Forgets a channel and closes its socket.
    pub fn remove(&mut self, id: ChanId, registry: &mut Registry) -> Option<Channel> {
        let mut chan = self.chans.remove(&id)?;
        self.wires.remove(&(chan.conn, chan.wire));
        if let Some(n) = self.open.get_mut(&chan.conn) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&chan.conn);
            }
        }
        self.count_held(chan.conn, chan.pending(), 0);
        if let Some((sock, token)) = chan.socket() {
            registry.remove(sock, token);
        }
        Some(chan)
    }

    /// Remembers a channel that waits for its connection's queue.
    pub fn pause(&mut self, conn: ConnId, chan: ChanId) {
        let list = self.paused.entry(conn).or_default();
        if !list.contains(&chan) {
            list.push(chan);
        }
    }

    /// The channels that waited for `conn`'s queue.
    pub fn take_paused(&mut self, conn: ConnId) -> Vec<ChanId> {
        self.paused.remove(&conn).unwrap_or_default()
    }

    /// Ports `conn` listens on.
    pub fn listening(&self, conn: ConnId) -> usize {
        self.listeners.values().filter(|l| l.conn == conn).count()
    }

    /// The connection is gone: its channels and ports with it. Returns the
    /// channels closed, for the log.
    pub fn close_conn(&mut self, conn: ConnId, registry: &mut Registry) -> usize {
        let chans: Vec<ChanId> = self
            .wires
            .iter()
            .filter(|((c, _), _)| *c == conn)
            .map(|(_, id)| *id)
            .collect();
        for id in &chans {
            self.remove(*id, registry);
        }
        let ports: Vec<ListenId> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in ports {
            if let Some(mut l) = self.listeners.remove(&id) {
                registry.remove(&mut l.sock, l.token);
            }
        }
        self.paused.remove(&conn);
        self.held.remove(&conn);
        chans.len()
    }
}
