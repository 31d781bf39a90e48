//! File transfers: a Put, Get or List becomes a transfer helper
//! (`rexecd __files`, files.rs) started like any command, and its request
//! goes to it typed, as frames on its stdin.

use std::os::unix::ffi::OsStrExt;

use rexec_proto::{Checksum, ErrorKind, Exec, PROTOCOL_VERSION, TreeOp};

use super::Server;
use crate::helpers::files_request::{HelperMsg, Request};
use crate::registry::ConnId;

impl Server {
    /// A client sends a file: a transfer helper (`rexecd __files`) gets the
    /// client's `Put` and then its data through stdin, as frames.
    pub(super) fn put(&mut self, conn_id: ConnId, put: rexec_proto::Put) {
        let label = format!(
            "put {} ({} bytes)",
            String::from_utf8_lossy(&put.dest),
            put.size
        );
        // The data follows in Stdin, and PutEnd ends it.
        self.transfer(conn_id, put.id, label, Request::Put(put), false);
    }

    /// The end of a put: the client's checksum, then EOF.
    pub(super) fn put_end(&mut self, conn_id: ConnId, id: u32, digest: &[u8]) {
        let end = HelperMsg::End {
            digest: digest.to_vec(),
        };
        self.send_to_helper(conn_id, id, &end, true);
    }

    /// A client fetches a file: a transfer helper sends it as output.
    pub(super) fn get(&mut self, conn_id: ConnId, id: u32, path: Vec<u8>) {
        let label = format!("get {}", String::from_utf8_lossy(&path));
        self.transfer(conn_id, id, label, Request::Get(path), true);
    }

    /// A client lists a tree (`rexec cp -r` down): a transfer helper walks
    /// it, confined like a get.
    pub(super) fn list(&mut self, conn_id: ConnId, id: u32, path: Vec<u8>) {
        let label = format!("list {}", String::from_utf8_lossy(&path));
        self.transfer(conn_id, id, label, Request::List(path), true);
    }

    /// `rexec sync` scans a tree or removes an entry: a transfer helper
    /// does it, confined like a get.
    pub(super) fn tree(&mut self, conn_id: ConnId, id: u32, path: Vec<u8>, op: TreeOp) {
        let (label, request) = match op {
            TreeOp::Scan => ("scan", Request::Scan(path.clone(), false)),
            TreeOp::ScanDigests => ("scan", Request::Scan(path.clone(), true)),
            TreeOp::Remove => ("remove", Request::Remove(path.clone())),
        };
        let label = format!("{label} {}", String::from_utf8_lossy(&path));
        self.transfer(conn_id, id, label, request, true);
    }

    /// Queues a message for a transfer helper (a frame on its stdin).
    fn send_to_helper(&mut self, conn_id: ConnId, id: u32, msg: &HelperMsg, eof: bool) {
        let mut frame = Vec::new();
        msg.encode(&mut frame);
        self.queue_stdin(conn_id, id, &frame, eof, true);
    }

    /// Starts a transfer helper (files.rs) for `request` and sends it the
    /// request, with the files root; `done` when nothing follows it.
    fn transfer(&mut self, conn_id: ConnId, id: u32, label: String, request: Request, done: bool) {
        let exec = Exec {
            id,
            command: label,
            stdin: true,
            ..Exec::default()
        };
        if self
            .conns
            .get(&conn_id)
            .is_some_and(|c| c.command(id).is_some())
        {
            return self.command_error(
                conn_id,
                id,
                ErrorKind::BadRequest,
                format!("command id {id} is already running on this connection"),
            );
        }
        let started = self.room_for_a_command().and_then(|()| {
            let grant = self
                .conns
                .get(&conn_id)
                .map(|c| c.grant())
                .unwrap_or_default();
            crate::exec_policy::transfer_command(&self.cfg.exec, &grant)
                .and_then(|cmd| self.launch(conn_id, exec, cmd, true))
        });
        if started.is_ok() {
            let root = self.cfg.exec.files_root.as_ref();
            let theirs = self
                .conns
                .get(&conn_id)
                .map_or(rexec_proto::OLDEST_PROTOCOL, |c| c.version());
            let msg = HelperMsg::Request {
                request,
                root: root.map(|r| r.as_os_str().as_bytes().to_vec()),
                checksum: Checksum::between(PROTOCOL_VERSION, theirs),
            };
            self.send_to_helper(conn_id, id, &msg, done);
            // From here on, what the client sends for it is data.
            if let Some(p) = self.conns.get(&conn_id).and_then(|c| c.command(id))
                && let Some(p) = self.procs.get_mut(&p)
            {
                p.mark_transfer(&mut self.budget.big_pipes);
            }
        }
        if let Err(e) = started {
            self.command_error(conn_id, id, e.kind, e.message);
        }
    }
}
