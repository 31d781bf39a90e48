//! Port forwarding's channels through the real router (server/forward.rs,
//! forward/channel.rs): a client played in memory opens one to three
//! channels to targets that are real loopback sockets this scenario owns,
//! and both ends send, read, stall, acknowledge late and end (half-close)
//! in an order the seed picks, while the client's socket takes any part
//! of what the server writes, or nothing for a while.
//!
//! Checks, after every step: each end receives exactly the start of what
//! the other sent on that channel (nothing lost, doubled, reordered or
//! mixed between channels); the server never sends a channel more than
//! the window the client left it; the connection's queue stays within its
//! limit and a chunk; no channel is closed with an error. At the end:
//! everything delivered both ways, both ends told of the other's end, and
//! no channel left in the server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rexec_proto::{
    CHANNEL_CHUNK, CHANNEL_WINDOW, ClientHello, ClientMsg, FrameDecoder, PROTOCOL_VERSION,
    ServerMsg, encode_frame,
};

use super::world::{Broken, Rng, run};
use crate::config::Config;
use crate::connection::{Played, Ready};
use crate::registry::ConnId;
use crate::server::Server;

/// Steps before a schedule that has not finished counts as stuck.
const MAX_STEPS: usize = 20_000;

/// One channel, as both its ends see it.
struct Chan {
    id: u32,
    /// The target's end (a real socket, non-blocking), once accepted.
    target: Option<TcpStream>,
    /// What the client sends, and how much of it went.
    up: Vec<u8>,
    up_sent: usize,
    /// What the target sends, and how much of it went.
    down: Vec<u8>,
    down_sent: usize,
    /// What each end received.
    at_target: Vec<u8>,
    at_client: Vec<u8>,
    /// The client's window: bytes it may still send.
    credit: u32,
    /// Bytes the client received and has not acknowledged yet.
    unacked: u32,
    client_eof_sent: bool,
    target_shut: bool,
    /// The client heard `ChannelEof`; the target read its end.
    client_heard_end: bool,
    target_heard_end: bool,
    opened: bool,
    /// The target keeps its side open until the client has everything
    /// (a server waiting for the next request): no end of stream comes to
    /// wake a channel that stopped reading.
    shut_late: bool,
}

struct World {
    rng: Rng,
    server: Server,
    client: Played,
    conn: ConnId,
    decoder: FrameDecoder,
    listeners: Vec<TcpListener>,
    chans: Vec<Chan>,
    queue_limit: usize,
    /// The client acknowledges rarely: the server runs out of window.
    stingy: bool,
}

fn frame(msg: &ClientMsg) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out);
    out
}

fn data(rng: &mut Rng, n: usize) -> Vec<u8> {
    let salt = rng.next() as u8;
    (0..n).map(|i| (i as u8).wrapping_mul(13) ^ salt).collect()
}

impl World {
    fn new(seed: u64) -> Result<World, Broken> {
        let mut rng = Rng::new(seed);
        let queue_limit = [4 << 10, 64 << 10, 1 << 20][rng.below(3) as usize];
        let broken = |what: String| Broken { step: 0, what };
        let mut server = Server::unbound(Config {
            handle_signals: false,
            queue_limit,
            ..Config::default()
        })
        .map_err(|e| broken(format!("no server: {e}")))?;
        let (client, conn) = server.admit_played(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        let conn = conn.ok_or_else(|| broken("not admitted".into()))?;
        let mut w = World {
            rng,
            server,
            client,
            conn,
            decoder: FrameDecoder::new(),
            listeners: Vec::new(),
            chans: Vec::new(),
            queue_limit,
            stingy: false,
        };
        w.stingy = w.rng.one_in(2);
        w.say(&ClientMsg::Hello(ClientHello {
            protocol: PROTOCOL_VERSION,
            software: "sim".into(),
        }));
        let count = w.rng.between(1, 3);
        for i in 0..count {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| broken(e.to_string()))?;
            l.set_nonblocking(true).map_err(|e| broken(e.to_string()))?;
            let port = l.local_addr().map_err(|e| broken(e.to_string()))?.port();
            w.listeners.push(l);
            // The first channel may carry more than a window each way;
            // the others a little.
            let most = if i == 0 { 600_000 } else { 100_000 };
            let (up_len, down_len) = (w.rng.between(0, most), w.rng.between(0, most));
            let (up, down) = (data(&mut w.rng, up_len), data(&mut w.rng, down_len));
            let id = i as u32 + 1;
            w.chans.push(Chan {
                id,
                target: None,
                up,
                up_sent: 0,
                down,
                down_sent: 0,
                at_target: Vec::new(),
                at_client: Vec::new(),
                credit: CHANNEL_WINDOW,
                unacked: 0,
                client_eof_sent: false,
                target_shut: false,
                client_heard_end: false,
                target_heard_end: false,
                opened: false,
                shut_late: w.rng.one_in(2),
            });
            w.say(&ClientMsg::Open {
                id,
                host: "127.0.0.1".into(),
                port,
            });
        }
        Ok(w)
    }

