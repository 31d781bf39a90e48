//! The socket tutorials' protocols (seed: a length header then the output;
//! raw: no header at all). One read of up to 1024 bytes is one command, run
//! one at a time, as the tutorials' server does.

use std::io::{self, Read};
use std::time::Instant;

use rexec_proto::Exec;
use rexec_proto::tutorial::{SEED_READ_SIZE, encode_raw_reply, encode_seed_reply, seed_command};

use super::Server;
use crate::connection::{Connection, State, Wire};
use crate::process::CommandError;
use crate::registry::ConnId;

/// Queues a command's whole reply. The output limit keeps a seed reply far
/// below its header's 2 GiB.
pub(super) fn reply(conn: &mut Connection, stdout: &[u8], stderr: &[u8]) {
    match conn.wire {
        Wire::Seed => {
            if let Err(e) = encode_seed_reply(stdout, stderr, conn.out.tail()) {
                log::error!("{}: {e}", conn.peer);
                conn.state = State::Dead;
            }
        }
        Wire::Raw => encode_raw_reply(stdout, stderr, conn.out.tail()),
        Wire::Native(_) => {}
    }
}

impl Server {
    /// Reads the next command, if none is running. While one runs the socket
    /// is not read, so commands sent meanwhile pile up in the kernel and are
    /// read together: the sticky-packet lesson, made deterministic.
    pub(super) fn tutorial_input(&mut self, id: ConnId) {
        let mut buf = [0u8; SEED_READ_SIZE];
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            if !conn.commands.is_empty() || !conn.is_open() {
                return;
            }
            let n = match conn.stream.read(&mut buf) {
                Ok(0) => {
                    // Done sending; closes once the last reply is flushed.
                    conn.state = State::InputClosed;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("{}: read failed: {e}", conn.peer);
                    conn.state = State::Dead;
                    return;
                }
            };
            conn.last_activity = Instant::now();
            self.tutorial_seq = self.tutorial_seq.wrapping_add(1);
            let exec = Exec {
                id: self.tutorial_seq,
                command: seed_command(&buf[..n]),
                ..Exec::default()
            };
            if let Err(e) = self.start(id, exec) {
                self.tutorial_error(id, &e);
            }
        }
    }

    /// A command could not start: the tutorial protocols have no error
    /// message, so the reply carries the error text as output.
    pub(super) fn tutorial_error(&mut self, id: ConnId, e: &CommandError) {
        let text = format!("rexecd: {}: {}\n", e.kind, e.message);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        reply(conn, b"", text.as_bytes());
        conn.flush();
    }
}
