//! Whole connections through the real router (server/), under a simulated
//! world: clients played in memory (connection/stream/played.rs) come and
//! go from a few addresses, say their hello or nothing, answer a token
//! server's challenge with the token or (guessers) without it, send pings in bursts, frames in pieces
//! or broken ones, stop reading our replies and start again, finish or
//! vanish; keepalive probes are answered; the poll reports what a socket
//! would (readable after bytes came, writable after room came, an error
//! for a reset); the server's clock jumps by any amount, or to its next
//! timer, or to a deadline a client is owed. The limits
//! (connections, logins in progress, the queue, idleness, keepalive) come
//! from the seed too.
//!
//! After every step, for every client: what it received decodes as whole
//! frames; a challenge comes exactly when a token is asked for; the right
//! token is never refused and a guesser's ping never answered; its pongs answer its pings in order, none twice, none skipped;
//! nothing follows an error; while it reads everything, its pings are
//! answered within a few turns; a connection is closed only after telling the
//! client why, or because the client ended it, or because keepalive gave
//! it up; a client that sends nothing is told exactly when the handshake
//! deadline passes; the server's queue for it stays within twice the queue
//! limit and an error message; the connections stay within their limit. At the end,
//! every client finishes: every connection ends, and every ping of a
//! client that was not told an error and did not vanish is answered.

use std::time::{Duration, Instant};

use rexec_proto::{ClientHello, ClientMsg, FrameDecoder, ServerMsg, encode_frame};

use super::world::{Broken, Rng, run};
use crate::config::Config;
use crate::connection::{Played, Ready};
use crate::registry::ConnId;
use crate::server::Server;

const STEPS: usize = 300;
const FINISH_STEPS: usize = 50;
const MOST_CLIENTS: usize = 6;

/// One played client and what it knows.
struct Client {
    played: Played,
    /// Its connection, if it was let in.
    id: Option<ConnId>,
    admitted: Instant,
    sent_anything: bool,
    said_hello: bool,
    /// With a token server: the challenge it was sent, and whether it
    /// answered; a guesser answers with the wrong token.
    challenge: Option<Vec<u8>>,
    answered: bool,
    guesser: bool,
    /// The rest of a frame it sent in part (always a ping's).
    rest: Vec<u8>,
    /// It finished in the middle of a ping: that one is owed nothing.
    cut_short: bool,
    pings: u32,
    pongs: u32,
    /// Its socket's room for our replies (`None`: all it is sent), and
    /// whether it was limited at any time since the last check.
    room: Option<usize>,
    was_stalled: bool,
    /// Room came (or a reset, or its end): the poll will say so.
    readable: bool,
    writable: bool,
    decoder: FrameDecoder,
    /// The error it was told, if any.
    told: Option<String>,
    /// It finished sending, or vanished (`reset`).
    finished: bool,
    reset: bool,
    /// Its connection is gone; `owed`: after the client finished, with no
    /// error and the client reading: every ping is owed its pong.
    closed: bool,
    owed: bool,
    /// Server probes to answer.
    probes: Vec<u32>,
    /// Turns in a row that ended with its pings unanswered, and few
    /// answered in the turn, while it read everything it was sent; the
    /// pongs it had at the last check.
    waited: u32,
    pongs_before: u32,
}

impl Client {
    fn open(&self) -> bool {
        self.id.is_some() && !self.closed
    }

    /// Sends `bytes`, after the rest of a frame sent in part (frames go
    /// whole and in order, however they are cut).
    fn send(&mut self, bytes: &[u8]) {
        self.played.send(&std::mem::take(&mut self.rest));
        self.played.send(bytes);
        self.sent_anything = true;
        self.readable = true;
    }

    fn send_msg(&mut self, msg: &ClientMsg) {
        let mut bytes = Vec::new();
        encode_frame(msg, &mut bytes);
        self.send(&bytes);
    }

