//! How bytes cross a connection's socket: reads into the decoder (through
//! TLS when in use), writes of the output queue, splicing, the tutorial
//! protocols' reads, and lingering after an error.

use std::io::{self, Read, Write};
use std::time::Instant;

use rexec_proto::OutputStream;

use super::{Connection, LINGER_MAX, Lingered, State, TLS_HANDSHAKE, Transport};
use crate::out_queue::OutQueue;
use crate::protocol::Binding;

impl Connection {
    /// Splices `len` bytes of output from `pipe` onto the socket as one
    /// frame (splice.rs); what the socket did not take is owed.
    pub fn splice_from(
        &mut self,
        pipe: std::os::fd::BorrowedFd<'_>,
        stream: OutputStream,
        id: u32,
        len: usize,
    ) -> io::Result<crate::splice::Sent> {
        let Some(sock) = self.stream.fd() else {
            return Err(io::Error::other("no socket to splice onto"));
        };
        let sent = crate::splice::send_chunk(pipe, sock, stream, id, len)?;
        if let crate::splice::Sent::Owed(owed) = sent {
            self.spliced = Some(owed);
            return Ok(crate::splice::Sent::All);
        }
        Ok(sent)
    }

    /// Reads one tutorial command (up to `buf.len()` bytes): `Some(n)` with
    /// the command in `buf[..n]`, `None` for nothing now (or the end, or an
    /// error, which change the state).
    pub fn read_tutorial(&mut self, buf: &mut [u8], now: Instant) -> Option<usize> {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    // Done sending; closes once the last reply is flushed.
                    self.state = State::InputClosed;
                    return None;
                }
                Ok(n) => {
                    self.last_activity = now;
                    return Some(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("{}: read failed: {e}", self.peer);
                    self.state = State::Dead;
                    return None;
                }
            }
        }
    }

    /// The error is sent: shut our side (the client reads it, then end of
    /// stream) and discard what the client still sends until it closes.
    pub fn start_linger(&mut self, scratch: &mut [u8]) -> Lingered {
        if let Err(e) = self.stream.shutdown_write() {
            log::debug!("{}: shutdown: {e}", self.peer);
            return Lingered::Done;
        }
        self.state = State::Lingering;
        self.lingered = 0;
        self.linger(scratch)
    }

    /// Reads and discards what the client sends while lingering.
    pub fn linger(&mut self, scratch: &mut [u8]) -> Lingered {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Lingered::Done,
                Ok(n) => {
                    self.lingered += n;
                    if self.lingered > LINGER_MAX {
                        return Lingered::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Lingered::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Lingered::Done,
            }
        }
    }

    /// Whether the client's first bytes show it expects the other transport:
    /// a TLS ClientHello on a plaintext port, or plaintext on a TLS port.
    /// Either way the client gets a plain `Error` frame it can read and show.
    pub(super) fn wrong_transport(&mut self) -> Option<String> {
        match &mut self.transport {
            Transport::Plain => {
                let b = self.decoder.buffered_bytes();
                (b.len() >= 2 && b[0] == TLS_HANDSHAKE && b[1] == 3).then(|| {
                    "this server speaks plaintext, and the client started TLS: connect without \
                     --tls (or run rexecd with --tls)"
                        .to_string()
                })
            }
            Transport::Tls { checked: true, .. } => None,
            Transport::Tls { checked, .. } => {
                let mut first = [0u8; 1];
                match self.stream.peek(&mut first) {
                    Ok(1) if first[0] != TLS_HANDSHAKE => {
                        // Answer in the client's language.
                        self.transport = Transport::Plain;
                        Some(
                            "this server speaks TLS, and the client sent plaintext: connect with \
                             --tls (first time: --accept-new, or --fingerprint SHA256:... as \
                             printed by rexecd)"
                                .to_string(),
                        )
                    }
                    Ok(_) => {
                        *checked = true;
                        None
                    }
                    Err(_) => None, // nothing yet; read_input reports errors
                }
            }
        }
    }

    /// Reads what the socket has into the decoder (through TLS if in use).
    /// `Ok(0)` is the end of the stream; `WouldBlock` means nothing more now.
    ///
    /// The bytes land in `scratch` (the server's, shared) and only what
    /// arrived is copied into the decoder: a connection that said a few
    /// bytes holds a few bytes, not a 64 KiB read buffer (20,000 idle
    /// connections were 229 MiB that way, 19 MiB this way).
    pub(super) fn read_input(&mut self, scratch: &mut [u8], now: Instant) -> io::Result<usize> {
        let tls = match &mut self.transport {
            Transport::Plain => {
                // Just after a spliced chunk, read little: the next is
                // likely another, whose data is better spliced than read.
                let want = if std::mem::take(&mut self.after_splice) {
                    crate::splice_in::READ_AFTER_SPLICE.min(scratch.len())
                } else {
                    scratch.len()
                };
                let n = match self.decoder.missing() {
                    // A large frame under way (forwarded data, say): the
                    // decoder holds it whole anyway, so its bytes go
                    // straight there, up to its end and no further (the
                    // next frame's start is not moved about after it).
                    Some(m) if m >= scratch.len() && want == scratch.len() => {
                        self.decoder.read_from_at_most(&mut self.stream, m)?
                    }
                    _ => {
                        let n = self.stream.read(&mut scratch[..want])?;
                        self.decoder.feed(&scratch[..n]);
                        n
                    }
                };
                if n > 0 {
                    self.last_heard = now;
                }
                return Ok(n);
            }
            Transport::Tls { tls, .. } => tls,
        };
        let n = tls.read_tls(&mut self.stream)?;
        if n == 0 {
            return Ok(0);
        }
        self.last_heard = now;
        if let Err(e) = tls.process_new_packets() {
            // Tell the peer (an alert), then give up on it.
            let _ = tls.write_tls(&mut self.stream);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: {e}"),
            ));
        }
        loop {
            match tls.reader().read(scratch) {
                Ok(0) => return Ok(0), // close_notify
                Ok(got) => self.decoder.feed(&scratch[..got]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if tls.wants_write() {
            self.flush(); // handshake messages
        }
        Ok(n)
    }

    /// What binds a login to this connection, once a TLS handshake is
    /// done: the TLS exporter value, or on plain TCP the address the
    /// client reached (this socket's own).
    pub fn channel_binding(&self) -> Binding {
        match &self.transport {
            Transport::Plain => Binding::Address(match self.stream.local_addr() {
                Ok(addr) => rexec_proto::auth::address_binding(addr),
                // An empty binding fails every answer a client computes.
                Err(_) => Vec::new(),
            }),
            Transport::Tls { tls, .. } => {
                let mut out = vec![0u8; 32];
                Binding::Tls(
                    match tls.export_keying_material(
                        &mut out[..],
                        rexec_proto::auth::TLS_EXPORTER_LABEL,
                        None,
                    ) {
                        Ok(_) => out,
                        // Not possible after the handshake; an empty binding
                        // then fails every answer a TLS client computes.
                        Err(_) => Vec::new(),
                    },
                )
            }
        }
    }

    /// Whether output may be spliced onto the socket now: a plain native
    /// connection that is still delivering, with nothing queued or owed
    /// before it (frames must not interleave).
    pub fn can_splice(&self) -> bool {
        self.zero_copy() && self.out.is_empty() && self.spliced.is_none()
    }

    /// A plain native connection that is still delivering: output goes to
    /// it by splice, and at most one read's worth waits in `out`.
    pub fn zero_copy(&self) -> bool {
        matches!(self.transport, Transport::Plain)
            && self.is_native()
            && matches!(self.state, State::Open | State::InputClosed)
            && self.stream.fd().is_some()
    }

    /// Writes what is queued, as far as the socket takes it. A write error
    /// marks the connection dead.
    pub fn flush(&mut self) {
        if self.is_dead() {
            return;
        }
        let res = match &mut self.transport {
            Transport::Plain => match &mut self.spliced {
                // (Only a socket can be owed a spliced frame's rest.)
                Some(owed) => match self.stream.fd().map_or(Ok(true), |sock| owed.resume(sock)) {
                    Ok(true) => {
                        self.spliced = None;
                        self.out.write_to(&mut self.stream)
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                },
                None => self.out.write_to(&mut self.stream),
            },
            Transport::Tls { tls, .. } => flush_tls(tls, &mut self.out, &mut self.stream),
        };
        if let Err(e) = res {
            log::debug!("{}: write failed: {e}", self.peer);
            self.state = State::Dead;
        }
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