    /// The client sends `msg`, and the poll says its socket is readable.
    fn say(&mut self, msg: &ClientMsg) {
        self.client.send(&frame(msg));
        self.server.poll_says(self.conn, Ready::READABLE);
    }

    /// One step the seed picks.
    fn step(&mut self) -> Result<(), String> {
        let n = self.chans.len();
        let c = self.rng.below(n as u64) as usize;
        match self.rng.below(8) {
            0 | 1 => self.client_sends(c),
            2 => self.client_reads()?,
            3 if !self.stingy || self.rng.one_in(8) => self.client_acks(c),
            4 => self.target_sends(c)?,
            5 => self.target_reads(c)?,
            6 => {
                // The client's socket takes some, all, or nothing for now.
                let room = match self.rng.below(3) {
                    0 => Some(0),
                    1 => Some(self.rng.between(1, 200_000)),
                    _ => None,
                };
                self.client.set_room(room);
                if room != Some(0) {
                    self.server.poll_says(self.conn, Ready::WRITABLE);
                }
            }
            _ => {}
        }
        self.accept_targets()?;
        // What the real poll says of the targets' sockets.
        self.server
            .process_turn(Duration::ZERO)
            .map_err(|e| format!("poll: {e}"))?;
        self.check()
    }

    fn accept_targets(&mut self) -> Result<(), String> {
        for (i, l) in self.listeners.iter().enumerate() {
            if self.chans[i].target.is_some() {
                continue;
            }
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(true).map_err(|e| e.to_string())?;
                    self.chans[i].target = Some(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("accept: {e}")),
            }
        }
        Ok(())
    }

    fn client_sends(&mut self, c: usize) {
        let ch = &mut self.chans[c];
        let left = ch.up.len() - ch.up_sent;
        if left == 0 {
            if !ch.client_eof_sent {
                ch.client_eof_sent = true;
                let id = ch.id;
                self.say(&ClientMsg::ChannelEof { id });
            }
            return;
        }
        let most = left.min(ch.credit as usize).min(CHANNEL_CHUNK);
        if most == 0 {
            return;
        }
        let n = self.rng.between(1, most);
        let msg = ClientMsg::ChannelData {
            id: ch.id,
            data: ch.up[ch.up_sent..ch.up_sent + n].to_vec(),
        };
        ch.up_sent += n;
        ch.credit -= n as u32;
        self.say(&msg);
    }

    fn client_acks(&mut self, c: usize) {
        let ch = &mut self.chans[c];
        if ch.unacked == 0 {
            return;
        }
        let n = self.rng.between(1, ch.unacked as usize) as u32;
        ch.unacked -= n;
        let id = ch.id;
        self.say(&ClientMsg::ChannelAck { id, bytes: n });
    }

    fn client_reads(&mut self) -> Result<(), String> {
        self.decoder.feed(&self.client.received());
        while let Some(msg) = self
            .decoder
            .next_message::<ServerMsg>()
            .map_err(|e| format!("a bad frame: {e}"))?
        {
            let chan = |id: u32, chans: &mut Vec<Chan>| -> Result<usize, String> {
                chans
                    .iter()
                    .position(|c| c.id == id)
                    .ok_or(format!("a message for channel {id}, never opened"))
            };
            match msg {
                ServerMsg::Hello(_) => {}
                ServerMsg::Opened { id, .. } => {
                    let i = chan(id, &mut self.chans)?;
                    self.chans[i].opened = true;
                }
                ServerMsg::ChannelData { id, data } => {
                    let i = chan(id, &mut self.chans)?;
                    let ch = &mut self.chans[i];
                    ch.unacked += data.len() as u32;
                    if ch.unacked > CHANNEL_WINDOW {
                        return Err(format!(
                            "channel {id}: {} bytes unacknowledged, window {CHANNEL_WINDOW}",
                            ch.unacked
                        ));
                    }
                    if ch.client_heard_end {
                        return Err(format!("channel {id}: data after its end"));
                    }
                    ch.at_client.extend_from_slice(&data);
                }
                ServerMsg::ChannelAck { id, bytes } => {
                    let i = chan(id, &mut self.chans)?;
                    let ch = &mut self.chans[i];
                    ch.credit += bytes;
                    if ch.credit > CHANNEL_WINDOW {
                        return Err(format!("channel {id}: acknowledged more than was sent"));
                    }
                }
                ServerMsg::ChannelEof { id } => {
                    let i = chan(id, &mut self.chans)?;
                    self.chans[i].client_heard_end = true;
                }
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        Ok(())
    }

    fn target_sends(&mut self, c: usize) -> Result<(), String> {
        let n = self.rng.between(1, 100_000);
        let ch = &mut self.chans[c];
        let Some(t) = ch.target.as_mut() else {
            return Ok(());
        };
        let left = ch.down.len() - ch.down_sent;
        if left == 0 {
            let waits = ch.shut_late && ch.at_client.len() < ch.down.len();
            if !ch.target_shut && !waits {
                ch.target_shut = true;
                t.shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
            }
            return Ok(());
        }
        let end = ch.down_sent + n.min(left);
        match t.write(&ch.down[ch.down_sent..end]) {
            Ok(k) => ch.down_sent += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("channel {}: target write: {e}", ch.id)),
        }
        Ok(())
    }

    fn target_reads(&mut self, c: usize) -> Result<(), String> {
        let mut buf = vec![0u8; self.rng.between(1, 200_000)];
        let ch = &mut self.chans[c];
        let Some(t) = ch.target.as_mut() else {
            return Ok(());
        };
        match t.read(&mut buf) {
            Ok(0) => ch.target_heard_end = true,
            Ok(k) => ch.at_target.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("channel {}: target read: {e}", ch.id)),
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        for ch in &self.chans {
            if !ch.up[..ch.up_sent].starts_with(&ch.at_target) {
                return Err(format!(
                    "channel {}: the target got {} bytes that are not what the client sent",
                    ch.id,
                    ch.at_target.len()
                ));
            }
            if !ch.down[..ch.down_sent].starts_with(&ch.at_client) {
                return Err(format!(
                    "channel {}: the client got {} bytes that are not what the target sent",
                    ch.id,
                    ch.at_client.len()
                ));
            }
            if ch.target_heard_end && !(ch.client_eof_sent && ch.at_target.len() == ch.up.len()) {
                return Err(format!(
                    "channel {}: the target heard an end too soon",
                    ch.id
                ));
            }
        }
        let queued = self.server.queued_for(self.conn).unwrap_or(0);
        if queued > self.queue_limit + 2 * CHANNEL_CHUNK + 1024 {
            return Err(format!(
                "{queued} bytes queued (limit {})",
                self.queue_limit
            ));
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.chans.iter().all(|c| {
            c.at_client.len() == c.down.len()
                && c.at_target.len() == c.up.len()
                && c.client_heard_end
                && c.target_heard_end
        })
    }

    /// Everything goes through once nobody stalls any more.
    fn finish(&mut self) -> Result<(), String> {
        self.client.set_room(None);
        for _ in 0..MAX_STEPS {
            if self.done() {
                break;
            }
            for c in 0..self.chans.len() {
                self.client_sends(c);
                self.target_sends(c)?;
                self.target_reads(c)?;
            }
            self.server.poll_says(self.conn, Ready::WRITABLE);
            self.client_reads()?;
            for c in 0..self.chans.len() {
                while self.chans[c].unacked > 0 {
                    self.client_acks(c);
                }
            }
            self.accept_targets()?;
            self.server
                .process_turn(Duration::from_millis(1))
                .map_err(|e| format!("poll: {e}"))?;
            self.check()?;
        }
        if !self.done() {
            let why: Vec<String> = self
                .chans
                .iter()
                .map(|c| {
                    format!(
                        "channel {}: client got {}/{} (end {}), target got {}/{} (end {}), opened {}",
                        c.id,
                        c.at_client.len(),
                        c.down.len(),
                        c.client_heard_end,
                        c.at_target.len(),
                        c.up.len(),
                        c.target_heard_end,
                        c.opened
                    )
                })
                .collect();
            return Err(format!("stuck: {}", why.join("; ")));
        }
        // Both ends done: the server forgets every channel.
        self.server
            .process_turn(Duration::from_millis(1))
            .map_err(|e| format!("poll: {e}"))?;
        if self.server.channels() != 0 {
            return Err(format!(
                "{} channels left in the server",
                self.server.channels()
            ));
        }
        Ok(())
    }
}

fn schedule(seed: u64) -> Result<(), Broken> {
    let mut w = World::new(seed)?;
    let steps = w.rng.between(50, 800);
    for step in 1..=steps {
        w.step().map_err(|what| Broken { step, what })?;
    }
    w.finish().map_err(|what| Broken {
        step: steps + 1,
        what,
    })
}

#[test]
fn sim_channels() {
    assert!(run("channels", schedule) > 0);
}