    /// Reads what the server sent it, checking each message.
    fn read(&mut self, k: usize, asks_token: bool) -> Result<(), String> {
        self.decoder.feed(&self.played.received());
        loop {
            let msg = match self.decoder.next_message::<ServerMsg>() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Err(format!("client {k}: undecodable: {e}")),
            };
            if let Some(why) = &self.told {
                return Err(format!("client {k}: {msg:?} after its error ({why})"));
            }
            match msg {
                ServerMsg::Hello(h) if self.said_hello => {
                    self.challenge = h.challenge.map(|b| b.into_vec());
                    if self.challenge.is_some() != asks_token {
                        return Err(format!("client {k}: a challenge {:?}", self.challenge));
                    }
                }
                ServerMsg::AuthMethods {
                    token: true,
                    keys: false,
                } if asks_token => {}
                ServerMsg::Pong { .. } if self.guesser => {
                    return Err(format!("client {k}: a guesser's ping answered"));
                }
                ServerMsg::Pong { seq } if seq == self.pongs && seq < self.pings => self.pongs += 1,
                ServerMsg::Ping { seq } => self.probes.push(seq),
                ServerMsg::Error(e) => {
                    if e.message == "wrong token" && !self.guesser {
                        return Err(format!("client {k}: the right token refused: {e:?}"));
                    }
                    self.told = Some(e.message)
                }
                other => {
                    return Err(format!(
                        "client {k}: {other:?} unasked (pings {}, pongs {})",
                        self.pings, self.pongs
                    ));
                }
            }
        }
        Ok(())
    }
}

struct World {
    rng: Rng,
    server: Server,
    cfg: Config,
    clients: Vec<Client>,
}

/// The token of a server that asks for one, and a guesser's.
const TOKEN: &str = "s3cret-token";
const GUESS: &str = "not-the-token";

impl World {
    fn new(seed: u64) -> std::io::Result<World> {
        let mut rng = Rng::new(seed);
        let secs = |rng: &mut Rng, lo, hi| Duration::from_secs(rng.between(lo, hi) as u64);
        let cfg = Config {
            handle_signals: false,
            max_conns: rng.between(1, MOST_CLIENTS),
            max_startups: rng.between(1, 4),
            queue_limit: rng.between(16, 512),
            idle_timeout: rng.one_in(2).then(|| secs(&mut rng, 5, 120)),
            keepalive: rng.one_in(2).then(|| secs(&mut rng, 5, 60)),
            handshake_timeout: secs(&mut rng, 1, 20),
            token: rng
                .one_in(2)
                .then(|| rexec_proto::auth::Token::new(TOKEN).expect("a token")),
            frame_timeout: secs(&mut rng, 1, 60),
            ..Config::default()
        };
        Ok(World {
            rng,
            server: Server::unbound(cfg.clone())?,
            cfg,
            clients: Vec::new(),
        })
    }

    fn admit(&mut self) {
        // A few addresses, so that one's failed logins (held back hellos)
        // meet another's logins.
        let ip = 2 + self.rng.below(3) as u8;
        let peer = std::net::SocketAddr::from(([127, 0, 0, ip], 40_000));
        let guesser = self.cfg.token.is_some() && self.rng.one_in(4);
        let (played, id) = self.server.admit_played(peer);
        self.clients.push(Client {
            played,
            id,
            admitted: self.server.clock(),
            sent_anything: false,
            said_hello: false,
            challenge: None,
            answered: false,
            guesser,
            rest: Vec::new(),
            cut_short: false,
            pings: 0,
            pongs: 0,
            room: None,
            was_stalled: false,
            readable: false,
            writable: false,
            decoder: FrameDecoder::new(),
            told: None,
            finished: false,
            reset: false,
            closed: id.is_none(),
            owed: false,
            probes: Vec::new(),
            waited: 0,
            pongs_before: 0,
        });
    }

