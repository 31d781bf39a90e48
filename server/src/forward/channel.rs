//! One forwarded connection: the socket rexecd holds at the far end of a
//! channel, what the client sent for it that the socket has not taken yet,
//! and the two windows. It only knows its own socket: the router
//! (server/forward.rs) frames what it reads and routes what it says.
//!
//! Flow control, as in ssh's channels: each side may have at most
//! [`CHANNEL_WINDOW`] bytes of a channel's data unacknowledged. The client
//! never sends more than that before our `ChannelAck`s, so `to_target`
//! never holds more; and we read the target only while the client has
//! room (`credit`), so a client that stops reading one channel stops that
//! channel, not the connection.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::Token;
use mio::net::TcpStream;
use rexec_proto::CHANNEL_WINDOW;

use crate::registry::ConnId;

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its target's name is being looked up (resolve.rs).
    Resolving,
    /// The connection to its target is under way.
    Connecting,
    /// Accepted on a `-R` port: waiting for the client to reach its own
    /// target (`ClientMsg::Opened`) before reading.
    Waiting,
    /// Bytes flow.
    Open,
}

/// What a read from the target came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// `n` bytes are in the buffer.
    Data(usize),
    /// Nothing for now (or no window left, or not open yet).
    Nothing,
    /// The target sent its last byte (half-close).
    Eof,
    /// The target is gone.
    Failed(String),
}

/// One channel's far end.
#[derive(Debug)]
pub struct Channel {
    /// The connection it belongs to, and its id there.
    pub conn: ConnId,
    pub wire: u32,
    /// `host:port` as asked (for messages and the audit line).
    pub target: String,
    phase: Phase,
    sock: Option<(TcpStream, Token)>,
    /// The client's bytes the target has not taken yet.
    to_target: Vec<u8>,
    /// How much of `to_target` was written.
    written: usize,
    /// Bytes written to the target not yet acknowledged to the client.
    unacked: u32,
    /// Bytes the client may still be sent.
    credit: u32,
    /// The client sent `ChannelEof`.
    client_eof: bool,
    /// Our sending side to the target is shut (after `client_eof`).
    shut: bool,
    /// The target sent its last byte; `ChannelEof` went to the client.
    target_eof: bool,
    /// The target's other addresses, tried in turn if a connect fails.
    addrs: Vec<std::net::SocketAddr>,
    /// Under `--login`, the account (uid, gid) whose socket it is.
    pub owner: Option<(u32, u32)>,
}

impl Channel {
    pub fn new(conn: ConnId, wire: u32, target: String, phase: Phase) -> Channel {
        Channel {
            conn,
            wire,
            target,
            phase,
            sock: None,
            to_target: Vec::new(),
            written: 0,
            unacked: 0,
            credit: CHANNEL_WINDOW,
            client_eof: false,
            shut: false,
            target_eof: false,
            addrs: Vec::new(),
            owner: None,
        }
    }

    /// The addresses still to try after the one being connected to.
    pub fn set_addrs(&mut self, addrs: Vec<std::net::SocketAddr>) {
        self.addrs = addrs;
    }

    pub fn take_addrs(&mut self) -> Vec<std::net::SocketAddr> {
        std::mem::take(&mut self.addrs)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Gives the channel its socket (connecting, or accepted).
    pub fn set_socket(&mut self, sock: TcpStream, token: Token) {
        self.sock = Some((sock, token));
    }

    /// The socket, for the poll's (de)registration.
    pub fn socket(&mut self) -> Option<(&mut TcpStream, Token)> {
        self.sock.as_mut().map(|(s, t)| (s, *t))
    }

    /// A connect under way finished: the peer's address, or why not.
    pub fn connected(&mut self) -> Option<Result<String, String>> {
        let (sock, _) = self.sock.as_ref()?;
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return Some(Err(e.to_string()));
        }
        match sock.peer_addr() {
            Ok(a) => Some(Ok(a.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e.to_string())),
        }
    }

