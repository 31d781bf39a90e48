//! A connection to rexecd: connect, exchange hellos, send and receive frames.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rexec_proto::{
    ClientHello, ClientMsg, FrameDecoder, FrameError, PROTOCOL_VERSION, SOFTWARE_VERSION,
    ServerEvent, ServerHello, ServerMsg, encode_frame,
};

use rexec_proto::auth::Token;
use rexec_proto::{ErrorKind, ErrorMsg};

use crate::addr::parse_host;
use crate::error::ClientError;
use crate::trace;

/// Bytes the client asks the socket for in one read.
const RECV_BUFFER: usize = 1 << 20;

/// How long to wait for the server's hello when no connect timeout is given.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Limit on the TCP connect and the server's hello.
    pub connect_timeout: Option<Duration>,
    /// Print every frame on stderr.
    pub trace: bool,
    /// The shared secret, for servers that ask for it.
    pub token: Option<Token>,
}

/// The sending half, shared with the stdin-forwarding thread and the Ctrl-C
/// handler. Each frame is written whole under the lock, so frames from
/// several threads never interleave.
#[derive(Debug)]
pub struct Writer {
    stream: Mutex<TcpStream>,
    trace: bool,
}

impl Writer {
    pub fn send(&self, msg: &ClientMsg) -> io::Result<()> {
        let mut frame = Vec::new();
        let len = encode_frame(msg, &mut frame);
        if self.trace {
            trace::emit(&trace::sent(msg, len));
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(&frame)
    }

    /// Sends several frames with a single write: they leave glued together,
    /// as sticky as TCP can make them. Returns the bytes written.
    pub fn send_glued(&self, msgs: &[ClientMsg]) -> io::Result<Vec<u8>> {
        let mut frames = Vec::new();
        for msg in msgs {
            let len = encode_frame(msg, &mut frames);
            if self.trace {
                trace::emit(&trace::sent(msg, len));
            }
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(&frames)?;
        Ok(frames)
    }
}

#[derive(Debug)]
pub struct Session {
    reader: TcpStream,
    decoder: FrameDecoder,
    writer: Arc<Writer>,
    pub server: ServerHello,
    pub addr: SocketAddr,
    trace: bool,
}

impl Session {
    /// Connects to `HOST[:PORT]` and exchanges hellos.
    pub fn connect(spec: &str, opts: &ConnectOptions) -> Result<Session, ClientError> {
        let (host, port) = parse_host(spec).map_err(ClientError::Usage)?;
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| ClientError::Resolve(format!("{host}: {e}")))?
            .collect();
        let mut last = ClientError::Resolve(format!("{host}: no addresses"));
        for addr in addrs {
            match Self::connect_addr(addr, opts) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to one address and exchanges hellos.
    pub fn connect_addr(addr: SocketAddr, opts: &ConnectOptions) -> Result<Session, ClientError> {
        let stream = match opts.connect_timeout {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        }
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => ClientError::Refused(addr.to_string()),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                ClientError::Timeout(addr.to_string())
            }
            _ => ClientError::Unreachable(addr.to_string(), e),
        })?;
        stream.set_nodelay(true)?;
        let writer = Arc::new(Writer {
            stream: Mutex::new(stream.try_clone()?),
            trace: opts.trace,
        });
        let mut decoder = FrameDecoder::new();
        // Large reads: a 64 KiB output frame plus its header would otherwise
        // straddle two reads.
        decoder.reserve(RECV_BUFFER);
        let mut session = Session {
            reader: stream,
            decoder,
            writer,
            server: ServerHello {
                protocol: 0,
                software: String::new(),
                challenge: None,
            },
            addr,
            trace: opts.trace,
        };
        session.send(&ClientMsg::Hello(ClientHello {
            protocol: PROTOCOL_VERSION,
            software: SOFTWARE_VERSION.to_string(),
        }))?;
        session
            .reader
            .set_read_timeout(Some(opts.connect_timeout.unwrap_or(HELLO_TIMEOUT)))?;
        let first = session.next_event().map_err(|e| match e {
            ClientError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                ClientError::Protocol(format!(
                    "{addr} sent no rexec hello (is it rexecd with --protocol native?)"
                ))
            }
            ClientError::Protocol(m) => {
                ClientError::Protocol(format!("{addr} does not speak the rexec protocol ({m})"))
            }
            other => other,
        })?;
        let hello = match first {
            ServerEvent::Msg(ServerMsg::Hello(h)) => h,
            ServerEvent::Msg(ServerMsg::Error(e)) => return Err(ClientError::Server(e)),
            _ => {
                return Err(ClientError::Protocol(format!(
                    "{addr} did not answer with a hello"
                )));
            }
        };
        session.server = hello;
        session.reader.set_read_timeout(None)?;
        if session.server.protocol != PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "version mismatch: server {addr} speaks protocol {} (rexecd {}), this client speaks {} (rexec {})",
                session.server.protocol,
                session.server.software,
                PROTOCOL_VERSION,
                SOFTWARE_VERSION
            )));
        }
        match (&session.server.challenge, &opts.token) {
            (None, _) => {}
            (Some(nonce), Some(token)) => {
                let answer = token.answer(b"", nonce).to_vec();
                session.send(&ClientMsg::Auth { answer })?;
            }
            (Some(_), None) => {
                return Err(ClientError::Server(ErrorMsg {
                    id: None,
                    kind: ErrorKind::Auth,
                    message: format!(
                        "{addr} requires a token: give --token-file FILE or set REXEC_TOKEN"
                    ),
                }));
            }
        }
        Ok(session)
    }

    /// The sending half, for other threads.
    pub fn writer(&self) -> Arc<Writer> {
        self.writer.clone()
    }

    pub fn send(&self, msg: &ClientMsg) -> Result<(), ClientError> {
        Ok(self.writer.send(msg)?)
    }

    /// Blocks until the next frame arrives. Output data is borrowed from the
    /// receive buffer, so it is not copied on the way to stdout.
    pub fn next_event(&mut self) -> Result<ServerEvent<'_>, ClientError> {
        self.next_frame().map(|(_, ev)| ev)
    }

    /// Like [`Session::next_event`], with the frame's payload length.
    pub fn next_frame(&mut self) -> Result<(usize, ServerEvent<'_>), ClientError> {
        let proto = |e: FrameError| ClientError::Protocol(e.to_string());
        loop {
            if let Some(len) = self.decoder.frame_ready().map_err(proto)? {
                let ev = self.decoder.next_server_event().map_err(proto)?;
                let ev = ev.ok_or_else(|| ClientError::Protocol("frame vanished".into()))?;
                if self.trace {
                    trace::emit(&trace::received(&ev, len));
                }
                return Ok((len, ev));
            }
            match self.decoder.read_from(&mut self.reader as &mut dyn Read) {
                Ok(0) => {
                    return Err(match self.decoder.finish() {
                        Ok(()) => ClientError::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        )),
                        Err(e) => ClientError::Protocol(e.to_string()),
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }
}