    /// One client does one thing.
    fn act(&mut self, k: usize) {
        let asks_token = self.cfg.token.is_some();
        let rng = &mut self.rng;
        let c = &mut self.clients[k];
        if !c.open() || c.finished || c.reset {
            return;
        }
        for seq in std::mem::take(&mut c.probes) {
            c.send_msg(&ClientMsg::Pong { seq });
        }
        if let Some(nonce) = c.challenge.as_ref().filter(|_| !c.answered) {
            // The answer binds the address the client reached.
            let binding = rexec_proto::auth::address_binding(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                rexec_proto::DEFAULT_PORT,
            )));
            let token = if c.guesser { GUESS } else { TOKEN };
            let answer = rexec_proto::auth::Token::new(token)
                .expect("a token")
                .answer(&binding, nonce);
            c.answered = true;
            c.send_msg(&ClientMsg::Auth {
                answer: answer.to_vec(),
            });
            return;
        }
        match rng.below(40) {
            0 if !c.said_hello => {}
            0..=9 if !c.said_hello => {
                c.said_hello = true;
                c.send_msg(&ClientMsg::Hello(ClientHello {
                    protocol: rexec_proto::PROTOCOL_VERSION,
                    software: "sim".into(),
                }));
            }
            // Pings once let in (now and then before: a protocol error).
            10..=19 if !asks_token || c.answered || rng.one_in(10) => {
                for _ in 0..rng.between(1, 64) {
                    let seq = c.pings;
                    c.pings += 1;
                    c.send_msg(&ClientMsg::Ping { seq });
                }
            }
            20..=22 if c.rest.is_empty() => {
                // A ping in two pieces, the rest later (or never).
                let mut bytes = Vec::new();
                encode_frame(&ClientMsg::Ping { seq: c.pings }, &mut bytes);
                c.pings += 1;
                let cut = rng.between(1, bytes.len() - 1);
                let rest = bytes.split_off(cut);
                c.send(&bytes);
                c.rest = rest;
            }
            23..=25 if !c.rest.is_empty() => c.send(&[]),
            26..=29 => {
                let room = match rng.below(3) {
                    0 => Some(0),
                    1 => Some(rng.between(1, 64)),
                    _ => None,
                };
                if room != Some(0) {
                    c.writable = true;
                }
                c.was_stalled |= c.room.is_some();
                c.room = room;
                c.played.set_room(room);
            }
            30 if rng.one_in(4) => c.send(&[0, 0, 0, 3, 0xff, 0xff, 0xff]),
            31 if rng.one_in(8) => {
                c.finished = true;
                c.cut_short = !c.rest.is_empty();
                c.readable = true;
                c.played.finish();
            }
            32 if rng.one_in(16) => {
                c.reset = true;
                c.readable = true;
                c.played.reset();
            }
            _ => {}
        }
    }

    /// One turn of the loop: the clock moves on by any amount, and the
    /// poll reports what each socket would, in any order.
    fn turn(&mut self) {
        let now = self.server.clock();
        // The deadline a silent client is owed, which it checks to the
        // millisecond when time lands on it.
        let promised = self
            .clients
            .iter()
            .filter(|c| c.open() && !c.sent_anything)
            .map(|c| c.admitted + self.cfg.handshake_timeout)
            .filter(|t| *t > now)
            .min();
        let by = match self.rng.below(8) {
            0 | 1 => Duration::from_millis(self.rng.below(20_000)),
            2 | 3 => Duration::from_millis(self.rng.below(100)),
            // Woken by the next timer, as the loop's poll is.
            4 => self.server.next_timer().unwrap_or_default(),
            5 => promised.map_or(Duration::ZERO, |t| t - now),
            _ => Duration::ZERO,
        };
        let n = self.clients.len();
        let start = self.rng.between(0, n.max(1) - 1);
        let mut events = Vec::new();
        for i in 0..n {
            let c = &mut self.clients[(start + i) % n];
            let Some(id) = c.id.filter(|_| !c.closed) else {
                continue;
            };
            let ready = Ready {
                readable: std::mem::take(&mut c.readable),
                writable: std::mem::take(&mut c.writable),
                read_closed: c.finished || c.reset,
                error: c.reset,
            };
            if ready.readable || ready.writable {
                events.push((id, ready));
            }
        }
        self.server.turn(by, &events);
    }

    /// What every client received, checked.
    fn check(&mut self) -> Result<(), String> {
        let now = self.server.clock();
        let mut open = 0;
        for (k, c) in self.clients.iter_mut().enumerate() {
            c.read(k, self.cfg.token.is_some())?;
            let Some(id) = c.id else {
                if c.told.is_none() {
                    return Err(format!("client {k}: refused without a word"));
                }
                continue;
            };
            if c.closed {
                continue;
            }
            let Some(queued) = self.server.queued_for(id) else {
                c.closed = true;
                // A client that stopped reading may miss the error, or get
                // only part of it, before the close deadline lets it go.
                let stalled = c.room.is_some() || c.was_stalled;
                let said = c.told.is_some() || c.finished || c.reset || stalled;
                if !said && self.cfg.keepalive.is_none() {
                    return Err(format!(
                        "client {k}: closed without a word (sent {}, hello {}, pings {}, \
                         pongs {}, room {:?}, partial {}, admitted {:?} ago)",
                        c.sent_anything,
                        c.said_hello,
                        c.pings,
                        c.pongs,
                        c.room,
                        c.decoder.buffered(),
                        now - c.admitted
                    ));
                }
                c.owed = c.finished && !c.reset && c.told.is_none() && !stalled;
                continue;
            };
            open += 1;
            if queued > 2 * self.cfg.queue_limit + 512 {
                return Err(format!(
                    "client {k}: {queued} bytes queued (queue limit {})",
                    self.cfg.queue_limit
                ));
            }
            // While the client reads, its pings are answered within the
            // turn, or at least a turn's share of them (64 messages a
            // connection, the rest deferred to the next turn).
            let sent = c.pings - u32::from(!c.rest.is_empty());
            let reading = c.room.is_none() && !c.was_stalled;
            let slow = c.pongs < sent && c.pongs - c.pongs_before < 32;
            c.waited = match c.told.is_none() && reading && slow {
                true => c.waited + 1,
                false => 0,
            };
            c.pongs_before = c.pongs;
            if c.waited > 2 {
                return Err(format!(
                    "client {k}: {} of its {sent} pings answered, and fewer than 32 a turn \
                     for {} turns, though it reads everything",
                    c.pongs, c.waited
                ));
            }
            c.was_stalled = c.room.is_some();
            if !c.sent_anything
                && c.room.is_none()
                && c.told.is_none()
                && now >= c.admitted + self.cfg.handshake_timeout
            {
                return Err(format!(
                    "client {k}: silent for {:?}, the handshake timeout is {:?}, and not told",
                    now - c.admitted,
                    self.cfg.handshake_timeout
                ));
            }
        }
        if open > self.cfg.max_conns || self.server.connections() != open {
            return Err(format!(
                "{} connections open ({open} known to clients), limit {}",
                self.server.connections(),
                self.cfg.max_conns
            ));
        }
        Ok(())
    }

    /// At the end, with every client finished: each client that finished
    /// while reading, and was told no error, had all its pings answered.
    fn check_end(&self) -> Result<(), String> {
        for (k, c) in self.clients.iter().enumerate() {
            if c.owed && c.pongs != c.pings - u32::from(c.cut_short) {
                return Err(format!(
                    "client {k}: {} pings, {} pongs, and no error",
                    c.pings, c.pongs
                ));
            }
        }
        Ok(())
    }
}

