//! The socket tutorials' protocols (seed: a length header then the output;
//! raw: no header at all). One read of up to 1024 bytes is one command, run
//! one at a time, as the tutorials' server does.

use rexec_proto::Exec;
use rexec_proto::tutorial::{SEED_READ_SIZE, seed_command};

use super::Server;
use crate::registry::ConnId;

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
            if conn.has_commands() || !conn.is_open() {
                return;
            }
            let Some(n) = conn.read_tutorial(&mut buf, self.now) else {
                return;
            };
            self.ids.tutorial = self.ids.tutorial.wrapping_add(1);
            let exec = Exec {
                id: self.ids.tutorial,
                command: seed_command(&buf[..n]),
                ..Exec::default()
            };
            if let Err(e) = self.run_exec(id, exec) {
                self.tutorial_error(id, &e);
            }
        }
    }
}
