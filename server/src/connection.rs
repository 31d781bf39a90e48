//! One client connection: its socket, what it has sent that is not yet
//! decoded, what we have queued that is not yet written, and its commands.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use rexec_proto::{ErrorKind, ErrorMsg, FrameDecoder, OutputStream, ServerMsg, encode_frame};

use crate::config::Protocol;
use crate::protocol::ConnProtocol;

/// Bytes waiting to be written to a socket.
///
/// Frames are appended at the end and written from `pos`; the consumed front
/// is dropped lazily, so appending is amortised O(1) and a partial write never
/// shifts the buffer.
#[derive(Debug, Default)]
pub struct OutQueue {
    buf: Vec<u8>,
    pos: usize,
}

impl OutQueue {
    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The buffer to append frames to.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        &mut self.buf
    }

    /// The unsent bytes.
    pub fn front(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks `n` bytes of [`OutQueue::front`] as sent.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Writes until the queue is empty or the writer would block. Other
    /// errors (the peer went away) are returned.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while self.pos < self.buf.len() {
            match w.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.pos = 0;
        Ok(())
    }

    /// Gives memory back once the queue is empty.
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

/// How bytes cross the socket.
#[derive(Debug)]
pub enum Transport {
    Plain,
    /// TLS: frames go into rustls's plaintext side, records onto the socket.
    Tls {
        tls: Box<rustls::ServerConnection>,
        /// The first byte was checked to be a TLS handshake record.
        checked: bool,
    },
}

/// The first byte of a TLS handshake record (a ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Whether a connection is still in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// An error was sent; flushing it, then closing. Nothing more is read.
    Closing,
}

#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    pub transport: Transport,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub state: State,
    /// The protocol state machine (native protocol only).
    pub proto: Option<ConnProtocol>,
    pub decoder: FrameDecoder,
    pub out: OutQueue,
    /// Running commands: client id -> process key.
    pub commands: HashMap<u32, u64>,
    /// Pipes not read because `out` is over the queue limit; they get no new
    /// readiness event, so they are resumed by hand when `out` drains.
    pub paused_pipes: Vec<(u64, OutputStream)>,
    /// Socket input not read because a command's stdin queue is full.
    pub input_paused: bool,
    /// Last time the client sent anything.
    pub last_activity: Instant,
    /// A write failed: the peer is gone.
    pub dead: bool,
    /// At least one frame was decoded (a plaintext port checks the first
    /// bytes for a TLS ClientHello until then).
    pub seen_frame: bool,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        protocol: Protocol,
        proto: Option<ConnProtocol>,
        max_frame: usize,
        tls: Option<rustls::ServerConnection>,
    ) -> Self {
        Connection {
            stream,
            transport: match tls {
                Some(t) => Transport::Tls {
                    tls: Box::new(t),
                    checked: false,
                },
                None => Transport::Plain,
            },
            peer,
            protocol,
            state: State::Open,
            proto,
            decoder: FrameDecoder::with_max_frame(max_frame),
            out: OutQueue::default(),
            commands: HashMap::new(),
            paused_pipes: Vec::new(),
            input_paused: false,
            last_activity: Instant::now(),
            dead: false,
            seen_frame: false,
        }
    }

    /// Reads what the socket has into the decoder (through TLS if in use).
    /// `Ok(0)` is the end of the stream; `WouldBlock` means nothing more now.
    pub fn read_input(&mut self) -> io::Result<usize> {
        let tls = match &mut self.transport {
            Transport::Plain => return self.decoder.read_from(&mut self.stream),
            Transport::Tls { tls, .. } => tls,
        };
        let n = tls.read_tls(&mut self.stream)?;
        if n == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            // Tell the peer (an alert), then give up on it.
            let _ = tls.write_tls(&mut self.stream);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: {e}"),
            ));
        }
        loop {
            match self.decoder.read_from(&mut tls.reader()) {
                Ok(0) => return Ok(0), // close_notify
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if tls.wants_write() {
            self.flush(); // handshake messages
        }
        Ok(n)
    }

    /// The TLS channel binding for authentication, once the handshake is done.
    pub fn channel_binding(&self) -> Vec<u8> {
        match &self.transport {
            Transport::Plain => Vec::new(),
            Transport::Tls { tls, .. } => {
                let mut out = vec![0u8; 32];
                match tls.export_keying_material(
                    &mut out[..],
                    rexec_proto::auth::TLS_EXPORTER_LABEL,
                    None,
                ) {
                    Ok(_) => out,
                    // Not possible after the handshake; an empty binding then
                    // fails every answer a TLS client computes.
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// Queues a message. Call [`Connection::flush`] to send it.
    pub fn queue(&mut self, msg: &ServerMsg) {
        encode_frame(msg, self.out.tail());
    }

    /// Queues a connection-level error; the connection closes once it is sent.
    pub fn fail(&mut self, kind: ErrorKind, message: String) {
        if self.state == State::Closing {
            return;
        }
        if self.protocol == Protocol::Native {
            self.queue(&ServerMsg::Error(ErrorMsg {
                id: None,
                kind,
                message,
            }));
        }
        self.state = State::Closing;
    }

    /// Writes what is queued, as far as the socket takes it. A write error
    /// marks the connection dead.
    pub fn flush(&mut self) {
        if self.dead {
            return;
        }
        let res = match &mut self.transport {
            Transport::Plain => self.out.write_to(&mut self.stream),
            Transport::Tls { tls, .. } => flush_tls(tls, &mut self.out, &mut self.stream),
        };
        if let Err(e) = res {
            log::debug!("{}: write failed: {e}", self.peer);
            self.dead = true;
        }
    }

    /// True once a closing connection has sent everything.
    pub fn finished_closing(&self) -> bool {
        self.state == State::Closing && self.out.is_empty()
    }
}

/// Moves queued plaintext into rustls while it has room (its buffer is
/// bounded, so unsent bytes stay in `out`, where backpressure counts them),
/// and TLS records onto the socket, until the socket would block or all is
/// sent.
fn flush_tls<W: Write>(
    tls: &mut rustls::ServerConnection,
    out: &mut OutQueue,
    sock: &mut W,
) -> io::Result<()> {
    loop {
        while !out.is_empty() {
            let n = tls.writer().write(out.front())?;
            if n == 0 {
                break;
            }
            out.consume(n);
        }
        if !tls.wants_write() {
            return Ok(());
        }
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `chunk` bytes per call and then blocks.
    struct Trickle {
        got: Vec<u8>,
        chunk: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = b.len().min(self.chunk);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_resume() {
        let mut q = OutQueue::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        q.tail().extend_from_slice(&data[..6000]);
        let mut w = Trickle {
            got: Vec::new(),
            chunk: 1000,
            calls_left: 4,
        };
        q.write_to(&mut w).expect("would-block is not an error");
        assert_eq!(q.len(), 2000);
        q.tail().extend_from_slice(&data[6000..]);
        assert_eq!(q.len(), 6000);
        w.calls_left = usize::MAX;
        q.write_to(&mut w).expect("drains");
        assert!(q.is_empty());
        assert_eq!(w.got, data);
    }

    #[test]
    fn write_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = OutQueue::default();
        q.tail().push(1);
        assert!(q.write_to(&mut Broken).is_err());
    }
}