    /// Bytes the client sent: kept and written as the target takes them
    /// (taken as they are when nothing else waits: no copy). Past the
    /// window the client broke the protocol.
    pub fn take_from_client(&mut self, data: Vec<u8>) -> Result<(), String> {
        if self.client_eof {
            return Err(format!("channel {}: data after its end", self.wire));
        }
        let pending = self.to_target.len() - self.written;
        if pending + data.len() > CHANNEL_WINDOW as usize {
            return Err(format!(
                "channel {}: {} bytes sent past its window of {CHANNEL_WINDOW}",
                self.wire,
                pending + data.len() - CHANNEL_WINDOW as usize
            ));
        }
        if pending == 0 {
            self.to_target = data;
            self.written = 0;
        } else {
            self.to_target.extend_from_slice(&data);
        }
        Ok(())
    }

    /// Whether bytes from the client may be written on from where they
    /// are: open, nothing waiting before them, not ended.
    pub fn writes_through(&self) -> bool {
        self.phase == Phase::Open && self.written == self.to_target.len() && !self.client_eof
    }

    /// Bytes from the client written on from where they are (only when
    /// [`Channel::writes_through`]): what the far end does not take now is
    /// kept, within the window. An error: the far end is gone, or the
    /// client sent past its window (`Err(true)`).
    pub fn write_through(&mut self, data: &[u8]) -> Result<(), (bool, String)> {
        if data.len() > CHANNEL_WINDOW as usize {
            let why = format!(
                "channel {}: {} bytes sent past its window",
                self.wire,
                data.len()
            );
            return Err((true, why));
        }
        let Some((sock, _)) = self.sock.as_mut() else {
            return Err((false, "no socket".into()));
        };
        let mut done = 0;
        while done < data.len() {
            match sock.write(&data[done..]) {
                Ok(0) => return Err((false, "the target took no more bytes".into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((false, e.to_string())),
            }
        }
        self.unacked = self.unacked.saturating_add(done as u32);
        if done < data.len() {
            self.to_target = data[done..].to_vec();
            self.written = 0;
        }
        Ok(())
    }

    /// The client's bytes the far end has not taken yet.
    pub fn pending(&self) -> usize {
        self.to_target.len() - self.written
    }

    /// The client sends nothing more: the target's sending side is shut
    /// once what it sent is written.
    pub fn client_ended(&mut self) {
        self.client_eof = true;
    }

    /// Writes what the client sent, as far as the target takes it; shuts
    /// the target's side after the client's end. An error: the target is
    /// gone.
    pub fn write_out(&mut self) -> Result<(), String> {
        if self.phase != Phase::Open {
            return Ok(());
        }
        let Some((sock, _)) = self.sock.as_mut() else {
            return Ok(());
        };
        while self.written < self.to_target.len() {
            match sock.write(&self.to_target[self.written..]) {
                Ok(0) => return Err("the target took no more bytes".into()),
                Ok(n) => {
                    self.written += n;
                    self.unacked = self.unacked.saturating_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        // Drained: a large buffer is let go (an idle channel holds none).
        self.to_target = Vec::new();
        self.written = 0;
        if self.client_eof && !self.shut {
            self.shut = true;
            // The target may already have closed: nothing more to say.
            let _ = sock.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Bytes to acknowledge to the client now: every quarter window
    /// written (the client, with three quarters of its window left, never
    /// waits for a smaller one), and what is left once its end is written.
    pub fn take_ack(&mut self) -> Option<u32> {
        let due = self.unacked >= CHANNEL_WINDOW / 4 || (self.unacked > 0 && self.shut);
        due.then(|| std::mem::take(&mut self.unacked))
    }

    /// The client took `bytes` more; more than was sent is a lie, ignored.
    pub fn acked(&mut self, bytes: u32) {
        self.credit = self.credit.saturating_add(bytes).min(CHANNEL_WINDOW);
    }

    /// Reads from the target into `buf`, no more than the client has room
    /// for.
    pub fn read_in(&mut self, buf: &mut [u8]) -> Got {
        if self.phase != Phase::Open || self.target_eof || self.credit == 0 {
            return Got::Nothing;
        }
        let Some((sock, _)) = self.sock.as_mut() else {
            return Got::Nothing;
        };
        let room = buf.len().min(self.credit as usize);
        loop {
            return match sock.read(&mut buf[..room]) {
                Ok(0) => {
                    self.target_eof = true;
                    Got::Eof
                }
                Ok(n) => {
                    self.credit -= n as u32;
                    Got::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Got::Nothing,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Got::Failed(e.to_string()),
            };
        }
    }

    /// Whether reading stopped for want of the client's room (an ack
    /// resumes it; edge-triggered, no event would).
    #[cfg(test)]
    pub fn out_of_credit(&self) -> bool {
        self.credit == 0
    }

    /// Both ways ended and everything was delivered: the channel is done.
    pub fn finished(&self) -> bool {
        self.target_eof && self.client_eof && self.shut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_may_not_send_past_its_window() {
        let mut c = Channel::new(ConnId(1), 3, "t:1".into(), Phase::Connecting);
        let half = vec![0u8; CHANNEL_WINDOW as usize / 2];
        c.take_from_client(half.clone()).unwrap();
        c.take_from_client(half).unwrap();
        let e = c.take_from_client(vec![1]).unwrap_err();
        assert!(e.contains("past its window"), "{e}");
        c.client_ended();
        assert!(
            c.take_from_client(vec![])
                .unwrap_err()
                .contains("after its end")
        );
    }

    /// A channel whose socket is one end of a loopback connection; the
    /// other end is the target.
    fn with_socket(phase: Phase) -> (Channel, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let near = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        near.set_nonblocking(true).unwrap();
        let mut c = Channel::new(ConnId(1), 3, "t:1".into(), phase);
        c.set_socket(TcpStream::from_std(near), Token(9));
        (c, far)
    }

    #[test]
    fn credit_bounds_reads_and_acks_restore_it_up_to_the_window() {
        let (mut c, mut far) = with_socket(Phase::Open);
        far.write_all(&vec![7u8; 100_000]).unwrap();
        c.credit = 1000;
        let mut buf = vec![0u8; 64 * 1024];
        // Wait for the bytes (the kernel's loopback is quick, not instant).
        let got = loop {
            match c.read_in(&mut buf) {
                Got::Nothing if !c.out_of_credit() => std::thread::yield_now(),
                other => break other,
            }
        };
        assert_eq!(got, Got::Data(1000));
        assert!(c.out_of_credit());
        assert_eq!(c.read_in(&mut buf), Got::Nothing, "no room, no read");
        c.acked(u32::MAX);
        assert_eq!(
            c.credit, CHANNEL_WINDOW,
            "a lying ack gives no more than the window"
        );
        drop(far);
    }

    #[test]
    fn what_the_target_takes_is_acked_and_the_end_shuts_its_side() {
        let (mut c, mut far) = with_socket(Phase::Connecting);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            far.read_to_end(&mut got).unwrap();
            got
        });
        // Writes until the target took everything (it reads meanwhile).
        let drain = |c: &mut Channel| {
            for _ in 0..1_000_000 {
                c.write_out().unwrap();
                if c.written == c.to_target.len() {
                    return;
                }
                std::thread::yield_now();
            }
            panic!("the target never took it all");
        };
        c.take_from_client(b"hello".to_vec()).unwrap();
        c.write_out().unwrap();
        assert_eq!(c.take_ack(), None, "nothing is written before it is open");
        c.set_phase(Phase::Open);
        drain(&mut c);
        assert_eq!(c.take_ack(), None, "a few bytes wait for more, or the end");
        let quarter = CHANNEL_WINDOW as usize / 4;
        c.take_from_client(vec![1u8; quarter]).unwrap();
        drain(&mut c);
        assert_eq!(
            c.take_ack(),
            Some(5 + quarter as u32),
            "a quarter window is acknowledged"
        );
        c.take_from_client(b"end".to_vec()).unwrap();
        c.client_ended();
        drain(&mut c);
        assert_eq!(c.take_ack(), Some(3), "and the rest at the end");
        assert_eq!(c.take_ack(), None);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 5 + quarter + 3, "and then the end of the stream");
        assert!(got.starts_with(b"hello") && got.ends_with(b"end"));
        assert!(!c.finished(), "the target has not ended yet");
    }
}