fn schedule(seed: u64) -> Result<(), Broken> {
    let mut w = World::new(seed).map_err(|e| Broken {
        step: 0,
        what: format!("setting up: {e}"),
    })?;
    for step in 0..STEPS + FINISH_STEPS {
        let broken = |what: String| Broken { step, what };
        if step < STEPS {
            if w.clients.len() < MOST_CLIENTS * 3 && w.rng.one_in(8) {
                w.admit();
            }
            for k in 0..w.clients.len() {
                if w.rng.one_in(2) {
                    w.act(k);
                }
            }
        } else {
            // Every client reads all, sends the rest, and finishes.
            for c in w.clients.iter_mut().filter(|c| c.open()) {
                if !c.finished && !c.reset {
                    c.send(&[]);
                    c.finished = true;
                    c.played.finish();
                }
                c.room = None;
                c.played.set_room(None);
                c.readable = true;
                c.writable = true;
            }
        }
        w.turn();
        w.check().map_err(broken)?;
        if step >= STEPS && w.server.connections() == 0 {
            return w.check_end().map_err(broken);
        }
    }
    Err(Broken {
        step: STEPS + FINISH_STEPS,
        what: format!(
            "{} connections still open with every client finished",
            w.server.connections()
        ),
    })
}

#[test]
fn sim_router() {
    let _ = env_logger::builder().is_test(true).try_init();
    let n = run("router", schedule);
    assert!(n > 0);
}
