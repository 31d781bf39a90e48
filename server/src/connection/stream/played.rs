//! A client played in memory, for the router's unit tests: the test sends
//! bytes, finishes or resets, and reads what the server wrote; the server's
//! side reads and writes as a non-blocking socket would (`WouldBlock` when
//! there is nothing, or no room). No socket, no thread, no real time.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Both ends of one played connection; clones share them (the test keeps
/// one, the connection the other).
#[derive(Debug, Clone, Default)]
pub struct Played(Arc<Mutex<Sides>>);

#[derive(Debug, Default)]
struct Sides {
    /// Sent by the client, not yet read by the server.
    to_server: VecDeque<u8>,
    /// The client shut down its sending side.
    client_finished: bool,
    /// The client is gone with a reset: every read and write fails.
    reset: bool,
    /// Written by the server, not yet taken by the test.
    to_client: Vec<u8>,
    /// The server shut down its sending side.
    server_finished: bool,
    /// How much more the client's socket takes (`None`: all of it).
    room: Option<usize>,
}

impl Played {
    fn sides(&self) -> MutexGuard<'_, Sides> {
        // A test that panicked while holding it has failed already.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client sends `bytes`.
    pub fn send(&self, bytes: &[u8]) {
        self.sides().to_server.extend(bytes);
    }

    /// The client shuts down its sending side (the server reads the end).
    pub fn finish(&self) {
        self.sides().client_finished = true;
    }

    /// The client vanishes with a reset.
    pub fn reset(&self) {
        self.sides().reset = true;
    }

    /// The client's socket takes at most `room` more bytes (`None`: any).
    pub fn set_room(&self, room: Option<usize>) {
        self.sides().room = room;
    }

    /// Takes what the server wrote since the last call.
    pub fn received(&self) -> Vec<u8> {
        std::mem::take(&mut self.sides().to_client)
    }

    /// Whether the server shut down its sending side.
    pub fn server_finished_sending(&self) -> bool {
        self.sides().server_finished
    }

    /// Whether the connection (the server's clone) is gone: only the
    /// test's handle is left.
    pub fn closed_by_server(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    pub(super) fn server_finished(&self) {
        self.sides().server_finished = true;
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], rexec_proto::DEFAULT_PORT))
    }

    pub(super) fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let s = self.sides();
        if s.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if s.to_server.is_empty() {
            return match s.client_finished {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(s.to_server.len());
        for (b, v) in buf.iter_mut().zip(s.to_server.iter()) {
            *b = *v;
        }
        Ok(n)
    }

    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.peek(buf)?;
        self.sides().to_server.drain(..n);
        Ok(n)
    }

    pub(super) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.sides();
        if s.reset || s.server_finished {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = s.room.map_or(buf.len(), |r| r.min(buf.len()));
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if let Some(r) = s.room.as_mut() {
            *r -= n;
        }
        s.to_client.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}
